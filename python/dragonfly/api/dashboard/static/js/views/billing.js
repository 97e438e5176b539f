// Balance and the account's journal lines (`GET /api/billing/balance`, `/api/billing/transactions`).

import { api, query } from "../api.js";
import { errorBox, h, section, table, usd, when } from "../dom.js";

export const title = "Billing";

const KINDS = {
  trade: "Request",
  trial_credit: "Trial credit",
  credit: "Credit",
  review_refund: "Refund after review",
};

export async function render(root, ctx) {
  const balance = await api("GET", "api/billing/balance");
  const rows = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const status = h("div");
  let cursor = null;

  const page = async () => {
    more.disabled = true;
    try {
      const answer = await api("GET", "api/billing/transactions" + query({ limit: 50, cursor }));
      for (const line of answer.data) {
        const amount = Number(line.amount_usd);
        rows.append(h("tr", {},
          h("td", { "data-label": "When" }, when(line.created_at)),
          h("td", { "data-label": "What" }, KINDS[line.kind] || line.kind, line.memo ? h("span", { class: "muted" }, " \u2014 " + line.memo) : null),
          h("td", { "data-label": "Reference" }, h("code", { class: "ref" }, line.ref || "")),
          h("td", { class: "num " + (amount < 0 ? "debit" : "credit"), "data-label": "Amount" }, usd(line.amount_usd))));
      }
      if (!rows.childElementCount) rows.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No transactions yet.")));
      cursor = answer.next_cursor;
      more.hidden = !answer.has_more;
      status.replaceChildren();
    } catch (err) {
      status.replaceChildren(errorBox(err, page));
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", page);

  root.append(
    h("h1", {}, "Billing"),
    h("div", { class: "grid" },
      section("Available", h("p", { class: "big" }, usd(balance.available_usd))),
      section("Balance", h("p", { class: "big" }, usd(balance.balance_usd))),
      section("Held", h("p", { class: "big" }, usd(balance.held_usd)),
        h("p", { class: "muted" }, "Reserved by requests in flight, released when they settle."))),
    section("Transactions",
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["When", "What", "Reference", "Amount"].map((x) => h("th", { scope: "col" }, x)))),
        rows)),
      more, status,
      h("p", { class: "muted" }, "A request's reference is its x-request-id: its receipt is GET /v1/generation?id=<reference>.")),
  );
  await page();
  ctx.refreshBalance();
}
