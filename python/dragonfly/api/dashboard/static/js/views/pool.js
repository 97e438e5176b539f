// Pool keys: a seller's credentials at upstream providers. Add one (provider from the catalogue, or
// `custom` with any OpenAI-compatible base URL), list them with their hint and status, delete one (its
// listings pause). The provider key is sent once and never comes back: only `key_hint`.
// `/v1/pool/providers`, `/v1/pool/keys` and (to count listings per key) `/v1/market/listings`.

import { api } from "../api.js";
import { confirmButton, errorBox, field, fields, h, notify, section, table, when } from "../dom.js";

export const title = "Pool keys";

/** A table cell labelled for phones (where each row becomes a card); its content in one box. */
function td(label, attrs, ...children) {
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  return h("td", { "data-label": label, ...attrs }, label === "" ? children : h("div", { class: "cell" }, children));
}

const HEALTH = {
  ok: ["ok", "healthy over the last hour"],
  degraded: ["warn", "degraded: some of its listings are failing"],
  unknown: ["", "no verdict yet (fewer than 20 calls in the last hour)"],
};

function healthBadge(health) {
  const [kind, text] = HEALTH[health] || ["", health || "unknown"];
  return h("span", { class: "badge " + kind, title: text }, health || "unknown");
}

export async function render(root) {
  let providers = [];
  const listBox = h("div", { "data-testid": "pool-keys" }, h("p", { class: "muted" }, "Loading\u2026"));
  const formBox = h("div", {}, h("p", { class: "muted" }, "Loading the provider catalogue\u2026"));
  const catalogueBox = h("div");

  const load = async () => {
    try {
      const [keys, listings] = await Promise.all([
        api("GET", "v1/pool/keys"),
        api("GET", "v1/market/listings").catch(() => null), // the count per key is a courtesy
      ]);
      listBox.replaceChildren(renderList(keys.data, listings ? listings.data : null));
    } catch (err) {
      listBox.replaceChildren(errorBox(err, load));
    }
  };

  const renderList = (keys, listings) => {
    if (!keys.length) return h("p", { class: "muted" }, "No pool keys yet: add one above, then create a listing on it.");
    const names = new Map(providers.map((p) => [p.id, p.name]));
    const rows = keys.map((key) => {
      const on = listings ? listings.filter((l) => l.pool_key_id === key.id) : [];
      const selling = on.filter((l) => l.status !== "paused").length;
      const warning = selling
        ? "Confirm: pause " + selling + " listing" + (selling === 1 ? "" : "s")
        : "Confirm delete";
      return h("tr", { "data-pool-key-id": key.id },
        td("Name", key.name || h("span", { class: "muted" }, "unnamed")),
        td("Provider", key.provider === "custom" ? "Custom" : names.get(key.provider) || key.provider),
        td("Base URL", h("code", { class: "url" }, key.base_url)),
        td("Key", h("code", { class: "nowrap" }, key.key_hint)),
        td("Status", h("span", { class: "badge " + (key.status === "active" ? "ok" : "warn") }, key.status)),
        td("Listings", listings ? (on.length
          ? h("a", { href: "#/listings" }, on.length + (on.length === 1 ? " listing" : " listings"))
          : h("span", { class: "muted" }, "none")) : h("span", { class: "muted" }, "\u2014")),
        td("Added", when(key.created_at)),
        td("", h("div", { class: "actions" },
          h("a", { class: "button small secondary", href: "#/listings" }, "New listing"),
          confirmButton("Delete", warning, () => remove(key, selling), { "data-action": "delete-pool-key" }))));
    });
    return table(["Name", "Provider", "Base URL", "Key", "Status", "Listings", "Added", ""], rows, { class: "seller pool-keys" });
  };

  const remove = async (key, selling) => {
    try {
      await api("DELETE", "v1/pool/keys/" + encodeURIComponent(key.id));
      notify("Pool key deleted" + (selling ? ": its " + selling + " listing" + (selling === 1 ? " is" : "s are") + " paused." : "."));
    } catch (err) {
      notify("Deleting the pool key failed: " + err.message, "bad");
    }
    await load();
  };

  const buildForm = () => {
    const status = h("div", { class: "form-status", role: "status" });
    const provider = h("select", { name: "provider", required: true },
      providers.map((p) => h("option", { value: p.id }, p.name)));
    const baseUrl = h("input", { name: "base_url", inputmode: "url", maxlength: "2048", autocomplete: "off", spellcheck: "false" });
    const baseHelp = h("small", { class: "muted" });
    const providerInfo = h("p", { class: "muted provider-info", "data-testid": "provider-info" });
    const apiKey = h("input", {
      name: "api_key", type: "password", required: true, maxlength: "4096", autocomplete: "new-password", spellcheck: "false",
    });
    const form = h("form", { class: "grid-form", "data-form": "add-pool-key" },
      field("Provider", provider),
      h("label", { class: "field" }, h("span", { class: "label" }, "Base URL"), baseUrl, baseHelp),
      field("Provider API key", apiKey, "Encrypted at rest; never shown again, not even to you: only its last 4 characters."),
      field("Name", h("input", { name: "name", maxlength: "128", placeholder: "e.g. main OpenAI account" }), "Optional, for you."),
      providerInfo,
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Add key")),
      status);

    const describeProvider = () => {
      const p = providers.find((x) => x.id === provider.value);
      if (!p) return;
      if (p.default_base_url) {
        baseUrl.required = false;
        baseUrl.placeholder = p.default_base_url;
        baseHelp.textContent = "Leave empty for the default, " + p.default_base_url + ", or give another to override it.";
      } else {
        baseUrl.required = true;
        baseUrl.placeholder = "https://llm.example.com/v1";
        baseHelp.textContent = "Required: the base URL of any OpenAI-compatible API (Dragonfly calls {base URL}/models, /chat/completions, \u2026). https only, public addresses only unless the operator allows private upstreams.";
      }
      providerInfo.replaceChildren(
        h("strong", {}, p.name), ": sells ", p.kinds.join(", "),
        p.models.length ? "; models such as " + p.models.slice(0, 4).join(", ") : "",
        ". Health ", healthBadge(p.health));
    };
    provider.addEventListener("change", describeProvider);
    describeProvider();

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = fields(form);
      status.replaceChildren();
      const body = { provider: values.provider, api_key: apiKey.value.trim() };
      if (values.base_url) body.base_url = values.base_url;
      if (values.name) body.name = values.name;
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const made = await api("POST", "v1/pool/keys", body);
        form.reset();
        describeProvider();
        status.replaceChildren(h("div", { class: "ok-box", "data-testid": "pool-key-added" },
          "Added ", h("strong", {}, made.name || made.provider), " (key ", h("code", {}, made.key_hint), ", ", made.base_url, "). ",
          h("a", { href: "#/listings" }, "Create a listing on it"), "."));
        notify("Pool key added.");
        await load();
      } catch (err) {
        status.replaceChildren(errorBox(err));
      } finally {
        apiKey.value = ""; // the raw key leaves the page either way
        button.disabled = false;
      }
    });
    return form;
  };

  const loadProviders = async () => {
    try {
      providers = (await api("GET", "v1/pool/providers")).data;
      formBox.replaceChildren(buildForm());
      catalogueBox.replaceChildren(table(["Provider", "Default base URL", "Kinds", "Health"],
        providers.map((p) => h("tr", {},
          td("Provider", p.name, h("span", { class: "muted" }, " (" + p.id + ")")),
          td("Base URL", p.default_base_url ? h("code", { class: "url" }, p.default_base_url) : h("span", { class: "muted" }, "yours (required)")),
          td("Kinds", p.kinds.join(", ")),
          td("Health", healthBadge(p.health)))), { class: "seller" }));
    } catch (err) {
      formBox.replaceChildren(errorBox(err, loadProviders));
    }
  };

  root.append(
    h("h1", {}, "Pool keys"),
    h("p", { class: "muted lead" }, "A pool key is your credential at an upstream provider. ",
      "Your listings sell capacity through it: buyers' requests go to the provider with this key, and you are paid per token. ",
      "The key is encrypted at rest and no answer ever contains it again."),
    section("Add a provider key", formBox),
    section("Your pool keys",
      h("p", { class: "muted" }, "Deleting a key pauses every listing on it (they stay in your list, unroutable; delete them and list the model again on another key)."),
      listBox),
    h("details", { class: "card" }, h("summary", {}, "Provider catalogue"), catalogueBox),
  );
  await loadProviders();
  await load();
}
