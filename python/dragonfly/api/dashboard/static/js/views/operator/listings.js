// Listings (`#/operator/listings/<id>`): find a listing, suspend it with a reason
// (`POST /api/admin/listings/:id/suspend`), lift the suspension (`…/unsuspend`, which runs the admission
// probe first and lifts it only if it passes), and read or override its quality (`…/quality`).
//
// The admin API lists no listings: the ones shown come from recent routing decisions and flagged trades,
// and any id can be typed. What an action answered stays in this page's memory until a reload.

import { api, query } from "../../api.js";
import { errorBox, field, fields, h, int, notify, section, when } from "../../dom.js";
import { badge, cardTable, confirmButton, idChip, listingActions, num, reason } from "./common.js";
import { listingsSeen } from "./health.js";

const lastAnswer = (id) => (listingActions.has(id) ? listingActions.get(id).answer : null);
/** The answer, stamped with the server's time of the change it reports (compared with decisions' times). */
function remember(id, answer) {
  const sus = answer.suspension || {};
  listingActions.set(id, { answer, at: Date.parse(sus.lifted_at || sus.suspended_at || "") || Date.now() });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Listings seen lately: the router's view (activity) and the usage audit's (flagged trades). */
async function known() {
  const [activity, flagged] = await Promise.all([
    api("GET", "api/admin/routing/activity" + query({ limit: 100 })),
    api("GET", "api/admin/flagged-trades" + query({ limit: 100 })),
  ]);
  const out = new Map();
  const get = (id) => {
    if (!out.has(id)) out.set(id, { id, model: null, provider: null, seller: null, seen: null, wins: 0, open: 0, flagged: 0 });
    return out.get(id);
  };
  for (const c of listingsSeen(activity.data)) Object.assign(get(c.listing_id), { model: c.model, seen: c, wins: c.wins });
  for (const t of flagged.data) {
    const x = get(t.listing_id);
    x.model = x.model || t.model;
    x.provider = t.provider;
    x.seller = t.seller_id;
    x.flagged += 1;
    if (t.review.state === "open") x.open += 1;
  }
  for (const [id, { answer }] of listingActions) {
    const x = get(id);
    x.model = x.model || answer.listing.model;
    x.provider = x.provider || answer.listing.provider;
  }
  return [...out.values()];
}

function statusText(x) {
  const a = lastAnswer(x.id);
  if (a && (!x.seen || x.seen.acted)) return [badge(a.listing.status, a.listing.status === "active" ? "ok" : "warn"), h("span", { class: "muted" }, " after your action")];
  if (!x.seen) return h("span", { class: "muted" }, "not ranked lately");
  if (x.seen.excluded) return [badge("out", x.seen.state === "out" ? "bad" : "warn"), " ", reason(x.seen.excluded)];
  return badge(x.seen.state, x.seen.state === "routable" ? "ok" : "warn");
}

function probeChecks(run) {
  if (!run || !run.checks) return null;
  return h("ul", { class: "op-checks" }, run.checks.map((c) => h("li", { class: c.passed ? "ok" : "bad" },
    badge(c.passed ? "passed" : "failed", c.passed ? "ok" : "bad"), " ", h("strong", {}, c.kind.replace(/_/g, " ")), ": ", c.detail)));
}

function outcome(a) {
  const l = a.listing;
  const lines = [
    h("p", {}, "Listing ", h("strong", {}, l.model), " (", l.provider, ", ", l.input_price_per_mtok, " / ", l.output_price_per_mtok, " USD per 1M tokens): ",
      badge(l.status, l.status === "active" ? "ok" : "warn"), " contract ", badge(a.contract.status, a.contract.status === "active" ? "ok" : "warn")),
  ];
  const sus = a.suspension;
  if (sus) {
    lines.push(h("p", { class: "muted" }, `Suspended ${when(sus.suspended_at)}`, sus.reason ? ` for \u201c${sus.reason}\u201d` : " (no reason given)",
      `; it was ${sus.previous_status} before.`, sus.lifted_at ? ` Lifted ${when(sus.lifted_at)}.` : ""));
  }
  if (a.probe_run) {
    lines.push(h("p", {}, a.unsuspended
      ? "The admission probe passed: the listing is back in the market from the next request."
      : h("strong", { class: "op-bad-text" }, "The admission probe failed, so the listing stays suspended: ", a.reason || "a check failed", ".")), probeChecks(a.probe_run));
  }
  const failed = a.probe_run && !a.unsuspended;
  return h("div", { class: "op-outcome " + (failed ? "bad" : "ok"), "data-testid": "listing-outcome", role: "status" }, lines);
}

/** What the lists say about one listing (filled once they are loaded). */
function facts(x) {
  if (!x) return h("p", { class: "muted" }, "Not in the recent routing decisions or flagged trades: the actions below still work on any listing id.");
  return h("dl", { class: "receipt op-facts" },
    h("dt", {}, "Model"), h("dd", {}, x.model || "unknown"),
    x.provider ? [h("dt", {}, "Provider"), h("dd", {}, x.provider)] : null,
    x.seller ? [h("dt", {}, "Seller"), h("dd", {}, idChip(x.seller, "seller id"))] : null,
    h("dt", {}, "State"), h("dd", { "data-testid": "listing-state" }, statusText(x)),
    h("dt", {}, "Won"), h("dd", {}, `${int(x.wins)} of the newest 100 routing decisions`),
    h("dt", {}, "Flagged trades"), h("dd", {}, x.flagged ? `${int(x.flagged)}, ${int(x.open)} open ` : "none lately",
      x.open ? h("a", { href: "#/operator/flagged" }, "review them") : null));
}

function panel(id, ctx, about, refresh) {
  const box = h("div", { class: "card", "data-testid": "listing-panel", "data-listing-id": id });
  const result = h("div", { "data-testid": "listing-result" }, lastAnswer(id) ? outcome(lastAnswer(id)) : null);
  const quality = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));

  const act = async (label, path, body, button) => {
    result.replaceChildren(h("p", { class: "muted" }, label));
    if (button) button.disabled = true;
    try {
      const answer = await api("POST", path, body);
      remember(id, answer);
      result.replaceChildren(outcome(answer));
      refresh();
      return answer;
    } catch (err) {
      result.replaceChildren(errorBox(err));
      return null;
    } finally {
      if (button) button.disabled = false;
    }
  };

  const reasonInput = h("input", { name: "reason", maxlength: "500", placeholder: "abuse report #1234" });
  const suspendForm = h("form", { class: "stack", "data-form": "suspend" },
    field("Reason", reasonInput, "Shown to the seller with the contract; 1\u2013500 characters, optional."),
    h("div", { class: "actions" },
      confirmButton("Suspend", "Confirm: take it out of the market", async () => {
        const text = reasonInput.value.trim();
        const answer = await act("Suspending\u2026", "api/admin/listings/" + encodeURIComponent(id) + "/suspend", text ? { reason: text } : {});
        if (answer) notify("Listing suspended: no request is routed to it from now on.");
      }, { "data-action": "suspend", class: "danger" })));
  suspendForm.addEventListener("submit", (event) => event.preventDefault());

  const lift = h("button", { type: "button", "data-action": "unsuspend" }, "Unsuspend");
  lift.addEventListener("click", async () => {
    const answer = await act("Running the admission probe against the seller (up to 30 s)\u2026",
      "api/admin/listings/" + encodeURIComponent(id) + "/unsuspend", undefined, lift);
    if (answer) notify(answer.unsuspended ? "The probe passed: the listing is back in the market." : "The probe failed: the listing stays suspended.", answer.unsuspended ? "ok" : "bad");
  });

  const loadQuality = async () => {
    try {
      const q = await api("GET", "api/admin/listings/" + encodeURIComponent(id) + "/quality");
      const input = h("input", { name: "quality", inputmode: "decimal", placeholder: "0 to 1", value: q.quality_override === null ? "" : String(q.quality_override) });
      const status = h("div", { class: "form-status" });
      const form = h("form", { class: "inline", "data-form": "quality" }, input, h("button", { type: "submit", class: "small" }, "Set"),
        q.quality_override === null ? null : h("button", { type: "button", class: "small secondary", "data-action": "clear-quality", onclick: () => save(null, status) }, "Use computed"));
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const text = fields(form).quality;
        const value = Number(text);
        if (text === "" || !Number.isFinite(value)) {
          status.replaceChildren(errorBox(new Error("Give the quality as a number from 0 to 1, or use the computed value.")));
          return;
        }
        save(value, status);
      });
      quality.replaceChildren(
        h("p", {}, h("span", { class: "big" }, num(q.quality, 3)), " ",
          q.source === "override" ? badge("set by an operator", "warn") : badge("from " + q.source),
          h("span", { class: "muted" }, ` probe score ${num(q.probe_quality, 3)} over ${int(q.probe_runs)} run${q.probe_runs === 1 ? "" : "s"}`,
            q.blends_live_success ? ", blended with live success in the gateway" : "", ".")),
        field("Override", form, "The quality feature used in ranking, 0\u20131. \u201cUse computed\u201d returns to the probe score."),
        status);
    } catch (err) {
      quality.replaceChildren(errorBox(err, loadQuality));
    }
  };
  const save = async (value, status) => {
    try {
      await api("PUT", "api/admin/listings/" + encodeURIComponent(id) + "/quality", { quality: value });
      notify(value === null ? "Quality returned to its computed value." : "Quality override saved.");
      await loadQuality();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };

  box.append(
    h("h2", {}, "Listing ", idChip(id, "listing id")),
    about,
    result,
    h("div", { class: "split" },
      h("div", {}, h("h3", {}, "Suspend"),
        h("p", { class: "muted" }, "Takes the listing out of the market at once; the seller cannot resume it. Requests in flight finish."),
        suspendForm),
      h("div", {}, h("h3", {}, "Lift a suspension"),
        h("p", { class: "muted" }, "Runs the admission probe against the seller now and lifts the suspension only if it passes; the listing returns to the status it had."),
        lift)),
    h("h3", { class: "op-gap" }, "Quality"), quality,
    h("p", {}, h("a", { href: "#/operator/listings", onclick: (event) => { event.preventDefault(); ctx.tab("listings"); } }, "Back to the list")),
  );
  loadQuality();
  return box;
}

export async function render(root, ctx) {
  const selected = ctx.rest[0] || null;
  const about = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));
  const listBox = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));
  const ids = h("datalist", { id: "op-listing-ids" });
  const status = h("div", { class: "form-status" });
  const find = h("form", { class: "inline", "data-form": "find-listing" },
    h("input", { name: "listing_id", list: "op-listing-ids", placeholder: "listing id (UUID)", "aria-label": "Listing id", value: selected || "", autocomplete: "off" }),
    h("button", { type: "submit" }, "Open"));
  find.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = fields(find).listing_id;
    if (!UUID.test(id)) {
      status.replaceChildren(errorBox(new Error("A listing id is a UUID, like 01a245f7-457a-7040-8239-aed0b09d7bf1.")));
      return;
    }
    ctx.tab("listings", id.toLowerCase());
  });

  const load = async () => {
    try {
      const rows = await known();
      about.replaceChildren(facts(rows.find((x) => x.id === selected)));
      ids.replaceChildren(...rows.map((x) => h("option", { value: x.id }, x.model || "")));
      if (!rows.length) {
        listBox.replaceChildren(h("p", { class: "muted" }, "No listing seen lately. Listing ids come from routing activity, flagged trades or the seller."));
        return;
      }
      listBox.replaceChildren(cardTable(["Listing", "Model", "Provider", "State", ["Won", "num"], ["Open reviews", "num"], ""],
        rows.map((x) => h("tr", { "data-listing-id": x.id, class: x.id === selected ? "chosen" : "" },
          h("td", {}, idChip(x.id, "listing id")),
          h("td", { class: "op-nowrap" }, x.model || h("span", { class: "muted" }, "unknown")),
          h("td", {}, x.provider || h("span", { class: "muted" }, "\u2014")),
          h("td", {}, statusText(x)),
          h("td", { class: "num" }, int(x.wins)),
          h("td", { class: "num" }, x.open ? badge(String(x.open), "warn") : "0"),
          h("td", {}, h("a", { href: "#/operator/listings/" + encodeURIComponent(x.id), "data-action": "manage" }, "Manage")))),
        { "data-testid": "known-listings" }),
      h("p", { class: "muted" }, "From the newest 100 routing decisions and flagged trades. \u201cWon\u201d counts decisions among those."));
    } catch (err) {
      about.replaceChildren();
      listBox.replaceChildren(errorBox(err, load));
    }
  };

  root.append(...[
    ids,
    section("Find a listing", find, status,
      h("p", { class: "muted" }, "The admin API has no listing search: paste an id from routing activity, a flagged trade or the seller.")),
    selected ? (UUID.test(selected) ? panel(selected, ctx, about, () => load()) : errorBox(new Error("\u201c" + selected + "\u201d is not a listing id."))) : null,
    section("Listings seen lately", listBox),
  ].filter(Boolean));
  await load();
}
