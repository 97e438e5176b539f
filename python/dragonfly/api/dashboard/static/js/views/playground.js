// The playground: a chat streamed through the buyer's own key (`POST /v1/chat/completions`, stream=true,
// same origin, `Authorization: Bearer` from memory), and beside it the trade's receipt
// (`x-request-id` -> `GET /v1/generation?id=`).

import { ApiError, withKey } from "../api.js";
import { errorBox, field, h, int, section, usd } from "../dom.js";
import { keyPicker } from "../keypicker.js";
import * as keystore from "../keystore.js";
import { events } from "../sse.js";

export const title = "Playground";

const RECEIPT_FIELDS = [
  ["Request id", "id", (v) => h("code", {}, v)],
  ["Status", "status"],
  ["Model", "model"],
  ["Seller's model", "upstream_model"],
  ["Provider", "provider"],
  ["Finish", "finish_reason"],
  ["Prompt tokens", "tokens_prompt", int],
  ["Completion tokens", "tokens_completion", int],
  ["Usage check", "usage_audit"],
  ["Time to first token", "ttft_ms", (v) => (v === null ? "\u2014" : v + " ms")],
  ["Latency", "latency_ms", (v) => (v === null ? "\u2014" : v + " ms")],
  ["Cost", "total_cost_usd", usd],
  ["Seller's share", "seller_payout_usd", usd],
  ["Platform fee", "platform_fee_usd", usd],
];

export function receiptView(receipt) {
  const list = h("dl", { class: "receipt", "data-testid": "receipt" });
  for (const [label, name, format] of RECEIPT_FIELDS) {
    const value = receipt[name];
    if (value === undefined) continue;
    list.append(h("dt", {}, label), h("dd", { "data-field": name }, format && value !== null ? format(value) : String(value ?? "\u2014")));
  }
  const attempts = receipt.attempts || [];
  if (attempts.length > 1 || (attempts[0] && attempts[0].status !== "ok")) {
    list.append(h("dt", {}, "Attempts"), h("dd", {}, h("ol", {}, attempts.map((a) =>
      h("li", {}, `${a.provider}: ${a.status}` + (a.error_type ? ` (${a.error_type})` : "") + ` in ${a.latency_ms} ms`)))));
  }
  return list;
}

export async function render(root, ctx) {
  const transcript = h("div", { class: "transcript", "aria-live": "polite" });
  const receiptBox = h("div", { class: "receipt-box" }, h("p", { class: "muted" }, "Send a message: its receipt shows here."));
  const modelSelect = h("select", { name: "model", "aria-label": "Model" });
  const system = h("textarea", { name: "system", rows: 2, placeholder: "optional" });
  const message = h("textarea", { name: "message", rows: 3, required: true, placeholder: "Say hello" });
  const maxTokens = h("input", { name: "max_tokens", type: "number", min: "1", max: "32768", value: "256" });
  const send = h("button", { type: "submit" }, "Send");
  const stop = h("button", { type: "button", class: "secondary", hidden: true }, "Stop");
  const clearButton = h("button", { type: "button", class: "secondary" }, "New chat");
  const status = h("div", { class: "form-status" });
  let history = [];
  let controller = null;

  const loadModels = async () => {
    const key = keystore.current();
    modelSelect.replaceChildren();
    status.replaceChildren();
    if (!key) {
      modelSelect.append(h("option", { value: "" }, "choose a key first"));
      return;
    }
    try {
      const answer = await (await withKey(key.raw, "GET", "v1/models")).json();
      const chat = answer.data.filter((m) => m.kind === "chat");
      modelSelect.append(...chat.map((m) => h("option", { value: m.id }, m.id)));
      if (!chat.length) status.replaceChildren(h("p", { class: "muted" }, "No chat model has an active listing right now."));
    } catch (err) {
      status.replaceChildren(errorBox(err, loadModels));
    }
  };

  const showReceipt = async (key, requestId) => {
    if (!requestId) return;
    receiptBox.replaceChildren(h("p", { class: "muted" }, "Loading the receipt\u2026"));
    try {
      const answer = await (await withKey(key.raw, "GET", "v1/generation?id=" + encodeURIComponent(requestId))).json();
      receiptBox.replaceChildren(receiptView(answer.data));
    } catch (err) {
      receiptBox.replaceChildren(errorBox(err));
    }
  };

  const bubble = (role, text) => {
    const node = h("div", { class: "msg " + role }, h("span", { class: "who" }, role === "user" ? "You" : "Assistant"), h("p", { class: "text" }, text));
    transcript.append(node);
    return node.querySelector(".text");
  };

  const form = h("form", { class: "stack", "data-form": "chat" },
    field("Model", modelSelect),
    h("details", {}, h("summary", {}, "Options"),
      field("System prompt", system),
      field("Max tokens", maxTokens, "The worst case is held from your balance while the request runs.")),
    transcript,
    field("Message", message),
    h("div", { class: "actions" }, send, stop, clearButton),
    status);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keystore.current();
    const text = message.value.trim();
    if (!key) { status.replaceChildren(errorBox(new Error("Choose or paste a buyer key first."))); return; }
    if (!modelSelect.value) { status.replaceChildren(errorBox(new Error("No model to send to."))); return; }
    if (!text) return;
    status.replaceChildren();
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value.trim() });
    history.push({ role: "user", content: text });
    messages.push(...history);
    bubble("user", text);
    message.value = "";
    const answer = bubble("assistant", "");
    answer.parentElement.classList.add("streaming");
    send.disabled = true;
    stop.hidden = false;
    controller = new AbortController();
    let requestId = null;
    try {
      const response = await withKey(key.raw, "POST", "v1/chat/completions", {
        model: modelSelect.value,
        messages,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: Number(maxTokens.value) || 256,
      }, controller.signal);
      requestId = response.headers.get("x-request-id");
      for await (const data of events(response)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(chunk.error.message || "The stream broke.", 0, chunk.error.code);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) answer.textContent += delta.content;
      }
      history.push({ role: "assistant", content: answer.textContent });
    } catch (err) {
      requestId = requestId || err.requestId || null;
      history.pop();
      if (err.name === "AbortError") {
        status.replaceChildren(h("p", { class: "muted" }, "Stopped. Only what was delivered is billed."));
      } else {
        status.replaceChildren(errorBox(err));
      }
      answer.parentElement.classList.add("failed");
    } finally {
      answer.parentElement.classList.remove("streaming");
      send.disabled = false;
      stop.hidden = true;
      controller = null;
    }
    await showReceipt(key, requestId);
    ctx.refreshBalance();
  });
  stop.addEventListener("click", () => controller && controller.abort());
  clearButton.addEventListener("click", () => { history = []; transcript.replaceChildren(); status.replaceChildren(); });
  message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });

  const picker = keyPicker(loadModels);
  root.append(
    h("h1", {}, "Playground"),
    section("Key", picker.node),
    h("div", { class: "split" },
      section("Chat", form),
      section("Receipt", receiptBox)),
  );
  await loadModels();
  return () => {
    picker.stop();
    if (controller) controller.abort();
  };
}
