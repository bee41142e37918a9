// A partner app's subscription over server-sent events, with the npm `graphql-sse` client (distinct
// connections mode, its default). Arguments (each JSON): url, headers, query, variables, events to take.
// Prints one JSON line per happening: {"connected": true}, {"next": result}, {"error": message, "status", "body"}, {"done": n}.
// Leaving the loop after `want` results makes the client abort its request (the server sees the disconnect).
import { createClient } from 'graphql-sse';

const [url, headers, query, variables, want] = process.argv.slice(2).map((a) => JSON.parse(a));
const say = (line) => process.stdout.write(JSON.stringify(line) + '\n');

const client = createClient({
  url,
  headers,
  retryAttempts: 0,
  on: { connected: () => say({ connected: true }) },
});

let taken = 0;
try {
  for await (const result of client.iterate({ query, variables })) {
    say({ next: result });
    if (++taken >= want) break;
  }
} catch (err) {
  // a refusal before the stream (graphql-sse's NetworkError) carries the HTTP response: status and JSON body
  const response = err?.response;
  const body = response ? await response.text() : undefined;
  say({ error: err instanceof Error ? err.message : String(err), status: response?.status,
        body: body ? JSON.parse(body) : undefined });
}
client.dispose();
say({ done: taken });
