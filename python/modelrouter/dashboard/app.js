// modelrouter dashboard: polls the service's JSON endpoints and draws on canvas by hand.
"use strict";

const API = "/api/v1/model-router";
const params = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(250, Number(params.get("refresh")) || 2000);
const MAX_POINTS = 180;
const PALETTE = ["#38bdf8", "#f472b6", "#a3e635", "#fbbf24", "#c084fc", "#34d399",
  "#fb7185", "#60a5fa", "#facc15", "#2dd4bf"];

const series = { ts: [], p50: [], p95: [], p99: [], util: {} };
const polls = []; // [{ts, routes}] of recent polls, for the routing rate over RATE_WINDOW_S
const RATE_WINDOW_S = 10;
// Until two polls have been made, the rate comes from the service's own history samples.
let historyRate = null;

function fmt(x, digits) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  return Number(x).toLocaleString(undefined, { maximumFractionDigits: digits,
    minimumFractionDigits: digits });
}

// A round step (1, 2 or 5 × 10^k) giving about `count` intervals over [0, max].
function niceStep(max, count) {
  const raw = max / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

// Round axis ticks from 0 to just above `max`: {top, step, digits}.
function axis(max) {
  const step = niceStep(max > 0 ? max : 1, 4);
  const top = Math.ceil((max > 0 ? max : 1) / step - 1e-9) * step;
  return { top, step, digits: Math.max(0, -Math.floor(Math.log10(step))) };
}

function push(ts, p50, p95, p99, util) {
  series.ts.push(ts); series.p50.push(p50); series.p95.push(p95); series.p99.push(p99);
  for (const [model, u] of Object.entries(util)) {
    if (!series.util[model]) series.util[model] = new Array(series.ts.length - 1).fill(null);
    series.util[model].push(u * 100);
  }
  for (const arr of Object.values(series.util)) {
    while (arr.length < series.ts.length) arr.push(null);
  }
  if (series.ts.length > MAX_POINTS) {
    for (const key of ["ts", "p50", "p95", "p99"]) series[key].shift();
    for (const arr of Object.values(series.util)) arr.shift();
  }
}

function drawChart(canvas, lines, yLabel) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 48, r: 10, t: 10, b: 24 };
  const values = lines.flatMap(l => l.data).filter(v => v !== null && isFinite(v));
  const ticks = axis(values.length ? Math.max(...values) : 1);
  const ymax = ticks.top;
  const n = series.ts.length;
  const x = i => pad.l + (n <= 1 ? 0 : (i / (n - 1)) * (w - pad.l - pad.r));
  const y = v => h - pad.b - (v / ymax) * (h - pad.t - pad.b);
  ctx.strokeStyle = "#334155"; ctx.fillStyle = "#94a3b8"; ctx.font = "11px system-ui";
  ctx.lineWidth = 1;
  const labels = [];
  for (let k = 0; k * ticks.step <= ymax + ticks.step * 1e-9; k++) {
    const v = k * ticks.step, yy = y(v);
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    const label = fmt(v, ticks.digits);
    ctx.fillText(label, 4, yy + 4);
    labels.push(label);
  }
  canvas.dataset.ticks = labels.join(" ");
  if (n > 1) {
    const span = series.ts[n - 1] - series.ts[0];
    ctx.fillText(`last ${fmt(span, 0)} s`, w - pad.r - 70, h - 6);
  }
  ctx.fillText(yLabel, pad.l + 4, pad.t + 10);
  for (const line of lines) {
    ctx.strokeStyle = line.color; ctx.lineWidth = 2; ctx.setLineDash(line.dash || []);
    ctx.beginPath();
    let pen = false;
    line.data.forEach((v, i) => {
      if (v === null || !isFinite(v)) { pen = false; return; }
      if (pen) ctx.lineTo(x(i), y(v)); else ctx.moveTo(x(i), y(v));
      pen = true;
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

function legend(el, lines) {
  el.replaceChildren(...lines.map(l => {
    const s = document.createElement("span");
    s.style.setProperty("--c", l.color); s.textContent = l.name; return s;
  }));
}

function redraw() {
  const lat = [
    { name: "P50", color: PALETTE[0], data: series.p50 },
    { name: "P95", color: PALETTE[3], data: series.p95 },
    { name: "P99", color: PALETTE[6], data: series.p99, dash: [6, 4] },
  ];
  drawChart(document.getElementById("chart-latency"), lat, "ms");
  legend(document.getElementById("legend-latency"), lat);
  const util = Object.entries(series.util).map(([name, data], i) =>
    ({ name, data, color: PALETTE[i % PALETTE.length] }));
  drawChart(document.getElementById("chart-util"), util, "%");
  legend(document.getElementById("legend-util"), util);
}

function setText(id, text) { document.getElementById(id).textContent = text; }

function renderStats(stats) {
  const now = Date.now() / 1000;
  const routes = stats.routes.total;
  polls.push({ ts: now, routes });
  while (polls.length > 2 && now - polls[1].ts >= RATE_WINDOW_S) polls.shift();
  const first = polls[0];
  if (polls.length >= 2 && now > first.ts) {
    setText("card-rate", fmt((routes - first.routes) / (now - first.ts), 1));
  } else {
    setText("card-rate", historyRate === null ? "–" : fmt(historyRate, 1));
  }
  // Rejections: routes the service refused (503 no capacity, 409 infeasible).
  const r = stats.routes;
  const rejected = (r.no_capacity || 0) + (r.infeasible || 0);
  setText("card-rejected", fmt(rejected, 0));
  setText("card-rejected-unit", `of ${fmt(r.total, 0)} routes` +
    (r.total ? ` (${fmt(100 * rejected / r.total, 1)} %)` : "") +
    ` · no capacity ${fmt(r.no_capacity || 0, 0)}, infeasible ${fmt(r.infeasible || 0, 0)}`);
  setText("card-p99", fmt(stats.overall.p99_ms, 1));
  const rate = stats.overall.success_rate;
  setText("card-success", rate === null ? "–" : fmt(rate * 100, 1));
  setText("card-util", fmt(stats.avg_utilization * 100, 1));
  setText("card-alerts", String(stats.active_alerts));
  const util = {};
  const rows = stats.models.map(m => {
    util[m.model_id] = m.utilization;
    const tr = document.createElement("tr");
    // Health (outlier ejection, cooldowns): a model that is out is marked with its state.
    const health = m.health || { state: "healthy" };
    tr.className = `health-${health.state}`;
    const state = health.state.replace("_", " ");
    const cells = [m.model_id, state, m.active, m.queued, fmt(m.utilization * 100, 0) + " %",
      m.routed, fmt(m.stats.p99_ms, 1),
      m.stats.success_rate === null ? "–" : fmt(m.stats.success_rate * 100, 1) + " %",
      // Token-aware limits: tokens held now, and the TPM window's share of the quota.
      fmt(m.tokens_in_flight || 0, 0),
      m.tpm ? fmt(100 * m.tokens_in_window / m.tpm, 0) + " %" : "–"];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
    const cell = tr.children[1];
    cell.className = "health";
    if (health.reason) cell.title = health.reason;
    if (health.until_unix) {
      cell.textContent += ` (${fmt(Math.max(0, health.until_unix - now), 0)} s)`;
    }
    return tr;
  });
  document.querySelector("#models tbody").replaceChildren(...rows);
  push(now, stats.overall.p50_ms, stats.overall.p95_ms, stats.overall.p99_ms, util);
}

function renderAlerts(alerts) {
  const items = alerts.active.concat(alerts.history.slice().reverse()
    .filter(a => a.state === "resolved").slice(0, 20));
  const ul = document.getElementById("alerts");
  if (!items.length) {
    const li = document.createElement("li"); li.className = "none"; li.textContent = "no alerts";
    ul.replaceChildren(li); return;
  }
  ul.replaceChildren(...items.map(a => {
    const li = document.createElement("li");
    li.className = `${a.state} ${a.severity}`;
    // A firing alert's message carries the value now (the service refreshes it at each
    // evaluation); a resolved one says when it resolved.
    const firing = a.state === "firing";
    const at = new Date((firing ? a.started_at_unix : a.emitted_at_unix) * 1000);
    li.textContent = `${a.state} · ${a.message} · ${firing ? "since " : ""}` +
      at.toLocaleTimeString();
    return li;
  }));
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

async function prefill() {
  try {
    const h = await getJSON(`${API}/history?limit=${MAX_POINTS}`);
    for (const s of h.samples) push(s.ts, s.p50_ms, s.p95_ms, s.p99_ms, s.utilization);
    // The routing rate over the samples of the last RATE_WINDOW_S (service clock), shown
    // until the page has polled twice itself.
    const last = h.samples[h.samples.length - 1];
    const first = last && h.samples.find(s => last.ts - s.ts <= RATE_WINDOW_S);
    if (first && last.ts > first.ts) historyRate = (last.routes - first.routes) / (last.ts - first.ts);
  } catch (e) { /* history is a nicety; polling fills the charts anyway */ }
}

async function tick() {
  const status = document.getElementById("status");
  try {
    const [stats, alerts] = await Promise.all([getJSON(`${API}/stats`), getJSON(`${API}/alerts`)]);
    renderStats(stats);
    renderAlerts(alerts);
    redraw();
    status.textContent = `updated ${new Date().toLocaleTimeString()} · policy ${stats.policy}`;
    status.className = "status";
  } catch (e) {
    status.textContent = `error: ${e.message}`;
    status.className = "status error";
  }
}

prefill().then(() => { tick(); setInterval(tick, REFRESH_MS); });
window.addEventListener("resize", redraw);
