// Log in: `POST /api/auth/session` sets the HttpOnly session cookie and the CSRF cookie.

import { api } from "../api.js";
import { errorBox, field, fields, h } from "../dom.js";

export const title = "Log in";

export async function render(root, ctx) {
  const status = h("div", { class: "form-status" });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { class: "stack narrow", "data-form": "login" },
    field("Email", h("input", { type: "email", name: "email", required: true, autocomplete: "username" })),
    field("Password", h("input", { type: "password", name: "password", required: true, autocomplete: "current-password" })),
    submit, status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { email, password } = fields(form);
    submit.disabled = true;
    status.replaceChildren(h("span", { class: "muted" }, "Logging in\u2026"));
    try {
      const answer = await api("POST", "api/auth/session", { email, password });
      ctx.loggedIn(answer.account);
    } catch (err) {
      status.replaceChildren(errorBox(err));
      submit.disabled = false;
    }
  });
  root.append(
    h("h1", {}, "Log in"),
    h("section", { class: "card narrow" }, form,
      h("p", {}, "No account yet? ", h("a", { href: "#/signup" }, "Sign up"), ".")),
  );
}
