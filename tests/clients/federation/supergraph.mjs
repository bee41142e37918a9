// A federated supergraph around the gateway: a tiny legal-services directory subgraph extends the gateway's
// `Child` entity with `legalRepresentation`, Apollo's composition library composes the two subgraphs, and
// Apollo Gateway serves the result, forwarding each caller's Authorization header to the subgraphs.
// Arguments (each JSON): the gateway's /graphql URL, the Authorization header to fetch its SDL with, and the
// A-numbers the directory knows. Prints {"router": url, "legal": url} once serving (or {"errors": [...]} when
// composition fails) and serves until stdin closes.
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { composeServices } from '@apollo/composition';
import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { parse } from 'graphql';

const [ucgwUrl, authorization, represented] = process.argv.slice(2).map((a) => JSON.parse(a));
const say = (line) => process.stdout.write(JSON.stringify(line) + '\n');
// Apollo's own messages go to stderr: stdout carries only this script's JSON lines
const toStderr = (message) => process.stderr.write(`${message}\n`);
const logger = { debug() {}, info: toStderr, warn: toStderr, error: toStderr };

const legalTypeDefs = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])

  "A child known to the legal-services directory, by the gateway's key."
  type Child @key(fields: "aNumber") {
    aNumber: ID!
    legalRepresentation: LegalRepresentation
  }

  type LegalRepresentation {
    provider: String!
    attorney: String!
  }

  type Query {
    "Children the directory's providers represent."
    representedChildren: [Child!]!
  }
`);
const representation = (aNumber) => represented.includes(aNumber)
  ? { provider: 'Kids in Need of Defense', attorney: `Attorney for ${aNumber.slice(-4)}` }
  : null;
const legal = new ApolloServer({
  logger,
  schema: buildSubgraphSchema({
    typeDefs: legalTypeDefs,
    resolvers: {
      Query: { representedChildren: () => represented.map((aNumber) => ({ aNumber })) },
      Child: {
        __resolveReference: ({ aNumber }) => ({ aNumber }),
        legalRepresentation: ({ aNumber }) => representation(aNumber),
      },
    },
  }),
});
const { url: legalUrl } = await startStandaloneServer(legal, { listen: { port: 0, host: '127.0.0.1' } });

// the gateway's subgraph SDL, asked for as a router does, with a credential
const answer = await fetch(ucgwUrl, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization },
  body: JSON.stringify({ query: '{ _service { sdl } }' }),
});
const sdl = (await answer.json()).data._service.sdl;

const composed = composeServices([
  { name: 'ucgw', typeDefs: parse(sdl), url: ucgwUrl },
  { name: 'legal', typeDefs: legalTypeDefs, url: legalUrl },
]);
if (composed.errors) {
  say({ errors: composed.errors.map((e) => e.message) });
  process.exit(1);
}

const gateway = new ApolloGateway({
  logger,
  supergraphSdl: composed.supergraphSdl,
  buildService: ({ url }) => new RemoteGraphQLDataSource({
    url,
    willSendRequest({ request, context }) {
      if (context.authorization) request.http.headers.set('authorization', context.authorization);
    },
  }),
});
const router = new ApolloServer({ gateway, logger });
const { url: routerUrl } = await startStandaloneServer(router, {
  listen: { port: 0, host: '127.0.0.1' },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});
say({ router: routerUrl, legal: legalUrl });

process.stdin.resume();
process.stdin.on('end', async () => {
  await router.stop();
  await legal.stop();
  process.exit(0);
});
