// DOM helpers. Text from the server or the user is only ever set as text (textContent, attributes):
// nothing here parses HTML, so no answer can inject markup or script.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children, svg) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.setAttribute("class", value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (!svg && name in node && typeof value !== "string") {
      node[name] = value; // properties such as disabled, checked, value (SVG has attributes only)
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("p", {class: "muted"}, "text", otherNode). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element (charts). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children, true);
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** A decimal USD string from the API ("0.095527") shown as money; more digits when it is small. */
export function usd(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value ?? "");
  // Whole cents as cents; below $1, every micro-dollar the API gives (a trade costs fractions of a cent).
  const subCent = Math.abs(Math.round(n * 100) - n * 100) > 1e-6;
  const digits = subCent && Math.abs(n) < 1 ? 6 : 2;
  return (n < 0 ? "-$" : "$") + Math.abs(n).toFixed(digits);
}

export function cents(value) {
  return value === null || value === undefined ? "no cap" : "$" + (value / 100).toFixed(2);
}

export function int(value) {
  return Number(value || 0).toLocaleString("en-US");
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** `sk-df-abcd…wxyz`: enough to recognise a key, never enough to use it. */
export function hint(raw) {
  return raw.length > 14 ? raw.slice(0, 10) + "\u2026" + raw.slice(-4) : "sk-df-\u2026";
}

/** Copy text to the clipboard; says so on the button. Falls back to selecting the text when the
 * browser refuses (an insecure origin, a denied permission). */
export async function copy(text, button, fallbackNode) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
    button.dataset.copied = "true";
  } catch (err) {
    if (fallbackNode) {
      const range = document.createRange();
      range.selectNodeContents(fallbackNode);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { button.textContent = label; }, 2000);
}

/** A block of code with a copy button. */
export function codeBlock(text, label) {
  const code = h("code", {}, text);
  const pre = h("pre", { class: "code" }, code);
  const button = h("button", { type: "button", class: "small copy", "aria-label": "Copy " + (label || "code") }, "Copy");
  button.addEventListener("click", () => copy(code.textContent, button, code));
  return h("div", { class: "code-wrap" }, button, pre);
}

/** An error in words, with what the server said and its code when there is one. */
export function errorBox(err, retry) {
  const box = h("div", { class: "error", role: "alert" });
  box.append(h("strong", {}, describe(err)));
  if (err && err.code) box.append(h("span", { class: "muted" }, " (" + err.code + ")"));
  if (retry) box.append(" ", h("button", { type: "button", class: "small", onclick: retry }, "Try again"));
  return box;
}

export function describe(err) {
  if (!err) return "Something went wrong.";
  if (err.message) return err.message;
  return String(err);
}

/** A short message at the top of the page (successes, background failures). */
export function notify(text, kind) {
  const notice = document.getElementById("notice");
  if (!notice) return;
  notice.textContent = text;
  notice.className = "notice " + (kind || "ok");
  notice.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { notice.hidden = true; }, kind === "bad" ? 8000 : 4000);
}

/** A form's fields as an object of trimmed strings. */
export function fields(form) {
  const out = {};
  for (const [name, value] of new FormData(form).entries()) out[name] = String(value).trim();
  return out;
}

/** A labelled input. */
export function field(label, input, help) {
  return h("label", { class: "field" }, h("span", { class: "label" }, label), input, help ? h("small", { class: "muted" }, help) : null);
}

/** A list of CIDRs typed one per line or separated by commas. */
export function cidrs(text) {
  return String(text || "").split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}

/** A table; a header given as [text, "num"] is right-aligned like its numbers. */
export function table(headers, rows, attrs) {
  return h("div", { class: "table-wrap" },
    h("table", attrs || {},
      h("thead", {}, h("tr", {}, headers.map((x) => (Array.isArray(x)
        ? h("th", { scope: "col", class: x[1] }, x[0])
        : h("th", { scope: "col" }, x))))),
      h("tbody", {}, rows)));
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

/** Ask twice before something with consequences, without a modal dialog: the first click arms the button
 * (`confirmLabel`, for 5 s), the second runs `action` once; then it is itself again. */
export function confirmButton(label, confirmLabel, action, attrs) {
  const button = h("button", { type: "button", class: "small danger", ...(attrs || {}) }, label);
  let armed = false;
  let timer;
  const disarm = () => { armed = false; button.textContent = label; button.classList.remove("armed"); };
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = confirmLabel;
      button.classList.add("armed");
      timer = setTimeout(disarm, 5000);
      return;
    }
    clearTimeout(timer);
    button.disabled = true;
    try {
      await action();
    } finally {
      disarm();
      button.disabled = false;
    }
  });
  return button;
}

/** A button that runs an async action once at a time. */
export function actionButton(label, action, attrs) {
  const button = h("button", { type: "button", class: "small", ...(attrs || {}) }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}
