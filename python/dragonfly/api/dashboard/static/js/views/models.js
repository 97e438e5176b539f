// The model catalog (`GET /v1/models`, served to buyer keys) and OpenAI SDK snippets for a chosen model
// and key. Snippets read the key from the environment: the raw key is never written into them.

import { withKey } from "../api.js";
import { codeBlock, errorBox, h, int, section, table } from "../dom.js";
import { keyPicker } from "../keypicker.js";
import * as keystore from "../keystore.js";

export const title = "Models";

export function snippets(base, model, keyHint) {
  const note = keyHint ? `your key ${keyHint}` : "your key";
  const chat = model.kind === "embeddings"
    ? null
    : { content: "Hello" };
  const python = chat
    ? `import os
from openai import OpenAI

# DRAGONFLY_API_KEY holds ${note}
client = OpenAI(base_url="${base}", api_key=os.environ["DRAGONFLY_API_KEY"])

stream = client.chat.completions.create(
    model="${model.id}",
    messages=[{"role": "user", "content": "Hello"}],
    stream=True,
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="")
`
    : `import os
from openai import OpenAI

# DRAGONFLY_API_KEY holds ${note}
client = OpenAI(base_url="${base}", api_key=os.environ["DRAGONFLY_API_KEY"])
resp = client.embeddings.create(model="${model.id}", input=["Hello"])
print(len(resp.data[0].embedding))
`;
  const js = chat
    ? `import OpenAI from "openai";

// DRAGONFLY_API_KEY holds ${note}
const client = new OpenAI({ baseURL: "${base}", apiKey: process.env.DRAGONFLY_API_KEY });

const stream = await client.chat.completions.create({
  model: "${model.id}",
  messages: [{ role: "user", content: "Hello" }],
  stream: true,
});
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
}
`
    : `import OpenAI from "openai";

// DRAGONFLY_API_KEY holds ${note}
const client = new OpenAI({ baseURL: "${base}", apiKey: process.env.DRAGONFLY_API_KEY });
const resp = await client.embeddings.create({ model: "${model.id}", input: ["Hello"] });
console.log(resp.data[0].embedding.length);
`;
  const curl = chat
    ? `# DRAGONFLY_API_KEY holds ${note}
curl -s ${base}/chat/completions \\
  -H "Authorization: Bearer $DRAGONFLY_API_KEY" \\
  -H "content-type: application/json" \\
  -d '{"model": "${model.id}", "messages": [{"role": "user", "content": "Hello"}]}'
`
    : `# DRAGONFLY_API_KEY holds ${note}
curl -s ${base}/embeddings \\
  -H "Authorization: Bearer $DRAGONFLY_API_KEY" \\
  -H "content-type: application/json" \\
  -d '{"model": "${model.id}", "input": ["Hello"]}'
`;
  return { Python: python, JavaScript: js, curl };
}

function price(p) {
  return p ? `$${p.min}` + (p.median !== p.min ? ` (median $${p.median})` : "") : "";
}

export async function render(root, ctx) {
  const catalog = h("div");
  const snippetBox = h("div");
  let models = [];
  let chosen = null;
  let language = "Python";

  const drawSnippets = () => {
    const key = keystore.current();
    const model = chosen || { id: "demo/echo-1", kind: "chat" };
    const all = snippets(ctx.v1Base(), model, key ? key.hint : null);
    const tabs = h("div", { class: "tabs", role: "tablist" }, Object.keys(all).map((name) =>
      h("button", {
        type: "button", role: "tab", class: "tab", "aria-selected": String(name === language),
        onclick: () => { language = name; drawSnippets(); },
      }, name)));
    snippetBox.replaceChildren(
      h("p", {}, "For ", h("code", {}, model.id), key ? [" with ", h("code", {}, key.hint)] : "",
        ". Set ", h("code", {}, "DRAGONFLY_API_KEY"), " to the key first."),
      tabs, codeBlock(all[language], language + " snippet"));
  };

  const load = async () => {
    const key = keystore.current();
    if (!key) {
      catalog.replaceChildren(h("p", { class: "muted" },
        "The catalog is served to buyer keys (GET /v1/models). Create a key on the ",
        h("a", { href: "#/keys" }, "Keys"), " page, or paste one above."));
      drawSnippets();
      return;
    }
    catalog.replaceChildren(h("p", { class: "muted" }, "Loading the catalog\u2026"));
    try {
      const answer = await (await withKey(key.raw, "GET", "v1/models")).json();
      models = answer.data;
      if (!chosen || !models.some((m) => m.id === chosen.id)) chosen = models[0] || null;
      drawCatalog();
    } catch (err) {
      catalog.replaceChildren(errorBox(err, load));
    }
    drawSnippets();
  };

  const drawCatalog = () => {
    if (!models.length) {
      catalog.replaceChildren(h("p", { class: "muted" }, "No model has an active listing right now."));
      return;
    }
    catalog.replaceChildren(table(["Model", "Kind", ["Listings", "num"], ["Context", "num"], "Input per 1M tokens", "Output per 1M tokens", ""],
      models.map((m) => h("tr", { class: chosen && chosen.id === m.id ? "chosen" : "", "data-model": m.id },
        h("td", { "data-label": "Model" }, h("code", {}, m.id)),
        h("td", { "data-label": "Kind" }, m.kind),
        h("td", { class: "num", "data-label": "Listings" }, int(m.listings)),
        h("td", { class: "num", "data-label": "Context" }, m.context_length ? int(m.context_length) : "\u2014"),
        h("td", { "data-label": "Input" }, price(m.pricing.input_per_mtok)),
        h("td", { "data-label": "Output" }, price(m.pricing.output_per_mtok)),
        h("td", {}, h("button", { type: "button", class: "small", onclick: () => { chosen = m; drawCatalog(); drawSnippets(); } }, "Snippets"))))));
  };

  const picker = keyPicker(load);
  root.append(
    h("h1", {}, "Models"),
    section("Key", picker.node),
    section("Catalog", catalog),
    section("Code", snippetBox),
  );
  await load();
  return () => picker.stop();
}
