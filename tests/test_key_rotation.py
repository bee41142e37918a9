"""Key rotation without downtime (issue 31): the JWT keys (HS256 secrets with ids, JWKS with kids), the cursor
secret, the audit HMAC key and the webhook secret each change while a client keeps working. A running gateway
reads its keys at start; a rotation is a rolling restart of the replicas, the old key staying valid beside the
new one meanwhile (docs/operating.md, "Rotating keys"): the tests run old and new replicas side by side, as a
load balancer would send a client to either during the restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from mocks.runner import signed_headers
from testing.access import gateway_env
from testing.gateway import AUDIENCE, ISSUER, ROOT, GatewayProcess, http

OLD, NEW = "test-only-rotation-old-secret-0123456789", "test-only-rotation-new-secret-0123456789"
STATUS = "query($a: ID!) { child(aNumber: $a) { aNumber } }"
CASELOAD = "query($c: String) { caseload(first: 1, after: $c) { totalCount pageInfo { endCursor } } }"


def token(key: Any, kid: str | None, alg: str = "HS256") -> str:
    now = int(time.time())
    claims = {"sub": "rotating-client", "role": "caseworker", "aud": AUDIENCE, "iss": ISSUER, "iat": now,
              "exp": now + 600}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


def answered(gw: GatewayProcess, tok: str, a: str) -> int:
    status, body = gw.query(STATUS, {"a": a}, token=tok)
    assert status != 200 or body["data"]["child"]["aNumber"] == a
    return status


def unauthenticated(gw: GatewayProcess, tok: str, a: str) -> str:
    status, body = gw.query(STATUS, {"a": a}, token=tok)
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    return str(body["errors"][0]["message"])


def test_hs256_secrets_with_ids_rotate_while_old_and_new_replicas_serve(mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    env = gateway_env(mock_services, UCGW_JWT_SECRET="")
    old_tok, new_tok, idless_old = token(OLD, "k1"), token(NEW, "k2"), token(OLD, None)
    before = GatewayProcess({**env, "UCGW_JWT_SECRETS": f"k1={OLD}"}, token="")
    during = GatewayProcess({**env, "UCGW_JWT_SECRETS": f"k2={NEW},k1={OLD}"}, token="")
    try:
        # a client holding a k1 token is served by the replica not yet restarted and by the restarted one
        assert [answered(before, old_tok, a), answered(during, old_tok, a), answered(during, idless_old, a)] == \
            [200, 200, 200]
        assert answered(during, new_tok, a) == 200  # and a token of the new key works on the restarted one
        minted = subprocess.run([sys.executable, "-m", "gateway.cli", "token", "--role", "caseworker"], cwd=ROOT,
                                env=during.env, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        assert jwt.get_unverified_header(minted)["kid"] == "k2"  # `ucgw token` signs with the first listed key
        assert answered(during, minted, a) == 200
        assert unauthenticated(during, token("test-only-a-third-secret-0123456789", "k1"), a) == \
            "token signature is invalid"
    finally:
        before.stop()
        during.stop()
    after = GatewayProcess({**env, "UCGW_JWT_SECRETS": f"k2={NEW}"}, token="")
    try:  # once every k1 token has expired, k1 goes
        assert answered(after, new_tok, a) == 200
        assert unauthenticated(after, old_tok, a) == "token signed with an unknown key id"
        assert unauthenticated(after, idless_old, a) == "token signature is invalid"
    finally:
        after.stop()


def test_jwks_with_two_kids_verifies_tokens_of_either_until_the_old_key_leaves(mock_services: Any,
                                                                              tmp_path: Path) -> None:
    a = mock_services.sample(3)[1]
    old_key, new_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))

    def jwks(*keys: tuple[str, Any]) -> str:
        path = tmp_path / f"jwks-{'-'.join(kid for kid, _ in keys)}.json"
        path.write_text(json.dumps({"keys": [{**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())),
                                              "kid": kid, "use": "sig", "alg": "RS256"} for kid, k in keys]}))
        return str(path)

    env = gateway_env(mock_services, UCGW_JWT_SECRET="")
    old_tok, new_tok = token(old_key, "r1", "RS256"), token(new_key, "r2", "RS256")
    during = GatewayProcess({**env, "UCGW_JWT_JWKS_FILE": jwks(("r1", old_key), ("r2", new_key))}, token="")
    try:
        assert [answered(during, old_tok, a), answered(during, new_tok, a)] == [200, 200]
    finally:
        during.stop()
    after = GatewayProcess({**env, "UCGW_JWT_JWKS_FILE": jwks(("r2", new_key))}, token="")
    try:
        assert answered(after, new_tok, a) == 200
        assert unauthenticated(after, old_tok, a) == "token signed with an unknown key id"
    finally:
        after.stop()


def page(gw: GatewayProcess, cursor: str | None) -> tuple[int, str | None, str | None]:
    """(HTTP status, the next cursor, the error code) of one caseload page after `cursor`."""
    status, body = gw.query(CASELOAD, {"c": cursor})
    if body.get("errors"):
        return status, None, body["errors"][0]["extensions"]["code"]
    return status, body["data"]["caseload"]["pageInfo"]["endCursor"], None


def test_a_client_pages_on_across_a_cursor_secret_rotation(mock_services: Any, tmp_path: Path) -> None:
    env = gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path))
    old = GatewayProcess({**env, "UCGW_CURSOR_SECRET": OLD})
    new = GatewayProcess({**env, "UCGW_CURSOR_SECRET": NEW, "UCGW_CURSOR_SECRET_PREVIOUS": OLD})
    try:
        _, first, _ = page(old, None)  # sealed under the old secret by a replica not yet restarted
        status, second, error = page(new, first)  # opened by a restarted one, which seals under the new secret
        assert (status, error) == (200, None) and second is not None
        assert page(new, second)[2] is None
        assert page(old, second)[2] == "BAD_USER_INPUT"  # why the old replicas must go before the grace ends
    finally:
        old.stop()
        new.stop()
    after = GatewayProcess({**env, "UCGW_CURSOR_SECRET": NEW})  # the grace period over: the old secret goes
    try:
        assert page(after, second)[2] is None
        assert page(after, first)[2] == "BAD_USER_INPUT"
    finally:
        after.stop()


def verify(data_dir: Path, key: str, previous: str = "") -> tuple[int, str]:
    env = {"UCGW_DATA_DIR": str(data_dir), "UCGW_AUDIT_HMAC_KEY": key, "UCGW_AUDIT_HMAC_KEYS_PREVIOUS": previous,
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "verify"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_a_new_audit_hmac_key_starts_new_chains_and_verify_checks_both(mock_services: Any, tmp_path: Path) -> None:
    a = mock_services.sample(3)[2]
    env = gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path))
    old = GatewayProcess({**env, "UCGW_AUDIT_HMAC_KEY": OLD})
    new = GatewayProcess({**env, "UCGW_AUDIT_HMAC_KEY": NEW})  # a restarted replica beside one not yet restarted
    try:
        for gw in (old, new, old, new):  # the client is served by either, and every read is recorded
            status, body = gw.query(STATUS, {"a": a})
            assert status == 200 and body["data"]["child"]["aNumber"] == a
    finally:
        old.stop()
        new.stop()
    code, said = verify(tmp_path, NEW, OLD)
    assert code == 0 and said.startswith("ok: 4 events in 2 chains checked, 1 under a previous key"), said
    code, said = verify(tmp_path, NEW)  # without the old key its chain cannot be checked, and says so
    assert code == 1 and "HMAC does not match under any of the 1 key(s) given" in said, said
    code, said = verify(tmp_path, NEW, f"test-only-unrelated-key-0123456789abcdef,{OLD}")
    assert code == 0 and said.startswith("ok: 4 events in 2 chains checked"), said


def test_webhook_posts_signed_with_either_secret_are_accepted_during_a_rotation(mock_services: Any) -> None:
    body = json.dumps({"source": "orr", "changes": []}).encode()

    def post(gw: GatewayProcess, secret: str) -> int:
        status, _, _ = http("POST", f"{gw.url}/hooks/changes", raw=body, headers=signed_headers(secret.encode(), body))
        return status

    during = GatewayProcess(gateway_env(mock_services, UCGW_WEBHOOK_SECRET=NEW, UCGW_WEBHOOK_SECRET_PREVIOUS=OLD))
    try:  # a sender not yet moved to the new secret, one that has, and a stranger
        assert [post(during, OLD), post(during, NEW), post(during, "test-only-a-third-secret-0123456789")] == \
            [202, 202, 401]
    finally:
        during.stop()
    after = GatewayProcess(gateway_env(mock_services, UCGW_WEBHOOK_SECRET=NEW))
    try:
        assert [post(after, OLD), post(after, NEW)] == [401, 202]
    finally:
        after.stop()
