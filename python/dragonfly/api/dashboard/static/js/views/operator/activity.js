// Routing activity (`GET /api/admin/routing/activity`): sampled decisions per model and profile, and for
// each one the candidates with their score split by feature (weight × feature), the winner, and why each
// other listing lost.

import { api, query } from "../../api.js";
import { color } from "../../chart.js";
import { errorBox, field, fields, h, int, s, section, when } from "../../dom.js";
import { FEATURES, badge, cardTable, idChip, num, penalty, reason, shortId } from "./common.js";

const OUTCOMES = { completed: "ok", failed: "bad", refused: "warn", cancelled: "" };

/** The score as the sum of its parts: each feature's weight (normalised) × its value, 0–1. */
export function contributions(candidate) {
  const total = FEATURES.reduce((sum, [name]) => sum + Number(candidate.weights[name] || 0), 0) || 1;
  return FEATURES.map(([name], i) => ({
    name, index: i, value: (Number(candidate.weights[name] || 0) / total) * Number(candidate.features[name] || 0),
  }));
}

function scoreBar(candidate) {
  const W = 160, H = 14;
  const svg = s("svg", { class: "op-score", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    "aria-label": "Score " + num(candidate.score) + " by feature" });
  svg.append(s("rect", { class: "op-score-track", x: 0, y: 0, width: W, height: H, rx: 2 }));
  if (candidate.excluded) return svg;
  let x = 0;
  let sum = 0;
  for (const part of contributions(candidate)) {
    if (part.value <= 0) continue;
    const w = part.value * W;
    svg.append(s("rect", { x, y: 0, width: Math.max(1, w), height: H, fill: color(part.index) },
      s("title", {}, `${part.name}: ${num(part.value)}`)));
    x += w;
    sum += part.value;
  }
  if (candidate.score < sum - 1e-6) { // a penalty took part of it: mark where the score ended
    const at = Math.max(1, candidate.score * W);
    svg.append(s("line", { class: "op-score-penalty", x1: at, x2: at, y1: 0, y2: H },
      s("title", {}, "score after penalties: " + num(candidate.score))));
  }
  return svg;
}

function legend() {
  return h("ul", { class: "legend" }, FEATURES.map(([name, label], i) =>
    h("li", {}, s("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" },
      s("rect", { width: 12, height: 12, rx: 2, fill: color(i) })), " ", label)));
}

const SHORT = { price: "price", latency: "ttft", throughput: "tps", reliability: "rel", quality: "qual" };

/** The feature where `a` gains most over `b` (by weighted contribution), with both values. */
function edge(a, b) {
  const ca = contributions(a), cb = contributions(b);
  let best = null;
  ca.forEach((part, i) => {
    const gain = part.value - cb[i].value;
    if (gain > 1e-9 && (!best || gain > best.gain)) best = { name: part.name, gain };
  });
  return best && `${best.name} ${num(a.features[best.name], 2)} vs ${num(b.features[best.name], 2)}`;
}

function why(decision, c) {
  const winner = decision.candidates.find((x) => x.chosen);
  if (c.chosen) {
    const others = decision.candidates.filter((x) => !x.chosen && !x.excluded).sort((a, b) => b.score - a.score);
    if (!others.length) return [badge("won", "ok"), " the only listing left after the filters"];
    if (c.rank > 0) return [badge("won", "ok"), ` ranked ${c.rank + 1}: the listings above it failed or were refused at admission`];
    const ahead = edge(c, others[0]);
    return [badge("won", "ok"), ` highest score, ${num(c.score - others[0].score)} ahead of the next`, ahead ? ` (mostly ${ahead})` : ""];
  }
  if (c.lost_because === "lower_score" && winner) {
    const behind = edge(winner, c);
    return [badge("lost", "warn"), ` lower score by ${num(winner.score - c.score)}`, behind ? ` (mostly ${behind})` : ""];
  }
  return [badge(c.excluded ? "out" : "lost", c.excluded ? "bad" : "warn"), " ", reason(c.lost_because)];
}

function decisionCard(d, open) {
  const rows = d.candidates.map((c) => h("tr", { "data-listing-id": c.listing_id, class: c.chosen ? "chosen" : "" },
    h("td", { class: "num" }, c.rank === null ? "\u2014" : String(c.rank + 1)),
    h("td", {}, idChip(c.listing_id, "listing id")),
    h("td", { class: "num" }, c.excluded ? "\u2014" : num(c.score)),
    h("td", {}, scoreBar(c)),
    h("td", { class: "op-features" }, c.excluded ? h("span", { class: "muted" }, "not scored")
      : FEATURES.map(([name, label]) => h("span", { title: label }, SHORT[name] + " " + num(c.features[name], 2)))),
    h("td", { "data-testid": "why" }, why(d, c), c.penalties.length ? h("div", { class: "muted" }, "penalties: " + c.penalties.map(penalty).join(", ")) : null)));
  const weights = d.candidates.length ? d.candidates[0].weights : {};
  return h("details", { class: "op-decision card", open, "data-decision-id": d.id, "data-model": d.model },
    h("summary", {},
      h("span", { class: "op-when" }, when(d.at)), " ",
      h("strong", {}, d.model), " ",
      h("span", {}, d.strategy), " ",
      badge(d.outcome, OUTCOMES[d.outcome]), d.error_code ? h("span", { class: "muted" }, " " + d.error_code) : null, " ",
      h("span", { class: "muted" }, d.chosen_listing_id ? "chose " + shortId(d.chosen_listing_id) : "no listing")),
    h("p", { class: "muted op-meta" },
      `${int(d.listings)} listing${d.listings === 1 ? "" : "s"} known for the model; profile `, idChip(d.profile_id, "profile id"),
      "; trade ", idChip(d.trade_id, "trade id"), `; instance ${d.instance}; weights `,
      FEATURES.map(([name]) => `${name} ${num(weights[name], 2)}`).join(", "), "."),
    cardTable([["#", "num"], "Listing", ["Score", "num"], "Score by feature", "Features (0\u20131)", "Result"], rows, { class: "op-candidates" }));
}

/** Decisions per model and profile among those loaded, with their outcomes and most chosen listing. */
function perModel(decisions) {
  const groups = new Map();
  for (const d of decisions) {
    const key = d.model + "\u0000" + d.profile_id;
    const g = groups.get(key) || { model: d.model, profile: d.profile_id, strategy: d.strategy, n: 0, outcomes: {}, wins: new Map() };
    g.n += 1;
    g.outcomes[d.outcome] = (g.outcomes[d.outcome] || 0) + 1;
    if (d.chosen_listing_id) g.wins.set(d.chosen_listing_id, (g.wins.get(d.chosen_listing_id) || 0) + 1);
    groups.set(key, g);
  }
  const rows = [...groups.values()].map((g) => {
    const top = [...g.wins.entries()].sort((a, b) => b[1] - a[1])[0];
    return h("tr", { "data-model": g.model },
      h("td", {}, g.model),
      h("td", {}, g.strategy, " ", idChip(g.profile, "profile id")),
      h("td", { class: "num" }, int(g.n)),
      h("td", {}, Object.entries(g.outcomes).map(([o, n]) => [badge(`${n} ${o}`, OUTCOMES[o]), " "])),
      h("td", {}, top ? [idChip(top[0], "listing id"), ` ${top[1]} of ${g.n}`] : h("span", { class: "muted" }, "none")));
  });
  return cardTable(["Model", "Profile", ["Decisions", "num"], "Outcomes", "Most chosen"], rows, { "data-testid": "activity-groups" });
}

export async function render(root) {
  const status = h("div", { class: "form-status" });
  const groups = h("div");
  const list = h("div", { class: "op-decisions" }, h("p", { class: "muted" }, "Loading\u2026"));
  const modelList = h("datalist", { id: "op-models" });
  const profileList = h("datalist", { id: "op-profiles" });
  const form = h("form", { class: "grid-form", "data-form": "activity-filter" },
    field("Model", h("input", { name: "model", list: "op-models", placeholder: "every model", maxlength: "128" })),
    field("Routing profile id", h("input", { name: "profile_id", list: "op-profiles", placeholder: "every profile" })),
    field("Decisions", h("select", { name: "limit" }, [20, 50, 100].map((n) => h("option", { value: String(n), selected: n === 50 }, `newest ${n}`)))),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Show"), h("button", { type: "reset", class: "secondary" }, "Clear")),
    status);

  const fill = (node, values) => {
    const seen = new Set([...node.options].map((o) => o.value));
    for (const v of values) if (v && !seen.has(v)) { node.append(h("option", { value: v })); seen.add(v); }
  };

  const load = async () => {
    const values = fields(form);
    status.replaceChildren();
    try {
      const answer = await api("GET", "api/admin/routing/activity" + query({ model: values.model, profile_id: values.profile_id, limit: values.limit }));
      const decisions = answer.data;
      fill(modelList, decisions.map((d) => d.model));
      fill(profileList, decisions.map((d) => d.profile_id));
      if (!decisions.length) {
        groups.replaceChildren(h("p", { class: "muted" }, values.model || values.profile_id
          ? "No decision matches: the model and profile must match exactly."
          : "No routing decision recorded yet. Each gateway keeps the first decision per model and profile, then at most one a second."));
        list.replaceChildren();
        return;
      }
      groups.replaceChildren(perModel(decisions));
      list.replaceChildren(legend(), ...decisions.map((d, i) => decisionCard(d, i === 0)));
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  form.addEventListener("reset", () => setTimeout(load));

  root.append(
    modelList, profileList,
    section("Filter", form),
    section("Decisions per model and profile", groups),
    section("Why a listing won",
      h("p", { class: "muted" }, "Each bar is the candidate's score split by feature: the strategy's weight (normalised to sum 1) times the listing's feature value. ",
        "The highest score wins; near-ties are drawn at random, weighted by score. A line marks the score after penalties (a degraded contract halves it)."),
      list),
  );
  // Sampled decisions: the view is a sample, not a count of requests.
  await load();
}
