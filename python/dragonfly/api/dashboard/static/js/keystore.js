// Raw buyer keys the person created or pasted on this page, for the playground and the catalog.
// Held in this module's memory only: never in localStorage, sessionStorage, a cookie or the URL. A reload
// or a logout forgets them; the server never shows a raw key again.

import { hint } from "./dom.js";

const keys = new Map(); // id (or "pasted:<hint>") -> { id, raw, hint, name }
const listeners = new Set();
let chosen = null;

function changed() {
  for (const listener of listeners) listener();
}

export function remember(raw, { id, name } = {}) {
  const entry = { id: id || "pasted:" + hint(raw), raw, hint: hint(raw), name: name || "pasted key" };
  keys.set(entry.id, entry);
  chosen = entry.id;
  changed();
  return entry;
}

export function forget(id) {
  keys.delete(id);
  if (chosen === id) chosen = keys.size ? [...keys.keys()].pop() : null;
  changed();
}

export function forgetAll() {
  keys.clear();
  chosen = null;
  changed();
}

export function all() { return [...keys.values()]; }
export function current() { return chosen ? keys.get(chosen) || null : null; }
export function choose(id) { if (keys.has(id)) { chosen = id; changed(); } }
export function has(id) { return keys.has(id); }

/** Call `listener` on every change; returns the function that stops it. */
export function watch(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
