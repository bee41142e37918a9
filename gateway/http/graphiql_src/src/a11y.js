// Repairs to GraphiQL's markup that a screen reader and axe-core need (WCAG 2.1 A/AA), applied whenever
// GraphiQL re-renders: the editors' hidden textareas and the explorer's picker get names, scrollable editor
// regions can take focus, and
// the session tabs (each `role=tab` holding two buttons, which ARIA does not allow) become a group of
// buttons, the current one marked with aria-current.
const EDITOR_NAMES = [
  [".graphiql-query-editor", "Query editor"],
  [".graphiql-editor-tool .graphiql-editor:nth-child(1)", "Variables editor"],
  [".graphiql-editor-tool .graphiql-editor:nth-child(2)", "Headers editor"],
  [".graphiql-response", "Response"],
];

function repair(root) {
  EDITOR_NAMES.forEach(([selector, name]) => {
    root.querySelectorAll(`${selector} .CodeMirror textarea`).forEach((t) => {
      if (t.getAttribute("aria-label") !== name) t.setAttribute("aria-label", name);
    });
  });
  root.querySelectorAll(".graphiql-explorer-root select:not([aria-label])").forEach((el) => {
    el.setAttribute("aria-label", "Kind of operation to add");  // the explorer's unlabelled picker
  });
  root.querySelectorAll(".CodeMirror-scroll:not([tabindex='0'])").forEach((el) => el.setAttribute("tabindex", "0"));
  root.querySelectorAll(".CodeMirror-scroll:not([aria-label])").forEach((el) => {
    const textarea = el.parentElement && el.parentElement.querySelector("textarea");
    el.setAttribute("aria-label", `${(textarea && textarea.getAttribute("aria-label")) || "Editor"}, scroll`);
  });
  root.querySelectorAll(".graphiql-tabs[role=tablist]").forEach((el) => {
    el.setAttribute("role", "group");  // it also holds the "Add tab" button, so it cannot be a list
    el.setAttribute("aria-label", "Open tabs");
  });
  root.querySelectorAll(".graphiql-tab[role=tab]").forEach((el) => {
    const selected = el.getAttribute("aria-selected") === "true";
    el.setAttribute("role", "none");
    el.removeAttribute("aria-selected");
    const button = el.querySelector(".graphiql-tab-button");
    if (button) {
      if (selected) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  });
  root.querySelectorAll(".graphiql-tab[role=none]").forEach((el) => {
    const button = el.querySelector(".graphiql-tab-button");
    if (button && !el.classList.contains("graphiql-tab-active")) button.removeAttribute("aria-current");
    if (button && el.classList.contains("graphiql-tab-active")) button.setAttribute("aria-current", "true");
  });
}

export function keepAccessible(root) {
  let queued = false;
  const run = () => { queued = false; repair(root); };
  new MutationObserver(() => {
    if (!queued) { queued = true; window.requestAnimationFrame(run); }
  }).observe(root, { childList: true, subtree: true, attributes: true,
                     attributeFilter: ["role", "aria-selected", "class"] });
  repair(root);
}
