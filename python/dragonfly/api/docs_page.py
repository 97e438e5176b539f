"""`GET /api/docs`: one self-contained page that fetches `/api/openapi.json` (beside it) and lists every
route: method, path, who may call it, parameters, request body fields and answers. No CDN, no external
script or font: the product runs offline. Text from the description is set with `textContent` only."""

from __future__ import annotations

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dragonfly control plane API</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; color: #1d2327;
       margin: 0 auto; max-width: 70rem; padding: 1rem 1.5rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ccc; text-transform: capitalize; }
code, .path { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .92em; }
details { border: 1px solid #ddd; border-radius: 4px; margin: .35rem 0; }
summary { cursor: pointer; padding: .35rem .6rem; }
.body { padding: .2rem 1rem .7rem; }
.method { display: inline-block; min-width: 4.2rem; font-weight: 700; font-family: ui-monospace, monospace; }
.get { color: #1a6b2f; } .post { color: #7a4b00; }
.put, .patch { color: #2a4f9b; } .delete { color: #a11a1a; }
.muted { color: #666; }
ul.fields { margin: .2rem 0; padding-left: 1.2rem; }
ul.fields li { margin: .1rem 0; }
.req { color: #a11a1a; }
h4 { margin: .7rem 0 .2rem; font-size: .95rem; }
</style>
</head>
<body>
<h1>Dragonfly control plane API</h1>
<p id="intro" class="muted">Loading <a href="openapi.json">openapi.json</a>&hellip;</p>
<main id="ops"></main>
<script>
"use strict";
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
};
let spec = null;
const resolve = (schema) => {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) {
    const parts = schema.$ref.replace(/^#\\//, "").split("/");
    schema = parts.reduce((node, key) => (node ? node[key] : undefined), spec);
  }
  return schema || {};
};
const refName = (schema) => (schema && schema.$ref ? schema.$ref.split("/").pop() : null);
const typeOf = (raw) => {
  const name = refName(raw);
  const schema = resolve(raw);
  if (name && schema.type === "object" && schema.properties) return name;
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.anyOf || schema.oneOf) return (schema.anyOf || schema.oneOf).map(typeOf).join(" | ");
  if (schema.allOf) return schema.allOf.map(typeOf).filter((t) => t !== "any").join(" & ") || "object";
  if (schema.type === "array") return typeOf(schema.items || {}) + "[]";
  let text = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
  if (schema.format) text += " (" + schema.format + ")";
  return text;
};
const alternatives = (raw) => {
  const schema = resolve(raw);
  const alts = schema.anyOf || schema.oneOf;
  return alts ? alts.flatMap(alternatives) : [schema];
};
const described = (raw) => {
  const schema = resolve(raw);
  if (schema.description) return schema.description;
  const alts = (schema.anyOf || schema.oneOf || []).map(described).filter(Boolean);
  return alts.length ? alts[0] : null;
};
const limits = (raw) => {
  const schema = resolve(raw);
  const inner = alternatives(raw).filter((alt) => alt !== schema).map(limits).filter(Boolean);
  const out = [...new Set(inner)];
  const add = (key, label) => {
    if (schema[key] !== undefined) out.push(label + " " + JSON.stringify(schema[key]));
  };
  add("minimum", "\\u2265"); add("exclusiveMinimum", ">");
  add("maximum", "\\u2264"); add("exclusiveMaximum", "<");
  add("minLength", "min length"); add("maxLength", "max length"); add("maxItems", "max items");
  add("pattern", "pattern"); add("default", "default");
  return out.join(", ");
};
const nested = (raw) => {
  const schema = resolve(raw);
  if (schema.type === "object" && schema.properties) return schema;
  for (const alt of schema.anyOf || schema.oneOf || []) {
    const s = resolve(alt);
    if (s.type === "object" && s.properties) return s;
  }
  if (schema.type === "array") return nested(schema.items || {});
  return null;
};
const fields = (raw, depth, trail) => {
  const schema = resolve(raw);
  const list = el("ul", "fields");
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const item = el("li");
    item.append(el("code", null, name));
    if (required.has(name)) item.append(el("span", "req", " *"));
    item.append(" ", el("span", "muted", typeOf(prop)));
    const lim = limits(prop);
    if (lim) item.append(el("span", "muted", " \\u2014 " + lim));
    const desc = described(prop);
    if (desc) item.append(el("div", null, desc));
    const inner = nested(prop);
    const key = refName(prop) || name;
    if (inner && depth < 4 && !trail.includes(key)) {
      item.append(fields(inner, depth + 1, trail.concat([key])));
    }
    list.append(item);
  }
  if (!list.childElementCount) list.append(el("li", "muted", typeOf(raw)));
  return list;
};
const access = (security) => {
  if (!security || !security.length) return "public: no credentials";
  return security.map((req) => Object.entries(req).map(([scheme, roles]) =>
    scheme + (roles.length ? " (" + roles.join(", ") + ")" : "")).join(" + ")).join(" or ");
};
const render = () => {
  const main = document.getElementById("ops");
  const intro = document.getElementById("intro");
  intro.textContent = (spec.info.description || "") + " ";
  const link = el("a", null, "openapi.json"); link.href = "openapi.json";
  intro.append("Machine-readable: ", link, " (OpenAPI " + spec.openapi + ").");
  intro.className = "";
  const groups = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push([method, path, op]);
    }
  }
  const tagText = new Map((spec.tags || []).map((t) => [t.name, t.description]));
  for (const [tag, ops] of groups) {
    main.append(el("h2", null, tag));
    if (tagText.get(tag)) main.append(el("p", "muted", tagText.get(tag)));
    for (const [method, path, op] of ops) {
      const box = el("details");
      const head = el("summary");
      head.append(el("span", "method " + method, method.toUpperCase()), el("span", "path", path));
      if (op.summary) head.append(el("span", "muted", " \\u2014 " + op.summary));
      box.append(head);
      const body = el("div", "body");
      body.append(el("div", "muted", "Access: " + access(op.security)));
      if (op.parameters && op.parameters.length) {
        body.append(el("h4", null, "Parameters"));
        const list = el("ul", "fields");
        for (const p of op.parameters) {
          const item = el("li");
          const where = " in " + p.in + ", " + typeOf(p.schema || {});
          item.append(el("code", null, p.name), el("span", "muted", where));
          const lim = limits(p.schema || {});
          if (lim) item.append(el("span", "muted", " \\u2014 " + lim));
          if (p.description) item.append(el("div", null, p.description));
          list.append(item);
        }
        body.append(list);
      }
      if (op.requestBody) {
        const media = op.requestBody.content["application/json"] || Object.values(op.requestBody.content)[0];
        const name = refName(media.schema);
        const optional = op.requestBody.required ? "" : ", optional";
        body.append(el("h4", null, "Body (JSON" + (name ? ", " + name : "") + ")" + optional));
        const desc = resolve(media.schema).description;
        if (desc) body.append(el("div", null, desc));
        body.append(fields(media.schema, 0, name ? [name] : []));
      }
      body.append(el("h4", null, "Answers"));
      const answers = el("ul", "fields");
      for (const [code, raw] of Object.entries(op.responses)) {
        const res = resolve(raw);
        answers.append(el("li", null, code + " " + (res.description || "")));
      }
      body.append(answers);
      box.append(body);
      main.append(box);
    }
  }
};
fetch("openapi.json", { headers: { accept: "application/json" } })
  .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
  .then((doc) => { spec = doc; render(); })
  .catch((err) => {
    document.getElementById("intro").textContent = "Could not load openapi.json: " + err.message;
  });
</script>
</body>
</html>
"""
