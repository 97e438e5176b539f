// The global routing weights of the four built-in strategies (`GET/PUT /api/admin/routing/weights`): the
// table of what is in effect, an editor per strategy (a PUT replaces that strategy's weights whole; `null`
// returns it to the defaults), and what each weight does. The server judges every value: its refusal
// (a negative or all-zero set, an unknown name) is shown as it says it.

import { api } from "../../api.js";
import { color } from "../../chart.js";
import { errorBox, field, h, notify, s, section } from "../../dom.js";
import { FEATURES, STRATEGIES, cardTable, confirmButton, num, pct } from "./common.js";

function shares(weights) {
  const total = FEATURES.reduce((sum, [name]) => sum + Math.max(0, Number(weights[name]) || 0), 0);
  return FEATURES.map(([name], i) => ({ name, index: i, share: total > 0 ? Math.max(0, Number(weights[name]) || 0) / total : 0 }));
}

function shareBar(weights) {
  const W = 200, H = 12;
  const svg = s("svg", { class: "op-share", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "Share of each weight" });
  svg.append(s("rect", { class: "op-score-track", x: 0, y: 0, width: W, height: H, rx: 2 }));
  let x = 0;
  for (const part of shares(weights)) {
    if (!part.share) continue;
    svg.append(s("rect", { x, y: 0, width: part.share * W, height: H, fill: color(part.index) },
      s("title", {}, `${part.name}: ${pct(part.share)}`)));
    x += part.share * W;
  }
  return svg;
}

/** A weight as typed: a number (empty is 0); anything else is said in words before anything is sent. */
function parseWeight(label, text) {
  if (text === "") return 0;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${label}: \u201c${text}\u201d is not a number.`);
  return value;
}

export async function render(root) {
  const tableBox = h("div", {}, h("p", { class: "muted" }, "Loading\u2026"));
  let current = null;

  const load = async () => {
    try {
      current = await api("GET", "api/admin/routing/weights");
      draw();
    } catch (err) {
      tableBox.replaceChildren(errorBox(err, load));
    }
  };

  const draw = () => {
    const rows = [];
    for (const [strategy, label] of STRATEGIES) {
      const weights = current[strategy];
      if (!weights) continue;
      const editRow = h("tr", { class: "op-detail", hidden: true, "data-edit": strategy }, h("td", { colspan: FEATURES.length + 3 }));
      const edit = h("button", { type: "button", class: "small", "data-action": "edit" }, "Edit");
      edit.addEventListener("click", () => {
        editRow.hidden = !editRow.hidden;
        if (!editRow.hidden) {
          editRow.firstChild.replaceChildren(editor(strategy, label, weights, () => { editRow.hidden = true; }));
          editRow.querySelector("input").focus();
        }
      });
      rows.push(h("tr", { "data-strategy": strategy },
        h("th", { scope: "row" }, label, h("div", { class: "muted mono" }, strategy)),
        FEATURES.map(([name]) => h("td", { class: "num", "data-weight": name }, num(weights[name], 4),
          h("div", { class: "muted op-share-text" }, pct(shares(weights).find((x) => x.name === name).share, 0)))),
        h("td", {}, shareBar(weights)),
        h("td", {}, edit)));
      rows.push(editRow);
    }
    tableBox.replaceChildren(
      cardTable(["Strategy", ...FEATURES.map(([, label]) => [label, "num"]), "Shares", ""], rows, { "data-testid": "weights-table" }),
      h("p", { class: "muted" }, "Each cell: the stored weight, and under it its share once the strategy's weights are scaled to sum 1."));
  };

  const editor = (strategy, label, weights, done) => {
    const status = h("div", { class: "form-status", role: "alert" });
    const preview = h("div", { class: "op-preview" });
    const inputs = FEATURES.map(([name, flabel, help]) => field(flabel,
      h("input", { name, inputmode: "decimal", value: String(weights[name]), autocomplete: "off" }), help));
    const form = h("form", { class: "grid-form op-weights-form", "data-form": "weights-" + strategy }, inputs,
      h("div", { class: "actions" },
        h("button", { type: "submit" }, "Save " + label),
        h("button", { type: "button", class: "secondary", onclick: done }, "Cancel"),
        confirmButton("Reset to defaults", "Confirm reset", async () => {
          try {
            current = await api("PUT", "api/admin/routing/weights", { [strategy]: null });
            notify(label + ": back to the default weights.");
            draw();
          } catch (err) {
            status.replaceChildren(errorBox(err));
          }
        }, { "data-action": "reset", class: "danger" })),
      preview, status);
    const read = () => {
      const out = {};
      for (const [name, flabel] of FEATURES) out[name] = parseWeight(flabel, form.elements[name].value.trim());
      return out;
    };
    const update = () => {
      try {
        const weights = read();
        preview.replaceChildren(h("span", { class: "muted" }, "After scaling: "), shareBar(weights), " ",
          h("span", { class: "muted" }, shares(weights).filter((x) => x.share).map((x) => `${x.name} ${pct(x.share, 0)}`).join(", ") || "all zero"));
      } catch (err) {
        preview.replaceChildren();
      }
    };
    form.addEventListener("input", update);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      status.replaceChildren();
      let body;
      try {
        body = { [strategy]: read() };
      } catch (err) {
        status.replaceChildren(errorBox(err));
        return;
      }
      try {
        current = await api("PUT", "api/admin/routing/weights", body);
        notify(label + " weights saved: in effect from the next request.");
        draw();
      } catch (err) {
        status.replaceChildren(errorBox({ message: "The server refused the weights: " + err.message, code: err.code }));
      }
    });
    update();
    return form;
  };

  root.append(
    section("Global weights per strategy", tableBox),
    section("What a weight does",
      h("p", {}, "Every request is ranked by its buyer's routing profile. A profile with a built-in strategy uses the weights here; a ",
        h("code", {}, "custom"), " profile carries its own. Each listing gets a score: the sum over the five features of weight \u00d7 feature, ",
        "with the weights scaled to sum 1 and each feature between 0 and 1 (1 best). The highest score wins; near-ties are drawn at random."),
      h("dl", { class: "receipt" }, FEATURES.map(([name, flabel, help]) => [h("dt", {}, flabel), h("dd", {}, help)])),
      h("p", { class: "muted" }, "Saving replaces the strategy's five weights (an empty field is 0); they must be 0 or more and not all 0. ",
        "Reset returns the strategy to the built-in defaults. The change reaches every gateway within half a second. ",
        "See which listing each weighting picks in ", h("a", { href: "#/operator/activity" }, "routing activity"), ".")),
  );
  await load();
}
