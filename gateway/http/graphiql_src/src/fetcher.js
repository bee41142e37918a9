// The gateway fetcher: HTTP for queries and mutations, graphql-transport-ws for subscriptions (the token goes
// in connection_init), the caller's token added, and every answer handed to `onResult` (the status card).
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { createClient } from "graphql-ws";

function isAsyncIterable(value) { return value && typeof value[Symbol.asyncIterator] === "function"; }

export function gatewayFetcher(config, bearer, onResult) {
  const ws = new URL(config.url, window.location.href);
  ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
  const base = createGraphiQLFetcher({
    url: config.url,
    enableIncrementalDelivery: false,
    wsClient: createClient({
      url: ws.href, lazy: true, retryAttempts: 0,
      connectionParams: () => (bearer ? { Authorization: `Bearer ${bearer}` } : {}),
    }),
  });
  return (params, opts) => {
    const headers = { ...((opts && opts.headers) || {}) };
    const hasAuth = Object.keys(headers).some((k) => k.toLowerCase() === "authorization");
    if (bearer && !hasAuth) headers.Authorization = `Bearer ${bearer}`;
    const result = base(params, { ...(opts || {}), headers });
    if (params.operationName === "IntrospectionQuery") return result;
    if (result && typeof result.then === "function") {
      return result.then((value) => {
        if (isAsyncIterable(value)) return tap(value, onResult);
        onResult(value);
        return value;
      });
    }
    return isAsyncIterable(result) ? tap(result, onResult) : result;
  };
}

async function* tap(iterable, onResult) {
  for await (const value of iterable) {
    onResult(value);
    yield value;
  }
}

// One small query with the caller's token: who am I, what may I run.
export async function fetchViewer(config, bearer) {
  if (!bearer) return null;
  const resp = await fetch(config.url, {
    method: "POST", credentials: "omit",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ query: "{ viewer { subject role capabilities fieldOffices } }" }),
  });
  const body = await resp.json().catch(() => null);
  if (!resp.ok || !body || !body.data || !body.data.viewer) {
    const message = body && body.errors && body.errors[0] ? body.errors[0].message : `HTTP ${resp.status}`;
    throw new Error(message);
  }
  return body.data.viewer;
}
