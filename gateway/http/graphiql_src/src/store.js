// Small stores the page's pieces share (React reads them with useSyncExternalStore).
import { useSyncExternalStore } from "react";

export function createStore(initial) {
  let value = initial;
  const listeners = new Set();
  return {
    get: () => value,
    set: (next) => { value = next; listeners.forEach((fn) => fn()); },
    subscribe: (fn) => { listeners.add(fn); return () => listeners.delete(fn); },
  };
}

export function useStore(store) { return useSyncExternalStore(store.subscribe, store.get); }

export const viewerStore = createStore({ viewer: null, error: null });  // who the token says the caller is
export const resultStore = createStore(null);  // the latest answer, for the status card
