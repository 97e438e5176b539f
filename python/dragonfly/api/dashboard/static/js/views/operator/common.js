// What the operator's tabs share: ids shown short (and copied whole), two-step buttons, the routing
// vocabulary in words, a "load more" pager and a card-per-row table for phones.

import { copy, h, table } from "../../dom.js";

export { confirmButton } from "../../dom.js";

/** The five routing features, in the API's order, with what each one measures. */
export const FEATURES = [
  ["price", "Price", "The cheapest listing's price over this one's (1 = the cheapest of the model)."],
  ["latency", "Latency", "The fastest time to first token over this one's, from live traffic; without samples, the others' average (0.5 if none)."],
  ["throughput", "Throughput", "Tokens per second against the best listing's, from live traffic; without samples, the others' average (0.5 if none)."],
  ["reliability", "Reliability", "Recent success rate (a moving average), lowered for a while after a failure."],
  ["quality", "Quality", "Admission-probe checks passed, blended with live success, unless an operator set it."],
];

export const STRATEGIES = [
  ["cost_first", "Cost first"],
  ["balanced", "Balanced"],
  ["reliability_first", "Reliability first"],
  ["quality_first", "Quality first"],
];

const REASONS = {
  status_pending: "waiting for its admission probe",
  status_paused: "paused by its seller",
  status_price_review: "its price move waits for the seller's confirmation",
  status_suspended: "suspended by an operator",
  contract_suspended: "its contract is suspended by health checks",
  capacity_full: "at its concurrency cap",
  input_price_above_ceiling: "input price above the profile's ceiling",
  output_price_above_ceiling: "output price above the profile's ceiling",
  provider_not_allowed: "provider not in the profile's allow list",
  provider_denied: "provider denied by the profile",
  seller_denied: "seller denied by the profile",
  ttft_above_target: "time to first token above the profile's target",
  throughput_below_target: "throughput below the profile's target",
  payout_below_floor: "seller's payout after the fee is below its floor",
  reference_price_missing: "multiplier listing without a reference price",
  lower_score: "lower score",
  fallback: "ranked higher, but failed or was refused at admission (the trade's attempts show which)",
  not_used: "no listing served the request",
};

const PENALTIES = {
  contract_degraded: "degraded contract (score halved)",
  ttft_above_target_few_samples: "time to first token above target (few samples)",
  throughput_below_target_few_samples: "throughput below target (few samples)",
  recent_failure: "failed recently",
};

/** A ranking's reason code in words (unknown codes as they are). */
export function reason(code) {
  return REASONS[code] || String(code).replace(/_/g, " ");
}

export function penalty(code) {
  return PENALTIES[code] || String(code).replace(/_/g, " ");
}

/** The last suspend / unsuspend answer per listing id since the page loaded, with the server's time of
 * the change it reports ({answer, at}, ms): it wins over routing decisions older than that. */
export const listingActions = new Map();

/** Exclusions that no buyer profile can lift: the listing is out of the market. */
export const UNROUTABLE = new Set(["status_pending", "status_paused", "status_price_review", "status_suspended", "contract_suspended"]);

/** `01a245f7…7bf1`: enough to tell ids apart; the whole id is copied on click and shown on hover. */
export function shortId(id) {
  const text = String(id || "");
  return text.length > 14 ? text.slice(0, 8) + "\u2026" + text.slice(-4) : text;
}

export function idChip(id, what) {
  if (!id) return h("span", { class: "muted" }, "none");
  const button = h("button", {
    type: "button", class: "op-id", title: id + " (click to copy)", "aria-label": "Copy " + (what || "id") + " " + id, "data-id": id,
  }, shortId(id));
  button.addEventListener("click", () => copy(id, button));
  return button;
}

export function pct(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "\u2014";
  return (Number(value) * 100).toFixed(digits).replace(/\.0+$/, "") + " %";
}

export function ms(value) {
  if (value === null || value === undefined) return "\u2014";
  return Math.round(Number(value)).toLocaleString("en-US") + " ms";
}

export function num(value, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "\u2014";
  return String(Number(Number(value).toFixed(digits)));
}

export function badge(text, kind) {
  return h("span", { class: "badge" + (kind ? " " + kind : "") }, text);
}


/** A table that becomes one card per row on a phone: each cell carries its column's name. */
export function cardTable(headers, rows, attrs) {
  const names = headers.map((x) => (Array.isArray(x) ? x[0] : x));
  for (const row of rows) {
    if (!row || row.classList.contains("op-detail")) continue;
    [...row.children].forEach((cell, i) => {
      if (!cell.hasAttribute("data-label")) cell.setAttribute("data-label", names[i] || "");
    });
  }
  const out = table(headers, rows, attrs);
  out.querySelector("table").classList.add("op-cards");
  return out;
}

/** A "Load more" button for the API's cursor pages; `load(cursor)` answers {data, has_more, next_cursor}.
 * `first()` starts over (a filter changed): an answer to a request made before it is dropped, so a slow
 * answer for the old filter never lands on top of the new list. */
export function pager(load, append, status) {
  let cursor = null;
  let generation = 0;
  const button = h("button", { type: "button", class: "secondary small", hidden: true }, "Load more");
  const more = async () => {
    const mine = generation;
    button.disabled = true;
    try {
      const page = await load(cursor);
      if (mine !== generation) return;
      append(page.data, cursor === null);
      cursor = page.next_cursor;
      button.hidden = !page.has_more;
    } catch (err) {
      if (mine === generation) status(err);
    } finally {
      if (mine === generation) button.disabled = false;
    }
  };
  button.addEventListener("click", more);
  return { button, first: () => { cursor = null; generation += 1; return more(); } };
}
