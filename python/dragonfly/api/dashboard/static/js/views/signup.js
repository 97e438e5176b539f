// Sign up: `POST /api/auth/signup`, then the mailed link (`/verify#token=…`) confirms the address and
// grants the trial credit.

import { api } from "../api.js";
import { errorBox, field, fields, h } from "../dom.js";

export const title = "Sign up";

export async function render(root) {
  const status = h("div", { class: "form-status" });
  const submit = h("button", { type: "submit" }, "Create account");
  const form = h("form", { class: "stack narrow", "data-form": "signup" },
    field("Email", h("input", { type: "email", name: "email", required: true, autocomplete: "email" })),
    field("Password", h("input", {
      type: "password", name: "password", required: true, minlength: "8", autocomplete: "new-password",
    }), "At least 8 characters."),
    submit, status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { email, password } = fields(form);
    submit.disabled = true;
    status.replaceChildren(h("span", { class: "muted" }, "Creating your account\u2026"));
    try {
      const account = await api("POST", "api/auth/signup", { email, password });
      form.replaceChildren(h("div", { class: "ok-box", role: "status" },
        h("strong", {}, "Check your mail."),
        h("p", {}, `We sent a link to ${account.email}. Open it and press the button to confirm your address; `
          + "confirming grants your trial credit. Then log in."),
        h("a", { class: "button", href: "#/login" }, "Log in")));
    } catch (err) {
      status.replaceChildren(errorBox(err));
      submit.disabled = false;
    }
  });
  root.append(
    h("h1", {}, "Create an account"),
    h("section", { class: "card narrow" }, form,
      h("p", {}, "Already have one? ", h("a", { href: "#/login" }, "Log in"), ".")),
  );
}
