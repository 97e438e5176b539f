// Buyer API keys: create (the raw key shown once, with a copy button), list with hints, edit budget,
// routing profile, IP lists and name, rotate (a new key with the same settings, then the old one revoked),
// revoke. `/api/keys` and `/api/routing/profiles` only.

import { api } from "../api.js";
import { cents, cidrs, codeBlock, confirmButton, copy, errorBox, field, fields, h, notify, section, table } from "../dom.js";
import * as keystore from "../keystore.js";

export const title = "API keys";

const GROUP_HELP = "Lowercase letters, digits, - and _. Usage can be read per group.";

function budgetCents(text) {
  if (text === "") return null;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new Error("The monthly budget must be a positive amount in USD, or empty for no cap.");
  return Math.round(value * 100);
}

function profileSelect(profiles, selected) {
  return h("select", { name: "routing_profile_id" },
    h("option", { value: "" }, "account default"),
    profiles.map((p) => h("option", { value: p.id, selected: p.id === selected && !p.is_default },
      p.name + " (" + p.strategy + ")" + (p.is_default ? ", default" : ""))));
}

function showNewKey(panel, key, note) {
  keystore.remember(key.key, { id: key.id, name: key.name || key.key_hint });
  const code = h("code", { "data-testid": "raw-key" }, key.key);
  const button = h("button", { type: "button", class: "copy", "data-testid": "copy-key" }, "Copy");
  button.addEventListener("click", () => copy(key.key, button, code));
  panel.replaceChildren(
    h("h3", {}, note),
    h("div", { class: "raw-key" }, code, button),
    h("p", {}, h("strong", {}, "Copy it now: this is the only time the key is shown. "),
      "This page keeps it in memory for the playground and the model snippets until you reload or log out."),
    h("p", {}, h("a", { href: "#/playground" }, "Try it in the playground"), " \u00b7 ", h("a", { href: "#/models" }, "Code snippets")),
  );
  panel.hidden = false;
}

export async function render(root, ctx) {
  const newKey = h("div", { class: "card new-key", "data-testid": "new-key", hidden: true, role: "status" });
  const listBox = h("div");
  const showRevoked = h("input", { type: "checkbox", name: "show_revoked" });
  let profiles = [];

  const load = async () => {
    try {
      const [keys, prof] = await Promise.all([api("GET", "api/keys"), api("GET", "api/routing/profiles")]);
      profiles = prof.data;
      listBox.replaceChildren(renderList(keys.data));
    } catch (err) {
      listBox.replaceChildren(errorBox(err, load));
    }
  };

  const renderList = (keys) => {
    const shown = keys.filter((k) => showRevoked.checked || !k.revoked);
    if (!shown.length) return h("p", { class: "muted" }, keys.length ? "Every key is revoked." : "No keys yet.");
    const names = new Map(profiles.map((p) => [p.id, p.name]));
    const rows = [];
    for (const key of shown) {
      const editRow = h("tr", { class: "edit-row", hidden: true }, h("td", { colspan: 7 }));
      const actions = key.revoked ? [h("span", { class: "badge" }, "revoked")] : [
        h("button", { type: "button", class: "small", onclick: () => {
          editRow.hidden = !editRow.hidden;
          if (!editRow.hidden) editRow.firstChild.replaceChildren(editForm(key, () => { editRow.hidden = true; }));
        } }, "Edit"),
        confirmButton("Rotate", "Confirm rotate", () => rotate(key)),
        confirmButton("Revoke", "Confirm revoke", () => revoke(key)),
      ];
      const rules = [];
      if (key.ip_whitelist.length) rules.push("allow " + key.ip_whitelist.join(", "));
      if (key.ip_blacklist.length) rules.push("deny " + key.ip_blacklist.join(", "));
      rows.push(h("tr", { class: key.revoked ? "revoked" : "", "data-key-id": key.id },
        h("td", { "data-label": "Name" }, key.name || h("span", { class: "muted" }, "unnamed"),
          keystore.has(key.id) ? h("span", { class: "badge ok", title: "The raw key is in this page's memory" }, "in memory") : null),
        h("td", { "data-label": "Key" }, h("code", {}, key.key_hint)),
        h("td", { "data-label": "Group" }, key.key_group),
        h("td", { "data-label": "This month" }, cents(key.spent_this_month_cents), " of ", cents(key.monthly_budget_cents)),
        h("td", { "data-label": "Profile" }, names.get(key.routing_profile_id) || "account default"),
        h("td", { "data-label": "IP rules" }, rules.length ? rules.join("; ") : h("span", { class: "muted" }, "any address")),
        h("td", { "data-label": "" }, h("div", { class: "actions" }, actions))));
      rows.push(editRow);
    }
    return table(["Name", "Key", "Group", "This month", "Routing profile", "IP rules", ""], rows, { class: "keys" });
  };

  const editForm = (key, done) => {
    const status = h("div", { class: "form-status" });
    const form = h("form", { class: "grid-form" },
      field("Name", h("input", { name: "name", value: key.name || "", maxlength: "100" })),
      field("Monthly budget (USD)", h("input", {
        name: "budget", inputmode: "decimal", value: key.monthly_budget_cents === null ? "" : String(key.monthly_budget_cents / 100),
      }), "Empty: no cap."),
      field("Routing profile", profileSelect(profiles, key.routing_profile_id)),
      field("IP allow list", h("textarea", { name: "allow", rows: 2 }, key.ip_whitelist.join("\n")), "CIDRs, one per line. Empty: any address."),
      field("IP deny list", h("textarea", { name: "deny", rows: 2 }, key.ip_blacklist.join("\n"))),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Save"), h("button", { type: "button", class: "secondary", onclick: done }, "Cancel")),
      status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = fields(form);
      try {
        await api("PATCH", "api/keys/" + encodeURIComponent(key.id), {
          name: values.name || null,
          monthly_budget_cents: budgetCents(values.budget),
          routing_profile_id: values.routing_profile_id || null,
          ip_whitelist: cidrs(values.allow),
          ip_blacklist: cidrs(values.deny),
        });
        notify("Key saved.");
        await load();
      } catch (err) {
        status.replaceChildren(errorBox(err));
      }
    });
    return form;
  };

  const revoke = async (key) => {
    try {
      await api("DELETE", "api/keys/" + encodeURIComponent(key.id));
      keystore.forget(key.id);
      notify("Key revoked: it is refused from now on.");
      await load();
    } catch (err) {
      notify(err.message, "bad");
    }
  };

  const rotate = async (key) => {
    try {
      const made = await api("POST", "api/keys", {
        name: key.name,
        key_group: key.key_group,
        monthly_budget_cents: key.monthly_budget_cents,
        routing_profile_id: key.routing_profile_id,
        ip_whitelist: key.ip_whitelist,
        ip_blacklist: key.ip_blacklist,
      });
      await api("DELETE", "api/keys/" + encodeURIComponent(key.id));
      keystore.forget(key.id);
      showNewKey(newKey, made, "Key rotated: the new key replaces " + key.key_hint + ", which is revoked");
      await load();
      newKey.scrollIntoView({ block: "nearest" });
    } catch (err) {
      notify(err.message, "bad");
      await load();
    }
  };

  // Create.
  const status = h("div", { class: "form-status" });
  const profilesBox = h("span");
  const createForm = h("form", { class: "grid-form", "data-form": "create-key" },
    field("Name", h("input", { name: "name", maxlength: "100", placeholder: "production" })),
    field("Group", h("input", { name: "key_group", value: "default", pattern: "[a-z0-9_\\-]{1,64}" }), GROUP_HELP),
    field("Monthly budget (USD)", h("input", { name: "budget", inputmode: "decimal", placeholder: "no cap" })),
    field("Routing profile", profilesBox),
    field("IP allow list", h("textarea", { name: "allow", rows: 2, placeholder: "203.0.113.0/24" }), "CIDRs, one per line. Empty: any address."),
    field("IP deny list", h("textarea", { name: "deny", rows: 2 })),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create key")),
    status);
  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = fields(createForm);
    status.replaceChildren();
    try {
      const body = {
        key_group: values.key_group || "default",
        monthly_budget_cents: budgetCents(values.budget),
        ip_whitelist: cidrs(values.allow),
        ip_blacklist: cidrs(values.deny),
      };
      if (values.name) body.name = values.name;
      if (values.routing_profile_id) body.routing_profile_id = values.routing_profile_id;
      const made = await api("POST", "api/keys", body);
      createForm.reset();
      showNewKey(newKey, made, "Your new key" + (made.name ? " \u201c" + made.name + "\u201d" : ""));
      await load();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  });
  showRevoked.addEventListener("change", load);

  root.append(
    h("h1", {}, "API keys"),
    h("p", { class: "muted" }, "Buyer keys call the inference API (/v1/chat/completions and friends) with the OpenAI SDK. ",
      "Each key has its own monthly budget, routing profile and IP rules."),
    newKey,
    section("Create a key", createForm),
    section("Your keys", h("label", { class: "check" }, showRevoked, " show revoked keys"), listBox),
    section("Use a key", codeBlock('from openai import OpenAI\n\nclient = OpenAI(base_url="' + ctx.v1Base() + '", api_key="sk-df-...")', "snippet"),
      h("p", { class: "muted" }, "More snippets on the ", h("a", { href: "#/models" }, "Models"), " page.")),
  );
  await load();
  profilesBox.replaceChildren(profileSelect(profiles, null));
}
