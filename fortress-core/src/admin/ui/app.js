// Fortress dashboard. Talks only to this gateway's admin API (relative URLs, so it works
// under any path prefix); loads nothing from elsewhere.
"use strict";

const state = { csrf: sessionStorage.getItem("csrf") || "", feed: null, me: null, feedNext: null, changesNext: null, policy: null };

const $ = (sel) => document.querySelector(sel);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
const row = (cells) => { const tr = el("tr"); for (const c of cells) { const td = el("td"); if (c instanceof Node) td.append(c); else td.textContent = c ?? ""; tr.append(td); } return tr; };
const us = (n) => n >= 1000 ? (n / 1000).toFixed(1) + " ms" : n + " µs";
const when = (t) => t ? new Date(t).toLocaleString() : "—";
const short = (v) => { const s = v === undefined ? "" : JSON.stringify(v); return s.length > 120 ? s.slice(0, 117) + "…" : s; };
const button = (label, onClick, cls) => { const b = el("button", label, cls); b.type = "button"; b.addEventListener("click", onClick); return b; };

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = state.csrf;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  if (res.status === 401) { showLogin(); throw new Error("unauthenticated"); }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) { const err = new Error(data && data.error ? data.error.message : res.statusText); err.data = data; throw err; }
  return data;
}

function showLogin() {
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  document.querySelectorAll(".page").forEach((p) => (p.hidden = true));
  $("#login").hidden = false;
  $("#who").textContent = "";
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const res = await fetch("api/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: f.get("username"), password: f.get("password") }) });
    const data = await res.json();
    if (!res.ok) throw new Error(data.error.message);
    state.csrf = data.csrf_token;
    sessionStorage.setItem("csrf", state.csrf);
    ev.target.reset();
    $("#login-error").textContent = "";
    await start();
  } catch (e) { $("#login-error").textContent = e.message; }
});

$("#logout").addEventListener("click", async () => {
  try { await api("POST", "api/logout"); } catch (_) { /* signed out either way */ }
  sessionStorage.removeItem("csrf");
  state.me = null;
  if (state.feed) { state.feed.close(); state.feed = null; }
  showLogin();
});

async function start() {
  state.me = await api("GET", "api/me");
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = `${state.me.name} (${state.me.role})`;
  route();
}

function route() {
  const page = (location.hash || "#status").slice(1);
  document.querySelectorAll(".page").forEach((p) => (p.hidden = p.id !== page));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  if (page !== "traffic" && state.feed) { state.feed.close(); state.feed = null; setLive("closed"); }
  ({ status: loadStatus, traffic: loadTraffic, billing: loadBilling, changes: loadChanges, manage: loadManage, settings: loadSettings }[page] || loadStatus)();
}
window.addEventListener("hashchange", () => state.me && route());

// ---- Status Board ----

async function loadStatus() {
  const s = await api("GET", "api/status");
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
    body.append(row([t.target, el("span", t.healthy ? "healthy" : "degraded", t.healthy ? "ok" : "bad"), t.requests, t.request_rate.toFixed(2), (t.error_rate * 100).toFixed(1) + " %", us(t.p50_us), us(t.p95_us), us(t.p99_us), t.last_error ? when(t.last_error) : "—"]));
  }
  if (!s.targets.length) body.append(row(["No traffic yet"]));
}

// ---- Traffic Feed: history, then live ----

function setLive(s) { const l = $("#live"); l.dataset.state = s; l.classList.toggle("off", s !== "open"); }

function feedRow(e, seq) {
  const tr = row([new Date(e.timestamp).toLocaleTimeString(), e.subject.id, e.action, e.resource, e.decision ? e.decision.effect : "—", e.outcome, us(e.latency_us)]);
  tr.className = "event";
  tr.dataset.outcome = e.outcome;
  tr.dataset.requestId = e.request_id;
  tr.dataset.action = e.action;
  tr.dataset.resource = e.resource;
  tr.addEventListener("click", async () => {
    const d = $("#event-detail");
    d.hidden = false;
    let shown = { event: e };
    if (seq !== undefined) { try { shown = await api("GET", `api/events/${seq}`); } catch (_) { /* show what we have */ } }
    d.textContent = JSON.stringify(shown, null, 2);
  });
  return tr;
}

function currentFilter() { return Object.fromEntries([...new FormData($("#feed-filter"))].filter(([, v]) => v)); }

async function loadHistory(more) {
  const q = new URLSearchParams(currentFilter());
  q.set("limit", "50");
  if (more && state.feedNext) q.set("cursor", state.feedNext);
  try {
    const page = await api("GET", "api/traffic?" + q.toString());
    for (const item of page.events) $("#feed").append(feedRow(item.event, item.seq));
    state.feedNext = page.next;
    $("#feed-more").hidden = !page.next;
  } catch (e) { $("#feed-more").hidden = true; }
}

function openFeed() {
  if (state.feed) state.feed.close();
  const q = new URLSearchParams(currentFilter());
  const es = new EventSource("api/traffic/stream?" + q.toString());
  state.feed = es;
  setLive("connecting");
  es.onopen = () => setLive("open");
  es.onerror = () => setLive("error");
  es.addEventListener("audit", (m) => {
    const e = JSON.parse(m.data);
    $("#feed").prepend(feedRow(e));
    while ($("#feed").children.length > 500) $("#feed").lastChild.remove();
  });
}

async function loadTraffic() {
  $("#feed").replaceChildren();
  $("#event-detail").hidden = true;
  openFeed();
  await loadHistory(false);
}
$("#feed-filter").addEventListener("submit", (ev) => { ev.preventDefault(); loadTraffic(); });
$("#feed-more").addEventListener("click", () => loadHistory(true));

// ---- Billing ----

async function loadBilling() {
  const box = $("#billing-body");
  box.replaceChildren();
  $("#billing-models").replaceChildren();
  try {
    const b = await api("GET", "api/billing");
    const card = (label, value) => { const c = el("div", undefined, "card"); c.append(el("span", label), el("b", value)); box.append(c); };
    card("Active users", `${b.invoice.active_users} / ${b.invoice.pack_size}`);
    card("Beyond the pack (1.25×)", String(b.invoice.overage_users));
    card("Invoice preview", "$" + (b.invoice.total / 1e6).toFixed(2));
    const a = el("a", "Export CSV"); a.href = "api/billing/invoice.csv"; box.append(a);
    for (const [model, t] of Object.entries(b.by_model)) $("#billing-models").append(row([model, t.input_tokens, t.output_tokens, "$" + (t.cost / 1e6).toFixed(4)]));
  } catch (e) { box.append(el("p", e.message, "error")); }
}

// ---- Change Log ----

async function loadChanges(more) {
  const body = $("#change-rows");
  if (!more) { body.replaceChildren(); $("#change-detail").hidden = true; }
  const q = new URLSearchParams({ limit: "50" });
  if (more && state.changesNext) q.set("cursor", state.changesNext);
  try {
    const page = await api("GET", "api/changes?" + q.toString());
    for (const item of page.events) {
      const c = item.event;
      const d = c.detail || {};
      const diff = d.before !== undefined || d.after !== undefined ? `${short(d.before)} → ${short(d.after)}` : (Object.keys(d).length ? short(d) : "");
      const tr = row([when(c.timestamp), c.subject.id, c.action, c.resource, diff]);
      tr.className = "change";
      tr.dataset.action = c.action;
      tr.addEventListener("click", () => { const p = $("#change-detail"); p.hidden = false; p.textContent = JSON.stringify(item, null, 2); });
      body.append(tr);
    }
    state.changesNext = page.next;
    $("#changes-more").hidden = !page.next;
    if (!page.events.length && !more) body.append(row(["No changes yet"]));
  } catch (e) { body.append(row([e.message])); $("#changes-more").hidden = true; }
}
$("#changes-more").addEventListener("click", () => loadChanges(true));

// ---- Management ----

function targetOf(kind, name) {
  const [a, b] = name.split("/", 2);
  switch (kind) {
    case "workspace": return { kind, workspace: name };
    case "connector": return { kind, connector: name };
    case "tool": return { kind, connector: a, tool: b || "" };
    case "model": return { kind, model: name };
    default: return b === undefined ? { kind: "user", workspace: state.me.workspace || "", subject: a } : { kind: "user", workspace: a, subject: b };
  }
}

function targetText(t) {
  switch (t.kind) {
    case "workspace": return `workspace:${t.workspace}`;
    case "connector": return `connector:${t.connector}`;
    case "tool": return `tool:${t.connector}/${t.tool}`;
    case "model": return `model:${t.model}`;
    default: return `user:${t.workspace}/${t.subject}`;
  }
}

async function loadSwitches() {
  const body = $("#switch-rows");
  body.replaceChildren();
  try {
    const list = await api("GET", "api/kill-switches");
    for (const s of list) {
      const tr = row([targetText(s.target), when(s.engagement.since), s.engagement.by, s.engagement.reason, button("Release", async () => {
        try { await api("POST", "api/kill-switches/release", { target: s.target, reason: "released from the dashboard" }); } catch (e) { $("#switch-error").textContent = e.message; }
        loadSwitches();
      })]);
      tr.className = "switch";
      tr.dataset.target = targetText(s.target);
      body.append(tr);
    }
    if (!list.length) body.append(row(["No kill switch engaged"]));
  } catch (e) { body.append(row([e.message])); }
}

$("#switch-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  $("#switch-error").textContent = "";
  try {
    await api("POST", "api/kill-switches", { target: targetOf(f.get("kind"), f.get("name").trim()), reason: f.get("reason") });
    ev.target.reset();
  } catch (e) { $("#switch-error").textContent = e.message; }
  loadSwitches();
});

function policyEdit() {
  const f = $("#policy-form");
  return { documents: [{ name: f.document.value, text: f.text.value }] };
}

// The policy set being edited (one per gateway: pat, mcp, …).
const policySet = () => { const s = $("#policy-set").value; return s ? `?set=${encodeURIComponent(s)}` : ""; };

async function loadPolicy() {
  const f = $("#policy-form");
  try {
    state.policy = await api("GET", "api/policy" + policySet());
    const sets = $("#policy-set");
    if (sets.options.length !== state.policy.sets.length) {
      sets.replaceChildren();
      for (const name of state.policy.sets) { const o = el("option", name); o.value = name; sets.append(o); }
    }
    sets.value = state.policy.set;
    f.dataset.set = state.policy.set;
    const select = $("#policy-document");
    select.replaceChildren();
    for (const d of state.policy.documents) { const o = el("option", d.name); o.value = d.name; select.append(o); }
    if (!state.policy.documents.length) { const o = el("option", "policy.cedar"); o.value = "policy.cedar"; select.append(o); }
    const doc = state.policy.documents[0];
    f.text.value = doc ? doc.text : "";
    $("#policy-version").textContent = "live version " + state.policy.version;
    $("#policy-error").textContent = "";
  } catch (e) { $("#policy-error").textContent = e.message; }
}
$("#policy-set").addEventListener("change", () => { $("#policy-report").hidden = true; loadPolicy(); });
$("#policy-document").addEventListener("change", () => {
  const d = state.policy && state.policy.documents.find((x) => x.name === $("#policy-document").value);
  $("#policy-form").text.value = d ? d.text : "";
});

async function policyAction(method, path, describe) {
  const report = $("#policy-report");
  $("#policy-error").textContent = "";
  report.hidden = true;
  try {
    const r = await api(method, path + policySet(), policyEdit());
    $("#policy-error").textContent = describe(r);
    if (r.report) { report.hidden = false; report.textContent = JSON.stringify(r.report.changes.map((c) => ({ subject: c.subject, action: c.action, resource: c.resource, live: c.live.effect, candidate: c.candidate.effect })), null, 2); }
  } catch (e) { $("#policy-error").textContent = e.data && e.data.errors ? e.data.errors.map((x) => `line ${x.line}, column ${x.column}: ${x.message}`).join("\n") : e.message; }
}
$("#policy-validate").addEventListener("click", () => policyAction("POST", "api/policy/validate", (r) => `Valid (version ${r.version}).`));
$("#policy-dry-run").addEventListener("click", () => policyAction("POST", "api/policy/dry-run", (r) => `${r.report.calls} recent calls replayed: ${r.report.newly_denied} newly denied, ${r.report.newly_allowed} newly allowed.`));
$("#policy-form").addEventListener("submit", async (ev) => { ev.preventDefault(); await policyAction("PUT", "api/policy", (r) => `Applied: version ${r.version}.`); loadPolicy(); });

async function loadCredentials() {
  const body = $("#credential-rows");
  body.replaceChildren();
  try {
    for (const c of await api("GET", "api/credentials")) {
      const slot = c.slot.user ? `${c.slot.connector} (${c.slot.user})` : c.slot.connector;
      const q = c.slot.user ? "?user=" + encodeURIComponent(c.slot.user) : "";
      body.append(row([slot, c.version, c.state, when(c.updated_at), button("Delete", async () => {
        try { await api("DELETE", `api/credentials/${encodeURIComponent(c.slot.connector)}${q}`); } catch (e) { $("#credential-error").textContent = e.message; }
        loadCredentials();
      }, "danger")]));
    }
  } catch (e) { body.append(row([e.message])); }
}
$("#credential-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  $("#credential-error").textContent = "";
  try { await api("PUT", `api/credentials/${encodeURIComponent(f.get("connector"))}`, { value: f.get("value") }); ev.target.reset(); }
  catch (e) { $("#credential-error").textContent = e.message; }
  loadCredentials();
});

async function loadKeys() {
  const body = $("#key-rows");
  body.replaceChildren();
  try {
    for (const k of await api("GET", "api/keys")) {
      const revoked = Boolean(k.revoked_at);
      body.append(row([k.id, k.workspace, k.subject, k.name, when(k.created_at), revoked ? "revoked" : "active", revoked ? "" : button("Revoke", async () => {
        try { await api("DELETE", `api/keys/${encodeURIComponent(k.id)}`); } catch (e) { $("#key-error").textContent = e.message; }
        loadKeys();
      }, "danger")]));
    }
  } catch (e) { body.append(row([e.message])); }
}
$("#key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  $("#key-error").textContent = "";
  try {
    const r = await api("POST", "api/keys", { workspace: f.get("workspace"), subject: f.get("subject"), name: f.get("name") });
    const p = $("#key-issued"); p.hidden = false; p.textContent = `New key (shown once): ${r.key}`;
    ev.target.reset();
  } catch (e) { $("#key-error").textContent = e.message; }
  loadKeys();
});

async function loadConnectors() {
  const body = $("#connector-rows");
  body.replaceChildren();
  try {
    for (const c of await api("GET", "api/connectors")) {
      const tr = row([c.name, c.kind, short(c.config), button("Remove", async () => {
        try { await api("DELETE", `api/connectors/${encodeURIComponent(c.name)}`); } catch (e) { $("#connector-error").textContent = e.message; }
        loadConnectors(); loadCredentials();
      }, "danger")]);
      tr.className = "connector"; tr.dataset.name = c.name;
      body.append(tr);
    }
  } catch (e) { body.append(row([e.message])); }
}
$("#connector-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  $("#connector-error").textContent = "";
  try {
    const config = {};
    const file = f.get("definition_file");
    if (file && file.size) config.definition_toml = await file.text();
    else if (f.get("definition")) config.definition = f.get("definition").trim();
    if (f.get("base_url")) config.base_url = f.get("base_url").trim();
    const settings = {};
    for (const pair of (f.get("settings") || "").split(",")) {
      const [k, ...v] = pair.split("=");
      if (k.trim()) settings[k.trim()] = v.join("=").trim();
    }
    if (Object.keys(settings).length) config.settings = settings;
    await api("POST", "api/connectors", { name: f.get("name").trim(), kind: "rest", config });
    ev.target.reset();
  } catch (e) { $("#connector-error").textContent = e.message; }
  loadConnectors();
});

async function loadRetention() {
  try {
    const r = await api("GET", "api/retention");
    const f = $("#retention-form");
    f.soho.value = r.days.soho; f.bank.value = r.days.bank; f.zero_trust.value = r.days.zero_trust;
    $("#retention-note").textContent = `In force: ${r.in_force_days} days (tier ${r.tier}).`;
  } catch (e) { $("#retention-note").textContent = e.message; }
}
$("#retention-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  try { await api("PUT", "api/retention", { soho: Number(f.soho.value), bank: Number(f.bank.value), zero_trust: Number(f.zero_trust.value) }); }
  catch (e) { $("#retention-note").textContent = e.message; return; }
  loadRetention();
});

$("#terminate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  $("#terminate-error").textContent = "";
  try {
    const r = await api("POST", "api/workspace/terminate", { workspace: f.get("workspace"), confirm: f.get("confirm"), export_offered: f.get("export_offered") === "on" });
    $("#terminate-error").textContent = `Terminated: ${r.keys_revoked.length} keys revoked, ${r.credentials_deleted} credentials deleted, audit kept ${r.audit_kept_days} days.`;
  } catch (e) { $("#terminate-error").textContent = e.message; }
});

function loadManage() {
  loadSwitches();
  loadPolicy();
  loadCredentials();
  loadKeys();
  loadConnectors();
  loadRetention();
}

// ---- Settings ----

async function loadSettings() {
  const s = await api("GET", "api/settings");
  $("#settings-form").settings.value = JSON.stringify(s, null, 2);
  $("#settings-form").dataset.loaded = "true";
}
$("#settings-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { await api("PUT", "api/settings", JSON.parse(ev.target.settings.value)); $("#settings-error").textContent = "Saved."; }
  catch (e) { $("#settings-error").textContent = e.message; }
});

start().catch(showLogin);
