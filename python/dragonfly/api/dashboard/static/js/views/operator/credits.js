// Credits (`POST /api/admin/credits {account_id, amount_cents, note}`): credit an account's cash, after a
// confirm step. Each credit is sent with an `Idempotency-Key` kept until it succeeds, so crediting the same
// account, amount and note again after a lost answer replays the first credit instead of making a second
// one. Platform fee and reserve: the API has no setting for them yet, so the page says where they are set.

import { api, query } from "../../api.js";
import { errorBox, field, fields, h, notify, section, usd, when } from "../../dom.js";
import { cardTable, idChip } from "./common.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_CENTS = 100_000_000; // $1,000,000 per call, the API's limit

const made = []; // credits posted from this page since it loaded, newest first
// The idempotency key of the credit not yet known to be made, and the body it was sent with.
let pending = null;

/** The key to send `body` with: the pending one when it is the same credit (a retry), else a new one. */
function keyFor(body) {
  const same = JSON.stringify(body);
  if (!pending || pending.body !== same) {
    // crypto.getRandomValues: also where randomUUID is not offered (plain http on another host).
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    pending = { body: same, key: "dashboard-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("") };
  }
  return pending.key;
}

/** "2.50", "$2.5", "1,000" -> cents; an amount that is not dollars and cents is said in words. */
export function parseCents(text) {
  const clean = String(text).replace(/[$,\s]/g, "");
  const match = /^(\d+)(?:\.(\d{0,2}))?$/.exec(clean);
  if (!match) throw new Error("Give the amount in US dollars, with at most two decimals (like 25 or 2.50).");
  const cents = Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0"));
  if (cents < 1) throw new Error("The amount must be at least $0.01.");
  if (cents > MAX_CENTS) throw new Error("At most $1,000,000 per credit.");
  return cents;
}

/** Account ids this operator can see elsewhere in the API: buyers and sellers of flagged trades. */
async function accountsSeen() {
  try {
    const page = await api("GET", "api/admin/flagged-trades" + query({ limit: 100 }));
    const out = new Map();
    for (const t of page.data) {
      if (!out.has(t.buyer_id)) out.set(t.buyer_id, "buyer of a flagged trade");
      if (!out.has(t.seller_id)) out.set(t.seller_id, "seller of a flagged trade");
    }
    return out;
  } catch (err) {
    return new Map();
  }
}

export async function render(root) {
  const status = h("div", { class: "form-status" });
  const confirmBox = h("div", { class: "op-confirm", hidden: true, "data-testid": "credit-confirm", role: "alert" });
  const history = h("div");
  const accounts = h("datalist", { id: "op-accounts" });
  const submit = h("button", { type: "submit" }, "Review the credit");
  const form = h("form", { class: "grid-form", "data-form": "credit" },
    h("div", { class: "op-wide" }, field("Account id", h("input", { name: "account_id", list: "op-accounts", required: true, autocomplete: "off", placeholder: "01a2\u2026 (UUID)" }),
      "The API takes account ids only; to credit by e-mail, use the command line: dragonfly admin credit --email.")),
    field("Amount (USD)", h("input", { name: "amount", inputmode: "decimal", required: true, placeholder: "25.00" }), "$0.01 to $1,000,000."),
    field("Note", h("input", { name: "note", required: true, maxlength: "500", placeholder: "invoice 1042" }), "Kept in the journal; 1\u2013500 characters."),
    h("div", { class: "actions" }, submit),
    confirmBox, status);

  const lock = (locked) => {
    for (const el of form.elements) if (el.tagName !== "BUTTON" || el === submit) el.disabled = locked;
  };

  const drawHistory = () => {
    history.replaceChildren(made.length
      ? cardTable(["When", "Account", "Amount", "Note", "Balance after", "Journal"], made.map((c) => h("tr", { "data-account-id": c.account_id },
        h("td", {}, when(c.created_at)), h("td", {}, idChip(c.account_id, "account id")), h("td", { class: "num" }, usd(c.amount_usd)),
        h("td", {}, c.note), h("td", { class: "num" }, usd(c.balance_usd)), h("td", {}, idChip(c.id, "journal id")))), { "data-testid": "credits-made" })
      : h("p", { class: "muted" }, "None since this page was loaded."));
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    status.replaceChildren();
    const values = fields(form);
    let body;
    try {
      if (!UUID.test(values.account_id)) throw new Error("An account id is a UUID, like 01a245f7-46ca-7b5d-a33a-545c30d5667c.");
      if (!values.note) throw new Error("Say why in the note: it is kept in the journal.");
      body = { account_id: values.account_id.toLowerCase(), amount_cents: parseCents(values.amount), note: values.note };
    } catch (err) {
      status.replaceChildren(errorBox(err));
      return;
    }
    const go = h("button", { type: "button", "data-action": "confirm-credit" }, "Credit " + usd(body.amount_cents / 100));
    const back = h("button", { type: "button", class: "secondary", "data-action": "change" }, "Change");
    const close = () => { confirmBox.hidden = true; confirmBox.replaceChildren(); lock(false); };
    back.addEventListener("click", close);
    go.addEventListener("click", async () => {
      go.disabled = true;
      back.disabled = true;
      try {
        const answer = await api("POST", "api/admin/credits", body, { "Idempotency-Key": keyFor(body) });
        pending = null;
        // A retry's answer is the first credit's: listed once.
        if (!made.some((c) => c.id === answer.id)) made.unshift(answer);
        drawHistory();
        close();
        form.reset();
        status.replaceChildren(h("div", { class: "ok-box", "data-testid": "credit-done" },
          h("strong", {}, `Credited ${usd(answer.amount_usd)} to `), idChip(answer.account_id, "account id"),
          `. Their cash balance is now ${usd(answer.balance_usd)}.`));
        notify("Credit posted.");
      } catch (err) {
        close();
        status.replaceChildren(errorBox(err));
      }
    });
    confirmBox.replaceChildren(
      h("p", {}, h("strong", {}, `Credit ${usd(body.amount_cents / 100)} to account `), h("code", {}, body.account_id), "?"),
      h("p", { class: "muted" }, `Note: \u201c${body.note}\u201d. If the answer to this credit is lost, crediting the same account, amount and note again from this page does not credit twice.`),
      h("div", { class: "actions" }, go, back));
    confirmBox.hidden = false;
    lock(true);
    go.focus();
  });

  root.append(
    accounts,
    section("Credit an account", form),
    section("Credits from this page", history),
    section("Platform fee and reserve",
      h("p", {}, "The API has no run-time setting for these yet. They are set in the environment:"),
      h("dl", { class: "receipt" },
        h("dt", {}, h("code", {}, "DRAGONFLY_PLATFORM_FEE_BPS")), h("dd", {}, "the platform's share of each trade's cost, in basis points (default 1000 = 10 %); on every data plane and the control plane, read at start"),
        h("dt", {}, h("code", {}, "DRAGONFLY_RESERVE_BPS")), h("dd", {}, "the share of the seller's payout booked to its reserve (default 500 = 5 %); data planes, read at start"),
        h("dt", {}, h("code", {}, "DRAGONFLY_RESERVE_RELEASE_DAYS")), h("dd", {}, "days before a reserve credit is released, unless a review of the seller was upheld meanwhile (default 30); control plane, read at start"))),
  );
  drawHistory();
  const seen = await accountsSeen();
  accounts.replaceChildren(...[...seen].map(([id, label]) => h("option", { value: id }, label)));
}
