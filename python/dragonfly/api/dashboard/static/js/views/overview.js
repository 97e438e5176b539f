// The account at a glance: who, the balance (with the trial credit), this month's usage, next steps.

import { api, query } from "../api.js";
import { h, int, section, usd, when } from "../dom.js";

export const title = "Overview";

export async function render(root, ctx) {
  const account = ctx.account();
  const monthStart = new Date();
  monthStart.setUTCDate(1);
  monthStart.setUTCHours(0, 0, 0, 0);
  const [balance, ledger, usage, keys] = await Promise.all([
    api("GET", "api/billing/balance"),
    api("GET", "api/billing/transactions" + query({ limit: 100 })),
    api("GET", "api/usage" + query({ from: monthStart.toISOString() })),
    api("GET", "api/keys"),
  ]);
  const trial = ledger.data.find((line) => line.kind === "trial_credit");
  const live = keys.data.filter((k) => !k.revoked).length;

  const verified = account.email_verified
    ? h("span", { class: "badge ok" }, "verified")
    : h("span", { class: "badge warn" }, "not verified");
  const trialText = trial
    ? `Trial credit of ${usd(trial.amount_usd)} granted ${when(trial.created_at)}.`
    : account.email_verified
      ? "No trial credit on this account."
      : "Confirm your email address (the link is in the mail we sent) to receive the trial credit.";

  root.append(
    h("h1", {}, "Overview"),
    h("div", { class: "grid" },
      section("Account",
        h("p", {}, h("strong", {}, account.email), " ", verified),
        account.roles.length ? h("p", { class: "muted" }, "Roles: " + account.roles.join(", ")) : null),
      section("Balance",
        h("p", { class: "big", "data-testid": "balance" }, usd(balance.available_usd)),
        h("p", { class: "muted" }, `available of ${usd(balance.balance_usd)}; ${usd(balance.held_usd)} held by requests in flight`),
        h("p", { "data-testid": "trial" }, trialText)),
      section("This month",
        h("p", { class: "big" }, usd(usage.cost_usd)),
        h("p", { class: "muted" }, `${int(usage.requests)} requests, ${int(usage.prompt_tokens)} prompt and ${int(usage.completion_tokens)} completion tokens`)),
    ),
    section("Next steps",
      h("ol", { class: "steps" },
        h("li", {}, live ? `You have ${live} active key${live === 1 ? "" : "s"}. ` : "Create an API key. ",
          h("a", { href: "#/keys" }, "Keys")),
        h("li", {}, "Pick a model and copy a snippet for the OpenAI SDK. ", h("a", { href: "#/models" }, "Models")),
        h("li", {}, "Try a chat with your key, and see its receipt. ", h("a", { href: "#/playground" }, "Playground")),
        h("li", {}, "Watch your spending per day, model, key and group. ", h("a", { href: "#/usage" }, "Usage")))),
  );
}
