// The callhook console: reads the /v1 API with the token kept in session storage, draws
// its charts as SVG, and refreshes every few seconds. Every value from the API goes into
// the page as text, never as markup.
"use strict";

const REFRESH_MS = 5000;
const WINDOWS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const COLORS = {
  answered: "#2e9d5b", busy: "#e08a1e", timeout: "#c9b11c", rejected: "#b3261e",
  cancelled: "#7a5bc7", failed: "#5d6677", not_placed: "#8c2f39", unknown: "#9aa3b2",
  invalid: "#d05ca2", outside_window: "#3a8fb7", pending: "#c4cad4",
};
const PALETTE = ["#3056d3", "#1b998b", "#c03221", "#8f5db7", "#e4a11b", "#4c6085"];
const SVG = "http://www.w3.org/2000/svg";
const $ = (selector) => document.querySelector(selector);

const state = {
  token: sessionStorage.getItem("callhook-token") || "",
  window: "24h",
  timer: null,
  outcomeFilters: {},
  callFilters: {},
};

class Unauthorized extends Error {}

function color(status, index) {
  return COLORS[status] || PALETTE[index % PALETTE.length];
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${path}: ${response.status} ${detail}`);
  }
  return response.status === 204 || response.status === 202 ? null : response.json();
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function time(value, withDate = false) {
  if (!value) return "";
  const date = new Date(value);
  return withDate ? date.toLocaleString() : date.toLocaleTimeString();
}

function tickLabel(value) {
  const date = new Date(value);
  const options = state.window === "1h"
    ? { hour: "2-digit", minute: "2-digit" }
    : state.window === "24h"
      ? { weekday: "short", hour: "2-digit", minute: "2-digit" }
      : { weekday: "short", day: "numeric", month: "short" };
  return date.toLocaleString([], options);
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}

function windowBounds() {
  const until = new Date();
  const since = new Date(until.getTime() - WINDOWS[state.window]);
  return { since: since.toISOString(), until: until.toISOString() };
}

function showStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function askForToken(refused) {
  $("#token-error").hidden = !refused;
  const dialog = $("#token-dialog");
  if (!dialog.open) dialog.showModal();
  $("#token-input").focus();
}

function showDetail(title, value) {
  $("#detail-title").textContent = title;
  $("#detail-body").textContent = JSON.stringify(value, null, 2);
  const dialog = $("#detail");
  if (!dialog.open) dialog.showModal();
}

function fillTable(table, rows, columns, emptyText) {
  const body = $(`${table} tbody`);
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { class: "empty", colspan: columns }, emptyText)));
  }
  for (const row of rows) body.append(row);
}

// Callbacks by status over time: stacked bars, one per bucket.
async function loadTimeline() {
  const { since, until } = windowBounds();
  const bucket = state.window === "1h" ? "minute" : "hour";
  const timeline = await api(`/v1/stats/timeline${query({ since, until, bucket })}`);
  const statuses = [...new Set(timeline.buckets.flatMap((b) => Object.keys(b.outcomes)))].sort();
  const totals = Object.fromEntries(statuses.map((s) => [s, 0]));
  let highest = 1;
  for (const b of timeline.buckets) {
    let sum = 0;
    for (const [status, n] of Object.entries(b.outcomes)) { totals[status] += n; sum += n; }
    highest = Math.max(highest, sum);
  }
  const width = 600, height = 180, left = 36, bottom = 20;
  const slot = (width - left) / Math.max(timeline.buckets.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "Callbacks by status over time" });
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#dde1e8" }));
  const label = svg("text", { x: 0, y: 12, "font-size": 13, fill: "#5d6677" });
  label.textContent = String(highest);
  chart.append(label);
  timeline.buckets.forEach((b, i) => {
    let y = height - bottom;
    statuses.forEach((status, j) => {
      const n = b.outcomes[status] || 0;
      if (!n) return;
      const h = (n / highest) * (height - bottom - 12);
      y -= h;
      const bar = svg("rect", { x: left + i * slot + slot * 0.1, y, width: Math.max(slot * 0.8, 1),
        height: h, fill: color(status, j), "data-status": status, "data-count": n });
      const tip = svg("title");
      tip.textContent = `${time(b.start, true)}: ${n} ${status}`;
      bar.append(tip);
      chart.append(bar);
    });
  });
  for (const at of [0, timeline.buckets.length - 1]) {
    const b = timeline.buckets[at];
    if (!b) continue;
    const tick = svg("text", { x: at === 0 ? left : width, y: height - 3, "font-size": 13,
      fill: "#5d6677", "text-anchor": at === 0 ? "start" : "end" });
    tick.textContent = tickLabel(b.start);
    chart.append(tick);
  }
  $("#timeline-chart").replaceChildren(chart);
  $("#timeline-range").textContent = `by ${timeline.bucket}`;
  const legend = $("#timeline-legend");
  legend.replaceChildren();
  if (statuses.length === 0) legend.append(el("li", { class: "none" }, "no callbacks in this window"));
  statuses.forEach((status, j) => {
    const item = el("li", { "data-status": status, "data-count": totals[status] },
      `${status} ${totals[status]}`);
    // Through the style object: the page's policy refuses style attributes in markup.
    item.style.setProperty("--swatch", color(status, j));
    legend.append(item);
  });
  $("#timeline-chart").dataset.total = Object.values(totals).reduce((a, b) => a + b, 0);
}

// Call results of the window: one horizontal bar per result, with its count.
async function loadResults() {
  const { since, until } = windowBounds();
  const stats = await api(`/v1/stats${query({ since, until })}`);
  const results = Object.entries(stats.results).sort((a, b) => b[1] - a[1]);
  const highest = Math.max(1, ...results.map(([, n]) => n));
  const row = 30, width = 600, labelWidth = 130;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${Math.max(results.length, 1) * row + 4}`,
    role: "img", "aria-label": "Call results" });
  if (results.length === 0) {
    const none = svg("text", { x: 0, y: 18, "font-size": 15, fill: "#5d6677" });
    none.textContent = "no calls placed in this window";
    chart.append(none);
  }
  results.forEach(([result, n], i) => {
    const y = i * row + 2;
    const name = svg("text", { x: 0, y: y + 18, "font-size": 15, fill: "#1d2330" });
    name.textContent = result;
    const length = ((width - labelWidth - 50) * n) / highest;
    const bar = svg("rect", { x: labelWidth, y, width: Math.max(length, 1), height: row - 6,
      rx: 3, fill: color(result, i), "data-result": result, "data-count": n });
    const count = svg("text", { x: labelWidth + length + 6, y: y + 18, "font-size": 15, fill: "#1d2330" });
    count.textContent = String(n);
    chart.append(name, bar, count);
  });
  $("#results-chart").replaceChildren(chart);
}

async function control(campaign, action) {
  try {
    await api(`/v1/campaigns/${campaign.id}/${action}`, { method: "POST" });
    await refresh();
  } catch (error) {
    report(error);
  }
}

async function loadCampaigns() {
  const page = await api("/v1/campaigns?limit=20");
  const rows = page.items.map((c) => {
    const counts = c.counts;
    const results = Object.entries(counts.results).filter(([, n]) => n > 0)
      .map(([r, n]) => `${r} ${n}`).join(", ");
    const buttons = el("td", { class: "controls" });
    const button = (action, label, danger = false) => el("button", {
      type: "button", "data-action": action, class: danger ? "danger" : "",
      onclick: (event) => { event.stopPropagation(); control(c, action); } }, label);
    if (c.state === "running" || c.state === "scheduled") buttons.append(button("pause", "Pause"));
    if (c.state === "paused") buttons.append(button("resume", "Resume"));
    if (!["completed", "cancelled"].includes(c.state)) buttons.append(button("cancel", "Cancel", true));
    const row = el("tr", { class: "openable", "data-id": c.id, "data-state": c.state },
      el("td", {}, c.name || c.id.slice(0, 8)),
      el("td", {}, c.agent_id),
      el("td", { class: "state" }, c.state + (c.error ? ` (${c.error.message})` : "")),
      el("td", {}, el("progress", { max: Math.max(counts.destinations, 1), value: counts.done }),
        ` ${counts.done}/${counts.destinations}`),
      el("td", {}, results),
      buttons);
    row.addEventListener("click", async () => {
      try {
        const destinations = await api(`/v1/campaigns/${c.id}/destinations?limit=100`);
        showDetail(`Campaign ${c.name || c.id}`, { ...c, destinations: destinations.items });
      } catch (error) { report(error); }
    });
    return row;
  });
  fillTable("#campaigns", rows, 6, "no campaigns");
}

async function loadOutcomes() {
  const page = await api(`/v1/outcomes${query({ limit: 25, ...state.outcomeFilters })}`);
  const rows = page.items.map((o) => {
    const row = el("tr", { class: "openable", "data-conversation": o.conversation_uuid },
      el("td", {}, time(o.occurred_at, true)), el("td", {}, o.status),
      el("td", {}, o.conversation_uuid), el("td", {}, o.agent_id || ""),
      el("td", {}, o.to || ""), el("td", {}, o.event_count));
    row.addEventListener("click", async () => {
      try {
        const outcome = await api(`/v1/outcomes/${encodeURIComponent(o.conversation_uuid)}`);
        showDetail(`Conversation ${o.conversation_uuid}`, outcome);
      } catch (error) { report(error); }
    });
    return row;
  });
  fillTable("#outcomes", rows, 6, "no outcomes");
}

// A call without its status URL: the URL's signature lets anyone post callbacks for it.
function withoutSecrets(call) {
  const { status_url: _, ...shown } = call;
  return shown;
}

async function loadCalls() {
  const page = await api(`/v1/calls${query({ limit: 25, ...state.callFilters })}`);
  const rows = page.items.map((c) => {
    const row = el("tr", { class: "openable", "data-id": c.id },
      el("td", {}, time(c.created_at, true)), el("td", {}, c.to), el("td", {}, c.agent_id),
      el("td", {}, c.state), el("td", {}, c.result || "pending"), el("td", {}, c.attempt));
    row.addEventListener("click", async () => {
      try {
        const call = await api(`/v1/calls/${c.id}`);
        showDetail(`Call to ${c.to}`, withoutSecrets(call));
      } catch (error) { report(error); }
    });
    return row;
  });
  fillTable("#calls", rows, 6, "no calls");
}

// A receiver by its origin only: a webhook URL's path or query may be its credential.
function receiverOf(url) {
  try { return new URL(url).origin; } catch (_) { return "(unreadable URL)"; }
}

async function retryFailed(subscription, deliveries) {
  try {
    for (const d of deliveries.filter((d) => d.status === "failed")) {
      await api(`/v1/webhooks/${subscription.id}/deliveries/${d.id}/retry`, { method: "POST" });
    }
    await refresh();
  } catch (error) {
    report(error);
  }
}

async function loadWebhooks() {
  const page = await api("/v1/webhooks?limit=10");
  const rows = await Promise.all(page.items.map(async (w) => {
    const log = await api(`/v1/webhooks/${w.id}/deliveries?limit=50`);
    const count = (status) => log.items.filter((d) => d.status === status).length;
    const last = log.items.find((d) => d.attempts > 0);
    const answer = !last ? "" : last.last_status_code
      ? `${last.last_status_code}` : (last.last_error || "");
    const actions = el("td", { class: "controls" });
    if (count("failed") > 0 && w.enabled) {
      actions.append(el("button", { type: "button", "data-action": "retry",
        onclick: (event) => { event.stopPropagation(); retryFailed(w, log.items); } },
      "Retry failed"));
    }
    const row = el("tr", { class: "openable", "data-id": w.id,
      "data-delivered": count("delivered"), "data-pending": count("pending"),
      "data-failed": count("failed") },
      el("td", {}, receiverOf(w.url) + (w.description ? ` (${w.description})` : "")),
      el("td", {}, w.events.join(", ")),
      el("td", {}, w.enabled ? "enabled" : `disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ""}`),
      el("td", {}, count("delivered")), el("td", {}, count("pending")),
      el("td", {}, count("failed")), el("td", {}, answer), actions);
    row.addEventListener("click", () => showDetail(`Webhook to ${receiverOf(w.url)}`,
      { ...w, url: receiverOf(w.url), deliveries: log.items }));
    return row;
  }));
  fillTable("#webhooks", rows, 8, "no subscriptions");
}

async function loadRejected() {
  const page = await api("/v1/rejected?limit=10");
  const rows = page.items.map((r) => {
    const row = el("tr", { class: "openable" }, el("td", {}, time(r.received_at, true)),
      el("td", {}, r.status), el("td", {}, r.reason),
      el("td", {}, r.body.length > 60 ? `${r.body.slice(0, 60)}…` : r.body));
    row.addEventListener("click", () => showDetail("Refused callback", r));
    return row;
  });
  fillTable("#rejected", rows, 4, "none refused");
}

function report(error) {
  if (error instanceof Unauthorized) {
    showStatus("an API token is needed", true);
    askForToken(Boolean(state.token));
  } else {
    showStatus(error.message, true);
  }
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    await Promise.all([loadTimeline(), loadResults(), loadCampaigns(), loadOutcomes(),
      loadCalls(), loadWebhooks(), loadRejected()]);
    showStatus(`updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.loaded = "true";
    state.timer = setTimeout(refresh, REFRESH_MS);
  } catch (error) {
    report(error);
    if (!(error instanceof Unauthorized)) state.timer = setTimeout(refresh, REFRESH_MS);
  }
}

function filtersOf(form) {
  return Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, v.trim()]).filter(([, v]) => v));
}

$("#token-form").addEventListener("submit", () => {
  state.token = $("#token-input").value.trim();
  $("#token-input").value = "";
  sessionStorage.setItem("callhook-token", state.token);
  refresh();
});
$("#token-button").addEventListener("click", () => askForToken(false));
$("#outcome-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.outcomeFilters = filtersOf(event.target);
  refresh();
});
$("#call-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.callFilters = filtersOf(event.target);
  refresh();
});
for (const button of document.querySelectorAll("#windows button")) {
  button.addEventListener("click", () => {
    state.window = button.dataset.window;
    for (const other of document.querySelectorAll("#windows button")) {
      other.classList.toggle("active", other === button);
    }
    refresh();
  });
}
window.addEventListener("error", (event) => showStatus(`error: ${event.message}`, true));
window.addEventListener("unhandledrejection", (event) => showStatus(`error: ${event.reason}`, true));
refresh();
