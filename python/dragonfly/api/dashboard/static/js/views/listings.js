// Listings: what a seller offers (a model at a price on a pool key). Create one (fixed prices, a
// multiple of the reference price, or auto-follow), watch its admission probe turn it active, edit
// prices and caps (the > 50 % price review explained and confirmed here), pause/resume, probe, delete.
// `#/listings/<id>` is one listing: its fields, its contract with the check history (reverify /
// unsuspend), its probe runs and its price history. `/v1/pool/*` and `/v1/market/*` only.

import { api } from "../api.js";
import { actionButton, confirmButton, errorBox, field, fields, h, int, notify, section, table, when } from "../dom.js";

export const title = "Listings";

/** A table cell labelled for phones (where each row becomes a card); its content in one box. */
function td(label, attrs, ...children) {
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  return h("td", { "data-label": label, ...attrs }, label === "" ? children : h("div", { class: "cell" }, children));
}

const POLL_MS = 1000;
const POLL_LIMIT = 60; // a probe has a 30 s timeout per request; after a minute, offer Refresh instead

const STATUS = {
  pending: ["", "Waiting for its admission probe to pass: not routed yet."],
  active: ["ok", "In the market: buyers are routed to it while its contract is active or degraded."],
  paused: ["", "Paused: not routed. Resume it to sell again."],
  price_review: ["warn", "A price moved more than 50 % from the last confirmed price: not routed until you confirm it."],
  suspended: ["bad", "Suspended by the operator: not routed, and only the operator can lift it."],
};
const CONTRACT = {
  pending: ["", "has never passed an admission probe"],
  active: ["ok", "checks pass: routed at full score"],
  degraded: ["warn", "health failures or a failed manual probe: still routed, ranked lower"],
  suspended: ["bad", "unroutable until a re-probe passes (or you unsuspend it once the upstream is fixed)"],
};
const EXCLUDED = {
  payout_below_floor: "Not routed: at this price your payout is below your payout floor.",
  reference_price_missing: "Not routed: the model has no reference price yet for the multiplier to apply to.",
};

const RULE_REVIEW = "Price review: a change of the input or output price by more than 50 % of the last confirmed price, up or down, "
  + "puts the listing in price review. It is then not routed until you press \u201cConfirm price\u201d. "
  + "Smaller moves apply at once; caps, the cached price and the other fields never need review.";
const RULE_MULTIPLIER = "Multiplier: the listing is priced at this multiple of the model's reference price (the operator's, else the median of "
  + "the fixed-price listings), and moves when the reference moves. Without a reference it is not routed.";
const RULE_FOLLOW = "Auto-follow: the prices follow the lowest or median price of the model's other active listings, plus the offset "
  + "(\u22125 means 5 % under), never below the floor. Market moves need no review.";
const RULE_FLOOR = "Payout floor: the least you accept per 1M tokens after the platform fee. While your payout at the lowest price a trade "
  + "may be billed at is below it, the listing is not routed (its status does not change).";
const RULE_PROBE = "Admission probe: real requests to your upstream (models list, auth, a short completion and a stream, usage sanity). "
  + "A new listing is pending until it passes. Its cost is the platform's.";

// ---- small helpers ------------------------------------------------------------------------------

/** "0.4" -> "$0.40"; exact: the API's decimal string is padded, never rounded. */
function price(value) {
  if (value === null || value === undefined || value === "") return "\u2014";
  const [whole, frac = ""] = String(value).split(".");
  return "$" + whole + "." + frac.padEnd(2, "0");
}

function per(listing) {
  return listing.price_unit === "character" ? "/1M chars" : "/1M tokens";
}

function same(a, b) {
  const empty = (x) => x === null || x === undefined || x === "";
  if (empty(a) || empty(b)) return empty(a) && empty(b);
  const na = Number(a);
  const nb = Number(b);
  return Number.isFinite(na) && Number.isFinite(nb) ? na === nb : String(a) === String(b);
}

/** An integer field: a number when it is one, else the text as typed (the server says what is wrong). */
function whole(text) {
  return /^\d+$/.test(text) ? Number(text) : text;
}

function badge(map, value, prefix) {
  const [kind, help] = map[value] || ["", ""];
  return h("span", { class: "badge " + kind, title: help, "data-status": value }, (prefix || "") + value.replace("_", " "));
}

/** The review rule for one listing: the range each price may move to at once. */
function reviewRange(confirmed) {
  const c = Number(confirmed);
  if (!Number.isFinite(c)) return "";
  if (c === 0) return "from $0 any price needs review";
  const round = (x) => Number(x.toFixed(6)).toString();
  return "$" + round(c * 0.5) + " to $" + round(c * 1.5) + " applies at once";
}

function movesTooFar(confirmed, next) {
  const c = Number(confirmed);
  const n = Number(next);
  if (!Number.isFinite(c) || !Number.isFinite(n) || next === "") return false;
  return c === 0 ? n !== 0 : Math.abs(n - c) > c * 0.5 + 1e-12;
}

function pricingSummary(listing) {
  const out = [];
  const p = listing.pricing || {};
  if (p.mode === "multiplier") {
    out.push("\u00d7" + listing.price_multiplier + " the reference price");
  } else if (p.mode === "auto_follow" && listing.auto_follow) {
    const f = listing.auto_follow;
    const offset = Number(f.offset_pct);
    out.push("follows the " + f.mode + " price" + (offset ? " " + (offset > 0 ? "+" : "\u2212") + Math.abs(offset) + " %" : "")
      + (f.floor_per_mtok !== null ? ", floor " + price(f.floor_per_mtok) : ""));
  } else {
    out.push("fixed");
  }
  if (listing.payout_floor_per_mtok !== null) {
    out.push("payout floor " + price(listing.payout_floor_per_mtok) + (p.payout_floor_met ? " (met)" : " (not met)"));
  }
  return out.join("; ");
}

function capsSummary(listing) {
  const rpm = listing.rpm_cap === null ? "no rpm cap" : int(listing.rpm_cap) + " rpm";
  const conc = listing.concurrency_cap === null ? "no concurrency cap" : int(listing.concurrency_cap) + " at once";
  return rpm + ", " + conc;
}

/** What the listing's status means now, in a sentence (plus the probe failure of a pending one). */
function statusNote(listing, contract) {
  const notes = [];
  if (listing.status === "pending") {
    notes.push(contract && contract.reason
      ? h("span", { class: "fail", "data-testid": "probe-failure" }, "Admission probe failed: " + contract.reason + ". Fix the upstream, then run the probe again.")
      : h("span", {}, "Admission probe running\u2026"));
  } else if (listing.status === "price_review") {
    const moves = [];
    if (!same(listing.input_price_per_mtok, listing.confirmed_input_price_per_mtok)) {
      moves.push("input " + price(listing.confirmed_input_price_per_mtok) + " \u2192 " + price(listing.input_price_per_mtok));
    }
    if (!same(listing.output_price_per_mtok, listing.confirmed_output_price_per_mtok)) {
      moves.push("output " + price(listing.confirmed_output_price_per_mtok) + " \u2192 " + price(listing.output_price_per_mtok));
    }
    notes.push(h("span", { "data-testid": "review-note" }, "Awaiting your confirmation" + (moves.length ? " (" + moves.join(", ") + ")" : "")
      + ": the price moved more than 50 % from the last confirmed price, so buyers are not routed to it until you confirm."));
  } else if (STATUS[listing.status] && listing.status !== "active") {
    notes.push(STATUS[listing.status][1]);
  }
  if (listing.pricing && listing.pricing.excluded) notes.push(EXCLUDED[listing.pricing.excluded] || "Not routed: " + listing.pricing.excluded + ".");
  if (contract && contract.status !== "pending" && contract.status !== "active" && contract.reason) notes.push("Contract: " + contract.reason);
  return notes.length ? h("small", { class: "status-note" }, notes.map((n, i) => [i ? " " : null, n])) : null;
}

// ---- actions shared by the list and the detail --------------------------------------------------

async function patch(listing, body, done) {
  try {
    const out = await api("PATCH", "v1/market/listings/" + encodeURIComponent(listing.id), body);
    if (out.status === "price_review") notify("Saved. The price moved more than 50 %: confirm it to sell again.", "bad");
    else notify(body.status === "paused" ? "Listing paused." : body.status === "active" ? "Listing resumed." : "Listing saved.");
    await done(out);
    return out;
  } catch (err) {
    notify(err.message, "bad");
    return null;
  }
}

/** The buttons of one listing. `onEdit` toggles its edit form; `done` reloads; `gone` after delete. */
function listingActions(listing, { onEdit, done, gone, details }) {
  const path = "v1/market/listings/" + encodeURIComponent(listing.id);
  const buttons = [];
  if (details) buttons.push(h("a", { class: "button small secondary", href: "#/listings/" + encodeURIComponent(listing.id), "data-action": "details" }, "Details"));
  if (listing.status !== "suspended") buttons.push(h("button", { type: "button", class: "small", "data-action": "edit", onclick: onEdit }, "Edit"));
  if (listing.status === "price_review") {
    buttons.push(actionButton("Confirm price", async () => {
      try {
        const out = await api("POST", path + "/confirm-price");
        notify("Price confirmed: the listing is " + out.status.replace("_", " ") + ".");
      } catch (err) {
        notify(err.message, "bad");
      }
      await done();
    }, { "data-action": "confirm-price", class: "small" }));
  }
  if (listing.status === "active" || listing.status === "pending") {
    buttons.push(actionButton("Pause", () => patch(listing, { status: "paused" }, done), { "data-action": "pause", class: "small secondary" }));
  } else if (listing.status === "paused") {
    buttons.push(actionButton("Resume", () => patch(listing, { status: "active" }, done), { "data-action": "resume", class: "small" }));
  }
  buttons.push(actionButton("Run probe now", async () => {
    try {
      const run = await api("POST", path + "/probe");
      const failed = (run.checks || []).find((c) => !c.passed);
      if (run.passed) notify("Probe passed: " + (run.checks || []).length + " checks.");
      else notify("Probe failed" + (failed ? ": " + failed.kind + ": " + failed.detail : "."), "bad");
    } catch (err) {
      notify(err.message, "bad");
    }
    await done();
  }, { "data-action": "probe", class: "small secondary" }));
  buttons.push(confirmButton("Delete", "Confirm delete", async () => {
    try {
      await api("DELETE", path);
      notify("Listing deleted: it has left the market.");
      await gone();
    } catch (err) {
      notify(err.message, "bad");
    }
  }, { "data-action": "delete" }));
  return h("div", { class: "actions" }, buttons);
}

// ---- the edit form ------------------------------------------------------------------------------

function pricingFields(prefix, values) {
  // The pricing-mode fields, shared by create and edit; `values` preset them.
  const v = values || {};
  const mode = h("select", { name: "pricing_mode" },
    h("option", { value: "fixed", selected: v.mode === "fixed" }, "Fixed prices"),
    h("option", { value: "multiplier", selected: v.mode === "multiplier" }, "Multiple of the reference price"),
    h("option", { value: "auto_follow", selected: v.mode === "auto_follow" }, "Auto-follow the market"));
  const multiplier = h("input", { name: "price_multiplier", inputmode: "decimal", value: v.multiplier || "", placeholder: "1.1" });
  const followMode = h("select", { name: "follow_mode" },
    h("option", { value: "lowest", selected: v.followMode !== "median" }, "lowest"),
    h("option", { value: "median", selected: v.followMode === "median" }, "median"));
  const offset = h("input", { name: "offset_pct", inputmode: "decimal", value: v.offset ?? "0", placeholder: "-5" });
  const floor = h("input", { name: "follow_floor", inputmode: "decimal", value: v.floor || "", placeholder: "none" });
  const multiplierBox = h("div", { class: "mode-fields", "data-mode": "multiplier" },
    field("Price multiplier", multiplier, "> 0, at most 100. 1.1 = 10 % above the reference."),
    h("p", { class: "muted rule" }, RULE_MULTIPLIER));
  const followBox = h("div", { class: "mode-fields", "data-mode": "auto_follow" },
    field("Follow", followMode, "the other listings' lowest or median price"),
    field("Offset (%)", offset, "\u221290 to 1000"),
    field("Floor (USD per 1M)", floor, "never below this; empty: no floor"),
    h("p", { class: "muted rule" }, RULE_FOLLOW));
  const show = () => {
    multiplierBox.hidden = mode.value !== "multiplier";
    followBox.hidden = mode.value !== "auto_follow";
  };
  mode.addEventListener("change", show);
  show();
  return { mode, multiplierBox, followBox, show, id: prefix };
}

function followBody(values) {
  return { mode: values.follow_mode, offset_pct: values.offset_pct || "0", floor_per_mtok: values.follow_floor || null };
}

function editForm(listing, saved, cancel) {
  const status = h("div", { class: "form-status", role: "status" });
  const follow = listing.auto_follow && listing.auto_follow.mode !== "off" ? listing.auto_follow : null;
  const modeNow = (listing.pricing && listing.pricing.mode) || "fixed";
  const pf = pricingFields("edit", {
    mode: modeNow,
    multiplier: listing.price_multiplier || "",
    followMode: follow ? follow.mode : "lowest",
    offset: follow ? follow.offset_pct : "0",
    floor: follow && follow.floor_per_mtok !== null ? follow.floor_per_mtok : "",
  });
  const input = h("input", { name: "input_price_per_mtok", inputmode: "decimal", value: listing.input_price_per_mtok });
  const output = h("input", { name: "output_price_per_mtok", inputmode: "decimal", value: listing.output_price_per_mtok });
  const cached = h("input", { name: "cached_input_price_per_mtok", inputmode: "decimal", value: listing.cached_input_price_per_mtok ?? "", placeholder: "the input price" });
  const warning = h("p", { class: "review-warning", "data-testid": "review-warning", hidden: true, role: "status" });
  const pricesNote = h("p", { class: "muted rule" });
  const unit = listing.kind === "speech"
    ? field("Input price per", h("select", { name: "price_unit" },
      h("option", { value: "token", selected: listing.price_unit === "token" }, "1M input tokens"),
      h("option", { value: "character", selected: listing.price_unit === "character" }, "1M input characters")), "A change of unit always needs review.")
    : null;
  const form = h("form", { class: "grid-form listing-form", "data-form": "edit-listing" },
    h("p", { class: "rule review-rule", "data-testid": "review-rule" }, RULE_REVIEW, " Last confirmed: input ",
      price(listing.confirmed_input_price_per_mtok), " (", reviewRange(listing.confirmed_input_price_per_mtok), "), output ",
      price(listing.confirmed_output_price_per_mtok), " (", reviewRange(listing.confirmed_output_price_per_mtok), ")."),
    field("Pricing", pf.mode),
    pricesNote,
    field("Input price (USD " + per(listing) + ")", input),
    field("Output price (USD /1M tokens)", output, listing.kind === "chat" ? null : "Not billed for " + listing.kind + "."),
    field("Cached input price (USD /1M tokens)", cached, "Empty: cached tokens at the input price."),
    unit,
    pf.multiplierBox,
    pf.followBox,
    warning,
    field("Payout floor (USD /1M, after fee)", h("input", { name: "payout_floor_per_mtok", inputmode: "decimal", value: listing.payout_floor_per_mtok ?? "", placeholder: "none" }), "Below it the listing is not routed. Empty: no floor."),
    field("Requests per minute cap", h("input", { name: "rpm_cap", inputmode: "numeric", value: listing.rpm_cap ?? "", placeholder: "no cap" })),
    field("Concurrency cap", h("input", { name: "concurrency_cap", inputmode: "numeric", value: listing.concurrency_cap ?? "", placeholder: "no cap" })),
    field("Context length (tokens)", h("input", { name: "context_length", inputmode: "numeric", value: listing.context_length ?? "", placeholder: "not stated" }), "Shown to buyers; not enforced."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save"), h("button", { type: "button", class: "secondary", onclick: cancel }, "Cancel")),
    status);

  const checkReview = () => {
    const multiplier = pf.mode.value === "multiplier";
    pricesNote.textContent = multiplier
      ? "The prices come from the model's reference price × the multiplier: they cannot be set here."
      : pf.mode.value === "auto_follow"
        ? "Prices set here are a new starting point: auto-follow moves them to the market again when other listings are active."
        : "";
    pricesNote.hidden = !pricesNote.textContent;
    input.disabled = multiplier;
    output.disabled = multiplier;
    cached.disabled = multiplier;
    const far = !multiplier && (movesTooFar(listing.confirmed_input_price_per_mtok, input.value.trim())
      || movesTooFar(listing.confirmed_output_price_per_mtok, output.value.trim()));
    warning.hidden = !far && listing.status !== "price_review";
    warning.textContent = listing.status === "price_review"
      ? "This listing is in price review: saving keeps it there (even back in range). Confirm the price to sell again."
      : "This moves a price by more than 50 %: after saving, the listing waits in price review, unrouted, until you confirm the price.";
  };
  form.addEventListener("input", checkReview);
  pf.mode.addEventListener("change", checkReview);
  checkReview();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const v = fields(form);
    const body = {};
    const mode = v.pricing_mode;
    if (mode === "multiplier") {
      if (!v.price_multiplier) { status.replaceChildren(errorBox(new Error("State the price multiplier, e.g. 1.1."))); return; }
      if (modeNow !== "multiplier" || !same(v.price_multiplier, listing.price_multiplier)) body.price_multiplier = v.price_multiplier;
      if (modeNow === "auto_follow") body.auto_follow = null;
    } else {
      if (modeNow === "multiplier") body.price_multiplier = null;
      if (!same(v.input_price_per_mtok, listing.input_price_per_mtok)) body.input_price_per_mtok = v.input_price_per_mtok;
      if (!same(v.output_price_per_mtok, listing.output_price_per_mtok)) body.output_price_per_mtok = v.output_price_per_mtok;
      if (!same(v.cached_input_price_per_mtok, listing.cached_input_price_per_mtok)) body.cached_input_price_per_mtok = v.cached_input_price_per_mtok || null;
      if (mode === "auto_follow") {
        const next = followBody(v);
        if (!follow || next.mode !== follow.mode || !same(next.offset_pct, follow.offset_pct) || !same(next.floor_per_mtok, follow.floor_per_mtok)) body.auto_follow = next;
      } else if (modeNow === "auto_follow") {
        body.auto_follow = null;
      }
    }
    if (v.price_unit && v.price_unit !== listing.price_unit) body.price_unit = v.price_unit;
    if (!same(v.payout_floor_per_mtok, listing.payout_floor_per_mtok)) body.payout_floor_per_mtok = v.payout_floor_per_mtok || null;
    for (const name of ["rpm_cap", "concurrency_cap", "context_length"]) {
      if (!same(v[name], listing[name])) body[name] = v[name] === "" ? null : whole(v[name]);
    }
    if (!Object.keys(body).length) {
      status.replaceChildren(h("p", { class: "muted" }, "Nothing changed."));
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const out = await api("PATCH", "v1/market/listings/" + encodeURIComponent(listing.id), body);
      if (out.status === "price_review") notify("Saved. The price moved more than 50 %: the listing waits in price review until you confirm it.", "bad");
      else notify("Listing saved.");
      await saved(out);
    } catch (err) {
      status.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

// ---- the list and the create form --------------------------------------------------------------

function poolKeyLabel(key) {
  return (key.name || key.provider) + " \u00b7 " + key.provider + " \u00b7 key " + key.key_hint;
}

/** Market name suggestions for a provider's catalogue models, each with the upstream name it maps to. */
function suggestions(provider, marketModels) {
  const out = new Map();
  if (provider) {
    for (const m of provider.models) out.set(m.includes("/") ? m : provider.id + "/" + m, { upstream: m, note: provider.name });
  }
  for (const m of marketModels) if (!out.has(m)) out.set(m, { upstream: null, note: "in the market" });
  return out;
}

function defaultUpstream(model) {
  const i = model.indexOf("/");
  return i >= 0 ? model.slice(i + 1) : model;
}

function createForm(poolKeys, providers, marketModels, created) {
  const status = h("div", { class: "form-status", role: "status" });
  const byId = new Map(providers.map((p) => [p.id, p]));
  const poolKey = h("select", { name: "pool_key_id", required: true }, poolKeys.map((k) => h("option", { value: k.id }, poolKeyLabel(k))));
  const kind = h("select", { name: "kind" });
  const modelList = h("datalist", { id: "listing-model-suggestions" });
  const model = h("input", {
    name: "model", required: true, maxlength: "128", list: "listing-model-suggestions", autocomplete: "off", spellcheck: "false", placeholder: "vendor/model",
  });
  const upstream = h("input", { name: "upstream_model", maxlength: "256", autocomplete: "off", spellcheck: "false" });
  const upstreamHelp = h("small", { class: "muted" });
  const unitBox = field("Input price per", h("select", { name: "price_unit" },
    h("option", { value: "token" }, "1M input tokens"), h("option", { value: "character" }, "1M input characters")), "Speech only.");
  const pf = pricingFields("create", { mode: "fixed" });
  const pricesHelp = h("p", { class: "muted rule" });
  let known = new Map();

  const onKey = () => {
    const key = poolKeys.find((k) => k.id === poolKey.value);
    const provider = key ? byId.get(key.provider) : null;
    const kinds = provider ? provider.kinds : ["chat", "embeddings", "speech"];
    const before = kind.value;
    kind.replaceChildren(...kinds.map((k) => h("option", { value: k, selected: k === before }, k)));
    known = suggestions(provider, marketModels);
    modelList.replaceChildren(...[...known].map(([name, s]) => h("option", { value: name }, s.note)));
    onModel();
    onKind();
  };
  const onModel = () => {
    const name = model.value.trim();
    const hit = known.get(name);
    upstream.placeholder = name ? (hit && hit.upstream) || defaultUpstream(name) : "default: the part after the first /";
    upstreamHelp.textContent = name
      ? "Sent to your upstream as \u201c" + (upstream.value.trim() || (hit && hit.upstream) || defaultUpstream(name)) + "\u201d."
      : "The name your upstream knows the model by. Default: the part of the model after the first /.";
  };
  const onKind = () => { unitBox.hidden = kind.value !== "speech"; };
  const onMode = () => {
    pricesHelp.textContent = pf.mode.value === "multiplier"
      ? "With a multiplier the prices come from the reference; prices given here are used only until a reference exists (optional)."
      : pf.mode.value === "auto_follow"
        ? "The starting prices: auto-follow moves them once other listings of the model are active."
        : "Buyers pay these per 1M tokens; you receive them less the platform fee.";
  };
  poolKey.addEventListener("change", onKey);
  model.addEventListener("input", onModel);
  upstream.addEventListener("input", onModel);
  kind.addEventListener("change", onKind);
  pf.mode.addEventListener("change", onMode);

  const form = h("form", { class: "grid-form listing-form", "data-form": "create-listing" },
    field("Pool key", poolKey),
    field("Kind", kind),
    h("label", { class: "field" }, h("span", { class: "label" }, "Model (market name)"), model, modelList,
      h("small", { class: "muted" }, "What buyers request, e.g. deepseek/deepseek-chat. Suggestions: your provider's models and the market's.")),
    h("label", { class: "field" }, h("span", { class: "label" }, "Upstream model"), upstream, upstreamHelp),
    field("Pricing", pf.mode),
    unitBox,
    pricesHelp,
    field("Input price (USD /1M)", h("input", { name: "input_price_per_mtok", inputmode: "decimal", placeholder: "0.40" })),
    field("Output price (USD /1M tokens)", h("input", { name: "output_price_per_mtok", inputmode: "decimal", placeholder: "1.20" })),
    field("Cached input price (USD /1M tokens)", h("input", { name: "cached_input_price_per_mtok", inputmode: "decimal", placeholder: "the input price" }), "Optional; not above the input price."),
    pf.multiplierBox,
    pf.followBox,
    field("Payout floor (USD /1M, after fee)", h("input", { name: "payout_floor_per_mtok", inputmode: "decimal", placeholder: "none" }), "Below it the listing is not routed."),
    field("Requests per minute cap", h("input", { name: "rpm_cap", inputmode: "numeric", placeholder: "no cap" })),
    field("Concurrency cap", h("input", { name: "concurrency_cap", inputmode: "numeric", placeholder: "no cap" }), "Requests in flight at once. Over a cap, buyers go to the next listing."),
    field("Context length (tokens)", h("input", { name: "context_length", inputmode: "numeric", placeholder: "not stated" }), "Shown to buyers; not enforced."),
    h("p", { class: "muted rule" }, RULE_PROBE),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create listing")),
    status);
  onKey();
  onMode();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const v = fields(form);
    const body = { pool_key_id: v.pool_key_id, model: v.model, kind: v.kind };
    const hit = known.get(v.model);
    if (v.upstream_model) body.upstream_model = v.upstream_model;
    else if (hit && hit.upstream && hit.upstream !== defaultUpstream(v.model)) body.upstream_model = hit.upstream;
    for (const name of ["input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok", "payout_floor_per_mtok"]) {
      if (v[name] !== "") body[name] = v[name];
    }
    if (v.pricing_mode === "multiplier") body.price_multiplier = v.price_multiplier;
    if (v.pricing_mode === "auto_follow") body.auto_follow = followBody(v);
    for (const name of ["rpm_cap", "concurrency_cap", "context_length"]) if (v[name] !== "") body[name] = whole(v[name]);
    if (v.kind === "speech" && v.price_unit && v.price_unit !== "token") body.price_unit = v.price_unit;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const made = await api("POST", "v1/market/listings", body);
      form.reset();
      onKey();
      onMode();
      pf.show();
      status.replaceChildren(h("div", { class: "ok-box", "data-testid": "listing-created" },
        "Listing ", h("strong", {}, made.model), " created. It starts pending until its admission probe passes: its status above follows it. ",
        h("a", { href: "#/listings/" + encodeURIComponent(made.id) }, "Open it"), "."));
      await created(made);
    } catch (err) {
      status.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

async function renderList(root) {
  const listBox = h("div", { "data-testid": "listings" }, h("p", { class: "muted" }, "Loading\u2026"));
  const formBox = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));
  const pollNote = h("span", { class: "muted poll-note", role: "status" });
  const state = { alive: true, timer: null, polls: 0, keys: [] };

  const schedule = (pending) => {
    clearTimeout(state.timer);
    if (!state.alive) return;
    if (!pending) { pollNote.textContent = ""; state.polls = 0; return; }
    if (state.polls >= POLL_LIMIT) { pollNote.textContent = "A probe is still running: press Refresh to look again."; return; }
    pollNote.textContent = "Waiting for the admission probe\u2026";
    state.timer = setTimeout(() => {
      state.polls += 1;
      // An open edit form is the seller's: do not redraw under it.
      if (listBox.querySelector("tr.edit-row:not([hidden])")) schedule(true);
      else load();
    }, POLL_MS);
  };

  const load = async () => {
    let listings;
    try {
      listings = (await api("GET", "v1/market/listings")).data;
    } catch (err) {
      listBox.replaceChildren(errorBox(err, load));
      return;
    }
    // A pending listing's probe failure is its contract's reason.
    const contracts = new Map();
    await Promise.all(listings.filter((l) => l.status === "pending" || (l.contract_status !== "active" && l.contract_status !== "pending"))
      .map(async (l) => {
        try {
          const out = await api("GET", "v1/market/listings/" + encodeURIComponent(l.id) + "/contracts");
          if (out.data.length) contracts.set(l.id, out.data[0]); // newest first
        } catch (err) { /* the row says what it can without it */ }
      }));
    if (!state.alive) return;
    listBox.replaceChildren(drawList(listings, contracts));
    schedule(listings.some((l) => l.status === "pending" && !(contracts.get(l.id) || {}).reason));
  };

  const drawList = (listings, contracts) => {
    if (!listings.length) return h("p", { class: "muted" }, "No listings yet: create one below.");
    const keys = new Map(state.keys.map((k) => [k.id, k]));
    const rows = [];
    for (const listing of listings) {
      const editRow = h("tr", { class: "edit-row", hidden: true }, h("td", { colspan: 6 }));
      const toggle = () => {
        editRow.hidden = !editRow.hidden;
        if (!editRow.hidden) editRow.firstChild.replaceChildren(editForm(listing, () => load(), () => { editRow.hidden = true; }));
      };
      const key = keys.get(listing.pool_key_id);
      rows.push(h("tr", { "data-listing-id": listing.id, "data-status": listing.status },
        td("Model",
          h("a", { href: "#/listings/" + encodeURIComponent(listing.id), class: "model" }, listing.model),
          h("small", { class: "muted block" }, listing.kind + " \u00b7 upstream " + listing.upstream_model + " \u00b7 "
            + (key ? key.name || key.provider : state.keysLoaded ? "deleted pool key" : listing.provider))),
        td("Prices",
          h("span", { class: "nowrap" }, "in " + price(listing.input_price_per_mtok)),
          " ", h("span", { class: "nowrap" }, "out " + price(listing.output_price_per_mtok)),
          listing.cached_input_price_per_mtok !== null ? [" ", h("span", { class: "nowrap" }, "cached " + price(listing.cached_input_price_per_mtok))] : null,
          h("small", { class: "muted block" }, "USD " + per(listing))),
        td("Pricing", pricingSummary(listing)),
        td("Caps", capsSummary(listing)),
        td("Status", { "data-testid": "listing-status" },
          badge(STATUS, listing.status), " ", badge(CONTRACT, listing.contract_status, "contract "),
          statusNote(listing, contracts.get(listing.id))),
        td("", listingActions(listing, { onEdit: toggle, done: load, gone: load, details: true }))));
      rows.push(editRow);
    }
    return table(["Model", "Prices", "Pricing", "Caps", "Status", ""], rows, { class: "seller listings" });
  };

  const loadForm = async () => {
    try {
      const [keys, providers, health] = await Promise.all([
        api("GET", "v1/pool/keys"),
        api("GET", "v1/pool/providers"),
        api("GET", "v1/market/health").catch(() => ({ data: [] })), // suggestions only
      ]);
      state.keys = keys.data;
      state.keysLoaded = true;
      if (!keys.data.length) {
        formBox.replaceChildren(h("p", {}, "A listing sells through one of your pool keys, and you have none yet. ",
          h("a", { href: "#/pool" }, "Add a pool key"), " first."));
        return;
      }
      const models = [...new Set(health.data.map((m) => m.model))].sort();
      formBox.replaceChildren(createForm(keys.data, providers.data, models, async (made) => {
        state.polls = 0;
        await load();
        const row = listBox.querySelector('tr[data-listing-id="' + made.id + '"]');
        if (row) row.scrollIntoView({ block: "nearest" });
      }));
    } catch (err) {
      formBox.replaceChildren(errorBox(err, loadForm));
    }
  };

  root.append(
    h("h1", {}, "Listings"),
    h("p", { class: "muted lead" }, "A listing offers a model at your price through one of your ",
      h("a", { href: "#/pool" }, "pool keys"), ". It is routed to buyers when it is active and its contract is active or degraded."),
    h("details", { class: "card rules" }, h("summary", {}, "How probes, price review and market pricing work"),
      h("ul", {}, [RULE_PROBE, RULE_REVIEW, RULE_MULTIPLIER, RULE_FOLLOW, RULE_FLOOR,
        "Contract: the terms you sell under. Failed buyer calls degrade it (ranked lower), more suspend it (not routed); "
        + "Dragonfly re-probes it, or you reverify / unsuspend it on the listing's page once the upstream is fixed."].map((t) => h("li", {}, t)))),
    h("section", { class: "card" },
      h("div", { class: "section-head" }, h("h2", {}, "Your listings"), pollNote,
        h("button", { type: "button", class: "small secondary", "data-action": "refresh", onclick: () => { state.polls = 0; load(); } }, "Refresh")),
      listBox),
    section("Create a listing", formBox),
  );
  await loadForm();
  await load();
  return () => { state.alive = false; clearTimeout(state.timer); };
}

// ---- one listing ---------------------------------------------------------------------------------

function dl(pairs) {
  return h("dl", { class: "receipt listing-fields" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

const CHECKS_SHOWN = 21;

function checksTable(checks, all) {
  if (!checks.length) return h("p", { class: "muted" }, "No checks yet.");
  if (!all && checks.length > CHECKS_SHOWN) {
    const box = h("div");
    const more = h("button", { type: "button", class: "small secondary" }, "Show all " + checks.length + " checks");
    more.addEventListener("click", () => box.replaceWith(checksTable(checks, true)));
    box.append(checksTable(checks.slice(0, CHECKS_SHOWN), true),
      h("p", { class: "muted" }, "The newest " + CHECKS_SHOWN + " of " + checks.length + ". ", more));
    return box;
  }
  return table(["When", "Check", "Result", "Detail"], checks.map((c) => h("tr", { "data-passed": String(Boolean(c.passed)) },
    td("When", when(c.at)),
    td("Check", h("code", {}, c.kind)),
    td("Result", c.passed ? h("span", { class: "badge ok" }, "passed") : h("span", { class: "badge bad" }, "failed")),
    td("Detail", { class: "detail" }, c.detail || ""))), { class: "seller checks", "data-testid": "contract-checks" });
}

function probeTable(runs) {
  if (!runs.length) return h("p", { class: "muted" }, "No probe has run yet.");
  return table(["Started", "Result", ["TTFT", "num"], ["Latency", "num"], "Checks"], runs.map((run) => {
    const checks = run.checks || [];
    const failed = checks.find((c) => !c.passed);
    return h("tr", { "data-passed": String(run.passed) },
      td("Started", when(run.started_at)),
      td("Result", run.passed ? h("span", { class: "badge ok" }, "passed") : h("span", { class: "badge bad" }, "failed"),
        failed ? h("small", { class: "block fail" }, failed.kind + ": " + failed.detail) : null),
      td("TTFT", { class: "num" }, run.ttft_ms === null ? "\u2014" : run.ttft_ms + " ms"),
      td("Latency", { class: "num" }, run.latency_ms === null ? "\u2014" : run.latency_ms + " ms"),
      td("Checks", h("details", {},
        h("summary", {}, checks.filter((c) => c.passed).length + " of " + checks.length + " passed"),
        h("ul", { class: "check-list" }, checks.map((c) => h("li", { class: c.passed ? "pass" : "fail" },
          c.passed ? "\u2713 " : "\u2717 ", h("code", {}, c.kind), " ", c.detail || ""))))));
  }), { class: "seller probes", "data-testid": "probe-runs" });
}

function historyTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No price changes yet.");
  const was = (a, b) => (a === null && b === null ? "\u2014" : price(a) + " / " + price(b));
  return table(["When", "Source", "Input / output", "Cached", "Before", "Detail"], rows.map((r) => h("tr", {},
    td("When", when(r.at)),
    td("Source", r.source.replace("_", "-")),
    td("Input / output", price(r.input_price_per_mtok) + " / " + price(r.output_price_per_mtok)),
    td("Cached", price(r.cached_input_price_per_mtok)),
    td("Before", was(r.previous_input_price_per_mtok, r.previous_output_price_per_mtok)),
    td("Detail", { class: "detail" }, r.detail || ""))), { class: "seller history", "data-testid": "price-history" });
}

async function renderDetail(root, ctx, id) {
  const path = "v1/market/listings/" + encodeURIComponent(id);
  const heading = h("h1", {}, "Listing");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));
  const state = { alive: true, timer: null, polls: 0, editing: false };
  root.append(h("p", { class: "crumb" }, h("a", { href: "#/listings" }, "\u2190 All listings")), heading, body);

  const settle = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));

  const load = async () => {
    let listing;
    try {
      listing = await api("GET", path);
    } catch (err) {
      if (!state.alive) return;
      if (err.status === 404) {
        heading.textContent = "Listing not found";
        body.replaceChildren(h("div", { class: "error", role: "alert", "data-testid": "not-found" },
          h("strong", {}, "No listing of yours has this id."), " It was deleted, or it belongs to another account. ",
          h("a", { href: "#/listings" }, "Back to your listings"), "."));
      } else {
        body.replaceChildren(errorBox(err, load));
      }
      return;
    }
    const [contracts, runs, history, keys] = await Promise.all([
      settle(api("GET", path + "/contracts")),
      settle(api("GET", path + "/probe-runs")),
      settle(api("GET", path + "/price-history")),
      settle(api("GET", "v1/pool/keys")),
    ]);
    const checks = new Map();
    if (contracts.value) {
      await Promise.all(contracts.value.data.map(async (c) => {
        checks.set(c.id, await settle(api("GET", "v1/market/contracts/" + encodeURIComponent(c.id) + "/checks")));
      }));
    }
    if (!state.alive) return;
    draw(listing, contracts, runs, history, keys, checks);
    const contract = contracts.value && contracts.value.data.length ? contracts.value.data[0] : null; // newest first
    schedule(listing.status === "pending" && !(contract && contract.reason));
  };

  const schedule = (pending) => {
    clearTimeout(state.timer);
    if (!state.alive || !pending || state.polls >= POLL_LIMIT) return;
    state.timer = setTimeout(() => {
      state.polls += 1;
      if (state.editing) schedule(true);
      else load();
    }, POLL_MS);
  };

  const draw = (listing, contracts, runs, history, keys, checks) => {
    heading.textContent = listing.model;
    const key = keys.value ? keys.value.data.find((k) => k.id === listing.pool_key_id) : null;
    const contractList = contracts.value ? contracts.value.data : [];
    const current = contractList.length ? contractList[0] : null;
    const editBox = h("div", { class: "edit-box", hidden: true });
    const toggle = () => {
      editBox.hidden = !editBox.hidden;
      state.editing = !editBox.hidden;
      if (!editBox.hidden) editBox.replaceChildren(editForm(listing, () => { state.editing = false; return load(); }, () => { editBox.hidden = true; state.editing = false; }));
    };
    const p = listing.pricing || {};
    const health = listing.health;
    const fieldsCard = h("section", { class: "card", "data-testid": "listing", "data-listing-id": listing.id, "data-status": listing.status },
      h("h2", {}, "Listing"),
      h("div", { class: "status-line", "data-testid": "listing-status" },
        badge(STATUS, listing.status), " ", badge(CONTRACT, listing.contract_status, "contract "),
        h("span", { class: "muted" }, " ", (STATUS[listing.status] || ["", ""])[1]),
        statusNote(listing, current)),
      dl([
        ["Model", h("span", {}, listing.model, h("span", { class: "muted" }, " \u2192 upstream "), h("code", {}, listing.upstream_model))],
        ["Kind", listing.kind],
        ["Pool key", key ? poolKeyLabel(key) : h("span", { class: "fail" }, "deleted: this listing cannot be routed; delete it")],
        ["Prices", "input " + price(listing.input_price_per_mtok) + ", output " + price(listing.output_price_per_mtok)
          + (listing.cached_input_price_per_mtok !== null ? ", cached input " + price(listing.cached_input_price_per_mtok) : "") + " (USD " + per(listing) + ")"],
        ["Last confirmed", "input " + price(listing.confirmed_input_price_per_mtok) + ", output " + price(listing.confirmed_output_price_per_mtok)],
        ["Pricing", pricingSummary(listing) + (p.reference_missing ? "; no reference price yet" : "")],
        ["Lowest payout", price(p.lowest_payout_per_mtok) + " per 1M after the platform fee"],
        p.excluded ? ["Routing", h("span", { class: "fail" }, EXCLUDED[p.excluded] || p.excluded)] : null,
        ["Caps", capsSummary(listing)],
        ["Context length", listing.context_length === null ? "not stated" : int(listing.context_length) + " tokens"],
        ["Tokenizer", listing.encoding || "derived from the upstream model"],
        health ? ["Health (1 h)", h("span", {}, health.status,
          h("span", { class: "muted" }, " \u00b7 " + int(health.trades) + " calls"
            + (health.success_rate !== null ? ", " + Math.round(health.success_rate * 1000) / 10 + " % ok" : "")
            + (health.median_ttft_ms !== null ? ", median TTFT " + health.median_ttft_ms + " ms" : "")))] : null,
        ["Created", when(listing.created_at)],
        ["Updated", when(listing.updated_at)],
        ["Id", h("code", { class: "ref" }, listing.id)],
      ]),
      listingActions(listing, { onEdit: toggle, done: load, gone: async () => ctx.go("listings") }),
      editBox);

    const contractCard = h("section", { class: "card", "data-testid": "contracts" }, h("h2", {}, "Contract"),
      h("p", { class: "muted" }, "The terms you sell under and their admission state. Failed buyer calls degrade it (still routed, ranked lower); "
        + "more failures suspend it (not routed). Dragonfly re-probes it by itself; once your upstream is fixed you can ask now."),
      contracts.error ? errorBox(contracts.error, load)
        : !contractList.length ? h("p", { class: "muted" }, "No contract yet.")
          : contractList.map((c) => contractBlock(c, listing, checks.get(c.id))));

    const probeCard = h("section", { class: "card" }, h("h2", {}, "Admission probes"),
      h("p", { class: "muted" }, RULE_PROBE, " The last 50 runs, newest first."),
      runs.error ? errorBox(runs.error, load) : probeTable(runs.value.data));

    const historyCard = h("section", { class: "card" }, h("h2", {}, "Price history"),
      h("p", { class: "muted" }, "Every price the listing has had, newest first: set by you, or moved by the multiplier or auto-follow."),
      history.error ? errorBox(history.error, load) : historyTable(history.value.data));

    body.replaceChildren(fieldsCard, contractCard, probeCard, historyCard);
  };

  const contractBlock = (c, listing, checks) => {
    const actions = [];
    const recover = (verb, label) => actionButton(label, async () => {
      try {
        const out = await api("POST", "v1/market/contracts/" + encodeURIComponent(c.id) + "/" + verb);
        const ok = verb === "reverify" ? out.reverified : out.unsuspended;
        notify(ok ? "Checks passed: the contract is " + out.contract.status + "." : "Checks failed: " + (out.reason || "see the probe runs") + ".", ok ? "ok" : "bad");
      } catch (err) {
        notify(err.message, "bad");
      }
      await load();
    }, { "data-action": verb });
    if (c.status === "degraded") actions.push(recover("reverify", "Reverify"));
    if (c.status === "suspended" && listing.status !== "suspended") actions.push(recover("unsuspend", "Unsuspend"));
    const terms = c.terms || {};
    const prices = terms.prices || {};
    const caps = terms.caps || {};
    return h("div", { class: "contract", "data-contract-id": c.id, "data-status": c.status },
      h("div", { class: "status-line" }, badge(CONTRACT, c.status), " ",
        h("span", { class: "muted" }, (CONTRACT[c.status] || ["", ""])[1] + ", since " + when(c.since))),
      c.reason ? h("p", { class: "fail", "data-testid": "contract-reason" }, "Reason: " + c.reason) : null,
      dl([
        ["Terms", (terms.model || listing.model) + ": input " + price(prices.input_per_mtok) + ", output " + price(prices.output_per_mtok)
          + (prices.cached_input_per_mtok ? ", cached " + price(prices.cached_input_per_mtok) : "")],
        ["Caps", (caps.rpm ? int(caps.rpm) + " rpm" : "no rpm cap") + ", " + (caps.concurrency ? int(caps.concurrency) + " at once" : "no concurrency cap")],
      ]),
      actions.length ? h("div", { class: "actions" }, actions) : null,
      h("h3", {}, "Check history"),
      !checks ? null : checks.error ? errorBox(checks.error, load) : checksTable(checks.value.data));
  };

  await load();
  return () => { state.alive = false; clearTimeout(state.timer); };
}

export async function render(root, ctx) {
  const [id] = ctx.subpath();
  return id ? renderDetail(root, ctx, id) : renderList(root);
}
