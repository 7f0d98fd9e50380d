// Fortress dashboard. Talks only to this gateway's admin API; loads nothing from elsewhere.
"use strict";

const state = { csrf: sessionStorage.getItem("csrf") || "", feed: null, me: null };

const $ = (sel) => document.querySelector(sel);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
const row = (cells) => { const tr = el("tr"); for (const c of cells) { const td = el("td"); if (c instanceof Node) td.append(c); else td.textContent = c ?? ""; tr.append(td); } return tr; };
const us = (n) => n >= 1000 ? (n / 1000).toFixed(1) + " ms" : n + " µs";

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = state.csrf;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  if (res.status === 401) { showLogin(); throw new Error("unauthenticated"); }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error(data && data.error ? data.error.message : res.statusText);
  return data;
}

function showLogin() {
  $("#nav").hidden = true;
  document.querySelectorAll(".page").forEach((p) => (p.hidden = true));
  $("#login").hidden = false;
  $("#who").textContent = "";
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const res = await fetch("/api/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: f.get("username"), password: f.get("password") }) });
    const data = await res.json();
    if (!res.ok) throw new Error(data.error.message);
    state.csrf = data.csrf_token;
    sessionStorage.setItem("csrf", state.csrf);
    ev.target.reset();
    await start();
  } catch (e) { $("#login-error").textContent = e.message; }
});

async function start() {
  state.me = await api("GET", "/api/me");
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#who").textContent = `${state.me.name} (${state.me.role})`;
  route();
}

function route() {
  const page = (location.hash || "#status").slice(1);
  document.querySelectorAll(".page").forEach((p) => (p.hidden = p.id !== page));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  if (page !== "traffic" && state.feed) { state.feed.close(); state.feed = null; }
  ({ status: loadStatus, traffic: openFeed, billing: loadBilling, changes: loadChanges, settings: loadSettings }[page] || loadStatus)();
}
window.addEventListener("hashchange", () => state.me && route());

async function loadStatus() {
  const s = await api("GET", "/api/status");
  const u = s.uptime;
  const cards = $("#uptime");
  cards.replaceChildren();
  const card = (label, value, cls) => { const c = el("div", undefined, "card"); c.append(el("span", label), el("b", value, cls)); cards.append(c); };
  card(`Uptime ${u.month}`, (u.report.uptime * 100).toFixed(3) + " %", u.report.uptime >= u.commitment.uptime ? "ok" : "bad");
  card("Committed", (u.commitment.uptime * 100).toFixed(2) + " %");
  card("Downtime", u.report.downtime_minutes + " min");
  card("Service credit", "$" + u.service_credit);
  const body = $("#targets");
  body.replaceChildren();
  for (const t of s.targets) {
    body.append(row([t.target, el("span", t.healthy ? "healthy" : "degraded", t.healthy ? "ok" : "bad"), t.requests, t.request_rate.toFixed(2), (t.error_rate * 100).toFixed(1) + " %", us(t.p50_us), us(t.p95_us), us(t.p99_us), t.last_error || "—"]));
  }
  if (!s.targets.length) body.append(row(["No traffic yet"]));
}

function openFeed(filter) {
  if (state.feed) state.feed.close();
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filter || {})) if (v) q.set(k, v);
  const es = new EventSource("/api/traffic/stream?" + q.toString());
  state.feed = es;
  $("#live").classList.remove("off");
  es.onerror = () => $("#live").classList.add("off");
  es.addEventListener("audit", (m) => {
    const e = JSON.parse(m.data);
    const tr = row([new Date(e.timestamp).toLocaleTimeString(), e.subject.id, e.action, e.resource, e.decision ? e.decision.effect : "—", e.outcome, us(e.latency_us)]);
    tr.dataset.outcome = e.outcome;
    tr.addEventListener("click", () => { const d = $("#event-detail"); d.hidden = false; d.textContent = JSON.stringify(e, null, 2); });
    $("#feed").prepend(tr);
    while ($("#feed").children.length > 500) $("#feed").lastChild.remove();
  });
}
$("#feed-filter").addEventListener("submit", (ev) => { ev.preventDefault(); $("#feed").replaceChildren(); openFeed(Object.fromEntries(new FormData(ev.target))); });

async function loadBilling() {
  const box = $("#billing-body");
  box.replaceChildren();
  try {
    const b = await api("GET", "/api/billing");
    const card = (label, value) => { const c = el("div", undefined, "card"); c.append(el("span", label), el("b", value)); box.append(c); };
    card("Active users", `${b.invoice.active_users} / ${b.invoice.pack_size}`);
    card("Beyond the pack (1.25×)", String(b.invoice.overage_users));
    card("Invoice preview", "$" + (b.invoice.total / 1e6).toFixed(2));
    const a = el("a", "Export CSV"); a.href = "/api/billing/invoice.csv"; box.append(a);
  } catch (e) { box.append(el("p", e.message, "error")); }
}

async function loadChanges() {
  const body = $("#change-rows");
  body.replaceChildren();
  try {
    const page = await api("GET", "/api/changes");
    for (const c of page.events) {
      const diff = c.detail && c.detail.before !== undefined ? `${JSON.stringify(c.detail.before)} → ${JSON.stringify(c.detail.after)}` : "";
      body.append(row([new Date(c.timestamp).toLocaleString(), c.subject.id, c.action, c.resource, diff]));
    }
  } catch (e) { body.append(row([e.message])); }
}

async function loadSettings() {
  const s = await api("GET", "/api/settings");
  $("#settings-form").settings.value = JSON.stringify(s, null, 2);
}
$("#settings-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { await api("PUT", "/api/settings", JSON.parse(ev.target.settings.value)); $("#settings-error").textContent = "Saved."; }
  catch (e) { $("#settings-error").textContent = e.message; }
});

start().catch(showLogin);
