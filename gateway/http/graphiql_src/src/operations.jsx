// The ready-made operations: a GraphiQL plugin listing the committed .graphql files the caller may run
// (learnt from `viewer`), each opened in a new tab with its variables filled in.
import React, { useState } from "react";
import { useEditorContext } from "@graphiql/react";
import { useStore, viewerStore } from "./store.js";

function fill(value, subs) {
  if (typeof value === "string") return Object.prototype.hasOwnProperty.call(subs, value) ? subs[value] : value;
  if (Array.isArray(value)) return value.map((v) => fill(v, subs));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, subs)]));
  }
  return value;
}

export function allowedOperations(operations, viewer) {
  if (!viewer) return [];
  return operations.filter((op) => op.requires.every((c) => viewer.capabilities.includes(c)));
}

function OperationsPanel({ operations }) {
  const { viewer, error: viewerError } = useStore(viewerStore);
  const editor = useEditorContext({ nonNull: true });
  const [aNumber, setANumber] = useState(() => new URLSearchParams(window.location.search).get("a") || "");
  const [office, setOffice] = useState("");
  const offered = allowedOperations(operations, viewer);
  const defaultOffice = viewer && viewer.fieldOffices && viewer.fieldOffices.length ? viewer.fieldOffices[0] : "";

  function open(op) {
    const variables = fill(op.variables, { $A_NUMBER: aNumber.trim() || "A000000000",
                                           $FIELD_OFFICE: office.trim() || defaultOffice || "Washington" });
    editor.addTab();
    window.setTimeout(() => {
      if (editor.queryEditor) editor.queryEditor.setValue(op.query);
      if (editor.variableEditor) editor.variableEditor.setValue(JSON.stringify(variables, null, 2));
      const name = /^\s*(?:query|mutation|subscription)\s+(\w+)/m.exec(op.query);
      if (name) editor.setOperationName(name[1]);  // at once: GraphiQL reads it from the editor only later
      if (editor.queryEditor) editor.queryEditor.focus();
    }, 0);
  }

  return (
    <div className="ucgw-ops">
      <div className="graphiql-doc-explorer-title">Ready-made operations</div>
      <p className="ucgw-note" aria-live="polite">
        {viewer ? `Operations ${viewer.subject} (${viewer.role}) may run:`
          : viewerError ? `Cannot tell who you are: ${viewerError}` : "Set a token or sign in to see the operations you may run."}
      </p>
      <div className="ucgw-ops-fields">
        <label htmlFor="ucgw-op-anumber">A-number</label>
        <input id="ucgw-op-anumber" value={aNumber} onChange={(e) => setANumber(e.target.value)}
               placeholder="A012345678" spellCheck="false" autoComplete="off" />
        <label htmlFor="ucgw-op-office">Field office</label>
        <input id="ucgw-op-office" value={office} onChange={(e) => setOffice(e.target.value)}
               placeholder={defaultOffice || "Washington"} spellCheck="false" autoComplete="off" />
      </div>
      <ul className="ucgw-ops-list" aria-label="Ready-made operations">
        {offered.map((op) => (
          <li key={op.id}>
            <button type="button" className="ucgw-op" data-operation={op.id} onClick={() => open(op)}
                    aria-describedby={`ucgw-op-${op.id}-desc`}>{op.title}</button>
            <p id={`ucgw-op-${op.id}-desc`} className="ucgw-note">{op.description}</p>
          </li>
        ))}
      </ul>
    </div>
  );
}

function ListIcon() {
  return (
    <svg viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false">
      <path d="M4 6h16M4 12h16M4 18h10" stroke="currentColor" strokeWidth="2" fill="none" strokeLinecap="round" />
    </svg>
  );
}

export function operationsPlugin(operations) {
  return { title: "Ready-made operations", icon: ListIcon, content: () => <OperationsPanel operations={operations} /> };
}
