// Waft dashboard: renders what the websocket pushes; sends commands through the JSON API.
// No polling, no reloads: the lattice's events arrive as they happen. Plain JS, no libraries.
"use strict";

const waft = (window.waft = {
  state: null,        // the lattice model (hosts, claims, links, models)
  metrics: null,      // per-model traffic summary with per-second points
  events: [],         // newest last
  connected: false,
  receivedAt: 0,      // when `state` arrived (seconds), to tick host uptimes locally
  updates: 0,         // how many state pushes arrived (tests wait on it)
  chartDraws: 0,
});

// ------------------------------------------------------------------ helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);
const short = (id) => (id ? `${id.slice(0, 8)}…${id.slice(-4)}` : "");
function humanBytes(n) {
  if (n === undefined || n === null || n === "") return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = Number(n), i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function humanDuration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}
function badge(status) {
  const kind = { healthy: "ok", ready: "ok", running: "ok", stored: "info", loading: "warn", starting: "warn",
    restarting: "warn", unhealthy: "bad", failed: "bad" }[status] || "info";
  return h("span", { class: `badge ${kind}` }, status);
}
function toast(text, ok = false) {
  const el = h("div", { class: ok ? "toast ok" : "toast", role: "status" }, text);
  $("toasts").append(el);
  setTimeout(() => el.remove(), ok ? 3000 : 8000);
}
async function api(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await response.json(); } catch (err) { data = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}
async function act(what, path, body) {
  try {
    await api(path, body);
    toast(`${what}: requested`, true);
  } catch (err) {
    toast(`${what} failed: ${err.message}`);
  }
}
function allActors() {
  const out = [];
  for (const host of Object.values(waft.state?.hosts || {})) for (const a of host.actors) out.push({ ...a, host });
  return out;
}
function allProviders() {
  const out = [];
  for (const host of Object.values(waft.state?.hosts || {})) for (const p of host.providers) out.push({ ...p, host });
  return out;
}
function nameOf(id) {
  const claims = waft.state?.claims?.[id];
  if (claims?.name) return claims.name;
  const found = allActors().find((a) => a.id === id) || allProviders().find((p) => p.id === id);
  return found?.name || short(id);
}
const hostName = (host) => host.friendly_name || short(host.id);

// ------------------------------------------------------------------ rendering
function render() {
  const state = waft.state;
  if (!state) return;
  $("prefix").textContent = state.prefix;
  const banner = $("banner");
  banner.hidden = !state.load_error;
  banner.textContent = state.load_error || "";
  renderHosts(state);
  renderActors();
  renderProviders();
  renderLinks(state);
  renderModels(state);
  $("count-hosts").textContent = Object.keys(state.hosts).length;
  $("count-actors").textContent = allActors().length;
  $("count-providers").textContent = allProviders().length;
  for (const select of document.querySelectorAll(".host-select")) {
    const chosen = select.value;
    select.replaceChildren(h("option", { value: "" }, "any host (auction)"),
      ...Object.values(state.hosts).map((host) => h("option", { value: host.id }, `${hostName(host)} (${short(host.id)})`)));
    select.value = chosen;
  }
}

function renderHosts(state) {
  const hosts = Object.values(state.hosts);
  $("hosts").replaceChildren(...(hosts.length ? hosts.map((host) => {
    const instances = host.actors.reduce((n, a) => n + a.instances.length, 0);
    return h("div", { class: "host", dataset: { hostId: host.id } },
      h("div", { class: "name" }, hostName(host), " ", h("code", { title: host.id }, short(host.id))),
      h("div", { class: "row" },
        h("span", {}, "version ", h("b", {}, host.version || "?")),
        h("span", {}, "up ", h("b", { class: "uptime", dataset: { since: host.uptime_seconds } }, humanDuration(host.uptime_seconds))),
        h("span", {}, h("b", {}, host.actors.length), " actors (", h("b", {}, instances), " instances)"),
        h("span", {}, h("b", {}, host.providers.length), " providers")),
      h("div", { class: "row" }, Object.entries(host.labels || {}).map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`))));
  }) : [h("p", { class: "empty" }, "No host has answered yet.")]));
}

function tickUptimes() { // display only: advances the last reported uptime with the local clock
  const elapsed = Date.now() / 1000 - waft.receivedAt;
  for (const el of document.querySelectorAll(".uptime")) el.textContent = humanDuration(Number(el.dataset.since) + elapsed);
}

function renderActors() {
  const actors = allActors();
  $("actors-empty").hidden = actors.length > 0;
  $("actors").replaceChildren(...actors.map((a) => h("tr", { dataset: { actorId: a.id, hostId: a.host.id } },
    h("td", {}, h("button", { class: "btn link", title: "show claims", onclick: () => showClaims(a.id) }, a.name || short(a.id))),
    h("td", {}, h("code", { title: a.id }, short(a.id))),
    h("td", { class: "instances" }, a.instances.length),
    h("td", { title: a.host.id }, hostName(a.host)),
    h("td", {}, badge("running")),
    h("td", { class: "actions" },
      h("button", { class: "btn small ghost", dataset: { action: "claims" }, onclick: () => showClaims(a.id) }, "claims"), " ",
      h("button", { class: "btn small ghost", dataset: { action: "scale" }, onclick: () => openScale(a) }, "scale"), " ",
      h("button", { class: "btn small ghost", dataset: { action: "stop-actor" }, onclick: () => confirmThen(
        `Stop ${a.name || short(a.id)}?`, `All ${a.instances.length} instance(s) on ${hostName(a.host)} stop.`,
        () => act("stop actor", `/api/actors/${a.id}/stop`, { host_id: a.host.id, count: 0 })) }, "stop")))));
}

function renderProviders() {
  const providers = allProviders();
  $("providers-empty").hidden = providers.length > 0;
  $("providers").replaceChildren(...providers.map((p) => h("tr", { dataset: { providerId: p.id, linkName: p.link_name } },
    h("td", { title: `${p.id}\n${p.image_ref}` }, p.name || short(p.id)),
    h("td", {}, p.link_name),
    h("td", {}, h("code", {}, p.contract_id)),
    h("td", { title: p.host.id }, hostName(p.host)),
    h("td", { title: p.health_message || "" }, badge(p.status), p.restarts ? h("span", { class: "muted small" }, ` ↻${p.restarts}`) : null),
    h("td", { class: "actions" }, h("button", { class: "btn small ghost", dataset: { action: "stop-provider" }, onclick: () => confirmThen(
      `Stop ${p.name}?`, `Provider ${p.name} (link ${p.link_name}) on ${hostName(p.host)} stops.`,
      () => act("stop provider", `/api/providers/${p.id}/stop`, { host_id: p.host.id, link_name: p.link_name, contract_id: p.contract_id })) }, "stop")))));
}

function renderLinks(state) {
  $("links-empty").hidden = state.links.length > 0;
  $("links").replaceChildren(...state.links.map((l) => h("tr", { dataset: { actorId: l.actor_id, contractId: l.contract_id, linkName: l.link_name } },
    h("td", { title: l.actor_id }, nameOf(l.actor_id)),
    h("td", { title: l.provider_id }, nameOf(l.provider_id)),
    h("td", {}, l.link_name),
    h("td", {}, h("code", {}, l.contract_id)),
    h("td", { title: JSON.stringify(l.values || {}) }, Object.entries(l.values || {}).map(([k, v]) => `${k}=${v}`).join(", ")),
    h("td", { class: "actions" }, h("button", { class: "btn small ghost", dataset: { action: "delete-link" }, onclick: () => confirmThen(
      "Delete link?", `${nameOf(l.actor_id)} → ${nameOf(l.provider_id)} (${l.contract_id}, ${l.link_name})`,
      () => act("delete link", "/api/links/delete", { actor_id: l.actor_id, contract_id: l.contract_id, link_name: l.link_name })) }, "delete")))));
}

function renderModels(state) {
  $("models-empty").hidden = state.models.length > 0;
  const note = $("bindle-error");
  note.hidden = !state.bindle_error;
  note.textContent = state.bindle_error || "";
  $("models").replaceChildren(...state.models.map((m) => h("tr", { dataset: { model: m.name, route: m.route || "" } },
    h("td", { title: m.description || m.id || "" }, m.name,
      m.route && m.route !== m.name ? h("span", { class: "muted small" }, ` /${m.route}`) : null),
    h("td", {}, m.version || ""),
    h("td", {}, humanBytes(m.size)),
    h("td", {}, m.engine || ""),
    h("td", { class: "model-status", title: m.reason || (m.sources || []).join(", ") }, badge(m.status || "stored"),
      m.reason ? h("div", { class: "muted small reason" }, m.reason) : null))));
}

// ------------------------------------------------------------------ events
const EVENT_DETAIL = (e) => {
  const d = e.data || {};
  const parts = [];
  if (d.public_key) parts.push(nameOf(d.public_key));
  if (d.actor_ref || d.provider_ref || d.image_ref) parts.push(d.actor_ref || d.provider_ref || d.image_ref);
  if (d.actor_id) parts.push(`${nameOf(d.actor_id)} → ${nameOf(d.provider_id || "")}`);
  if (d.link_name) parts.push(`link ${d.link_name}`);
  if (d.contract_id) parts.push(d.contract_id);
  if (d.error || d.reason) parts.push(d.error || d.reason);
  if (e.name.startsWith("health_check") && d.message) parts.push(d.message);
  if (e.name === "host_heartbeat") parts.push(`${(d.actors || []).length} actor instances, ${(d.providers || []).length} providers`);
  return parts.join(" · ");
};
function eventItem(e) {
  const bad = /failed|stopped/.test(e.name);
  const ok = /started|passed|set$/.test(e.name);
  const time = e.time ? new Date(e.time).toLocaleTimeString() : "";
  return h("li", { class: bad ? "bad" : ok ? "ok" : "", dataset: { event: e.name } },
    h("span", { class: "time" }, time), h("span", { class: "name" }, e.name),
    h("code", { title: e.source }, short(e.source)), h("span", { class: "detail", title: JSON.stringify(e.data) }, EVENT_DETAIL(e)));
}
function addEvent(e) {
  waft.events.push(e);
  if (waft.events.length > 300) waft.events.shift();
  const list = $("events");
  list.prepend(eventItem(e));
  while (list.children.length > 300) list.lastChild.remove();
  $("events-count").textContent = `${waft.events.length} shown`;
  if (/_start_failed$|update_failed$/.test(e.name)) toast(`${e.name}: ${e.data.error || e.data.reason || ""}`);
}

// ------------------------------------------------------------------ charts (canvas, hand-drawn)
const charts = new Map(); // model -> {card, rps, latency, stats}
function chartCard(model) {
  if (charts.has(model)) return charts.get(model);
  const stats = h("div", { class: "chart-stats" });
  const rps = h("canvas", { class: "chart-rps", dataset: { model } });
  const latency = h("canvas", { class: "chart-latency", dataset: { model } });
  const card = h("div", { class: "chart-card", dataset: { model } },
    h("h3", {}, model === "-" ? "other routes" : model), stats,
    h("div", { class: "legend" }, "requests/s", h("i", { style: "background:#4fb3ff" }), "ok", h("i", { style: "background:#ff6b6b" }), "errors"), rps,
    h("div", { class: "legend" }, "latency ms", h("i", { style: "background:#3ecf8e" }), "p50", h("i", { style: "background:#c792ea" }), "p95"), latency);
  const entry = { card, rps, latency, stats };
  charts.set(model, entry);
  $("charts").append(card);
  return entry;
}
function setupCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400, height = canvas.clientHeight || 110;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}
function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function axes(ctx, width, height, max, unit) {
  const left = 40, bottom = height - 14, top = 6;
  ctx.strokeStyle = "#263142"; ctx.fillStyle = "#8391a5"; ctx.font = "10px sans-serif"; ctx.lineWidth = 1;
  for (let i = 0; i <= 2; i++) {
    const y = bottom - ((bottom - top) * i) / 2;
    ctx.beginPath(); ctx.moveTo(left, y + 0.5); ctx.lineTo(width - 4, y + 0.5); ctx.stroke();
    const label = (max * i) / 2;
    ctx.fillText(`${Number.isInteger(label) ? label : label.toFixed(1)}${unit}`, 2, y + 3);
  }
  ctx.fillText("-60 s", left, height - 2);
  ctx.fillText("now", width - 24, height - 2);
  return { left, bottom, top, right: width - 4 };
}
function drawRps(canvas, points) {
  const { ctx, width, height } = setupCanvas(canvas);
  const max = niceMax(Math.max(1, ...points.map((p) => p.rps)));
  const box = axes(ctx, width, height, max, "");
  const step = (box.right - box.left) / points.length;
  points.forEach((p, i) => {
    if (!p.rps) return;
    const x = box.left + i * step + 1, w = Math.max(1, step - 2);
    const hOk = ((p.rps - p.errors) / max) * (box.bottom - box.top), hErr = (p.errors / max) * (box.bottom - box.top);
    ctx.fillStyle = "#4fb3ff"; ctx.fillRect(x, box.bottom - hOk, w, hOk);
    ctx.fillStyle = "#ff6b6b"; ctx.fillRect(x, box.bottom - hOk - hErr, w, hErr);
  });
}
function drawLatency(canvas, points) {
  const { ctx, width, height } = setupCanvas(canvas);
  const max = niceMax(Math.max(1, ...points.map((p) => p.p95)));
  const box = axes(ctx, width, height, max, "");
  const step = (box.right - box.left) / points.length;
  for (const [key, colour] of [["p50", "#3ecf8e"], ["p95", "#c792ea"]]) {
    ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = 2;
    let drawing = false;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = box.left + i * step + step / 2;
      if (!p.rps) { drawing = false; return; }
      const y = box.bottom - (p[key] / max) * (box.bottom - box.top);
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    });
    ctx.stroke();
  }
}
function renderMetrics() {
  const summary = waft.metrics;
  if (!summary) return;
  const models = Object.entries(summary.models || {});
  $("charts-empty").hidden = models.length > 0;
  let total = 0;
  for (const [model, m] of models) {
    total += m.total;
    const chart = chartCard(model);
    chart.stats.replaceChildren(
      h("span", {}, h("b", { class: "stat-total" }, m.total), " requests"),
      h("span", {}, h("b", { class: "stat-rps" }, m.rps), " req/s"),
      h("span", {}, "p50 ", h("b", { class: "stat-p50" }, m.p50), " ms"),
      h("span", {}, "p95 ", h("b", { class: "stat-p95" }, m.p95), " ms"),
      h("span", {}, h("b", { class: "stat-errors" }, m.errors), " errors"));
    drawRps(chart.rps, m.points);
    drawLatency(chart.latency, m.points);
  }
  $("requests-total").textContent = total;
  waft.chartDraws += 1;
}

// ------------------------------------------------------------------ dialogs and commands
function openDialog(id) { const dlg = $(id); render(); dlg.showModal(); return dlg; }
function confirmThen(title, text, action) {
  const dlg = $("dlg-confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  dlg.returnValue = "";
  dlg.onclose = () => { if (dlg.returnValue === "ok") action(); };
  dlg.showModal();
}
async function showClaims(id) {
  const dlg = $("dlg-claims");
  $("claims-name").textContent = nameOf(id);
  const body = $("claims-body");
  body.replaceChildren(h("dt", {}, "id"), h("dd", {}, id));
  dlg.showModal();
  try {
    const { claims } = await api(`/api/claims/${encodeURIComponent(id)}`);
    body.replaceChildren(...Object.entries(claims).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v || "—")]));
  } catch (err) {
    body.append(h("dt", {}, "error"), h("dd", {}, err.message));
  }
}
function openScale(actor) {
  const dlg = $("dlg-scale");
  const form = dlg.querySelector("form");
  $("scale-name").textContent = actor.name || short(actor.id);
  form.actor_id.value = actor.id;
  form.host_id.value = actor.host.id;
  form.count.value = actor.instances.length;
  dlg.showModal();
}
function fillLinkForm() {
  const actorSel = $("link-actor"), providerSel = $("link-provider");
  actorSel.replaceChildren(...allActors().map((a) => h("option", { value: a.id }, `${a.name || short(a.id)} (${short(a.id)})`)));
  providerSel.replaceChildren(...allProviders().map((p) => h("option", { value: `${p.id}|${p.contract_id}|${p.link_name}` },
    `${p.name} · ${p.link_name} (${p.contract_id})`)));
  const sync = () => {
    const [, contract, linkName] = (providerSel.value || "||").split("|");
    $("link-contract").value = contract || "";
    providerSel.form.link_name.value = linkName || "default";
  };
  providerSel.onchange = sync;
  sync();
}
const SUBMIT = {
  startActor: (f) => act("start actor", "/api/actors", { ref: f.ref.value.trim(), count: Number(f.count.value || 1), host_id: f.host_id.value }),
  startProvider: (f) => act("start provider", "/api/providers", { ref: f.ref.value.trim(), link_name: f.link_name.value.trim() || "default",
    configuration: f.configuration.value.trim(), host_id: f.host_id.value }),
  defineLink: (f) => act("define link", "/api/links", { actor_id: f.actor_id.value, provider_id: f.provider.value.split("|")[0],
    contract_id: f.contract_id.value.trim(), link_name: f.link_name.value.trim() || "default", values: f.values.value.trim() }),
  scaleActor: (f) => act("scale", `/api/actors/${f.actor_id.value}/scale`, { host_id: f.host_id.value, count: Number(f.count.value) }),
};
for (const form of document.querySelectorAll("form[data-submit]")) {
  const dlg = form.closest("dialog");
  dlg.addEventListener("close", () => {
    if (dlg.returnValue === "ok") SUBMIT[form.dataset.submit](form);
    dlg.returnValue = "";
  });
}
$("btn-start-actor").onclick = () => openDialog("dlg-start-actor");
$("btn-start-provider").onclick = () => openDialog("dlg-start-provider");
$("btn-define-link").onclick = () => { openDialog("dlg-define-link"); fillLinkForm(); };
$("btn-refresh-models").onclick = () => act("refresh models", "/api/models/refresh", {});

// ------------------------------------------------------------------ websocket
let backoff = 500;
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/ws`);
  ws.onopen = () => {
    waft.connected = true; backoff = 500;
    $("conn").className = "conn up"; $("conn-text").textContent = "live";
  };
  ws.onmessage = (msg) => {
    const data = JSON.parse(msg.data);
    if (data.type === "hello" || data.type === "state") {
      waft.state = data.state; waft.receivedAt = Date.now() / 1000; waft.updates += 1;
      render();
    }
    if (data.type === "hello") { // after the state, so the log can name what it mentions
      waft.events = [];
      $("events").replaceChildren();
      for (const e of data.events) addEvent(e);
    }
    if (data.type === "hello" || data.type === "metrics") { waft.metrics = data.metrics; renderMetrics(); }
    if (data.type === "event") addEvent(data.event);
  };
  ws.onclose = () => { // reconnect with backoff; the next hello carries the whole state again
    waft.connected = false;
    $("conn").className = "conn down"; $("conn-text").textContent = "reconnecting";
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
}
window.addEventListener("resize", renderMetrics);
setInterval(tickUptimes, 1000);
connect();
