// Payouts (`GET /api/admin/payouts`, `POST /api/admin/payouts/:id/mark-paid {note?}`): what sellers asked
// to be paid. Dragonfly moves no money out: pay outside it, then mark the payout paid with a reference.

import { api, query } from "../../api.js";
import { errorBox, h, notify, section, usd, when } from "../../dom.js";
import { badge, cardTable, confirmButton, idChip, pager } from "./common.js";

const LABELS = ["Asked", "Seller", "Amount", "Status", ""];
const STATUSES = [["pending", "To pay"], ["paid", "Paid"], ["", "All"]];

export async function render(root) {
  let status = "pending";
  const box = h("div");
  const problem = h("div", { class: "form-status" });
  const select = h("select", { name: "status", "aria-label": "Payout status" },
    STATUSES.map(([value, label]) => h("option", { value, selected: value === status }, label)));

  const row = (p) => {
    const note = h("input", { name: "note", maxlength: "500", placeholder: "transfer reference", "aria-label": "Note for the seller" });
    const err = h("div", { class: "form-status" });
    const tr = h("tr", { "data-payout-id": p.id },
      h("td", {}, when(p.created_at)),
      h("td", {}, idChip(p.seller_id, "seller id")),
      h("td", { class: "num" }, usd(p.amount_usd)),
      h("td", {}, p.status === "paid" ? [badge("paid", "ok"), " ", when(p.paid_at), p.note ? h("div", { class: "muted" }, p.note) : null] : badge("pending", "warn")),
      h("td", {}, p.status === "paid" ? null : h("div", { class: "actions" }, note,
        confirmButton("Mark paid", "Confirm: paid", async () => {
          const text = note.value.trim();
          try {
            const answer = await api("POST", "api/admin/payouts/" + encodeURIComponent(p.id) + "/mark-paid", text ? { note: text } : {});
            notify(`Payout of ${usd(answer.amount_usd)} marked paid.`);
            tr.replaceWith(row(answer));
          } catch (e) {
            err.replaceChildren(errorBox(e));
          }
        }, { "data-action": "mark-paid" }), err)));
    [...tr.children].forEach((td, i) => td.setAttribute("data-label", LABELS[i]));
    return tr;
  };

  let shown = [];
  const pages = pager(
    (cursor) => api("GET", "api/admin/payouts" + query({ status, limit: 20, cursor })),
    (data, first) => {
      shown = first ? data : shown.concat(data);
      box.replaceChildren(shown.length
        ? cardTable(["Asked", "Seller", ["Amount", "num"], "Status", ""], shown.map(row), { "data-testid": "payouts" })
        : h("p", { class: "muted" }, status === "pending" ? "No payout waits to be paid." : "No payout in this state."));
    },
    (e) => problem.replaceChildren(errorBox(e, () => { problem.replaceChildren(); pages.first(); })),
  );
  select.addEventListener("change", () => { status = select.value; problem.replaceChildren(); pages.first(); });
  root.append(section("Seller payouts",
    h("p", { class: "muted" }, "Sellers ask for their available earnings. Pay them outside Dragonfly, then mark the payout paid; the note (a transfer reference) is shown to the seller."),
    h("div", { class: "toolbar" }, select), problem, box, h("div", { class: "actions" }, pages.button)));
  await pages.first();
}
