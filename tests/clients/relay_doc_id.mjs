// A Relay-style network layer with persisted queries, as Relay's docs write it: the request carries only the
// operation's id (`doc_id`, here the SHA-256 of its text, which the gateway knows from a trusted manifest)
// and its variables. Usage: node relay_doc_id.mjs URL AUTH_HEADER AUTH_VALUE DOC_ID VARIABLES_JSON
// [documentId]. Prints one JSON line: {status, contentType, body}. With `documentId` the request uses the
// GraphQL-over-HTTP persisted-documents form (`documentId: "sha256:<hex>"`) instead.
const [url, header, value, docId, variables, form] = process.argv.slice(2);

async function fetchGraphQL(operation, vars) {
  const body = form === 'documentId'
    ? { documentId: `sha256:${operation.id}`, variables: vars }
    : { doc_id: operation.id, variables: vars };
  const response = await fetch(url, {
    method: 'POST',
    headers: { [header]: value, 'content-type': 'application/json',
               accept: 'application/graphql-response+json, application/json;q=0.9' },
    body: JSON.stringify(body),
  });
  return { status: response.status, contentType: response.headers.get('content-type'), body: await response.json() };
}

// what relay-compiler emits for a persisted operation: `text` null, `id` the persisted id
const operation = { id: docId, text: null, name: 'PartnerStatus', operationKind: 'query' };
console.log(JSON.stringify(await fetchGraphQL(operation, JSON.parse(variables))));
