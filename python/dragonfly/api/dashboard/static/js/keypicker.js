// Which buyer key the catalog and the playground use: one created on this page, or one pasted here.
// The paste field is a password field and the key stays in memory (keystore.js).

import { h, notify } from "./dom.js";
import * as keystore from "./keystore.js";

export function keyPicker(onChange) {
  const select = h("select", { name: "key", "aria-label": "Buyer key" });
  const paste = h("input", {
    type: "password", name: "paste", placeholder: "sk-df-\u2026", autocomplete: "off", spellcheck: "false",
    "aria-label": "Paste a buyer key",
  });
  const use = h("button", { type: "submit", class: "small" }, "Use this key");
  const form = h("form", { class: "inline paste-key" }, paste, use);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const raw = paste.value.trim();
    if (!raw.startsWith("sk-df-") || raw.length < 20) {
      notify("That does not look like a buyer key (they start with sk-df-).", "bad");
      return;
    }
    paste.value = "";
    keystore.remember(raw);
  });
  select.addEventListener("change", () => keystore.choose(select.value));

  const box = h("div", { class: "keypicker" });
  const render = () => {
    const keys = keystore.all();
    const current = keystore.current();
    select.replaceChildren(...keys.map((k) =>
      h("option", { value: k.id, selected: current && current.id === k.id }, k.name + " \u2014 " + k.hint)));
    box.replaceChildren(
      h("span", { class: "label" }, "Buyer key"),
      keys.length ? select : h("span", { class: "muted" }, "none in this page yet"),
      form,
      h("small", { class: "muted block" },
        "Create one on the Keys page (it is kept here until you reload), or paste one. " +
        "Keys stay in this page's memory only."),
    );
  };
  render();
  let last = keystore.current();
  const stop = keystore.watch(() => {
    render();
    const now = keystore.current();
    if (now !== last) { last = now; onChange(now); }
  });
  return { node: box, stop };
}
