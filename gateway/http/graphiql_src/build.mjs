// Bundles the page (src/main.jsx) into ../static/graphiql/ucgw-graphiql.{js,css}. Deterministic: the same
// lock gives the same bytes (`make assets`, then `git diff --exit-code` shows nothing).
import { build } from "esbuild";

await build({
  entryPoints: { "ucgw-graphiql": "src/main.jsx" },
  outdir: "../static/graphiql",
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome109", "firefox115", "safari16"],
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "none",
  charset: "utf8",
  sourcemap: false,
  logLevel: "warning",
});
