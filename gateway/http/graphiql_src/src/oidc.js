// Sign-in through the deployment's OpenID Connect provider: authorization code with PKCE (S256). Only the
// PKCE verifier and state cross the redirect (sessionStorage); the token itself stays in page memory.
import { setToken, tokenExpiry } from "./auth.js";

const PENDING = "ucgw.oidc.pending";
const RENEW_BEFORE_MS = 30_000;

function b64url(bytes) {
  let s = "";
  bytes.forEach((b) => { s += String.fromCharCode(b); });
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString() { return b64url(crypto.getRandomValues(new Uint8Array(32))); }

async function discovery(issuer) {
  const resp = await fetch(`${issuer}/.well-known/openid-configuration`, { credentials: "omit" });
  if (!resp.ok) throw new Error(`the provider's discovery document answered ${resp.status}`);
  return resp.json();
}

function redirectUri(config) { return new URL(config.url, window.location.origin).href; }

export async function signIn(config) {
  const oidc = config.oidc;
  const meta = await discovery(oidc.issuer);
  const verifier = randomString();
  const stateValue = randomString();
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state: stateValue }));
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code", client_id: oidc.clientId, redirect_uri: redirectUri(config), scope: oidc.scope,
    state: stateValue, code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256",
  }).toString();
  window.location.assign(url.href);
}

// On load: finish a sign-in the provider redirected back from (?code=&state=). Returns a message for the
// status line, or null when there was nothing to finish.
export async function completeSignIn(config) {
  const params = new URLSearchParams(window.location.search);
  const code = params.get("code");
  const returned = params.get("state");
  const error = params.get("error");
  if (!code && !error) return null;
  window.history.replaceState(null, "", config.url);  // the code is single-use: off the address bar
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  if (error) return `sign-in failed: ${error}`;
  if (!pending || pending.state !== returned) return "sign-in failed: the answer does not match this page's request";
  const meta = await discovery(config.oidc.issuer);
  const resp = await fetch(meta.token_endpoint, {
    method: "POST", credentials: "omit",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code, redirect_uri: redirectUri(config), client_id: config.oidc.clientId,
      code_verifier: pending.verifier,
    }),
  });
  if (!resp.ok) return `sign-in failed: the provider answered ${resp.status}`;
  const tokens = await resp.json();
  // the ID token is issued to this client (aud = client id), which is what the gateway checks by default
  const jwt = tokens.id_token || tokens.access_token;
  const expiresAt = tokenExpiry(jwt);
  setToken(jwt, "oidc", expiresAt);
  if (expiresAt) {
    const wait = Math.max(0, expiresAt - Date.now() - RENEW_BEFORE_MS);
    window.setTimeout(() => { signIn(config); }, wait);  // signs in again before the token expires
  }
  return "signed in";
}
