// Charts drawn as inline SVG (no library): stacked bars per day, horizontal bars per item. Each is drawn
// for the width it will have (`width`, in CSS pixels), so its text stays readable on a phone; the viewBox
// lets it scale if the window changes afterwards. Every bar carries a <title> (tooltip, accessible text).

import { h, s } from "./dom.js";

const COLORS = ["#2458c6", "#d9822b", "#2f9e6e", "#b83280", "#6b5fd3", "#b7950b", "#1f8a99", "#a94438"];

export function color(index) {
  return COLORS[index % COLORS.length];
}

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `value`. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const exp = Math.floor(Math.log10(value));
  // Divide by a positive power of ten rather than multiply by a negative one: 2 / 1e5 is exactly 2e-5.
  const scaled = (m) => (exp >= 0 ? m * Math.pow(10, exp) : m / Math.pow(10, -exp));
  for (const step of [1, 2, 5, 10]) {
    if (scaled(step) >= value) return scaled(step);
  }
  return scaled(10);
}

/** The last `count` UTC dates, oldest first, as YYYY-MM-DD. */
export function lastDays(count, now = new Date()) {
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const out = [];
  for (let i = count - 1; i >= 0; i -= 1) out.push(new Date(today - i * 86400000).toISOString().slice(0, 10));
  return out;
}

function legend(series) {
  return h("ul", { class: "legend" }, series.map((name, i) =>
    h("li", {}, s("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" },
      s("rect", { width: 12, height: 12, rx: 2, fill: color(i) })), " ", name)));
}

/**
 * Stacked bars: one bar per date, one segment per series.
 * rows: [{date: "YYYY-MM-DD", values: {series: number}}], dates: every date to show (gaps are empty days).
 */
export function stackedBars({ dates, rows, series, format, label, integer, width }) {
  const W = Math.max(280, Math.round(width || 720)), H = Math.min(260, Math.max(180, W * 0.45));
  const left = 64, right = 8, top = 12, bottom = 30;
  const byDate = new Map(rows.map((r) => [r.date, r.values]));
  const totals = dates.map((d) => series.reduce((sum, name) => sum + ((byDate.get(d) || {})[name] || 0), 0));
  // Four equal steps of a round size: 1, 2 or 5 times a power of ten (whole numbers for counts).
  const step = Math.max(integer ? 1 : 0, niceMax(Math.max(0, ...totals) / 4));
  const max = 4 * step;
  const plotW = W - left - right, plotH = H - top - bottom;
  const slot = plotW / Math.max(1, dates.length);
  const barW = Math.max(2, Math.min(36, slot * 0.7));
  const y = (v) => top + plotH - (v / max) * plotH;

  const svg = s("svg", {
    class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label,
    preserveAspectRatio: "xMidYMid meet",
  });
  for (let i = 0; i <= 4; i += 1) {
    const value = (max * i) / 4;
    svg.append(
      s("line", { class: "gridline", x1: left, x2: W - right, y1: y(value), y2: y(value) }),
      s("text", { class: "tick", x: left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value)),
    );
  }
  const every = Math.ceil(dates.length / Math.max(2, Math.floor(plotW / 56))); // a label per ~56 px
  dates.forEach((date, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let base = 0;
    series.forEach((name, k) => {
      const value = (byDate.get(date) || {})[name] || 0;
      if (!value) return;
      const y0 = y(base), y1 = y(base + value);
      svg.append(s("rect", {
        class: "bar", x, y: y1, width: barW, height: Math.max(1, y0 - y1), fill: color(k),
        "data-date": date, "data-series": name, "data-value": value,
      }, s("title", {}, `${date} \u00b7 ${name}: ${format(value)}`)));
      base += value;
    });
    if ((dates.length - 1 - i) % every === 0) { // counted from the newest day, which is always labelled
      const last = i === dates.length - 1; // kept inside the frame
      svg.append(s("text", {
        class: "tick", x: last ? Math.min(W - 2, x + barW) : x + barW / 2, y: H - 10, "text-anchor": last ? "end" : "middle",
      }, date.slice(5)));
    }
  });
  svg.append(s("line", { class: "axis", x1: left, x2: W - right, y1: y(0), y2: y(0) }));
  return h("figure", { class: "chart-box" }, svg, series.length ? legend(series) : null);
}

/** Horizontal bars, one per item: [{name, value}], largest first. */
export function hbars({ items, format, label, width }) {
  const sorted = [...items].sort((a, b) => b.value - a.value);
  const W = Math.max(280, Math.round(width || 720)), row = 26;
  const left = Math.min(180, Math.round(W * 0.36)), right = Math.min(100, Math.round(W * 0.22));
  const chars = Math.max(8, Math.floor((left - 10) / 7));
  const H = Math.max(row, sorted.length * row) + 8;
  const max = niceMax(Math.max(0, ...sorted.map((x) => x.value)));
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  sorted.forEach((item, i) => {
    const yy = 4 + i * row;
    const width = ((W - left - right) * item.value) / max;
    svg.append(
      s("text", { class: "tick", x: left - 8, y: yy + 16, "text-anchor": "end" }, item.name.length > chars ? item.name.slice(0, chars - 1) + "\u2026" : item.name),
      s("rect", { class: "bar", x: left, y: yy + 3, width: Math.max(item.value ? 2 : 0, width), height: row - 8, fill: color(item.colorIndex ?? i), "data-series": item.name, "data-value": item.value },
        s("title", {}, `${item.name}: ${format(item.value)}`)),
      s("text", { class: "tick", x: left + width + 6, y: yy + 16 }, format(item.value)),
    );
  });
  return h("figure", { class: "chart-box" }, svg);
}
