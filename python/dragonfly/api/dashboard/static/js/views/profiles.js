// Routing profiles: which listings may serve a key's requests and in what order they are tried. List them
// (strategy, rules, fallback, the account default, how many keys use each), create, edit inline and
// delete (twice, keys move to the default). The form explains each strategy, shows what custom weights do
// as shares of the score, and says what filters, ceilings, targets, fallback and hedging act on.
// `/api/routing/profiles`, `/api/keys` (the count per profile) and `/v1/pool/providers` (known provider
// ids, to flag a misspelt one) only.

import { api } from "../api.js";
import { confirmButton, errorBox, field, h, notify, section, table } from "../dom.js";

export const title = "Routing profiles";

const FEATURES = ["price", "latency", "throughput", "reliability", "quality"];
const FEATURE_LABEL = {
  price: "Price",
  latency: "Latency",
  throughput: "Throughput",
  reliability: "Reliability",
  quality: "Quality",
};
const FEATURE_HELP = {
  price: "the cheapest listing's blended price \u00f7 this one's (3 parts input to 1 part output)",
  latency: "time to first token: the fastest listing's \u00f7 this one's",
  throughput: "this listing's tokens per second \u00f7 the best",
  reliability: "its recent success rate, lowered for 30 s after a failure",
  quality: "the share of admission-probe checks it passed, blended with its live success rate",
};

// The documented defaults (docs/buyer.md 5.2); the operator may tune the four built-in strategies.
const STRATEGIES = {
  cost_first: {
    label: "Cost first",
    favours: "The cheapest listings first, with reliability as the main tie-breaker.",
    weights: { price: 0.7, latency: 0.05, throughput: 0.05, reliability: 0.2, quality: 0 },
  },
  balanced: {
    label: "Balanced",
    favours: "A mix of price, reliability and speed; what every key uses unless told otherwise.",
    weights: { price: 0.3, latency: 0.2, throughput: 0.15, reliability: 0.25, quality: 0.1 },
  },
  reliability_first: {
    label: "Reliability first",
    favours: "Listings that answer without failing, then price and speed.",
    weights: { price: 0.15, latency: 0.15, throughput: 0.1, reliability: 0.5, quality: 0.1 },
  },
  quality_first: {
    label: "Quality first",
    favours: "Listings that pass their admission probes and answer well.",
    weights: { price: 0.15, latency: 0.1, throughput: 0.1, reliability: 0.2, quality: 0.45 },
  },
  custom: {
    label: "Custom",
    favours: "Your own weights for price, latency, throughput, reliability and quality.",
    weights: null,
  },
};

const RETRY_ON = [
  ["429", "429", "the seller answered 429 (rate limited)"],
  ["5xx", "5xx", "the seller answered 500 or above, or another status that is its fault (401, 403, 404)"],
  ["timeout", "timeout", "no connection within 5 s, nothing sent for 60 s, or not finished after 600 s"],
  ["connect_error", "connect error", "the seller could not be reached"],
];
const DEFAULT_FALLBACK = { enabled: true, max_attempts: 3, retry_on: [429, "5xx", "timeout", "connect_error"] };

/** Provider or seller ids typed one per line or separated by commas. */
function idList(text) {
  return String(text || "").split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}

/** A number typed in a field as the API wants it: a number when it is one, else the text as typed (the
 * server then says what is wrong with it); undefined when empty. */
function numberOrText(text) {
  const value = String(text || "").trim();
  if (value === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : value;
}

function percent(share) {
  if (share <= 0) return "0 %";
  const p = share * 100;
  return p < 1 ? "<1 %" : Math.round(p) + " %";
}

function strategyName(strategy) {
  return STRATEGIES[strategy] ? STRATEGIES[strategy].label : strategy;
}

/** Weights scaled to sum to 1 (what the router does), or null when they are all zero. */
function shares(weights) {
  const values = FEATURES.map((f) => Math.max(0, Number(weights[f]) || 0));
  const sum = values.reduce((a, b) => a + b, 0);
  if (!(sum > 0)) return null;
  return Object.fromEntries(FEATURES.map((f, i) => [f, values[i] / sum]));
}

/** The effect of a set of weights in words and bars: "price counts 50 % of the score". */
function explainWeights(weights, custom) {
  const split = shares(weights);
  if (!split) {
    return h("p", { class: "profile-warn", "data-testid": "weights-sentence" },
      "Give at least one weight above 0: a set that is all zero cannot rank listings (the API refuses it).");
  }
  const used = FEATURES.filter((f) => split[f] > 0).sort((a, b) => split[b] - split[a]);
  const ignored = FEATURES.filter((f) => split[f] === 0);
  let sentence;
  if (used.length === 1) {
    sentence = "Listings are ranked by " + used[0] + " alone.";
  } else {
    sentence = used.map((f, i) => (i === 0 ? f[0].toUpperCase() + f.slice(1) + " counts " + percent(split[f]) + " of the score"
      : f + " " + percent(split[f]))).join(", ") + ".";
  }
  if (ignored.length) {
    const list = ignored.join(" and ");
    sentence += " " + list[0].toUpperCase() + list.slice(1) + (ignored.length === 1 ? " is" : " are") + " ignored.";
  }
  const rows = FEATURES.map((f) => {
    const fill = h("span", { class: "share-fill" });
    fill.style.width = (split[f] * 100).toFixed(1) + "%"; // CSSOM, allowed by the page's policy
    return h("li", { class: "share-row", "data-feature": f, "data-share": (split[f] * 100).toFixed(1) },
      h("span", { class: "share-name", title: FEATURE_HELP[f] }, f),
      h("span", { class: "share-track", "aria-hidden": "true" }, fill),
      h("span", { class: "share-pct" }, percent(split[f])));
  });
  return h("div", {},
    h("p", { "data-testid": "weights-sentence" }, sentence),
    h("ul", { class: "shares", "aria-label": "Share of the score per feature" }, rows),
    h("p", { class: "muted small" }, custom
      ? "Weights are relative: 5, 3, 2 acts the same as 50, 30, 20. A weight left empty is 0."
      : "The documented defaults for this strategy; the market's operator may tune them for everyone."));
}

/** One line that summarises a profile's filters, ceilings and targets. */
function rulesOf(p) {
  const out = [];
  if (p.providers_allow) out.push("only " + (p.providers_allow.length ? p.providers_allow.join(", ") : "no provider"));
  if (p.providers_deny.length) out.push("not " + p.providers_deny.join(", "));
  if (p.sellers_deny.length) out.push(p.sellers_deny.length + " seller" + (p.sellers_deny.length === 1 ? "" : "s") + " denied");
  if (p.max_input_price_per_mtok !== null) out.push("input \u2264 $" + p.max_input_price_per_mtok + "/M");
  if (p.max_output_price_per_mtok !== null) out.push("output \u2264 $" + p.max_output_price_per_mtok + "/M");
  if (p.max_ttft_ms !== null) out.push("TTFT \u2264 " + p.max_ttft_ms + " ms");
  if (p.min_throughput_tps !== null) out.push("\u2265 " + p.min_throughput_tps + " tokens/s");
  return out;
}

function fallbackOf(p) {
  const f = p.fallback;
  if (!f.enabled) return "off: one attempt";
  const on = f.retry_on.length ? "on " + f.retry_on.join(", ") : "on nothing";
  return "up to " + f.max_attempts + " attempt" + (f.max_attempts === 1 ? "" : "s") + ", retry " + on;
}

function hedgeOf(p) {
  return p.hedge && p.hedge.enabled ? "after " + p.hedge.after_ms + " ms" : "off";
}

/** The profile form, for a new profile (`profile` null) or an existing one. `known` holds the provider
 * ids the market knows (empty when they could not be read: then nothing is flagged). */
function profileForm(profile, known, { onSaved, onCancel }) {
  const editing = Boolean(profile);
  const p = profile || {};
  const fallback = p.fallback || DEFAULT_FALLBACK;
  const hedge = p.hedge || { enabled: false, after_ms: null };
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const val = (x) => (x === null || x === undefined ? "" : String(x));

  // Strategy and weights.
  const strategy = h("select", { name: "strategy" },
    Object.entries(STRATEGIES).map(([value, s]) => h("option", { value, selected: value === (p.strategy || "balanced") },
      s.label + " (" + value + ")")));
  const favours = h("small", { class: "muted", "data-testid": "strategy-help" });
  const weightInputs = Object.fromEntries(FEATURES.map((f) => [f, h("input", {
    name: "w_" + f, type: "number", min: "0", max: "1000", step: "any", inputmode: "decimal", placeholder: "0",
    value: p.weights && p.weights[f] ? String(p.weights[f]) : "",
  })]));
  const weightsBox = h("fieldset", { class: "profile-group weights", "data-part": "weights" },
    h("legend", {}, "Custom weights"),
    h("p", { class: "muted small" }, "Each listing of the model gets a value from 0 to 1 per feature, relative to the other listings of the same model; its score is the weighted sum, and listings are tried from the highest score down."),
    h("div", { class: "weight-inputs" }, FEATURES.map((f) => field(FEATURE_LABEL[f], weightInputs[f], FEATURE_HELP[f] + "."))));
  const explain = h("div", { class: "weights-explain", "data-testid": "weights-explain", "aria-live": "polite" });
  let lastStrategy = strategy.value;

  // Filters.
  const allow = h("textarea", { name: "providers_allow", rows: 2, placeholder: "any provider" }, (p.providers_allow || []).join("\n"));
  const deny = h("textarea", { name: "providers_deny", rows: 2 }, (p.providers_deny || []).join("\n"));
  const sellers = h("textarea", { name: "sellers_deny", rows: 2 }, (p.sellers_deny || []).join("\n"));
  const allowWarn = h("small", { class: "profile-warn", hidden: true });
  const denyWarn = h("small", { class: "profile-warn", hidden: true });
  const knownHint = known.length ? "Provider ids this market knows: " + known.join(", ") + "." : "Provider ids such as openai, deepseek, custom.";

  // Ceilings and targets.
  const maxIn = h("input", { name: "max_input_price_per_mtok", inputmode: "decimal", placeholder: "no ceiling", value: val(p.max_input_price_per_mtok) });
  const maxOut = h("input", { name: "max_output_price_per_mtok", inputmode: "decimal", placeholder: "no ceiling", value: val(p.max_output_price_per_mtok) });
  const ttft = h("input", { name: "max_ttft_ms", type: "number", min: "1", max: "600000", step: "1", placeholder: "no target", value: val(p.max_ttft_ms) });
  const tps = h("input", { name: "min_throughput_tps", type: "number", min: "0", step: "any", placeholder: "no target", value: val(p.min_throughput_tps) });

  // Fallback and hedging.
  const fbEnabled = h("input", { type: "checkbox", name: "fallback_enabled", checked: fallback.enabled });
  const attempts = h("input", { name: "max_attempts", type: "number", min: "1", max: "5", step: "1", value: String(fallback.max_attempts) });
  const retryBoxes = RETRY_ON.map(([value, label, help]) => h("label", { class: "check retry", title: help },
    h("input", { type: "checkbox", name: "retry_on", value, checked: fallback.retry_on.map(String).includes(value) }),
    " ", h("span", {}, label, h("small", { class: "muted" }, ": " + help))));
  const hedgeEnabled = h("input", { type: "checkbox", name: "hedge_enabled", checked: hedge.enabled });
  const afterMs = h("input", { name: "after_ms", type: "number", min: "10", max: "600000", step: "1", placeholder: "300", value: val(hedge.after_ms) });
  const fallbackNote = h("small", { class: "profile-warn", hidden: true }, "With fallback off there is one attempt only, so the profile never hedges.");

  const name = h("input", { name: "name", maxlength: "128", value: p.name || "", placeholder: "cheap", autocomplete: "off" });
  const saveLabel = editing ? "Save" : "Create profile";
  const form = h("form", { class: "profile-form", "data-form": editing ? "edit-profile" : "create-profile", novalidate: true },
    h("div", { class: "grid-form" },
      field("Name", name),
      field("Strategy", strategy, favours)),
    explain,
    weightsBox,
    h("fieldset", { class: "profile-group" },
      h("legend", {}, "Filters"),
      h("p", { class: "muted small" }, "Filters exclude listings outright. Separate ids with commas or new lines."),
      h("div", { class: "grid-form" },
        field("Only these providers", allow, "Empty: every provider. " + knownHint),
        field("Never these providers", deny, "Listings of these providers are excluded."),
        field("Never these sellers", sellers, "Seller account ids (seller_id on a receipt).")),
      allowWarn, denyWarn),
    h("fieldset", { class: "profile-group" },
      h("legend", {}, "Price ceilings"),
      h("p", { class: "muted small" }, "USD per 1M tokens. A listing priced above a ceiling is excluded, never just ranked lower: if no listing of the model is left, requests answer 503 no_listing_matches_profile."),
      h("div", { class: "grid-form" },
        field("Max input price", maxIn, "For example 0.50. Empty: no ceiling."),
        field("Max output price", maxOut, "For example 2.00. Empty: no ceiling."))),
    h("fieldset", { class: "profile-group" },
      h("legend", {}, "Speed targets"),
      h("p", { class: "muted small" }, "A listing that misses a target is excluded once it has at least 5 measurements; with fewer it is only deprioritised (its score is halved). An excluded listing gets no traffic from this profile to recover, so leave some margin."),
      h("div", { class: "grid-form" },
        field("Max time to first token (ms)", ttft, "Its average time to first token must be at most this."),
        field("Min throughput (tokens/s)", tps, "Its average tokens per second must be at least this."))),
    h("fieldset", { class: "profile-group" },
      h("legend", {}, "Fallback"),
      h("label", { class: "check" }, fbEnabled, " Try the next listing when one fails"),
      h("p", { class: "muted small" }, "A failed attempt costs nothing: only the listing that answers is billed. A bad request (the seller's 400, 413 or 422) is never retried."),
      h("div", { class: "grid-form" },
        field("Max attempts (1 to 5)", attempts, "At most this many listings per request. Listings skipped for their rate or concurrency caps do not count."),
        h("div", { class: "field" }, h("span", { class: "label" }, "Retry on"), h("div", { class: "retry-list" }, retryBoxes))),
      fallbackNote),
    h("fieldset", { class: "profile-group" },
      h("legend", {}, "Hedging"),
      h("label", { class: "check" }, hedgeEnabled, " Start the next listing beside a slow one"),
      h("p", { class: "muted small" }, "When the listing tried has sent nothing after this delay, the next one is started beside it; the first to answer serves you and the other is cancelled. You are billed once. A hedge counts as an attempt."),
      h("div", { class: "grid-form" }, field("After (ms, 10 to 600000)", afterMs))),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, saveLabel),
      editing ? h("button", { type: "button", class: "secondary", onclick: onCancel }, "Cancel") : null),
    status);

  const unknown = (list) => (known.length ? list.filter((x) => !known.includes(x)) : []);
  const update = () => {
    const s = STRATEGIES[strategy.value];
    favours.textContent = s.favours;
    const custom = strategy.value === "custom";
    weightsBox.hidden = !custom;
    if (custom) {
      const typed = Object.fromEntries(FEATURES.map((f) => [f, weightInputs[f].value]));
      explain.replaceChildren(explainWeights(typed, true));
    } else {
      explain.replaceChildren(explainWeights(s.weights, false));
    }
    const badAllow = unknown(idList(allow.value));
    allowWarn.hidden = !badAllow.length;
    allowWarn.textContent = "Not a provider this market knows: " + badAllow.join(", ") + ". No listing has it, so it allows nothing.";
    const badDeny = unknown(idList(deny.value));
    denyWarn.hidden = !badDeny.length;
    denyWarn.textContent = "Not a provider this market knows: " + badDeny.join(", ") + ". Denying it has no effect.";
    fallbackNote.hidden = fbEnabled.checked || !hedgeEnabled.checked;
    afterMs.disabled = !hedgeEnabled.checked;
  };
  strategy.addEventListener("change", () => {
    // Switching to custom with no weights typed: start from the strategy it was, as percentages.
    const empty = FEATURES.every((f) => weightInputs[f].value === "");
    if (strategy.value === "custom" && empty && STRATEGIES[lastStrategy] && STRATEGIES[lastStrategy].weights) {
      for (const f of FEATURES) weightInputs[f].value = String(Math.round(STRATEGIES[lastStrategy].weights[f] * 100));
    }
    lastStrategy = strategy.value;
  });
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();

  /** The body the API documents: on create empty optional fields are left out; on edit every field is
   * sent, with null (or an empty list) to clear it. */
  const body = () => {
    const out = { name: name.value.trim(), strategy: strategy.value };
    if (strategy.value === "custom") {
      const weights = {};
      for (const f of FEATURES) {
        const value = numberOrText(weightInputs[f].value);
        if (value !== undefined) weights[f] = value;
      }
      out.weights = weights;
    }
    const set = (key, value, empty) => {
      if (value !== undefined) out[key] = value;
      else if (editing) out[key] = empty;
    };
    const allowIds = idList(allow.value);
    set("providers_allow", allowIds.length ? allowIds : undefined, null);
    const denyIds = idList(deny.value);
    set("providers_deny", denyIds.length ? denyIds : undefined, []);
    const sellerIds = idList(sellers.value);
    set("sellers_deny", sellerIds.length ? sellerIds : undefined, []);
    set("max_input_price_per_mtok", maxIn.value.trim() || undefined, null);
    set("max_output_price_per_mtok", maxOut.value.trim() || undefined, null);
    set("max_ttft_ms", numberOrText(ttft.value), null);
    set("min_throughput_tps", numberOrText(tps.value), null);
    const retry = retryBoxes.map((l) => l.querySelector("input")).filter((x) => x.checked).map((x) => (x.value === "429" ? 429 : x.value));
    out.fallback = { enabled: fbEnabled.checked, max_attempts: numberOrText(attempts.value) ?? DEFAULT_FALLBACK.max_attempts, retry_on: retry };
    if (hedgeEnabled.checked) out.hedge = { enabled: true, after_ms: numberOrText(afterMs.value) ?? null };
    else if (editing) out.hedge = null; // back to the default: no hedging
    return out;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const saved = editing
        ? await api("PATCH", "api/routing/profiles/" + encodeURIComponent(profile.id), body())
        : await api("POST", "api/routing/profiles", body());
      await onSaved(saved);
    } catch (err) {
      status.replaceChildren(errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export async function render(root) {
  const listBox = h("div", { "data-testid": "profiles" }, h("p", { class: "muted" }, "Loading\u2026"));
  const listStatus = h("div", { class: "form-status", "data-testid": "profiles-status", "aria-live": "polite" });
  const createBox = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));
  let known = [];

  const load = async () => {
    try {
      const [profiles, keys] = await Promise.all([
        api("GET", "api/routing/profiles"),
        api("GET", "api/keys").catch(() => null), // the count per profile is a courtesy
      ]);
      listBox.replaceChildren(renderList(profiles.data, keys ? keys.data.filter((k) => !k.revoked) : null));
    } catch (err) {
      listBox.replaceChildren(errorBox(err, load));
    }
  };

  const renderList = (profiles, keys) => {
    const rows = [];
    for (const p of profiles) {
      const used = keys ? keys.filter((k) => k.routing_profile_id === p.id).length : null;
      const editRow = h("tr", { class: "edit-row", hidden: true }, h("td", { colspan: 7 }));
      const closeEdit = () => { editRow.hidden = true; editRow.firstChild.replaceChildren(); };
      const edit = h("button", { type: "button", class: "small", onclick: () => {
        if (!editRow.hidden) { closeEdit(); return; }
        editRow.firstChild.replaceChildren(
          h("h3", {}, "Edit \u201c" + p.name + "\u201d"),
          profileForm(p, known, {
            onSaved: async (saved) => {
              notify("Profile \u201c" + saved.name + "\u201d saved: it acts on the next request.");
              await load();
            },
            onCancel: closeEdit,
          }));
        editRow.hidden = false;
        editRow.scrollIntoView({ block: "nearest" });
      } }, "Edit");
      const moving = used ? "Confirm: " + used + " key" + (used === 1 ? " moves" : "s move") + " to the default" : "Confirm delete";
      const remove = p.is_default
        ? h("span", { class: "muted small" }, "the default cannot be deleted")
        : confirmButton("Delete", moving, async () => {
          listStatus.replaceChildren();
          try {
            await api("DELETE", "api/routing/profiles/" + encodeURIComponent(p.id));
            notify("Profile \u201c" + p.name + "\u201d deleted" + (used ? "; its keys now use the default profile." : "."));
            await load();
          } catch (err) {
            listStatus.replaceChildren(errorBox(err));
          }
        });
      const rules = rulesOf(p);
      // One element per cell: on a phone the cell is a row of its label and this.
      const cell = (label, attrs, ...content) => h("td", { "data-label": label, ...attrs }, h("div", { class: "cell" }, ...content));
      rows.push(h("tr", { "data-profile-id": p.id, "data-name": p.name },
        cell("Name", {}, p.name, p.is_default ? h("span", { class: "badge ok", title: "Keys without a profile of their own use it" }, "default") : null),
        cell("Strategy", {}, strategyName(p.strategy), h("code", { class: "ref block" }, p.strategy),
          p.strategy === "custom" && p.weights ? h("small", { class: "muted block" }, weightsLine(p.weights)) : null),
        cell("Rules", {}, rules.length ? rules.join("; ") : h("span", { class: "muted" }, "none")),
        cell("Fallback", {}, fallbackOf(p)),
        cell("Hedging", {}, hedgeOf(p)),
        cell("Keys", { class: "num" }, used === null ? h("span", { class: "muted", title: "The keys could not be read" }, "?") : String(used)),
        cell("", {}, h("div", { class: "actions" }, edit, remove))));
      rows.push(editRow);
    }
    return table(["Name", "Strategy", "Rules", "Fallback", "Hedging", ["Keys", "num"], ""], rows, { class: "profiles" });
  };

  const weightsLine = (weights) => {
    const split = shares(weights);
    if (!split) return "";
    return FEATURES.filter((f) => split[f] > 0).sort((a, b) => split[b] - split[a]).map((f) => f + " " + percent(split[f])).join(", ");
  };

  const drawCreate = () => {
    createBox.replaceChildren(profileForm(null, known, {
      onSaved: async (saved) => {
        notify("Profile \u201c" + saved.name + "\u201d created. Bind it to a key on the Keys page.");
        drawCreate();
        await load();
      },
    }));
  };

  root.append(
    h("h1", {}, title),
    h("p", { class: "muted" }, "A routing profile decides which listings may serve a request and in what order they are tried. ",
      "Each API key uses one profile; a key without one of its own uses the account's default. Bind a profile to a key on the ",
      h("a", { href: "#/keys" }, "Keys"), " page."),
    section("Your profiles", listStatus, listBox),
    section("New profile", createBox),
  );
  const providers = api("GET", "v1/pool/providers").then((r) => r.data.map((x) => x.id)).catch(() => []);
  await load();
  known = await providers;
  if (known.length && !known.includes("custom")) known.push("custom");
  drawCreate();
}
