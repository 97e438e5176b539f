// The dashboard's shell: who is logged in, the section list, and the hash router (`#/keys`).
//
// Sections are a table: a view module exports `title` and `render(root, ctx)` (which may return a
// cleanup function, called when the person leaves it). `group` sorts the navigation into what a person
// buys, sells and (with `roles`) operates; a view may read a sub-path of its own (`#/listings/<id>`).

import { api, whenSessionEnds } from "./api.js";
import { describe, errorBox, h, notify, usd } from "./dom.js";
import * as keystore from "./keystore.js";
import * as billing from "./views/billing.js";
import * as keys from "./views/keys.js";
import * as login from "./views/login.js";
import * as models from "./views/models.js";
import * as overview from "./views/overview.js";
import * as earnings from "./views/earnings.js";
import * as listings from "./views/listings.js";
import * as operator from "./views/operator.js";
import * as playground from "./views/playground.js";
import * as pool from "./views/pool.js";
import * as profiles from "./views/profiles.js";
import * as reviews from "./views/reviews.js";
import * as signup from "./views/signup.js";
import * as usage from "./views/usage.js";

const ROUTES = {
  login: { view: login, public: true },
  signup: { view: signup, public: true },
  overview: { view: overview, nav: "Overview", group: "Buy" },
  keys: { view: keys, nav: "Keys", group: "Buy" },
  profiles: { view: profiles, nav: "Routing", group: "Buy" },
  usage: { view: usage, nav: "Usage", group: "Buy" },
  billing: { view: billing, nav: "Billing", group: "Buy" },
  models: { view: models, nav: "Models", group: "Buy" },
  playground: { view: playground, nav: "Playground", group: "Buy" },
  pool: { view: pool, nav: "Pool keys", group: "Sell" },
  listings: { view: listings, nav: "Listings", group: "Sell" },
  earnings: { view: earnings, nav: "Earnings", group: "Sell" },
  reviews: { view: reviews, nav: "Trade reviews", group: "Sell" },
  operator: { view: operator, nav: "Operator", group: "Operate", roles: ["operator"] },
};
const HOME = "overview";

const state = { account: null, cleanup: null, wanted: null, rendering: 0 };

const ctx = {
  account: () => state.account,
  loggedIn(account) {
    state.account = account;
    const next = state.wanted && ROUTES[state.wanted] && !ROUTES[state.wanted].public ? state.wanted : HOME;
    state.wanted = null;
    go(next);
  },
  refreshBalance,
  /** The hash path after the section's name: `#/listings/<id>` gives ["<id>"]. */
  subpath: () => location.hash.replace(/^#\/?/, "").split("?")[0].split("/").slice(1).filter(Boolean).map(decodeURIComponent),
  /** Go to a section (and sub-path): ctx.go("listings", id). */
  go: (name, ...rest) => go([name, ...rest.map(encodeURIComponent)].join("/")),
  /** The inference base URL for SDKs: this page's address + `v1`. */
  v1Base: () => new URL("v1", document.baseURI).href,
};

function go(path) {
  if (location.hash === "#/" + path) route();
  else location.hash = "#/" + path;
}

function current() {
  const name = location.hash.replace(/^#\/?/, "").split(/[/?]/)[0];
  return ROUTES[name] ? name : state.account ? HOME : "login";
}

async function refreshBalance() {
  const chip = document.getElementById("balance-chip");
  if (!chip || !state.account) return;
  try {
    const balance = await api("GET", "api/billing/balance");
    chip.textContent = usd(balance.available_usd);
    chip.title = "Available balance";
  } catch (err) {
    chip.textContent = "balance unavailable";
    chip.title = describe(err);
  }
}

function drawChrome(active) {
  const nav = document.getElementById("nav");
  const account = document.getElementById("account");
  if (!state.account) {
    nav.replaceChildren();
    account.replaceChildren(h("a", { href: "#/login" }, "Log in"), h("a", { class: "button small", href: "#/signup" }, "Sign up"));
    return;
  }
  const links = [];
  let group = null;
  for (const [name, r] of Object.entries(ROUTES)) {
    if (!r.nav || !allowed(r)) continue;
    if (r.group !== group) {
      group = r.group;
      links.push(h("span", { class: "nav-group" }, group));
    }
    links.push(h("a", { href: "#/" + name, "aria-current": name === active ? "page" : null }, r.nav));
  }
  nav.replaceChildren(...links);
  const logout = h("button", { type: "button", class: "small secondary", "data-testid": "logout" }, "Log out");
  logout.addEventListener("click", logOut);
  account.replaceChildren(
    h("span", { id: "balance-chip", class: "chip", "data-testid": "balance-chip" }, "\u2026"),
    h("span", { class: "who", title: state.account.email }, state.account.email),
    logout,
  );
  refreshBalance();
}

function allowed(route) {
  return !route.roles || (state.account && route.roles.some((role) => state.account.roles.includes(role)));
}

async function logOut() {
  try {
    await api("DELETE", "api/auth/session");
  } catch (err) {
    notify("Logging out failed: " + describe(err), "bad");
    return;
  }
  keystore.forgetAll();
  state.account = null;
  notify("You are logged out.");
  go("login");
}

async function route() {
  const name = current();
  const entry = ROUTES[name];
  if (!entry.public && !state.account) {
    state.wanted = name;
    go("login");
    return;
  }
  if ((entry.public && state.account) || !allowed(entry)) {
    go(HOME);
    return;
  }
  if (state.cleanup) {
    try { state.cleanup(); } catch (err) { /* leaving a page never fails */ }
    state.cleanup = null;
  }
  drawChrome(name);
  const root = document.getElementById("view");
  const page = h("div", { class: "view", "data-view": name });
  root.replaceChildren(page);
  window.scrollTo(0, 0);
  document.title = entry.view.title + " \u00b7 Dragonfly";
  const ticket = ++state.rendering;
  try {
    const cleanup = await entry.view.render(page, ctx);
    if (ticket === state.rendering) state.cleanup = typeof cleanup === "function" ? cleanup : null;
    else if (typeof cleanup === "function") cleanup();
  } catch (err) {
    if (ticket !== state.rendering || (err && err.status === 401)) return;
    page.replaceChildren(h("h1", {}, entry.view.title), errorBox(err, () => route()));
  }
}

whenSessionEnds(() => {
  if (!state.account) return;
  state.account = null;
  keystore.forgetAll();
  notify("Your session has ended: log in again.", "bad");
  state.wanted = current();
  go("login");
});

window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (event) => {
  notify(describe(event.reason), "bad");
});

async function boot() {
  try {
    state.account = await api("GET", "api/auth/me");
  } catch (err) {
    state.account = null;
    if (err.status !== 401) notify(describe(err), "bad");
  }
  await route();
}

boot();
