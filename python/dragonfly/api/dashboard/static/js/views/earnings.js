// Earnings: where the seller's money is (`GET /v1/market/earnings`), what was earned per hour or day
// (`/v1/market/earnings/timeseries`, drawn as SVG), per listing and model (`/earnings/summary`), per month
// (`/earnings/monthly`), the release history (`/v1/market/settlements`) and payouts (`/v1/market/payouts`).
// Each part loads on its own, so one failing answer leaves the others readable.

import { api, query } from "../api.js";
import { color, hbars, lastDays, niceMax } from "../chart.js";
import { errorBox, h, int, notify, s, section, table, usd, when } from "../dom.js";

export const title = "Earnings";

const HOUR_MS = 3600000;

const WINDOWS = {
  hour48: { label: "per hour, last 48 hours", bucket: "hour", from: () => new Date(Math.floor(Date.now() / HOUR_MS) * HOUR_MS - 47 * HOUR_MS).toISOString() },
  day30: { label: "per day, last 30 days", bucket: "day", from: () => lastDays(30)[0] + "T00:00:00Z" },
  day90: { label: "per day, last 90 days", bucket: "day", from: () => lastDays(90)[0] + "T00:00:00Z" },
};

const METRICS = {
  earned: { label: "Earned (USD)", pick: (x) => Number(x.payout_usd), format: (v) => usd(v), integer: false },
  requests: { label: "Requests", pick: (x) => x.requests, format: (v) => int(Math.round(v)), integer: true },
  tokens: { label: "Tokens", pick: (x) => x.tokens, format: (v) => int(Math.round(v)), integer: true },
};

const PERIODS = {
  all: { label: "all time", from: () => null },
  month: { label: "this month (UTC)", from: () => lastDays(1)[0].slice(0, 8) + "01T00:00:00Z" },
  week: { label: "last 7 days", from: () => lastDays(7)[0] + "T00:00:00Z" },
  today: { label: "today (UTC)", from: () => lastDays(1)[0] + "T00:00:00Z" },
};

const PAYOUT_AMOUNT = /^[0-9]+(\.[0-9]{1,6})?$/;

/** The width a chart gets inside a card of the page (the card's padding taken off). */
function chartWidth() {
  const main = document.querySelector(".view");
  return main ? main.clientWidth - 40 : 720;
}

/** A span of time in words: "30 seconds", "1 hour". */
function duration(ms) {
  const sec = Math.round(ms / 1000);
  const say = (n, unit) => `${n} ${unit}${n === 1 ? "" : "s"}`;
  if (sec < 90) return say(sec, "second");
  if (sec < 90 * 60) return say(Math.round(sec / 60), "minute");
  if (sec < 48 * 3600) return say(Math.round(sec / 3600), "hour");
  return say(Math.round(sec / 86400), "day");
}

function monthName(key) {
  const [year, month] = key.split("-").map(Number);
  return new Date(Date.UTC(year, month - 1, 1)).toLocaleString("en-US", { month: "long", year: "numeric", timeZone: "UTC" });
}

function short(id) {
  return String(id || "").slice(0, 8) + "\u2026";
}

function td(label, value, cls) {
  return h("td", { "data-label": label, class: cls }, value);
}

/** Fills `box` with what `build` returns, or the error in words with a retry button; when loads overlap
 * (a select changed twice quickly), only the latest one is shown. */
function loader(box, build) {
  let latest = 0;
  const load = async () => {
    const ticket = ++latest;
    try {
      const out = await build();
      if (ticket === latest) box.replaceChildren(...[out].flat().filter((x) => x !== null && x !== undefined && x !== false));
    } catch (err) {
      if (ticket === latest) box.replaceChildren(errorBox(err, load));
    }
  };
  return load;
}

/**
 * Bars over time: one bar per UTC bucket (hour or day), zeros left empty. Each bar carries data-date
 * (its UTC day), data-start (its bucket's start), data-series and data-value; hours get a dashed line
 * at each UTC midnight with the date beside it.
 */
function bucketBars({ points, bucket, series, format, integer, label, width }) {
  const W = Math.max(280, Math.round(width || 720)), H = Math.min(260, Math.max(180, W * 0.45));
  const step = Math.max(integer ? 1 : 0, niceMax(Math.max(0, ...points.map((p) => p.value)) / 4));
  const max = 4 * step;
  const ticks = [0, 1, 2, 3, 4].map((i) => format((max * i) / 4));
  // Room for the longest tick label ("$0.000400" is 9 characters, about 7 px each at 12 px).
  const left = Math.max(48, 12 + 7 * Math.max(...ticks.map((x) => x.length))), right = 8, top = 14, bottom = 30;
  const plotW = W - left - right, plotH = H - top - bottom;
  const slot = plotW / Math.max(1, points.length);
  const barW = Math.max(2, Math.min(36, slot * 0.7));
  const y = (v) => top + plotH - (v / max) * plotH;

  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, preserveAspectRatio: "xMidYMid meet" });
  ticks.forEach((text, i) => {
    const value = (max * i) / 4;
    svg.append(
      s("line", { class: "gridline", x1: left, x2: W - right, y1: y(value), y2: y(value) }),
      s("text", { class: "tick", x: left - 6, y: y(value) + 4, "text-anchor": "end" }, text),
    );
  });
  const every = Math.ceil(points.length / Math.max(2, Math.floor(plotW / 52))); // a label per ~52 px
  points.forEach((p, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    const date = p.start.slice(0, 10), hour = p.start.slice(11, 13);
    const name = bucket === "hour" ? `${date} ${hour}:00 UTC` : date;
    if (bucket === "hour" && hour === "00" && i > 0) {
      const mx = left + i * slot;
      svg.append(
        s("line", { class: "daymark", x1: mx, x2: mx, y1: top - 2, y2: y(0) }),
        s("text", { class: "tick", x: mx + 3, y: top + 8 }, date.slice(5)),
      );
    }
    if (p.value > 0) {
      const y1 = y(p.value);
      svg.append(s("rect", {
        class: "bar", x, y: y1, width: barW, height: Math.max(1, y(0) - y1), fill: color(0),
        "data-date": date, "data-start": p.start, "data-series": series, "data-value": p.value,
      }, s("title", {}, `${name}: ${format(p.value)}`)));
    }
    if ((points.length - 1 - i) % every === 0) { // counted from the newest bucket, which is always labelled
      const last = i === points.length - 1;
      svg.append(s("text", {
        class: "tick", x: last ? Math.min(W - 2, x + barW) : x + barW / 2, y: H - 10, "text-anchor": last ? "end" : "middle",
      }, bucket === "hour" ? hour + ":00" : date.slice(5)));
    }
  });
  svg.append(s("line", { class: "axis", x1: left, x2: W - right, y1: y(0), y2: y(0) }));
  return h("figure", { class: "chart-box" }, svg);
}

function card(name, heading, amount, ...notes) {
  return h("section", { class: "card earn-card", "data-testid": "earnings-" + name },
    h("h2", {}, heading),
    h("p", { class: "big", "data-usd": amount }, usd(amount)),
    notes.filter(Boolean).map((n) => h("p", { class: "muted earn-note" }, n)));
}

/** When locked earnings unlock, as far as the API lets us tell: a release row covers the credits posted
 * before its `period_end`, and the worker releases what is older than the lock window when it runs. */
function unlockNote(lastRelease) {
  if (!lastRelease) {
    return "Each trade's share stays locked for the operator's lock window (one hour unless the operator set another), then moves to available.";
  }
  const lag = new Date(lastRelease.created_at) - new Date(lastRelease.period_end);
  const last = `The last release, ${when(lastRelease.created_at)}, `;
  if (!(lag >= 1000)) {
    return `${last}moved every trade before it: locked earnings unlock at the next run of the release worker.`;
  }
  return `Each trade's share stays locked for the lock window, then moves to available. ${last}moved trades older than ${duration(lag)}: locked earnings unlock about ${duration(lag)} after their trade.`;
}

export async function render(root, ctx) {
  let windowName = "day30";
  let metric = "earned";
  let period = "all";
  let available = 0;

  const cards = h("div", { class: "earn-cards" }, h("p", { class: "muted" }, "Loading\u2026"));
  const chartBox = h("div", { "data-testid": "earnings-chart" }, h("p", { class: "muted" }, "Loading\u2026"));
  const summaryBox = h("div", { "data-testid": "earnings-by-listing" }, h("p", { class: "muted" }, "Loading\u2026"));
  const monthlyBox = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));
  const payoutForm = h("div");

  // Cards: the ledger balances, and the last release (for when locked earnings unlock).
  const loadCards = loader(cards, async () => {
    const [money, releases] = await Promise.all([
      api("GET", "v1/market/earnings"),
      api("GET", "v1/market/settlements" + query({ limit: 1 })).catch(() => ({ data: [] })),
    ]);
    available = Number(money.available_usd);
    drawPayoutForm();
    const none = Number(money.lifetime_usd) === 0;
    return [
      none ? h("p", { class: "empty-note", "data-testid": "earnings-empty" },
        "No earnings yet: when a buyer's request is served by one of your active listings, your share shows here within seconds. ",
        h("a", { href: "#/listings" }, "Your listings")) : null,
      h("div", { class: "grid" },
        card("available", "Available", money.available_usd, "Released from the lock window: yours to pay out (below)."),
        card("locked", "Locked", money.locked_usd, unlockNote(releases.data[0])),
        card("reserve", "Reserve", money.reserve_usd,
          "A share of each trade kept back for the reserve period (30 days unless the operator set another), then released to available. An upheld trade review pauses reserve releases for one period."),
        card("lifetime", "Lifetime", money.lifetime_usd, "Everything your trades ever earned, less what upheld reviews refunded to buyers.")),
      h("div", { class: "grid earn-minor" },
        card("held", "Held by reviews", money.held_usd,
          "Your whole share of trades under an open review: released only once the operator resolves it."),
        card("pending", "Payout pending", money.payout_pending_usd, "Asked to be paid out; the operator pays it and marks it paid."),
        card("paid", "Paid out", money.paid_out_usd, "Payouts the operator marked paid.")),
      Number(money.held_usd) > 0 ? h("p", {}, h("a", { href: "#/reviews" }, "See the trade reviews that hold earnings")) : null,
    ];
  });

  // Over time.
  const windowSelect = h("select", { name: "window", "aria-label": "Buckets" },
    Object.entries(WINDOWS).map(([name, w]) => h("option", { value: name, selected: name === windowName }, w.label)));
  const metricSelect = h("select", { name: "metric", "aria-label": "Measure" },
    Object.entries(METRICS).map(([name, m]) => h("option", { value: name, selected: name === metric }, m.label)));
  const loadChart = loader(chartBox, async () => {
    const w = WINDOWS[windowName], m = METRICS[metric];
    const answer = await api("GET", "v1/market/earnings/timeseries" + query({ bucket: w.bucket, from: w.from() }));
    const points = answer.data.map((x) => ({ start: x.start, value: m.pick(x) }));
    const sum = answer.data.reduce((t, x) => ({ usd: t.usd + Number(x.payout_usd), requests: t.requests + x.requests }), { usd: 0, requests: 0 });
    const unit = w.bucket === "hour" ? "UTC hour" : "UTC day";
    if (!sum.requests) {
      return h("p", { class: "muted empty" }, `No earnings in this window yet: each ${unit} with a trade on your listings gets a bar here.`);
    }
    return [
      bucketBars({ points, bucket: w.bucket, series: metric, format: m.format, integer: m.integer, width: chartWidth(), label: `${m.label} per ${unit}` }),
      h("p", { class: "muted earn-note" }, `${usd(sum.usd)} earned from ${int(sum.requests)} request${sum.requests === 1 ? "" : "s"} in this window; one bar per ${unit}. The amounts are your whole share (locked and reserve).`),
    ];
  });
  windowSelect.addEventListener("change", () => { windowName = windowSelect.value; loadChart(); });
  metricSelect.addEventListener("change", () => { metric = metricSelect.value; loadChart(); });

  // Per listing and model.
  const periodSelect = h("select", { name: "period", "aria-label": "Period" },
    Object.entries(PERIODS).map(([name, p]) => h("option", { value: name, selected: name === period }, p.label)));
  const loadSummary = loader(summaryBox, async () => {
    const answer = await api("GET", "v1/market/earnings/summary" + query({ from: PERIODS[period].from() }));
    if (!answer.data.length) {
      return h("p", { class: "muted empty" }, "No trades on your listings in this period.");
    }
    const models = answer.data.map((x) => x.model);
    const label = (x) => (models.filter((m) => m === x.model).length > 1 ? `${x.model} (${short(x.listing_id)})` : x.model);
    const t = answer.totals;
    return [
      hbars({
        items: answer.data.map((x, i) => ({ name: label(x), value: Number(x.payout_usd), colorIndex: i })),
        format: (v) => usd(v), width: chartWidth(), label: "Earned per listing and model",
      }),
      h("div", { class: "table-wrap" }, h("table", { class: "earn-table", "data-testid": "earnings-summary" },
        h("thead", {}, h("tr", {}, ["Model", "Listing", ["Requests", "num"], ["Prompt tokens", "num"], ["Completion tokens", "num"], ["Earned", "num"]]
          .map((x) => (Array.isArray(x) ? h("th", { scope: "col", class: x[1] }, x[0]) : h("th", { scope: "col" }, x))))),
        h("tbody", {}, answer.data.map((x) => h("tr", { "data-listing-id": x.listing_id, "data-model": x.model },
          td("Model", x.model),
          td("Listing", h("a", { href: "#/listings/" + encodeURIComponent(x.listing_id), title: x.listing_id }, h("code", { class: "ref" }, short(x.listing_id)))),
          td("Requests", int(x.requests), "num"),
          td("Prompt tokens", int(x.prompt_tokens), "num"),
          td("Completion tokens", int(x.completion_tokens), "num"),
          td("Earned", usd(x.payout_usd), "num")))),
        answer.data.length > 1 ? h("tfoot", {}, h("tr", { class: "total" },
          td("", "All listings"), td("", null),
          td("Requests", int(t.requests), "num"), td("Prompt tokens", int(t.prompt_tokens), "num"),
          td("Completion tokens", int(t.completion_tokens), "num"), td("Earned", usd(t.payout_usd), "num"))) : null)),
    ];
  });
  periodSelect.addEventListener("change", () => { period = periodSelect.value; loadSummary(); });

  // Per month.
  const loadMonthly = loader(monthlyBox, async () => {
    const answer = await api("GET", "v1/market/earnings/monthly" + query({ months: 12 }));
    const first = answer.data.findIndex((x) => x.requests > 0);
    if (first < 0) {
      return h("p", { class: "muted empty" }, "No earnings in the last 12 months.");
    }
    const months = answer.data.slice(first).reverse(); // newest first, from the first month with a trade
    return [
      table(["Month", ["Requests", "num"], ["Tokens", "num"], ["Earned", "num"]],
        months.map((x) => h("tr", { class: x.requests ? "" : "zero", "data-month": x.month },
          td("Month", monthName(x.month)), td("Requests", int(x.requests), "num"),
          td("Tokens", int(x.tokens), "num"), td("Earned", usd(x.payout_usd), "num"))),
        { class: "earn-table", "data-testid": "earnings-monthly" }),
      first > 0 ? h("p", { class: "muted earn-note" }, "Calendar months in UTC; the months of the last year before your first trade are left out.") : null,
    ];
  });

  // Releases (settlement history), a page at a time.
  const releaseRows = h("tbody");
  const releaseMore = h("button", { type: "button", class: "secondary more", hidden: true }, "Load more");
  const releaseStatus = h("div");
  const releaseTable = h("div", { class: "table-wrap", hidden: true }, h("table", { class: "earn-table", "data-testid": "earnings-settlements" },
    h("thead", {}, h("tr", {}, ["Released", "Trades from", "Trades until", ["Trades", "num"], ["Amount", "num"]]
      .map((x) => (Array.isArray(x) ? h("th", { scope: "col", class: x[1] }, x[0]) : h("th", { scope: "col" }, x))))),
    releaseRows));
  let releaseCursor = null;
  const loadReleases = async () => {
    releaseMore.disabled = true;
    try {
      const answer = await api("GET", "v1/market/settlements" + query({ limit: 20, cursor: releaseCursor }));
      for (const x of answer.data) {
        releaseRows.append(h("tr", { "data-settlement-id": x.id },
          td("Released", when(x.created_at)), td("Trades from", when(x.period_start)), td("Trades until", when(x.period_end)),
          td("Trades", int(x.trades_count), "num"), td("Amount", usd(x.amount_usd), "num")));
      }
      releaseTable.hidden = !releaseRows.childElementCount;
      releaseStatus.replaceChildren(releaseRows.childElementCount ? "" : h("p", { class: "muted empty" },
        "No releases yet: locked earnings move to available once their lock window has passed, one release per run of the release worker, and each release is listed here."));
      releaseCursor = answer.next_cursor;
      releaseMore.hidden = !answer.has_more;
    } catch (err) {
      releaseStatus.replaceChildren(errorBox(err, loadReleases));
    } finally {
      releaseMore.disabled = false;
    }
  };
  releaseMore.addEventListener("click", loadReleases);

  // Payouts: the request form and the list, a page at a time.
  const payoutRows = h("tbody");
  const payoutMore = h("button", { type: "button", class: "secondary more", hidden: true }, "Load more");
  const payoutStatus = h("div");
  const payoutTable = h("div", { class: "table-wrap", hidden: true }, h("table", { class: "earn-table", "data-testid": "earnings-payouts" },
    h("thead", {}, h("tr", {}, ["Requested", ["Amount", "num"], "Status", "Paid", "Operator's note"].map((x) => (Array.isArray(x)
      ? h("th", { scope: "col", class: x[1] }, x[0]) : h("th", { scope: "col" }, x))))),
    payoutRows));
  let payoutCursor = null;
  const loadPayouts = async (fresh) => {
    if (fresh) { payoutCursor = null; payoutRows.replaceChildren(); }
    payoutMore.disabled = true;
    try {
      const answer = await api("GET", "v1/market/payouts" + query({ limit: 20, cursor: payoutCursor }));
      for (const x of answer.data) {
        payoutRows.append(h("tr", { "data-payout-id": x.id },
          td("Requested", when(x.created_at)), td("Amount", usd(x.amount_usd), "num"),
          td("Status", h("span", { class: "badge " + (x.status === "paid" ? "ok" : "warn") }, x.status)),
          td("Paid", x.paid_at ? when(x.paid_at) : h("span", { class: "muted" }, "not yet")),
          td("Operator's note", x.note || h("span", { class: "muted" }, "\u2014"))));
      }
      payoutTable.hidden = !payoutRows.childElementCount;
      payoutStatus.replaceChildren(payoutRows.childElementCount ? "" : h("p", { class: "muted empty" }, "No payouts yet."));
      payoutCursor = answer.next_cursor;
      payoutMore.hidden = !answer.has_more;
    } catch (err) {
      payoutStatus.replaceChildren(errorBox(err, () => loadPayouts(fresh)));
    } finally {
      payoutMore.disabled = false;
    }
  };
  payoutMore.addEventListener("click", () => loadPayouts(false));

  function drawPayoutForm() {
    const amount = h("input", { name: "amount_usd", inputmode: "decimal", autocomplete: "off", placeholder: usd(available).slice(1), "aria-label": "Amount in USD" });
    const all = h("button", { type: "button", class: "secondary" }, "All");
    const submit = h("button", { type: "submit" }, "Request payout");
    const status = h("div", { class: "form-status", role: "status" });
    const form = h("form", { class: "payout-form", "data-form": "payout" },
      h("label", { class: "field" }, h("span", { class: "label" }, "Amount (USD)"),
        h("div", { class: "inline" }, amount, all, submit)),
      status);
    let armed = null;
    let timer;
    const disarm = () => { armed = null; submit.textContent = "Request payout"; submit.classList.remove("armed"); clearTimeout(timer); };
    all.addEventListener("click", () => { amount.value = available.toFixed(6).replace(/\.?0+$/, ""); disarm(); amount.focus(); });
    amount.addEventListener("input", disarm);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const value = amount.value.trim();
      if (!PAYOUT_AMOUNT.test(value) || !(Number(value) > 0)) {
        status.replaceChildren(errorBox(new Error("Type an amount in USD above 0, with at most 6 decimals, such as 12.50.")));
        return;
      }
      if (armed !== value) { // a payout cannot be cancelled: ask twice
        armed = value;
        submit.textContent = `Confirm: pay out ${usd(value)}`;
        submit.classList.add("armed");
        status.replaceChildren(h("p", { class: "muted" }, "A payout cannot be cancelled. Press again to confirm."));
        clearTimeout(timer);
        timer = setTimeout(disarm, 8000);
        return;
      }
      disarm();
      submit.disabled = true;
      try {
        const made = await api("POST", "v1/market/payouts", { amount_usd: value });
        amount.value = "";
        status.replaceChildren();
        notify(`Payout of ${usd(made.amount_usd)} requested: the operator pays it and marks it paid.`);
        await Promise.all([loadCards(), loadPayouts(true)]);
      } catch (err) {
        status.replaceChildren(errorBox(err));
      } finally {
        submit.disabled = false;
      }
    });
    const nothing = !(available > 0);
    amount.disabled = nothing;
    all.disabled = nothing;
    submit.disabled = nothing;
    payoutForm.replaceChildren(
      h("p", { class: "muted" }, `Ask for part or all of your available earnings (${usd(available)}) to be paid out. The amount moves to "payout pending" at once; the operator pays it outside Dragonfly and marks it paid.`),
      nothing ? h("p", { class: "muted", "data-testid": "payout-nothing" }, "Nothing is available to pay out yet: earnings become available once their lock window has passed.") : null,
      form);
  }

  root.append(
    h("h1", {}, "Earnings"),
    h("p", { class: "muted" }, "What your listings earned and where the money is now. Your share of a trade is credited the moment it settles: most of it locked, a small part to the reserve."),
    cards,
    section("Earned over time", h("div", { class: "toolbar" }, windowSelect, metricSelect), chartBox),
    section("Per listing and model", h("div", { class: "toolbar" }, periodSelect), summaryBox),
    section("Per month", monthlyBox),
    section("Releases", h("p", { class: "muted" }, "Each run of the release worker moves the locked earnings whose lock window has passed to available; the reserve is released separately and is not listed here."),
      releaseTable, releaseMore, releaseStatus),
    h("section", { class: "card", "data-testid": "earnings-payouts-card" }, h("h2", {}, "Payouts"), payoutForm, payoutTable, payoutMore, payoutStatus),
  );
  drawPayoutForm();
  await Promise.all([loadCards(), loadChart(), loadSummary(), loadMonthly(), loadReleases(), loadPayouts(true)]);
  if (ctx && ctx.refreshBalance) ctx.refreshBalance();
}
