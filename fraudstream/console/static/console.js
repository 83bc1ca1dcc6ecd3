// fraudstream console: confirmations, the queue's polling and the overview's charts. No library.
"use strict";

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) ev.preventDefault();
});

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) { window.location = "/login"; throw new Error("logged out"); }
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

// --- review queue: new alerts appear without a reload -----------------------------------------
function pollQueue(box) {
  let last = box.innerHTML;
  const tick = async () => {
    try {
      const data = await getJSON(box.dataset.poll);
      const counter = document.getElementById("open-count");
      if (counter) counter.textContent = data.open;
      // Never swap the list under a pointer that is about to press a button.
      if (data.html !== last && !box.matches(":hover")) { box.innerHTML = data.html; last = data.html; }
    } catch (err) { console.warn(err); }
  };
  setInterval(tick, 2000);
}

// --- live overview: line charts drawn as inline SVG -------------------------------------------
const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function fmt(v) {
  if (v === null || v === undefined) return "-";
  if (v === 0) return "0";
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString();
  if (Math.abs(v) >= 10) return v.toFixed(0);
  return v.toFixed(Math.abs(v) >= 1 ? 2 : 3);
}
function drawChart(fig, samples) {
  const svg = fig.querySelector("svg");
  const key = fig.dataset.series, second = fig.dataset.second;
  const W = 400, H = 140, L = 44, B = 18, T = 6;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const pts = samples.filter((s) => s[key] !== null && s[key] !== undefined);
  const pts2 = second ? samples.filter((s) => s[second] !== null && s[second] !== undefined) : [];
  const now = fig.querySelector(".now");
  if (!pts.length) {
    svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
    now.textContent = "";
    return;
  }
  const t0 = samples[0].t, t1 = Math.max(samples[samples.length - 1].t, t0 + 1);
  const values = pts.map((s) => s[key]).concat(pts2.map((s) => s[second]));
  let lo = Math.min(0, ...values), hi = Math.max(...values);
  if (hi <= lo) hi = lo + 1;
  const x = (t) => L + (W - L - 4) * (t - t0) / (t1 - t0);
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  svg.appendChild(el("line", { x1: L, y1: y(lo), x2: W - 4, y2: y(lo), class: "axis" }));
  svg.appendChild(el("line", { x1: L, y1: T, x2: L, y2: y(lo), class: "axis" }));
  svg.appendChild(el("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmt(hi)));
  svg.appendChild(el("text", { x: L - 4, y: y(lo), "text-anchor": "end" }, fmt(lo)));
  const span = Math.round(t1 - t0);
  svg.appendChild(el("text", { x: W - 4, y: H - 4, "text-anchor": "end" }, "now"));
  svg.appendChild(el("text", { x: L, y: H - 4 }, span >= 120 ? Math.round(span / 60) + " min ago" : span + " s ago"));
  const path = (list, k) => list.map((s, i) => (i ? "L" : "M") + x(s.t).toFixed(1) + "," + y(s[k]).toFixed(1)).join(" ");
  if (pts2.length) svg.appendChild(el("path", { d: path(pts2, second), class: "line2" }));
  svg.appendChild(el("path", { d: path(pts, key), class: "line" }));
  const last = pts[pts.length - 1];
  now.textContent = "now: " + fmt(last[key]) + (pts2.length ? "  ·  " + second.replace(/_/g, " ") + ": " + fmt(pts2[pts2.length - 1][second]) : "");
}
function pollOverview(box) {
  const tick = async () => {
    try {
      const data = await getJSON(box.dataset.poll);
      box.querySelectorAll("figure.chart").forEach((fig) => drawChart(fig, data.samples));
      const status = document.getElementById("overview-status");
      if (status && data.error) status.textContent = data.error;
      const feed = document.getElementById("feed-summary");
      if (feed && data.feed) feed.textContent = data.feed;
      box.dataset.samples = data.samples.length;
    } catch (err) { console.warn(err); }
  };
  tick();
  setInterval(tick, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const queue = document.getElementById("queue");
  if (queue) pollQueue(queue);
  const overview = document.getElementById("overview");
  if (overview) pollOverview(overview);
});
