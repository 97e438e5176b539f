// Trade reviews: the seller's trades the usage audit flagged (`GET /v1/market/trade-reviews`, a page at a
// time, filtered by state), each with what the upstream reported against what Dragonfly counted, what the
// review holds, why it was flagged (the trade's own report, or the market audit with its evidence), and
// what happens next. Reviews are the operator's to resolve: there is nothing to press here.

import { api, query } from "../api.js";
import { errorBox, h, int, section, usd, when } from "../dom.js";

export const title = "Trade reviews";

const STATES = {
  open: {
    badge: "warn",
    text: "Waiting for the operator. Your whole share of the trade (its locked and reserve parts) is held: it is not released to available until the review is resolved.",
  },
  upheld: {
    badge: "bad",
    text: "The operator found the usage inflated. The buyer got the excess back, taken from the trade's shares (yours and the platform's) in proportion; the rest of your share was released, and your reserve releases pause for one reserve period.",
  },
  dismissed: {
    badge: "ok",
    text: "The operator accepted the report. Nothing was refunded, and your share was released (at once if its lock window had passed).",
  },
};

const FLAGGED_BY = {
  trade: "This trade: your upstream reported more tokens than Dragonfly counted, past the audit's margin (more than 1.5 times the count plus 16 tokens).",
  market: "The market audit: across your trades of this model, the ratio of reported to counted tokens drifted above other sellers' ratio for the same model, and the audit flagged the block of trades that showed it.",
};

function short(id) {
  return String(id || "").slice(0, 8) + "\u2026";
}

function count(value) {
  return value === null || value === undefined ? h("span", { class: "muted" }, "not counted") : int(value);
}

/** A row of the token comparison: reported (by the upstream), counted (by Dragonfly), billed. */
function tokenRow(name, key, reported, counted, billed) {
  const over = reported !== null && reported !== undefined && counted !== null && counted !== undefined && reported > counted;
  return h("tr", {},
    h("th", { scope: "row" }, name),
    h("td", { class: "num" + (over ? " over" : ""), "data-testid": "reported-" + key }, count(reported)),
    h("td", { class: "num", "data-testid": "counted-" + key }, count(counted)),
    h("td", { class: "num", "data-testid": "billed-" + key }, int(billed)),
    h("td", { class: "num muted ratio" }, over && counted > 0 ? "\u00d7" + (reported / counted).toFixed(2) : ""));
}

function item(r) {
  const review = r.review;
  const state = STATES[review.state] || { badge: "", text: "" };
  const facts = [
    ["Buyer paid", usd(r.cost_usd)],
    ["Your share", usd(r.seller_payout_usd)],
    ["Held now", h("span", { "data-testid": "held" }, usd(review.held_usd))],
    [review.state === "open" ? "Excess (refund if upheld)" : "Excess", usd(review.excess_usd)],
    ["Refunded to the buyer", usd(review.refund_usd)],
    ["Flagged by", h("span", { "data-testid": "flagged-by" }, r.flagged_by === "market" ? "the market audit" : "this trade's own report")],
  ];
  if (review.resolved_at) facts.push(["Resolved", when(review.resolved_at)]);
  if (review.note) facts.push(["Operator's note", review.note]);
  const audit = r.market_audit;
  return h("article", { class: "card review", "data-trade-id": r.trade_id, "data-state": review.state },
    h("div", { class: "review-head" },
      h("span", { class: "badge " + state.badge, "data-testid": "review-state" }, review.state),
      h("strong", {}, r.model),
      h("span", { class: "muted" }, when(r.created_at))),
    h("p", { class: "review-ids" }, "Trade ", h("code", { class: "ref", "data-testid": "trade-id" }, r.trade_id),
      " \u00b7 listing ", h("a", { href: "#/listings/" + encodeURIComponent(r.listing_id), title: r.listing_id }, h("code", { class: "ref" }, short(r.listing_id)))),
    h("div", { class: "review-body" },
      h("div", { class: "table-wrap" }, h("table", { class: "review-tokens", "data-testid": "review-tokens" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Tokens"), h("th", { scope: "col", class: "num" }, "Reported"),
          h("th", { scope: "col", class: "num" }, "Counted"), h("th", { scope: "col", class: "num" }, "Billed"), h("th", { scope: "col", class: "num ratio", "aria-label": "Reported \u00f7 counted" }))),
        h("tbody", {},
          tokenRow("Prompt", "prompt", r.native_tokens_prompt, r.counted_tokens_prompt, r.tokens_prompt),
          tokenRow("Completion", "completion", r.native_tokens_completion, r.counted_tokens_completion, r.tokens_completion),
          r.tokens_cached ? h("tr", {}, h("th", { scope: "row" }, "Cached"), h("td", { class: "num" }, "\u2014"), h("td", { class: "num" }, "\u2014"),
            h("td", { class: "num" }, int(r.tokens_cached)), h("td", { class: "ratio" })) : null))),
      h("dl", { class: "receipt review-facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
    audit ? h("div", { class: "review-audit", "data-testid": "market-audit" },
      h("h3", {}, "The market audit's evidence"),
      h("dl", { class: "receipt" },
        h("dt", {}, "Tokens"), h("dd", {}, audit.kind),
        h("dt", {}, "Your reported \u00f7 counted"), h("dd", {}, String(audit.reported_to_counted)),
        h("dt", {}, "Other sellers' (median)"), h("dd", {}, String(audit.market_reported_to_counted)),
        h("dt", {}, "Statistic"), h("dd", {}, String(audit.statistic)),
        h("dt", {}, "Your trades of the model seen"), h("dd", {}, int(audit.trades_seen)),
        h("dt", {}, "Raised"), h("dd", {}, when(audit.raised_at)),
        h("dt", {}, "Alarm"), h("dd", {}, h("code", { class: "ref" }, audit.alarm_id)))) : null,
    h("p", { class: "muted review-next" }, state.text, " ", FLAGGED_BY[r.flagged_by] || ""));
}

export async function render(root) {
  let state = "";
  let cursor = null;
  const list = h("div", { class: "review-list", "data-testid": "reviews" });
  const more = h("button", { type: "button", class: "secondary more", hidden: true }, "Load more");
  const status = h("div");
  const held = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));

  const stateSelect = h("select", { name: "state", "aria-label": "State" },
    h("option", { value: "" }, "every review"),
    Object.keys(STATES).map((name) => h("option", { value: name }, name + " only")));

  const loadHeld = async () => {
    try {
      const money = await api("GET", "v1/market/earnings");
      held.replaceChildren(
        h("p", { class: "big", "data-testid": "reviews-held", "data-usd": money.held_usd }, usd(money.held_usd)),
        h("p", { class: "muted" }, "of your earnings are held by open reviews: counted in neither locked nor reserve until the operator resolves them. ",
          h("a", { href: "#/earnings" }, "Earnings")));
    } catch (err) {
      held.replaceChildren(errorBox(err, loadHeld));
    }
  };

  let latest = 0;
  const page = async (fresh) => {
    const ticket = ++latest; // a newer filter's answer wins over an older one still on its way
    if (fresh) {
      cursor = null;
      list.replaceChildren(h("p", { class: "muted" }, "Loading\u2026"));
    }
    more.disabled = true;
    try {
      const answer = await api("GET", "v1/market/trade-reviews" + query({ limit: 20, cursor, state }));
      if (ticket !== latest) return;
      if (fresh) list.replaceChildren();
      list.append(...answer.data.map(item));
      if (!list.childElementCount) {
        list.append(h("p", { class: "muted empty", "data-testid": "reviews-empty" }, state
          ? `No ${state} reviews.`
          : "No trade reviews: the usage audit has flagged none of your trades. Keep your upstream's usage reports honest and it stays that way."));
      }
      cursor = answer.next_cursor;
      more.hidden = !answer.has_more;
      status.replaceChildren();
    } catch (err) {
      if (ticket !== latest) return;
      if (fresh) list.replaceChildren();
      status.replaceChildren(errorBox(err, () => page(fresh)));
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", () => page(false));
  stateSelect.addEventListener("change", () => { state = stateSelect.value; page(true); });

  root.append(
    h("h1", {}, "Trade reviews"),
    h("p", { class: "muted" }, "Dragonfly counts the tokens of every trade itself and compares them with the usage your upstream reports. A trade the usage audit flags becomes a review: your share of it is held until an operator looks at it."),
    h("div", { class: "split" },
      section("What happens next",
        h("dl", { class: "review-states" },
          Object.entries(STATES).map(([name, x]) => [h("dt", {}, h("span", { class: "badge " + x.badge }, name)), h("dd", {}, x.text)])),
        h("p", { class: "muted" }, "There is no button to answer a review: talk to the operator, who resolves it with a note you will see here. A review never resolves by itself.")),
      section("Held", held)),
    h("div", { class: "toolbar" }, stateSelect),
    list, more, status,
  );
  await Promise.all([loadHeld(), page(true)]);
}
