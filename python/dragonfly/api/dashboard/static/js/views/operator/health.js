// Market health: per model from `GET /v1/market/health` (active listings, prices, success rate, median
// TTFT over a window), and per listing as the newest routing decision of each model saw it
// (`GET /api/admin/routing/activity`: routable, degraded, or out and why). Queues that wait for the
// operator: open trade reviews and pending payouts.

import { api, query } from "../../api.js";
import { errorBox, h, int, section, when } from "../../dom.js";
import { UNROUTABLE, badge, cardTable, idChip, listingActions, ms, num, pct, penalty, reason } from "./common.js";

const WINDOWS = [[900, "last 15 minutes"], [3600, "last hour"], [21600, "last 6 hours"], [86400, "last 24 hours"]];
const OK_RATE = 0.95; // the market's own line between ok and degraded (with enough trades)
const MIN_TRADES = 20;

/** The newest decision per model, and each listing it listed with what the ranking made of it. */
export function listingsSeen(decisions) {
  const newest = new Map();
  for (const d of decisions) if (!newest.has(d.model)) newest.set(d.model, d); // newest first
  const chosen = new Map();
  for (const d of decisions) if (d.chosen_listing_id) chosen.set(d.chosen_listing_id, (chosen.get(d.chosen_listing_id) || 0) + 1);
  const out = [];
  for (const d of newest.values()) {
    for (const c of d.candidates) {
      let state = "routable";
      if (c.excluded && UNROUTABLE.has(c.excluded)) state = "out";
      else if (c.excluded) state = "filtered";
      else if (c.penalties.includes("contract_degraded")) state = "degraded";
      // The operator suspended or lifted it after that decision: the answer they got is newer.
      const action = listingActions.get(c.listing_id);
      const acted = action && action.at > Date.parse(d.at) ? { status: action.answer.listing.status, at: action.at } : null;
      if (acted) state = acted.status === "active" ? "routable" : "out";
      out.push({ ...c, model: d.model, at: d.at, strategy: d.strategy, state, acted, wins: chosen.get(c.listing_id) || 0 });
    }
  }
  return out;
}

function stateCell(c) {
  if (c.acted) {
    return [badge(c.state === "routable" ? "routable" : c.acted.status, c.state === "routable" ? "ok" : "bad"), " ",
      h("span", { class: "muted" }, "since your action at " + when(new Date(c.acted.at).toISOString()))];
  }
  if (c.state === "out") return [badge("not routable", "bad"), " ", reason(c.excluded)];
  if (c.state === "filtered") return [badge("filtered", "warn"), " ", reason(c.excluded), h("span", { class: "muted" }, " (by that buyer's profile)")];
  if (c.state === "degraded") return [badge("degraded", "warn"), " ", c.penalties.map(penalty).join(", ")];
  return [badge("routable", "ok"), c.penalties.length ? [" ", h("span", { class: "muted" }, c.penalties.map(penalty).join(", "))] : null];
}

function span(range) {
  return range.min === range.max ? range.min : `${range.min}\u2013${range.max}`;
}

function rateCell(row) {
  if (!row.trades) return h("span", { class: "muted" }, "no trades");
  const low = row.trades >= MIN_TRADES && row.success_rate < OK_RATE;
  return [pct(row.success_rate), low ? [" ", badge("below 95 %", "bad")] : null];
}

export async function render(root) {
  let windowS = 3600;
  const windowSelect = h("select", { name: "window_s", "aria-label": "Window" },
    WINDOWS.map(([s, label]) => h("option", { value: String(s), selected: s === windowS }, label)));
  const refresh = h("button", { type: "button", class: "secondary small" }, "Refresh");
  const queues = h("div", { class: "grid" });
  const models = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));
  const listings = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));

  const loadQueues = async () => {
    const count = async (path) => {
      try {
        const page = await api("GET", path);
        return page.data.length + (page.has_more ? "+" : "");
      } catch (err) {
        return null;
      }
    };
    const [reviews, owed] = await Promise.all([
      count("api/admin/flagged-trades" + query({ state: "open", limit: 100 })),
      count("api/admin/payouts" + query({ status: "pending", limit: 100 })),
    ]);
    const tile = (label, value, href, testid) => section(label,
      h("p", { class: "big", "data-testid": testid }, value === null ? "\u2014" : String(value)),
      h("a", { href }, value === null ? "could not be read" : "Open the queue"));
    queues.replaceChildren(
      tile("Open trade reviews", reviews, "#/operator/flagged", "open-reviews"),
      tile("Payouts to pay", owed, "#/operator/payouts", "pending-payouts"));
  };

  const loadModels = async () => {
    try {
      const health = await api("GET", "v1/market/health" + query({ window_s: windowS }));
      if (!health.data.length) {
        models.replaceChildren(h("p", { class: "muted" }, "No model has a listing yet."));
        return;
      }
      const rows = health.data.map((m) => h("tr", { "data-model": m.model, class: m.active_listings ? "" : "op-warn-row" },
        h("td", {}, h("strong", {}, m.model), m.kind !== "chat" ? [" ", badge(m.kind)] : null),
        h("td", { class: "num" }, m.active_listings ? int(m.active_listings) : [badge("none routable", "bad")]),
        h("td", {}, m.price_range
          ? `${span(m.price_range.input_per_mtok)} in, ${span(m.price_range.output_per_mtok)} out`
          : h("span", { class: "muted" }, "\u2014")),
        h("td", { class: "num" }, rateCell(m)),
        h("td", { class: "num" }, ms(m.median_ttft_ms)),
        h("td", { class: "num" }, int(m.trades))));
      models.replaceChildren(
        cardTable(["Model", ["Active listings", "num"], "Price range (USD / 1M tokens)", ["Success", "num"], ["Median TTFT", "num"], ["Trades", "num"]],
          rows, { "data-testid": "health-models" }),
        h("p", { class: "muted" }, "Active listings are the routable ones. Success rate and time to first token are over the ",
          WINDOWS.find(([s]) => s === windowS)[1], "; a listing or provider counts as degraded below 95 % over at least 20 trades."));
    } catch (err) {
      models.replaceChildren(errorBox(err, loadModels));
    }
  };

  const loadListings = async () => {
    try {
      const activity = await api("GET", "api/admin/routing/activity" + query({ limit: 100 }));
      const seen = listingsSeen(activity.data);
      if (!seen.length) {
        listings.replaceChildren(h("p", { class: "muted" }, "No routing decision recorded yet: listings show here once buyers send requests."));
        return;
      }
      const counts = { routable: 0, degraded: 0, out: 0, filtered: 0 };
      for (const c of seen) counts[c.state] += 1;
      const rows = seen.map((c) => h("tr", { "data-listing-id": c.listing_id, "data-state": c.state },
        h("td", {}, idChip(c.listing_id, "listing id")),
        h("td", { class: "op-nowrap" }, c.model),
        h("td", {}, stateCell(c)),
        h("td", { class: "num" }, c.excluded ? "\u2014" : num(c.features.reliability, 2)),
        h("td", { class: "num" }, c.excluded ? "\u2014" : num(c.features.latency, 2)),
        h("td", { class: "num" }, int(c.wins)),
        h("td", {}, h("a", { href: "#/operator/listings/" + encodeURIComponent(c.listing_id) }, "Manage"))));
      listings.replaceChildren(
        h("p", {}, `${counts.routable} routable, ${counts.degraded} degraded, ${counts.out} out of the market`,
          counts.filtered ? `, ${counts.filtered} filtered by a buyer's profile` : "", "."),
        cardTable(["Listing", "Model", "State", ["Reliability", "num"], ["Latency", "num"], ["Won (last 100)", "num"], ""], rows, { "data-testid": "health-listings" }),
        h("p", { class: "muted" }, "As the newest routing decision of each model saw them (",
          [...new Set(seen.map((c) => when(c.at)))].slice(0, 3).join(", "),
          "). The admin API has no list of listings: a listing no request was ranked against lately is not here. Features run 0\u20131, 1 being best."));
    } catch (err) {
      listings.replaceChildren(errorBox(err, loadListings));
    }
  };

  const loadAll = () => Promise.all([loadQueues(), loadModels(), loadListings()]);
  windowSelect.addEventListener("change", () => { windowS = Number(windowSelect.value); loadModels(); });
  refresh.addEventListener("click", loadAll);
  root.append(
    queues,
    section("Models", h("div", { class: "toolbar" }, windowSelect, refresh), models),
    section("Listings seen by the router", listings),
  );
  await loadAll();
}
