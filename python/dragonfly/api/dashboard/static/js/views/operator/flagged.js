// Flagged trades (`GET /api/admin/flagged-trades`): every seller's trades the usage audit flagged, each a
// trade review holding the seller's share until an operator resolves it
// (`POST /api/admin/flagged-trades/:id/resolve {action: uphold|dismiss, note?}`).

import { api, query } from "../../api.js";
import { errorBox, h, int, notify, section, usd, when } from "../../dom.js";
import { badge, confirmButton, idChip, pager } from "./common.js";

const STATES = [["open", "Open (to resolve)"], ["upheld", "Upheld"], ["dismissed", "Dismissed"], ["", "All"]];
const STATE_KIND = { open: "warn", upheld: "bad", dismissed: "ok" };

function tokens(t) {
  const row = (label, billed, reported, counted) => h("tr", {},
    h("th", { scope: "row" }, label),
    h("td", { class: "num" }, int(billed)),
    h("td", { class: "num" }, reported === null || reported === undefined ? "\u2014" : int(reported)),
    h("td", { class: "num" }, counted === null || counted === undefined ? "\u2014" : int(counted)));
  return h("table", { class: "op-tokens" },
    h("thead", {}, h("tr", {}, h("th", {}, "Tokens"), h("th", { class: "num" }, "Billed"), h("th", { class: "num" }, "Reported"), h("th", { class: "num" }, "Counted"))),
    h("tbody", {},
      row("Prompt", t.tokens_prompt, t.native_tokens_prompt, t.counted_tokens_prompt),
      row("Completion", t.tokens_completion, t.native_tokens_completion, t.counted_tokens_completion)));
}

function evidence(t) {
  if (t.flagged_by !== "market" || !t.market_audit) {
    return h("p", { class: "muted" }, "Flagged by its own report: the seller reported more tokens than Dragonfly counted (over 1.5 \u00d7 the count + 16).");
  }
  const m = t.market_audit;
  return h("p", { class: "muted" }, `Flagged by the market audit (${m.kind} tokens, alarm ${when(m.raised_at)}): this seller reported `,
    `${Number(m.reported_to_counted).toFixed(3)} \u00d7 the count against the market's ${Number(m.market_reported_to_counted).toFixed(3)} over ${int(m.trades_seen)} trades.`);
}

function reviewText(r) {
  if (r.state === "open") return [`holds ${usd(r.held_usd)} of the seller's share; upholding refunds the buyer ${usd(r.excess_usd)}.`];
  return [`${r.state} ${when(r.resolved_at)}`, r.refund_usd && Number(r.refund_usd) ? `, ${usd(r.refund_usd)} refunded to the buyer` : "",
    r.note ? ` \u2014 \u201c${r.note}\u201d` : "", "."];
}

function tradeCard(t, replace) {
  const card = h("article", { class: "card op-trade", "data-trade-id": t.id, "data-state": t.review.state });
  const status = h("div", { class: "form-status" });
  const note = h("input", { name: "note", maxlength: "500", placeholder: "note for the seller (optional)", "aria-label": "Note" });
  const resolve = async (action) => {
    status.replaceChildren();
    const text = note.value.trim();
    try {
      const answer = await api("POST", "api/admin/flagged-trades/" + encodeURIComponent(t.id) + "/resolve", text ? { action, note: text } : { action });
      notify(action === "uphold"
        ? `Upheld: ${usd(answer.review.refund_usd)} refunded to the buyer.`
        : "Dismissed: the seller's share is released.");
      replace(card, tradeCard(answer, replace));
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  card.append(
    h("div", { class: "op-trade-head" },
      badge(t.review.state, STATE_KIND[t.review.state]), " ",
      h("strong", {}, t.model), " ", h("span", { class: "muted" }, when(t.created_at)), " ",
      badge(t.flagged_by === "market" ? "market audit" : "own report"), t.streamed ? badge("streamed") : null),
    h("div", { class: "op-trade-body" }, h("dl", { class: "receipt op-trade-facts" },
      h("dt", {}, "Trade"), h("dd", {}, idChip(t.id, "trade id")),
      h("dt", {}, "Listing"), h("dd", {}, idChip(t.listing_id, "listing id"), " ", t.provider, " ",
        h("a", { href: "#/operator/listings/" + encodeURIComponent(t.listing_id) }, "suspend\u2026")),
      h("dt", {}, "Seller"), h("dd", {}, idChip(t.seller_id, "seller id")),
      h("dt", {}, "Buyer"), h("dd", {}, idChip(t.buyer_id, "buyer id"), " key ", idChip(t.key_id, "key id")),
      h("dt", {}, "Charge"), h("dd", {}, `${usd(t.total_cost_usd)} (seller ${usd(t.seller_payout_usd)}, fee ${usd(t.platform_fee_usd)})`),
      h("dt", {}, "Review"), h("dd", { "data-testid": "review-state" }, reviewText(t.review))),
    h("div", {}, tokens(t), evidence(t))),
  );
  if (t.review.state === "open") {
    card.append(h("div", { class: "actions op-resolve" }, note,
      confirmButton("Uphold", `Confirm: refund ${usd(t.review.excess_usd)}`, () => resolve("uphold"), { "data-action": "uphold" }),
      h("button", { type: "button", class: "small secondary", "data-action": "dismiss", onclick: () => resolve("dismiss") }, "Dismiss")), status);
  }
  return card;
}

export async function render(root) {
  let state = "open";
  const list = h("div", { class: "op-trades" });
  const status = h("div", { class: "form-status" });
  const select = h("select", { name: "state", "aria-label": "Review state" },
    STATES.map(([value, label]) => h("option", { value, selected: value === state }, label)));
  const replace = (old, fresh) => old.replaceWith(fresh);
  const pages = pager(
    (cursor) => api("GET", "api/admin/flagged-trades" + query({ state, limit: 20, cursor })),
    (data, first) => {
      if (first) list.replaceChildren();
      if (first && !data.length) {
        list.append(h("p", { class: "muted", "data-testid": "no-trades" }, state === "open" ? "No open review: nothing waits for you." : "No trade in this state."));
      }
      list.append(...data.map((t) => tradeCard(t, replace)));
    },
    (err) => status.replaceChildren(errorBox(err, () => { status.replaceChildren(); pages.first(); })),
  );
  select.addEventListener("change", () => { state = select.value; status.replaceChildren(); pages.first(); });
  root.append(
    section("Flagged trades",
      h("p", { class: "muted" }, "Trades whose seller reported more tokens than Dragonfly counted, newest first, every seller. ",
        "Uphold: the seller over-reported, the buyer gets the excess back. Dismiss: the report stands and the seller's share is released. A note is shown to the seller."),
      h("div", { class: "toolbar" }, select), status),
    list,
    h("div", { class: "actions" }, pages.button),
  );
  await pages.first();
}
