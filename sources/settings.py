"""The gateway's settings as every layer reads them: one frozen dataclass, built at start by
`gateway/config.py` (defaults, a TOML file, `UCGW_*` environment variables) and passed down.

It sits with the sources because the lowest layer that reads it is the backend client; stores take
the values they need (paths, sizes) as arguments instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sources.systems import Source


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads at start. Field `x` is env `UCGW_X` and TOML key `x`."""

    orr_url: str = "http://127.0.0.1:8101"
    ice_url: str = "http://127.0.0.1:8102"
    eoir_url: str = "http://127.0.0.1:8103"
    host: str = "127.0.0.1"
    port: int = 8000
    env: str = "development"
    log_format: str = "text"  # "text" (one line, for people) or "json" (JSON lines, for log shippers)
    data_dir: str = "./var"
    # TLS of the public listener (both files, or neither: plain HTTP); the admin listener stays plain HTTP
    tls_cert_file: str = ""  # PEM certificate chain, the server's certificate first
    tls_key_file: str = ""  # PEM private key of that certificate (unencrypted; readable by the gateway only)
    hsts_max_age_seconds: int = 31_536_000  # Strict-Transport-Security max-age when TLS is on; 0: no header
    # cache
    cache_ttl_seconds: float = 60.0
    orr_ttl_seconds: float | None = None
    ice_ttl_seconds: float | None = None
    eoir_ttl_seconds: float | None = None
    cache_max_entries: int = 300_000
    answer_cache_bytes: int = 32 * 1024 * 1024  # rendered answers of repeated status queries; 0 disables
    inline_plain_fields: bool = True  # complete plain attribute fields without graphql-core's per-field steps
    max_stale_seconds: float = 86_400.0
    stale_while_revalidate_seconds: float = 0.0
    # backends
    source_timeout_seconds: float = 2.0
    request_deadline_seconds: float = 5.0
    scan_deadline_seconds: float = 60.0  # oversight lists and counts that walk every child
    max_concurrent_scans: int = 2  # different walks of every child at once; requests for the same one share it
    min_scan_max_age_seconds: float = 60.0  # least maxAgeSeconds of a query over every child (MAX_AGE_TOO_LOW)
    scan_pages_ahead: int = 3  # listing pages a walk of every child joins ahead of the one it counts (0: none)
    retry_attempts: int = 2
    retry_backoff_seconds: float = 0.05
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 10.0
    source_connection_limit: int = 64
    # a pooled connection idle this long is closed rather than reused; keep it below the backends' own
    # keep-alive timeout (uvicorn's and the mocks': 5 s), or a call may go out on a connection they are closing
    source_keepalive_seconds: float = 4.0
    # each source's transport and our credentials there (sources/source_tls.py, sources/source_tokens.py):
    # a CA file to verify its certificate by (empty: the system's CAs), a client certificate and key for mTLS,
    # and OAuth2 client credentials (token URL, client id and secret, scope) for a Bearer token on every call
    orr_ca_file: str = ""
    orr_client_cert_file: str = ""
    orr_client_key_file: str = ""
    orr_token_url: str = ""
    orr_client_id: str = ""
    orr_client_secret: str = field(default="", repr=False)
    orr_scope: str = ""
    ice_ca_file: str = ""
    ice_client_cert_file: str = ""
    ice_client_key_file: str = ""
    ice_token_url: str = ""
    ice_client_id: str = ""
    ice_client_secret: str = field(default="", repr=False)
    ice_scope: str = ""
    eoir_ca_file: str = ""
    eoir_client_cert_file: str = ""
    eoir_client_key_file: str = ""
    eoir_token_url: str = ""
    eoir_client_id: str = ""
    eoir_client_secret: str = field(default="", repr=False)
    eoir_scope: str = ""
    # access control and abuse limits
    jwt_secret: str = field(default="", repr=False)  # no default: `serve` needs credentials (`ucgw demo` makes one)
    # more HS256 secrets, each with its key id: "id1=secret1,id2=secret2"; a token's `kid` picks one (rotation)
    jwt_secrets: str = field(default="", repr=False)
    jwt_public_key_file: str = ""
    jwt_jwks_file: str = ""
    jwt_audience: str = "uc-status-gateway"
    jwt_issuer: str = "ucgw-demo"
    api_keys_file: str = ""
    # OpenID Connect sign-in (GraphiQL's "Sign in" button; the provider's tokens verified by its JWKS)
    oidc_issuer: str = ""  # the provider's issuer URL (its discovery document is ISSUER/.well-known/...); "": off
    oidc_client_id: str = ""  # the public client GraphiQL signs in as (authorization code + PKCE)
    oidc_audience: str = ""  # required `aud` of the provider's tokens; "": the client id
    oidc_role_claim: str = "role"  # the claim holding the gateway role
    oidc_offices_claim: str = "field_offices"  # the claim holding the field-office scope (absent: every office)
    auth_required: bool = True
    jwt_max_ttl_seconds: int = 12 * 3600  # longest `exp - iat` a token may have (`ucgw token --ttl` too)
    admin_host: str = "127.0.0.1"  # the operators' listener (detailed /readyz); never the public address
    admin_port: int | None = None  # None: no admin listener
    replica_id: str = ""  # the `replica` label of every metric; empty: hostname:pid
    rate_limit_rps: float = 20.0
    rate_limit_burst: int = 40
    max_query_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2_000
    max_query_cost: int = 5_000
    max_body_bytes: int = 100_000
    # the edge (gateway/http/edge.py): deadlines for receiving a request, header sizes, connection caps
    header_timeout_seconds: float = 10.0  # request line and headers, from the first byte; 0: none
    body_timeout_seconds: float = 30.0  # the body, from the end of the headers; 0: none
    max_url_bytes: int = 16_384  # request target (414 beyond); 0: no cap
    max_header_bytes: int = 32_768  # all header fields together (431 beyond); 0: no cap
    max_connections: int = 10_000  # open client connections per listener (503 and close beyond); 0: no cap
    max_connections_per_client: int = 100  # open connections from one source address; 0: no cap
    max_children: int = 100
    audit_db: str = ""  # SQLite file of the audit trail; empty: <data_dir>/audit.sqlite3
    audit_sync: str = "full"  # full: each commit flushed to the disk before the answer; normal: not flushed
    # HMAC key of the audit trail's hash chains, kept outside its database; `ucgw serve` requires one (32+ bytes)
    audit_hmac_key: str = field(default="", repr=False)
    # keys of earlier chains, comma-separated: `ucgw audit verify` checks each chain under the key it was signed with
    audit_hmac_keys_previous: str = field(default="", repr=False)
    # safety concerns and push
    concerns_db: str = ""  # SQLite file of safety concerns; empty: <data_dir>/concerns.sqlite3
    change_feed_poll_seconds: float = 1.0  # 0 disables following the sources' change feeds
    change_feed_batch_limit: int = 500
    webhook_secret: str = field(default="", repr=False)  # shared secret of POST /hooks/changes; empty: no webhook
    webhook_secret_previous: str = field(default="", repr=False)  # also accepted during a rotation
    cursor_secret: str = field(default="", repr=False)  # signs cursors; empty: a random key per process
    cursor_secret_previous: str = field(default="", repr=False)  # cursors it sealed still open during a rotation
    subscription_queue_size: int = 1000
    websockets_per_client: int = 20  # open graphql-transport-ws connections one caller may hold; 0: no cap
    ws_init_timeout_seconds: float = 5.0  # a websocket that sends no connection_init this soon is closed (4408)
    ws_unauthenticated_per_address: int = 10  # sockets one address may hold open before connection_init; 0: no cap
    ws_operations_per_socket: int = 100  # operations running at once on one websocket
    subscriptions_per_client: int = 100  # operations running at once over all of one caller's websockets
    api_keys_recheck_seconds: float = 60.0  # how often the API-key file is checked for changes (at most 60)
    sse_keepalive_seconds: float = 15.0  # a comment line this often on a quiet /graphql/stream; 0: none
    federation: bool = False  # serve as an Apollo Federation v2 subgraph (`Child` an entity, `_service`, `_entities`)
    # scale-out: state the replicas share (docs/redis.md); empty: none, each process alone (memory)
    redis_url: str = field(default="", repr=False)  # redis://[:password@]host:port/db; may hold a password
    redis_prefix: str = "ucgw:"  # every key and channel of this deployment starts with it
    # persisted documents (gateway/http/persisted.py, stores/documents.py)
    persisted_queries: str = "sqlite"  # automatic persisted queries: "sqlite", "memory" or "off"
    documents_db: str = ""  # SQLite file of persisted and trusted documents; empty: <data_dir>/documents.sqlite3
    # OpenTelemetry tracing (gateway/tracing.py); also on when OTEL_EXPORTER_OTLP_ENDPOINT is set
    tracing: bool = False
    # scale-out (docs/postgresql.md): PostgreSQL holds the audit trail, safety concerns and feed cursors
    database_url: str = field(default="", repr=False)  # postgresql://… of the runtime role; empty: SQLite files
    database_migrate_url: str = field(default="", repr=False)  # the owning role's, for `ucgw migrate`
    database_migrate_on_start: bool | None = None  # None: migrate at start outside production only
    database_pool_size: int = 10  # connections per replica
    database_timeout_seconds: float = 2.0  # longest wait for a connection before a store answers unavailable
    feed_leader_lease_seconds: float = 10.0  # a dead feed leader's lease runs out this long after its renewal
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def production(self) -> bool:
        """True when running with production hardening."""
        return self.env == "production"

    @property
    def audit_path(self) -> Path:
        """Where the audit trail lives."""
        return Path(self.audit_db) if self.audit_db else Path(self.data_dir) / "audit.sqlite3"

    @property
    def concerns_path(self) -> Path:
        """Where the safety-concern database lives."""
        return Path(self.concerns_db) if self.concerns_db else Path(self.data_dir) / "concerns.sqlite3"

    @property
    def migrate_on_start(self) -> bool:
        """Whether the gateway applies pending migrations when it starts (default: outside production)."""
        return not self.production if self.database_migrate_on_start is None else self.database_migrate_on_start

    @property
    def documents_path(self) -> Path:
        """Where persisted and trusted documents live."""
        return Path(self.documents_db) if self.documents_db else Path(self.data_dir) / "documents.sqlite3"

    def source_url(self, source: Source) -> str:
        """Base URL of one backend."""
        return {Source.ORR: self.orr_url, Source.ICE: self.ice_url, Source.EOIR: self.eoir_url}[source]

    def source_option(self, source: Source, name: str) -> str:
        """One of a source's transport settings (`ca_file`, `token_url`, ...), e.g. `orr_ca_file`."""
        return str(getattr(self, f"{source.value.lower()}_{name}"))

    def ttl(self, source: Source) -> float:
        """Cache TTL of one backend: its own setting, else the common one."""
        own = getattr(self, f"{source.value.lower()}_ttl_seconds")
        return self.cache_ttl_seconds if own is None else own
