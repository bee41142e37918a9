// Who the page calls the gateway as: a token pasted in the token bar (kept in localStorage, as before) or one
// from the OIDC provider (page memory only: no cookie, nothing stored). Listeners hear every change.
const listeners = new Set();
const state = { token: "", source: "none", expiresAt: null };

export function current() { return state; }
export function token() { return state.token; }
export function subscribe(fn) { listeners.add(fn); return () => listeners.delete(fn); }

export function setToken(value, source, expiresAt = null) {
  state.token = value || "";
  state.source = value ? source : "none";
  state.expiresAt = expiresAt;
  listeners.forEach((fn) => fn(state));
}

export function tokenExpiry(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    return typeof claims.exp === "number" ? claims.exp * 1000 : null;
  } catch (e) {
    return null;
  }
}
