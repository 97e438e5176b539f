// Usage: per day and per model (`GET /api/usage/daily`, drawn as SVG), per key (`/api/usage/by-key`) and
// per group (`/api/usage/by-group`) over the same window.

import { api, query } from "../api.js";
import { hbars, lastDays, stackedBars } from "../chart.js";
import { errorBox, h, int, section, table, usd } from "../dom.js";

export const title = "Usage";

const METRICS = {
  cost: { label: "Cost (USD)", pick: (x) => Number(x.cost_usd), format: (v) => usd(v), integer: false },
  requests: { label: "Requests", pick: (x) => x.requests, format: (v) => int(Math.round(v)), integer: true },
  tokens: { label: "Tokens", pick: (x) => x.prompt_tokens + x.completion_tokens, format: (v) => int(Math.round(v)), integer: true },
};

const NUMBERS = [["Requests", "num"], ["Prompt tokens", "num"], ["Completion tokens", "num"], ["Cost", "num"]];

/** The width a chart gets inside a card of the page (the card's padding taken off). */
function chartWidth() {
  const main = document.querySelector(".view");
  return main ? main.clientWidth - 40 : 720;
}

function sums(x) {
  return [int(x.requests), int(x.prompt_tokens), int(x.completion_tokens), usd(x.cost_usd)];
}

export async function render(root) {
  let days = 30;
  let metric = "requests";
  const body = h("div", { class: "usage-body" }, h("p", { class: "muted" }, "Loading\u2026"));
  const daysSelect = h("select", { name: "days", "aria-label": "Period" },
    [7, 30, 90].map((d) => h("option", { value: String(d), selected: d === days }, `last ${d} days`)));
  const metricSelect = h("select", { name: "metric", "aria-label": "Measure" },
    Object.entries(METRICS).map(([name, m]) => h("option", { value: name, selected: name === metric }, m.label)));

  const load = async () => {
    const dates = lastDays(days);
    const from = dates[0] + "T00:00:00Z";
    try {
      const [daily, byKey, byGroup] = await Promise.all([
        api("GET", "api/usage/daily" + query({ days })),
        api("GET", "api/usage/by-key" + query({ from })),
        api("GET", "api/usage/by-group" + query({ from })),
      ]);
      body.replaceChildren(...draw(daily.data, byKey.data, byGroup.data, dates));
    } catch (err) {
      body.replaceChildren(errorBox(err, load));
    }
  };

  const draw = (daily, byKey, byGroup, dates) => {
    const m = METRICS[metric];
    const models = new Map();
    for (const day of daily) {
      for (const row of day.models) {
        const total = models.get(row.model) || { requests: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 };
        total.requests += row.requests;
        total.prompt_tokens += row.prompt_tokens;
        total.completion_tokens += row.completion_tokens;
        total.cost_usd += Number(row.cost_usd);
        models.set(row.model, total);
      }
    }
    const series = [...models.keys()].sort();
    if (!daily.length) {
      return [section("Per day", h("p", { class: "muted empty" }, "No requests in this period yet. Try the ",
        h("a", { href: "#/playground" }, "playground"), "."))];
    }
    const rows = daily.map((day) => ({
      date: day.date,
      values: Object.fromEntries(day.models.map((x) => [x.model, m.pick(x)])),
    }));
    const totals = daily.reduce((t, d) => ({
      requests: t.requests + d.requests,
      prompt_tokens: t.prompt_tokens + d.prompt_tokens,
      completion_tokens: t.completion_tokens + d.completion_tokens,
      cost_usd: t.cost_usd + Number(d.cost_usd),
    }), { requests: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 });
    return [
      h("div", { class: "grid" },
        section("Requests", h("p", { class: "big", "data-testid": "usage-requests" }, int(totals.requests))),
        section("Tokens", h("p", { class: "big" }, int(totals.prompt_tokens + totals.completion_tokens)),
          h("p", { class: "muted" }, `${int(totals.prompt_tokens)} prompt, ${int(totals.completion_tokens)} completion`)),
        section("Cost", h("p", { class: "big" }, usd(totals.cost_usd)))),
      section(m.label + " per day and model",
        stackedBars({ dates, rows, series, format: m.format, integer: m.integer, width: chartWidth(), label: m.label + " per day, stacked by model" })),
      section(m.label + " per model",
        hbars({
          items: series.map((name, i) => ({ name, value: m.pick(models.get(name)), colorIndex: i })),
          format: m.format, width: chartWidth(), label: m.label + " per model",
        })),
      section("Per key",
        byKey.length
          ? table(["Key", "Group", ...NUMBERS],
            byKey.map((x) => h("tr", { "data-key-id": x.key_id }, h("td", {}, x.name || x.key_id), h("td", {}, x.key_group),
              sums(x).map((v) => h("td", { class: "num" }, v)))), { "data-testid": "usage-by-key" })
          : h("p", { class: "muted" }, "No key was used in this period.")),
      section("Per group",
        byGroup.length
          ? table(["Group", ["Keys used", "num"], ...NUMBERS],
            byGroup.map((x) => h("tr", {}, h("td", {}, x.key_group), h("td", { class: "num" }, int(x.keys)),
              sums(x).map((v) => h("td", { class: "num" }, v)))))
          : h("p", { class: "muted" }, "No group was used in this period.")),
    ];
  };

  daysSelect.addEventListener("change", () => { days = Number(daysSelect.value); load(); });
  metricSelect.addEventListener("change", () => { metric = metricSelect.value; load(); });
  root.append(
    h("h1", {}, "Usage"),
    h("div", { class: "toolbar" }, daysSelect, metricSelect),
    body,
  );
  await load();
}
