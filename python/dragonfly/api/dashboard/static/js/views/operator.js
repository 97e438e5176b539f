// The operator's pages (`#/operator/<tab>`, operator role only): market health, routing activity (why a
// listing won), the global routing weights per strategy, listing suspension, flagged trades, credits and
// payouts. Only the documented `/api/admin/*` routes and the market's health (`/v1/market/health`).

import { h } from "../dom.js";
import * as activity from "./operator/activity.js";
import * as credits from "./operator/credits.js";
import * as flagged from "./operator/flagged.js";
import * as health from "./operator/health.js";
import * as listings from "./operator/listings.js";
import * as payouts from "./operator/payouts.js";
import * as weights from "./operator/weights.js";

export const title = "Operator";

const TABS = {
  health: { view: health, label: "Health" },
  activity: { view: activity, label: "Routing activity" },
  weights: { view: weights, label: "Weights" },
  listings: { view: listings, label: "Listings" },
  flagged: { view: flagged, label: "Flagged trades" },
  credits: { view: credits, label: "Credits" },
  payouts: { view: payouts, label: "Payouts" },
};
const FIRST = "health";

export async function render(root, ctx) {
  const [wanted, ...rest] = ctx.subpath();
  const name = TABS[wanted] ? wanted : FIRST;
  const tab = TABS[name];
  const tabs = h("nav", { class: "op-tabs", "aria-label": "Operator sections" },
    Object.entries(TABS).map(([key, t]) => h("a", {
      href: "#/operator/" + key, "aria-current": key === name ? "page" : null, "data-tab": key,
    }, t.label)));
  const page = h("div", { class: "op-page", "data-tab": name });
  root.append(
    h("div", { class: "op-head" }, h("h1", {}, "Operator"), h("span", { class: "muted" }, tab.label)),
    tabs,
    page,
  );
  const current = tabs.querySelector('[aria-current="page"]');
  if (current) current.scrollIntoView({ block: "nearest", inline: "nearest" });
  document.title = tab.label + " \u00b7 Operator \u00b7 Dragonfly";
  return tab.view.render(page, { ...ctx, rest, tab: (key, ...more) => ctx.go("operator", key, ...more) });
}
