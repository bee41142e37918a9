// The gateway fetcher: HTTP for queries and mutations, graphql-transport-ws for subscriptions (the token goes
// in connection_init), the caller's token added, and every answer handed to `onResult` (the status card).
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { parse } from "graphql";
import { createClient } from "graphql-ws";

function isAsyncIterable(value) { return value && typeof value[Symbol.asyncIterator] === "function"; }

// GraphiQL's fetcher sends a document over the websocket only when `operationName` names a subscription of
// the parsed document it is handed; a tab just opened from the list can hand the name or the parsed document
// of the tab shown before, and the subscription would go over HTTP and be refused: name the document's only
// operation, and parse the document that is sent.
function named(params) {
  if (typeof params.query !== "string") return params;
  const ops = [...params.query.matchAll(/^\s*(?:query|mutation|subscription)\s+(\w+)/gm)].map((m) => m[1]);
  if (params.operationName && ops.includes(params.operationName)) return params;
  // none, or a name left over from the tab shown before: the document's only operation
  return ops.length === 1 ? { ...params, operationName: ops[0] } : params;
}

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
  return (given, opts) => {
    const params = named(given);
    const headers = { ...((opts && opts.headers) || {}) };
    const hasAuth = Object.keys(headers).some((k) => k.toLowerCase() === "authorization");
    if (bearer && !hasAuth) headers.Authorization = `Bearer ${bearer}`;
    // the document actually sent, parsed here: GraphiQL's own may still be the tab shown before
    let documentAST;
    try { documentAST = parse(params.query); } catch { documentAST = opts && opts.documentAST; }
    const result = base(params, { ...(opts || {}), documentAST, headers });
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
