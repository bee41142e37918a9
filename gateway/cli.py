"""The `ucgw` command: mocks, serve, demo, cluster, migrate, export-schema, schema-check, token, apikey,
documents, audit."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Iterable

from gateway.config import ConfigError, load_settings, previous_audit_keys, require_credentials
from sources.settings import Settings


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides = {"host": getattr(args, "host", None), "port": getattr(args, "port", None), **extra}
    return load_settings(toml_path=getattr(args, "config", None), **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway alone, configured by environment and/or a TOML file."""
    from gateway.app import create_app
    from gateway.http.server import edge_server
    from gateway.logs import configure_logging
    from sources.tracing import current_trace_id
    from stores.audit_trail import hmac_key_problem

    settings = _settings(args)
    # every line of the process in UCGW_LOG_FORMAT, uvicorn's too (its own config is off below). Tracing
    configure_logging(settings.log_format, trace_id=current_trace_id)  # lines name the request's trace
    require_credentials(settings)  # who may call comes first: it is what an operator must set before anything
    problem = hmac_key_problem(settings.audit_hmac_key)
    if problem:  # every audit event is signed: a gateway that could not sign its trail does not start
        raise ConfigError(problem)
    app = create_app(settings)  # refuses to build without credentials, so nothing listens without them
    server = edge_server(app, settings, settings.host, settings.port, app.state.connections, tls=True,
                         log_level="info", log_config=None, timeout_graceful_shutdown=10, access_log=False,
                         ws_max_size=settings.max_body_bytes)  # a websocket message is capped as a request body is
    scheme = "https" if settings.tls_cert_file else "http"
    logging.getLogger("ucgw.app").info("ucgw gateway on %s://%s:%s/graphql", scheme, settings.host, settings.port)
    server.run()
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    """Print the SDL the gateway serves (with --federation: the subgraph SDL its `_service { sdl }` serves
    when UCGW_FEDERATION is on)."""
    from resolvers.federation import build_subgraph
    from resolvers.schema import build_schema

    schema = build_subgraph(Settings(federation=True)) if args.federation else build_schema()
    sys.stdout.write(schema.as_str() + "\n")
    return 0


def cmd_schema_check(args: argparse.Namespace) -> int:
    """Compare the served schema with the committed files and the released schema (gateway/schema_evolution.py);
    exit 1 with the reasons when a check fails."""
    from pathlib import Path

    from gateway.schema_evolution import check
    from resolvers.federation import build_subgraph
    from resolvers.schema import build_schema

    root = Path(args.root) if args.root else Path(__file__).resolve().parents[1]
    verdict = check(root, build_schema().as_str() + "\n", build_subgraph(Settings(federation=True)).as_str() + "\n")
    for note in verdict.notes:
        sys.stdout.write(f"note (not breaking, but clients may notice): {note}\n")
    for problem in verdict.problems:
        sys.stderr.write(f"schema-check: {problem}\n")
    if not verdict.problems:
        sys.stdout.write("schema-check: the served schema matches schema.graphql, schema.federation.graphql, and "
                         "breaks nothing released in schema/released.graphql without a CHANGELOG.md entry\n")
    return 1 if verdict.problems else 0


MAX_TOKEN_TTL = 366 * 86_400  # sanity bound of the flag; the gateway's UCGW_JWT_MAX_TTL_SECONDS is checked too


def token_ttl(raw: str) -> float:
    """An argparse type: a token's lifetime, a finite number of seconds above 0 and at most MAX_TOKEN_TTL."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, not {raw}")
    if value > MAX_TOKEN_TTL:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TOKEN_TTL} seconds (366 days), not {raw}")
    return value


def client_name(raw: str) -> str:
    """An argparse type: a client's name as a keys file and a token's `client` claim must hold it."""
    from gateway.http.auth import MAX_NAME, is_name

    if not is_name(raw):
        raise argparse.ArgumentTypeError(f"must be a non-blank name of at most {MAX_NAME} printable characters")
    return raw


def non_negative_int(raw: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {raw}")
    return value


def cmd_token(args: argparse.Namespace) -> int:
    """Print a token for ROLE signed with the configured HS256 secret, living no longer than the gateway's
    UCGW_JWT_MAX_TTL_SECONDS allows (a longer one would be refused)."""
    from gateway.http.auth import mint_token

    settings = load_settings(toml_path=args.config)
    offices = [o.strip() for o in args.field_offices.split(",") if o.strip()] if args.field_offices else None
    print(mint_token(settings, args.role, ttl=args.ttl, subject=args.subject, field_offices=offices,
                     client=args.client, trusted_documents_only=args.trusted_documents_only))
    return 0


def cmd_apikey(args: argparse.Namespace) -> int:
    """Print a new API key (or hash a given one) and the entry to add to the keys file."""
    from gateway.http.auth import hash_api_key, new_api_key

    key = args.key or new_api_key()
    lines = ["[[api_key]]", f"client = {json.dumps(args.client)}", f"role = {json.dumps(args.role)}",
             f'sha256 = "{hash_api_key(key)}"']
    if args.field_offices:
        offices = [o.strip() for o in args.field_offices.split(",") if o.strip()]
        lines.append(f"field_offices = {json.dumps(offices)}")
    if args.trusted_documents_only:
        lines.append("trusted_documents_only = true")
    if not args.key:
        print(f"API key (give it to the client; it is not stored anywhere): {key}\n", file=sys.stderr)
    print("\n".join(lines))
    return 0


def cmd_documents(args: argparse.Namespace) -> int:
    """Add operations to a client's trusted-document manifest, or list the manifest."""
    from gateway.manifests import ManifestError, read_documents
    from stores.documents import TrustedDocuments

    settings = _settings(args, **({"data_dir": args.data_dir} if args.data_dir else {}))
    trusted = TrustedDocuments(settings.documents_path)
    try:
        if args.action == "list":
            for digest, name in trusted.manifest(args.client):
                print(f"sha256:{digest}\t{name or ''}")
            return 0
        if not args.files:
            raise ConfigError("documents add: name at least one .graphql file or JSON manifest")
        try:
            found = [doc for path in args.files for doc in read_documents(path)]
        except ManifestError as exc:
            raise ConfigError(str(exc)) from exc
        for text, name in found:
            print(f"sha256:{trusted.add(args.client, text, name)}\t{name or ''}")
        print(f"{len(found)} documents in the manifest of {args.client}", file=sys.stderr)
        return 0
    finally:
        trusted.close()


def cmd_audit(args: argparse.Namespace) -> int:
    """Print matching audit events as JSON lines, oldest first (or run `checkpoint` / `verify`)."""
    import dataclasses

    if args.action == "checkpoint":
        return audit_checkpoint(args)
    if args.action == "verify":
        return audit_verify(args)
    if args.checkpoint:
        print("ucgw audit: --checkpoint goes with `ucgw audit verify`", file=sys.stderr)
        return 2

    from rules.anumber import canonical_a_number
    from stores.audit_trail import MAX_QUERY_ROWS, AuditFilter, SQLiteAuditStore, parse_timestamp

    settings = load_settings(toml_path=args.config, data_dir=args.data_dir)
    try:
        where = AuditFilter(
            a_number=canonical_a_number(args.a_number) if args.a_number else None, subject=args.subject,
            since=parse_timestamp(args.since) if args.since else None,
            until=parse_timestamp(args.until) if args.until else None, limit=MAX_QUERY_ROWS,
        )
    except Exception as exc:  # noqa: BLE001 - a bad filter is the user's to fix
        print(f"ucgw audit: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    if settings.database_url:
        from stores.audit_pg import query_sync

        def read(where: AuditFilter) -> list:
            return query_sync(settings.database_url, where)
        store = None
    else:
        try:
            store = SQLiteAuditStore(settings.audit_path, create=False)
        except FileNotFoundError as exc:
            print(f"ucgw audit: {exc}", file=sys.stderr)
            return 1
        read = store.query_sync
    printed = 0
    try:
        while True:  # page through by id: the trail may hold more events than one query returns
            page = read(where)
            for event in page[:args.limit - printed] if args.limit else page:
                print(json.dumps(event.as_dict(), ensure_ascii=False))
                printed += 1
            if len(page) < where.limit or (args.limit and printed >= args.limit):
                sys.stdout.flush()  # here, so that a reader gone early is seen below, not at exit
                return 0
            where = dataclasses.replace(where, after_id=page[-1].id)
    except BrokenPipeError:  # the reader stopped early (`| head`): done, without a traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if store is not None:
            store.close()


def _audit_rows(settings: Settings, command: str) -> Iterable[tuple] | None:
    """Every stored event row of the configured trail (PostgreSQL's when UCGW_DATABASE_URL is set); None
    (after saying why) when there is no trail."""
    if settings.database_url:
        from stores.audit_pg import read_rows

        return read_rows(settings.database_url)
    if not settings.audit_path.exists():
        print(f"ucgw audit {command}: no audit trail at {settings.audit_path}", file=sys.stderr)
        return None
    from stores.audit_trail import read_trail

    return read_trail(settings.audit_path)


def _trail_name(settings: Settings) -> str:
    return "postgresql (UCGW_DATABASE_URL)" if settings.database_url else str(settings.audit_path)


def audit_checkpoint(args: argparse.Namespace) -> int:
    """Print each chain's head as JSON, to keep outside the gateway's machine; `verify --checkpoint` reads it."""
    from stores.audit_trail import heads_of, utc_timestamp

    settings = load_settings(toml_path=args.config, data_dir=args.data_dir)
    rows = _audit_rows(settings, "checkpoint")
    if rows is None:
        return 2
    chains = {w: {"seq": h.seq, "id": h.id, "hash": h.hash} for w, h in heads_of(rows).items()}
    print(json.dumps({"checkpoint": utc_timestamp(), "trail": _trail_name(settings), "chains": chains}, indent=2))
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    """Check every chain and HMAC of the trail (and, given one, against a checkpoint). Exit 0 when intact,
    1 when a link is broken (the first broken link of each chain printed), 2 on a usage error."""
    from stores.audit_trail import Head, hmac_key_problem, verify_rows

    settings = load_settings(toml_path=args.config, data_dir=args.data_dir)
    problem = hmac_key_problem(settings.audit_hmac_key)
    if problem:
        print(f"ucgw audit verify: {problem}", file=sys.stderr)
        return 2
    rows = _audit_rows(settings, "verify")
    if rows is None:
        return 2
    checkpoint = None
    if args.checkpoint:
        try:
            chains = json.loads(open(args.checkpoint, encoding="utf-8").read())["chains"]
            checkpoint = {w: Head(w, int(h["seq"]), int(h["id"]), str(h["hash"])) for w, h in chains.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            print(f"ucgw audit verify: cannot read checkpoint {args.checkpoint}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 2
    keys = [settings.audit_hmac_key.encode(), *(key.encode() for key in previous_audit_keys(settings))]
    verdict = verify_rows(rows, keys, checkpoint)
    for broken in verdict.breaks:
        print(f"BROKEN {broken}")
    state = "broken" if verdict.breaks else "ok"
    print(f"{state}: {verdict.events} events in {verdict.chains} chains checked"
          + (f", {len(verdict.breaks)} broken" if verdict.breaks else "")
          + (f", {verdict.previous_key_chains} under a previous key" if verdict.previous_key_chains else "")
          + (f", against a checkpoint of {len(checkpoint)} chains" if checkpoint is not None else ""))
    return 1 if verdict.breaks else 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the pending PostgreSQL migrations through UCGW_DATABASE_MIGRATE_URL (the owning role; else
    UCGW_DATABASE_URL), granting the runtime role of UCGW_DATABASE_URL its privileges. Exit 0 when the
    schema is current, 1 when a migration failed or the server cannot be reached, 2 on a usage error."""
    import psycopg

    from stores.schema_migrations import MigrationError, migrate, pending

    settings = load_settings(toml_path=args.config)
    owner = settings.database_migrate_url or settings.database_url
    if not owner:
        print("ucgw migrate: set UCGW_DATABASE_MIGRATE_URL (the owning role) or UCGW_DATABASE_URL", file=sys.stderr)
        return 2
    try:
        if args.status:
            names = pending(owner)
            print("\n".join(f"pending: {n}" for n in names) if names else "the schema is current")
            return 0
        applied = migrate(owner, settings.database_url)
    except (MigrationError, psycopg.Error) as exc:
        print(f"ucgw migrate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(f"applied: {n}" for n in applied) if applied else "the schema is current")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the three mocks and the gateway together; print GraphiQL's URL and a sample query."""
    from gateway.demo import run_demo

    return run_demo(args)


def cmd_cluster(args: argparse.Namespace) -> int:
    """Run PostgreSQL, Redis, the mocks, N replicas and HAProxy in front, until interrupted (gateway/cluster.py)."""
    from gateway.cluster import run_cluster

    return run_cluster(args)


def cmd_mocks(args: argparse.Namespace) -> int:
    """Run the three mock services (`mocks/`, imported only here and by `ucgw demo`)."""
    from mocks import runner

    parser = argparse.ArgumentParser(prog="ucgw mocks", description="Run the ORR, ICE and EOIR mock services.")
    runner.add_arguments(parser)
    return runner.main(parser.parse_args(args.mock_args))


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="ucgw", description="Unaccompanied-child status gateway.")
    sub = parser.add_subparsers(dest="command", required=True)

    # the mocks' own flags (and their --help) are parsed by `cmd_mocks`, so that no other command imports them
    mocks_p = sub.add_parser("mocks", help="run the ORR, ICE and EOIR mock services", add_help=False)
    mocks_p.set_defaults(func=cmd_mocks, mock_args=[])

    serve_p = sub.add_parser("serve", help="run the gateway (configured by UCGW_* variables or --config)")
    serve_p.add_argument("--config", help="TOML settings file (also UCGW_CONFIG)")
    serve_p.add_argument("--host", help="listen address (default 127.0.0.1; UCGW_HOST)")
    serve_p.add_argument("--port", type=int, help="listen port (default 8000; UCGW_PORT)")
    serve_p.set_defaults(func=cmd_serve)

    demo_p = sub.add_parser("demo", help="run the mocks and the gateway together, print a sample query")
    demo_p.add_argument("--config", help="TOML settings file (also UCGW_CONFIG)")
    demo_p.add_argument("--host", default="127.0.0.1", help="listen address of every service")
    demo_p.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    demo_p.add_argument("--orr-port", type=int, default=8101)
    demo_p.add_argument("--ice-port", type=int, default=8102)
    demo_p.add_argument("--eoir-port", type=int, default=8103)
    demo_p.add_argument("--seed", type=int, default=7, help="world seed (same seed, same data)")
    demo_p.add_argument("--children", type=int, default=5000, help="children in the synthetic world")
    demo_p.add_argument("--clock-speed", type=float, default=0.0,
                        help="simulated seconds per real second (0 = clock moves only on demand)")
    demo_p.set_defaults(func=cmd_demo)

    cluster_p = sub.add_parser("cluster", help="run the replicated deployment on this machine: PostgreSQL, Redis, "
                                               "the mocks, N replicas and HAProxy in front (make cluster)")
    from gateway.cluster import add_arguments as cluster_arguments

    cluster_arguments(cluster_p)
    cluster_p.set_defaults(func=cmd_cluster)

    schema_p = sub.add_parser("export-schema", help="print the GraphQL SDL the gateway serves")
    schema_p.add_argument("--federation", action="store_true",
                          help="the Apollo Federation v2 subgraph SDL (UCGW_FEDERATION=true), for "
                               "schema.federation.graphql")
    schema_p.set_defaults(func=cmd_export_schema)

    check_p = sub.add_parser("schema-check", help="fail when the served schema differs from schema.graphql, or breaks "
                                                  "the released one without a new major version in CHANGELOG.md")
    check_p.add_argument("--root", default="", help="the repository (default: this checkout)")
    check_p.set_defaults(func=cmd_schema_check)

    from rules.roles import ROLES

    token_p = sub.add_parser("token", help="print a JWT for a role, signed with the configured secret")
    token_p.add_argument("--config", help="TOML settings file (also UCGW_CONFIG)")
    token_p.add_argument("--role", required=True, choices=ROLES)
    token_p.add_argument("--ttl", type=token_ttl, default=3600.0,
                         help="lifetime in seconds (default 3600; at most UCGW_JWT_MAX_TTL_SECONDS, 43200)")
    token_p.add_argument("--subject", help="the `sub` claim (default <role>-demo)")
    token_p.add_argument("--client", type=client_name, default="ucgw-cli", help="the `client` claim (default ucgw-cli)")
    token_p.add_argument("--field-offices", help="comma-separated ERO field offices the token is limited to")
    token_p.add_argument("--trusted-documents-only", action="store_true",
                         help="the token runs only its client's trusted documents (`ucgw documents add`)")
    token_p.set_defaults(func=cmd_token)

    key_p = sub.add_parser("apikey", help="make (or hash) a partner API key; prints the keys-file entry")
    key_p.add_argument("--client", type=client_name, required=True, help="the partner application's name")
    key_p.add_argument("--role", default="partner", choices=ROLES, help="role of the key (default partner)")
    key_p.add_argument("--field-offices", help="comma-separated ERO field offices the key is limited to")
    key_p.add_argument("--key", help="hash this key instead of making a new one")
    key_p.add_argument("--trusted-documents-only", action="store_true",
                       help="the key runs only its client's trusted documents (`ucgw documents add`)")
    key_p.set_defaults(func=cmd_apikey)

    migrate_p = sub.add_parser("migrate", help="apply pending PostgreSQL migrations (UCGW_DATABASE_MIGRATE_URL)")
    migrate_p.add_argument("--config", help="TOML settings file (also UCGW_CONFIG)")
    migrate_p.add_argument("--status", action="store_true", help="only list the migrations not applied yet")
    migrate_p.set_defaults(func=cmd_migrate)

    docs_p = sub.add_parser("documents", help="trusted documents: `add` operations to a client's manifest (.graphql "
                                              "files, or JSON manifests as Relay, graphql-codegen or Apollo emit "
                                              "them), or `list` it")
    docs_p.add_argument("action", choices=("add", "list"))
    docs_p.add_argument("files", nargs="*", help="add: .graphql files and JSON manifests")
    docs_p.add_argument("--client", type=client_name, required=True,
                        help="the client (API-key entry's client, or the token's `client` claim) the manifest is for")
    docs_p.add_argument("--config", help="TOML settings file (also UCGW_CONFIG)")
    docs_p.add_argument("--data-dir", help="data directory holding documents.sqlite3 (default UCGW_DATA_DIR)")
    docs_p.set_defaults(func=cmd_documents)

    audit_p = sub.add_parser("audit", help="print audit events (JSON lines) matching every given filter; "
                                           "`audit checkpoint` prints each chain's head, `audit verify` checks "
                                           "every chain and HMAC")
    audit_p.add_argument("action", nargs="?", choices=("checkpoint", "verify"),
                         help="checkpoint: print each writer's chain head (JSON) to keep elsewhere; verify: check "
                              "every chain and HMAC (needs UCGW_AUDIT_HMAC_KEY); exit 0 ok, 1 broken, 2 usage")
    audit_p.add_argument("--checkpoint", metavar="FILE", help="verify: a checkpoint printed earlier; a chain that "
                                                              "no longer reaches its head there is broken")
    audit_p.add_argument("--config", help="TOML settings file (also UCGW_CONFIG)")
    audit_p.add_argument("--data-dir", help="data directory holding the audit trail (default UCGW_DATA_DIR)")
    audit_p.add_argument("--a-number", help="child's A-number (any typed form)")
    audit_p.add_argument("--subject", help="who read (token subject or API key client)")
    audit_p.add_argument("--since", help="from this ISO date/datetime, inclusive (UTC when no offset)")
    audit_p.add_argument("--until", help="up to this ISO date/datetime, exclusive")
    audit_p.add_argument("--limit", type=non_negative_int, default=0, help="at most this many events (default: all)")
    audit_p.set_defaults(func=cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ucgw` console script."""
    from gateway.logs import configure_logging

    configure_logging("text")  # `ucgw serve` and `ucgw demo` switch to UCGW_LOG_FORMAT once settings are read
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "mocks":
        args.mock_args = rest
    elif args.command == "documents" and not any(r.startswith("-") for r in rest):
        args.files += rest  # files after an option (`add --client X a.graphql`): argparse leaves them over
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ucgw: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
