// Apollo Client's PersistedQueryLink (automatic persisted queries) against a live gateway.
// Usage: node apollo_apq.mjs URL TOKEN A_NUMBER [get]. Runs one status query with a first client (its hash
// unknown to the gateway), then the same query with a second client (a fresh cache, so it asks again), and
// prints one JSON line: every request the link sent (method, whether it carried the hash and the query, the
// answer's HTTP status and error codes) and both clients' data.
import { createHash } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

const [url, token, aNumber, mode] = process.argv.slice(2);
const requests = [];

async function recordingFetch(input, init = {}) {
  const target = new URL(typeof input === 'string' ? input : input.url);
  let sent;
  if ((init.method || 'GET') === 'GET') {
    sent = Object.fromEntries(target.searchParams);
    if (sent.extensions) sent.extensions = JSON.parse(sent.extensions);
  } else {
    sent = JSON.parse(init.body);
  }
  const response = await fetch(input, init);
  const body = await response.clone().json();
  requests.push({
    method: init.method || 'GET',
    hash: sent.extensions?.persistedQuery?.sha256Hash ?? null,
    query: typeof sent.query === 'string',
    status: response.status,
    codes: (body.errors || []).map((e) => e.extensions?.code),
  });
  return response;
}

const STATUS = gql(`
  query PartnerStatus_${mode || 'post'}($a: ID!) {
    child(aNumber: $a) { aNumber location { status } hearing { caseStatus } }
  }
`);

function client() {
  const persisted = new PersistedQueryLink({
    sha256: (text) => createHash('sha256').update(text).digest('hex'),
    useGETForHashedQueries: mode === 'get',
  });
  const http = new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` }, fetch: recordingFetch });
  return new ApolloClient({ link: persisted.concat(http), cache: new InMemoryCache() });
}

const first = await client().query({ query: STATUS, variables: { a: aNumber } });
const second = await client().query({ query: STATUS, variables: { a: aNumber } });
console.log(JSON.stringify({ requests, first: first.data, second: second.data }));
