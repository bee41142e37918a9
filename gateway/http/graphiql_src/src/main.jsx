// The gateway's GraphiQL page: the token bar and OIDC sign-in, GraphiQL with the ready-made operations and the
// explorer, and the status card beside it. Settings come from the page's JSON (gateway/http/graphiql.py).
import React, { useEffect, useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { useEditorContext } from "@graphiql/react";
import { explorerPlugin } from "@graphiql/plugin-explorer";
import "graphiql/graphiql.css";
import "@graphiql/plugin-explorer/dist/style.css";
import "./page.css";
import * as auth from "./auth.js";
import { completeSignIn, signIn } from "./oidc.js";
import { fetchViewer, gatewayFetcher } from "./fetcher.js";
import { operationsPlugin } from "./operations.jsx";
import { StatusCard } from "./card.jsx";
import { keepAccessible } from "./a11y.js";
import { resultStore, useStore, viewerStore } from "./store.js";

const config = JSON.parse(document.getElementById("ucgw-config").textContent);
const statusLine = document.getElementById("ucgw-token-status");
const input = document.getElementById("ucgw-token");

function storedToken() {
  try { return window.localStorage.getItem(config.tokenKey) || ""; } catch (e) { return ""; }
}

function say(text) { statusLine.textContent = text; }

async function learnViewer(state) {
  if (!state.token) { viewerStore.set({ viewer: null, error: null }); say("no token"); return; }
  try {
    const viewer = await fetchViewer(config, state.token);
    if (auth.token() !== state.token) return;  // another token was set meanwhile
    viewerStore.set({ viewer, error: null });
    const how = state.source === "oidc" ? "signed in" : "token saved";
    say(`${how}: ${viewer.subject} (${viewer.role})`);
  } catch (e) {
    viewerStore.set({ viewer: null, error: e.message });
    say(`token not accepted: ${e.message}`);
  }
}

auth.subscribe(learnViewer);

document.getElementById("ucgw-token-bar").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = input.value.trim().replace(/^Bearer\s+/i, "");
  try {
    if (value) window.localStorage.setItem(config.tokenKey, value);
    else window.localStorage.removeItem(config.tokenKey);
  } catch (e) { say(`cannot store the token: ${e}`); return; }
  input.value = value;
  auth.setToken(value, "pasted", auth.tokenExpiry(value));
});

const signInButton = document.getElementById("ucgw-signin");
if (signInButton && config.oidc) {
  signInButton.addEventListener("click", () => {
    say("signing in…");
    signIn(config).catch((e) => say(`sign-in failed: ${e.message}`));
  });
}

const plugins = [operationsPlugin(config.operations), explorerPlugin({ showAttribution: false })];

function Page() {
  const { token } = useAuth();
  const fetcher = useMemo(() => gatewayFetcher(config, token, (r) => resultStore.set(r)), [token]);
  const [visible, setVisible] = useState(plugins[0]);
  const initialQuery = new URLSearchParams(window.location.search).get("query") || undefined;
  return (
    <GraphiQL fetcher={fetcher} plugins={plugins} visiblePlugin={visible}
              onTogglePluginVisibility={setVisible} defaultQuery={config.defaultQuery} query={initialQuery}
              isHeadersEditorEnabled shouldPersistHeaders={false}>
      <GraphiQL.Logo>UC status gateway</GraphiQL.Logo>
      <GraphiQL.Footer><TabLeavesEditors /></GraphiQL.Footer>
    </GraphiQL>
  );
}

// CodeMirror keeps Tab for indenting, which traps keyboard users in the editors (WCAG 2.1.2): here Tab and
// Shift-Tab move focus on, as everywhere else on the page; indenting stays on the editors' other keys.
function TabLeavesEditors() {
  const { queryEditor, variableEditor, headerEditor, responseEditor } = useEditorContext({ nonNull: true });
  useEffect(() => {
    [queryEditor, variableEditor, headerEditor, responseEditor].forEach((cm) => {
      if (!cm) return;
      cm.setOption("extraKeys", { ...(cm.getOption("extraKeys") || {}), Tab: false, "Shift-Tab": false });
    });
  }, [queryEditor, variableEditor, headerEditor, responseEditor]);
  return null;
}

function useAuth() {
  const [state, setState] = useState({ ...auth.current() });
  useEffect(() => auth.subscribe((s) => setState({ ...s })), []);
  return state;
}

function Card() {
  const result = useStore(resultStore);
  return <StatusCard result={result} />;
}

async function start() {
  createRoot(document.getElementById("ucgw-card")).render(<Card />);
  if (config.oidc) {
    const message = await completeSignIn(config).catch((e) => `sign-in failed: ${e.message}`);
    if (message) say(message);
  }
  if (!auth.token()) {
    const saved = storedToken();
    input.value = saved;
    auth.setToken(saved, "pasted", auth.tokenExpiry(saved));
  }
  document.body.classList.add("graphiql-light");
  const root = document.getElementById("graphiql");
  createRoot(root).render(<Page />);
  keepAccessible(root);
}

start();
