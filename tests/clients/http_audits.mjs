// The graphql-http package's server audits (the GraphQL-over-HTTP spec's MUST, SHOULD and MAY checks) run
// against a live gateway. Usage: node http_audits.mjs URL TOKEN. Prints one JSON line: every audit's
// id, name, status (ok, warn, error) and reason.
import { serverAudits } from 'graphql-http';

const [url, token] = process.argv.slice(2);
const authorized = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};
const results = [];
for (const audit of serverAudits({ url, fetchFn: authorized })) {
  const result = await audit.fn();
  results.push({ id: audit.id, name: audit.name, status: result.status, reason: result.reason || null });
}
console.log(JSON.stringify(results));
