// Tessera console. Plain DOM, no framework, no inline script (the page's CSP forbids it).
// Every text from the server goes in through textContent, never as markup.
"use strict";

const state = { session: null, events: null, view: null };

// ---- helpers ---------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(method, path, body) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = state.session ? state.session.csrf : "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) { showSignIn("expired"); throw new Error("signed out"); }
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.blob();
  return { ok: r.ok, status: r.status, data };
}

function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function when(ms) { return ms ? new Date(ms).toLocaleString() : "—"; }

function problemText(p) {
  if (!p || typeof p !== "object") return "Something went wrong.";
  if (p.code === 22) {
    return "Wrong code — " + p.remaining_attempts + " attempt" +
      (p.remaining_attempts === 1 ? "" : "s") + " left. Read it again off the device.";
  }
  if (p.code === 23) return "Too many wrong codes: this operation is closed.";
  if (p.code === 21) return "This operation is no longer pending.";
  if (p.code === 40) return "Your token's role may not do this.";
  return p.detail || "Something went wrong.";
}

function message(text, ok) {
  return el("p", { class: ok ? "okmsg" : "error", role: ok ? "status" : "alert", text });
}

function table(columns, rows, empty) {
  if (!rows.length) return el("p", { class: "empty", text: empty || "Nothing here." });
  return el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, columns.map(c => el("th", { scope: "col", text: c[0] })))),
    el("tbody", {}, rows.map(r => el("tr", {}, columns.map(c => el("td", {}, c[1](r))))))));
}

function copyButton(text) {
  return el("button", {
    type: "button", text: "Copy",
    onclick: async (ev) => {
      try { await navigator.clipboard.writeText(text); ev.target.textContent = "Copied"; }
      catch (_) { ev.target.textContent = "Select and copy the text"; }
    },
  });
}

// ---- sign-in and session ---------------------------------------------------------------

const SIGNIN_ERRORS = {
  refused: "That token was not accepted.",
  service: "Service tokens cannot sign in to the console.",
  rate: "Too many attempts. Wait a minute and try again.",
  bad: "The sign-in form was not complete.",
  expired: "Your session has ended. Sign in again.",
};

function showSignIn(reason) {
  if (state.events) { state.events.close(); state.events = null; }
  state.session = null;
  document.getElementById("app").hidden = true;
  document.getElementById("who").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("signin-view").hidden = false;
  const err = document.getElementById("signin-error");
  err.hidden = !reason;
  err.textContent = reason ? (SIGNIN_ERRORS[reason] || SIGNIN_ERRORS.refused) : "";
  document.getElementById("token").focus();
}

async function boot() {
  const reason = new URLSearchParams(location.search).get("signin");
  if (reason) history.replaceState(null, "", "/console/" + location.hash);
  const r = await fetch("/console/session", { credentials: "same-origin" });
  if (!r.ok) return showSignIn(reason);
  state.session = await r.json();
  document.getElementById("signin-view").hidden = true;
  document.getElementById("app").hidden = false;
  const who = document.getElementById("who");
  who.hidden = false;
  who.textContent = state.session.name + " (" + state.session.role + ")";
  const out = document.getElementById("signout");
  out.hidden = false;
  out.onclick = async () => {
    await fetch("/console/logout", {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": state.session.csrf },
    });
    showSignIn(null);
  };
  buildNav();
  state.events = new EventSource("/api/v1/events");
  state.events.addEventListener("change", () => { if (VIEWS[current()].live) render(); });
  window.addEventListener("hashchange", render);
  render();
}

// ---- views -----------------------------------------------------------------------------

const VIEWS = {
  pending: { title: "Pending", live: true, roles: ["technician", "admin"], render: viewPending },
  devices: { title: "Devices", roles: ["technician", "admin"], render: viewDevices },
  pts: { title: "PTs", roles: ["admin"], render: viewPts },
  leaks: { title: "Leak signals", live: true, roles: ["admin"], render: viewLeaks },
  audit: { title: "Audit log", live: true, roles: ["admin"], render: viewAudit },
  tokens: { title: "Tokens", roles: ["admin"], render: viewTokens },
  keys: { title: "Keys", roles: ["admin"], render: viewKeys },
  status: { title: "Status", live: true, roles: ["technician", "admin"], render: viewStatus },
};

function allowed(name) { return VIEWS[name] && VIEWS[name].roles.includes(state.session.role); }

function current() {
  const name = location.hash.slice(1);
  return allowed(name) ? name : "pending";
}

function buildNav() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(...Object.entries(VIEWS).filter(([n]) => allowed(n))
    .map(([n, v]) => el("a", { href: "#" + n, "data-view": n, text: v.title })));
}

let rendering = null;
async function render() {
  const name = current();
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view = document.getElementById("view");
  const token = {};
  rendering = token;
  const content = await VIEWS[name].render();
  if (rendering !== token) return;
  // A live refresh must not wipe what someone is typing: keep the focused input's value.
  const focused = document.activeElement;
  const keep = focused && focused.id && view.contains(focused) ? [focused.id, focused.value] : null;
  view.replaceChildren(...[].concat(content).filter(Boolean));
  if (keep) {
    const again = document.getElementById(keep[0]);
    if (again) { again.value = keep[1]; again.focus(); }
  }
}

// Pending operations, newest first, each with what the technician needs to decide.
const notes = {};
const PENDING_PAGE = 200;
let pendingPages = 1;
async function viewPending() {
  // The newest pages of pending operations, as many as have been asked for.
  const ops = [];
  const pts = {};
  let next = null;
  for (let page = 0; page < pendingPages; page++) {
    const r = await api("GET", "/api/v1/operations?state=pending&limit=" + PENDING_PAGE +
      (next ? "&before=" + encodeURIComponent(next) : ""));
    if (!r.ok) break;
    ops.push(...r.data.operations);
    Object.assign(pts, r.data.pts || {});
    next = r.data.next;
    if (!next) break;
  }
  const recent = await api("GET", "/api/v1/operations?limit=50");
  const decided = (recent.ok ? recent.data.operations : [])
    .filter(o => o.state !== "pending" && o.decided_at && Date.now() - o.decided_at < 3600e3);
  return [
    el("h1", { text: "Pending operations" }),
    ops.length ? el("div", { class: "cards" }, ops.map(o => pendingCard(o, pts[o.pt_id])))
      : el("p", { class: "empty", text: "No device is waiting. New requests appear here by themselves." }),
    next ? el("div", { class: "row" }, el("button", { type: "button", text: "Show older requests",
      onclick: () => { pendingPages++; render(); } })) : null,
    el("h2", { text: "Decided in the last hour" }),
    decided.length ? el("ul", { class: "decided" }, decided.map(o => el("li", {},
      el("strong", { text: o.device_id || o.requested_device_id || "—" }), " ", stateBadge(o),
      el("span", { class: "meta", text: " " + (o.decided_by || "") + ", " + age(o.decided_at) }))))
      : el("p", { class: "empty", text: "Nothing decided in the last hour." }),
  ];
}

function stateBadge(o) {
  const text = { approved: "approved — waiting for the device", completed: "delivered",
    rejected: "rejected", expired: "expired", cancelled: "cancelled" }[o.state] || o.state;
  return el("span", { class: "badge " + (o.state === "completed" ? "ok" : o.state === "approved" ? "" : "bad"), text });
}

function pendingCard(o, pt) {
  const id = o.id;
  const codeId = "code-" + id;
  const reasonId = "reason-" + id;
  const attrs = Object.entries(o.attributes || {}).map(([k, v]) => k + " = " + v).join(", ");
  const out = el("div", { class: "card", "data-operation": id });
  const note = notes[id] ? message(notes[id].text, notes[id].ok) : null;
  const approve = async () => {
    const code = o.uses_code ? document.getElementById(codeId).value.trim() : undefined;
    const r = await api("POST", "/api/v1/operations/approve", { id, code });
    notes[id] = r.ok ? { text: "Approved.", ok: true } : { text: problemText(r.data), ok: false };
    render();
  };
  const reject = async () => {
    const reason = document.getElementById(reasonId).value.trim() || "rejected at the console";
    const r = await api("POST", "/api/v1/operations/reject", { id, reason });
    notes[id] = r.ok ? { text: "Rejected.", ok: true } : { text: problemText(r.data), ok: false };
    render();
  };
  out.append(...[
    el("h3", { text: o.requested_device_id || "Device id chosen at approval" }),
    el("p", { class: "meta", text: "Attributes: " + (attrs || "none") }),
    el("p", { class: "meta", text: "From " + (o.source || "unknown address") + ", " + age(o.created_at) }),
    o.conflict ? el("p", { class: "warn", text: "Other devices are asking on the same PT right now: make sure this is the one in front of you." }) : null,
    (o.replaces || []).length ? el("p", { class: "warn", text: "Approving replaces the registration this device id has now." }) : null,
    o.code_failures ? el("p", { class: "warn", text: o.code_failures + " wrong code(s) entered so far." }) : null,
    pt && pt.max_registrations && pt.registrations_created >= 0.9 * pt.max_registrations
      ? el("p", { class: "warn", text: "PT \u201c" + pt.label + "\u201d is near its cap: " +
        pt.registrations_created + " of " + pt.max_registrations + " registrations used." }) : null,
    o.uses_code ? el("label", { for: codeId, text: "Code shown on the device" }) : null,
    o.uses_code ? el("input", { id: codeId, class: "code-input", inputmode: "text", autocomplete: "off",
      autocapitalize: "characters", spellcheck: "false", placeholder: "ABCD-EFGH" }) : null,
    el("div", { class: "row" },
      el("button", { type: "button", class: "primary", onclick: approve, text: "Approve" })),
    el("label", { for: reasonId, text: "Reason to reject (optional)" }),
    el("div", { class: "row" },
      el("input", { id: reasonId, autocomplete: "off" }),
      el("button", { type: "button", class: "danger", onclick: reject, text: "Reject" })),
    note,
  ].filter(Boolean));
  return out;
}

async function viewDevices() {
  const q = sessionStorage.getItem("device-query") || "";
  const form = el("form", { class: "row", onsubmit: (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("device-query", document.getElementById("device-q").value.trim());
    render();
  } },
  el("input", { id: "device-q", "aria-label": "Device id", placeholder: "Device id", value: q }),
  el("button", { type: "submit", class: "primary", text: "Search" }));
  const r = await api("GET", "/api/v1/devices?limit=100" + (q ? "&device_id=" + encodeURIComponent(q) : ""));
  const regs = r.ok ? r.data.registrations : [];
  const admin = state.session.role === "admin";
  const act = async (path, body) => {
    const res = await api("POST", path, body);
    if (!res.ok) alert(problemText(res.data));
    render();
  };
  return [
    el("h1", { text: "Devices" }), form,
    table([
      ["Device", g => g.device_id],
      ["Registration", g => String(g.id)],
      ["Generation", g => String(g.generation)],
      ["Last refresh", g => when(g.issued_at * 1000)],
      ["Status", g => el("span", { class: "badge " + (g.status === "active" ? "ok" : "bad"), text: g.status })],
      ["RT expires", g => when(g.expires_at * 1000)],
      ["", g => admin && g.status === "active" ? el("div", { class: "row" },
        el("button", { type: "button", class: "danger", text: "Revoke",
          onclick: () => confirm("Revoke registration " + g.id + " of " + g.device_id + "?") &&
            act("/api/v1/devices/revoke", { registration_id: g.id, reason: "revoked at the console" }) }),
        el("button", { type: "button", text: "Block device id",
          onclick: () => confirm("Block " + g.device_id + " (and revoke its registrations)?") &&
            act("/api/v1/devices/block", { device_id: g.device_id, reason: "blocked at the console" }) }))
        : ""],
    ], regs, "No registrations."),
    admin && q ? el("div", { class: "row" }, el("button", { type: "button", text: "Unblock " + q,
      onclick: () => act("/api/v1/devices/unblock", { device_id: q }) })) : null,
  ];
}

async function viewPts() {
  const shown = el("div", { "aria-live": "polite" });
  const create = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const kind = f.get("kind");
    const body = {
      label: f.get("label"), kind, approval: f.get("approval"),
      device_id_policy: f.get("device_id_policy"),
    };
    if (kind === "fleet") body.max_registrations = Number(f.get("max_registrations") || 1);
    const count = Number(f.get("count") || 0);
    if (count > 0) {
      body.count = count;
      const r = await api("POST", "/api/v1/pts/batch", body);
      if (!r.ok) { shown.replaceChildren(message(problemText(r.data))); return; }
      const a = el("a", { href: URL.createObjectURL(r.data), download: "pt-batch-" + body.label + ".tsv",
        text: "Download the batch file (" + count + " PTs)" });
      shown.replaceChildren(message("Batch created. The file is the only copy of these PTs.", true), a);
      return;
    }
    const r = await api("POST", "/api/v1/pts", body);
    if (!r.ok) { shown.replaceChildren(message(problemText(r.data))); return; }
    shown.replaceChildren(
      message("PT created. It is shown this once: put it in the firmware image now.", true),
      el("p", { class: "secret", id: "new-pt", text: r.data.token }),
      el("div", { class: "row" }, copyButton(r.data.token)));
    // A QR code of it, for a factory station that scans it.
    const qr = await fetch("/console/qr", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf },
      body: JSON.stringify({ text: r.data.token }) });
    if (qr.ok) {
      const svg = await qr.text();
      shown.append(el("img", { class: "qr", alt: "QR code of the new PT",
        src: "data:image/svg+xml;base64," + btoa(svg) }));
    }
    refreshList();
  };
  const list = el("div");
  const filter = el("input", { id: "pt-filter", "aria-label": "Search PTs",
    placeholder: "Filter by label or id", autocomplete: "off",
    oninput: () => refreshList() });
  const refreshList = async () => {
    const r = await api("GET", "/api/v1/pts?limit=500&include_revoked=true");
    const f = filter.value.trim().toLowerCase();
    const pts = (r.ok ? r.data.pts : []).filter(p => !f ||
      p.label.toLowerCase().includes(f) || p.id.toLowerCase().includes(f));
    list.replaceChildren(table([
      ["Label", p => p.label],
      ["Id", p => p.id],
      ["Kind", p => p.kind.kind + (p.kind.max_registrations ? " (" + p.registrations_created + "/" + p.kind.max_registrations + ")" : "")],
      ["Approval", p => p.approval.policy],
      ["Created", p => when(p.created_at)],
      ["", p => p.revoked_at ? el("span", { class: "badge bad", text: "revoked" }) :
        el("button", { type: "button", class: "danger", text: "Revoke", onclick: async () => {
          if (!confirm("Revoke " + p.label + "? This also revokes the " + p.registrations_created +
            " registration(s) it produced.")) return;
          const res = await api("POST", "/api/v1/pts/revoke", { id: p.id, reason: "revoked at the console" });
          if (!res.ok) alert(problemText(res.data));
          refreshList();
        } })],
    ], pts, "No PTs."));
  };
  await refreshList();
  const field = (label, input) => el("div", {}, el("label", { for: input.id, text: label }), input);
  return [
    el("h1", { text: "Provisioning tokens" }),
    el("form", { class: "inline", onsubmit: create },
      field("Label", el("input", { id: "pt-label", name: "label", required: true })),
      field("Kind", el("select", { id: "pt-kind", name: "kind" },
        el("option", { value: "single", text: "single device" }), el("option", { value: "fleet", text: "fleet" }))),
      field("Most registrations (fleet)", el("input", { id: "pt-max", name: "max_registrations", type: "number", min: "1", value: "100" })),
      field("Approval", el("select", { id: "pt-approval", name: "approval" },
        el("option", { value: "manual_with_code", text: "technician, with the device's code" }),
        el("option", { value: "manual", text: "technician" }),
        el("option", { value: "automatic", text: "automatic" }))),
      field("Device id", el("select", { id: "pt-policy", name: "device_id_policy" },
        el("option", { value: "either", text: "device or technician" }),
        el("option", { value: "device", text: "the device's" }),
        el("option", { value: "technician", text: "the technician's" }))),
      field("Batch: how many (0 for one PT)", el("input", { id: "pt-count", name: "count", type: "number", min: "0", value: "0" })),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary", text: "Create" }))),
    shown, el("h2", { text: "All PTs" }), filter, list,
  ];
}

async function viewLeaks() {
  const r = await api("GET", "/api/v1/leaks?limit=200");
  return [el("h1", { text: "Leak signals" }), table([
    ["When", s => when(s.at)], ["Kind", s => s.kind], ["PT", s => s.pt_id || "—"],
    ["Registration", s => s.registration_id ? String(s.registration_id) : "—"],
    ["Source", s => s.source || "—"], ["Action", s => s.action], ["Detail", s => s.detail],
  ], r.ok ? r.data.signals.slice().reverse() : [], "No leak signals.")];
}

async function viewAudit() {
  const filter = (sessionStorage.getItem("audit-filter") || "").toLowerCase();
  const r = await api("GET", "/api/v1/audit?newest=true&limit=200");
  const events = (r.ok ? r.data.events : []).filter(e => !filter ||
    (e.action + " " + e.actor + " " + e.subject).toLowerCase().includes(filter));
  return [el("h1", { text: "Audit log" }),
    el("input", { id: "audit-filter", "aria-label": "Filter", placeholder: "Filter by action, actor or subject",
      value: filter, oninput: (ev) => { sessionStorage.setItem("audit-filter", ev.target.value); render(); } }),
    table([["#", e => String(e.seq)], ["When", e => when(e.at)], ["Actor", e => e.actor],
      ["Action", e => e.action], ["Subject", e => e.subject]], events, "No events.")];
}

async function viewTokens() {
  const shown = el("div", { "aria-live": "polite" });
  const r = await api("GET", "/api/v1/tokens");
  const create = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const res = await api("POST", "/api/v1/tokens", { name: f.get("name"), role: f.get("role") });
    if (!res.ok) { shown.replaceChildren(message(problemText(res.data))); return; }
    shown.replaceChildren(message("Token created. It is shown this once: hand it to its person.", true),
      el("p", { class: "secret", text: res.data.token }), el("div", { class: "row" }, copyButton(res.data.token)));
  };
  return [el("h1", { text: "Admin tokens" }),
    el("form", { class: "inline", onsubmit: create },
      el("div", {}, el("label", { for: "tok-name", text: "Name (the person)" }), el("input", { id: "tok-name", name: "name", required: true })),
      el("div", {}, el("label", { for: "tok-role", text: "Role" }), el("select", { id: "tok-role", name: "role" },
        el("option", { value: "technician", text: "technician" }), el("option", { value: "admin", text: "admin" }),
        el("option", { value: "service", text: "service (broker)" }))),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary", text: "Create" }))),
    shown,
    table([["Name", t => t.name], ["Role", t => t.role], ["Id", t => t.id], ["Created", t => when(t.created_at)],
      ["", t => t.revoked_at ? el("span", { class: "badge bad", text: "revoked" }) :
        el("button", { type: "button", class: "danger", text: "Revoke", onclick: async () => {
          if (!confirm("Revoke the token of " + t.name + "?")) return;
          await api("POST", "/api/v1/tokens/revoke", { id: t.id }); render();
        } })]], r.ok ? r.data.admin_tokens : [])];
}

async function viewKeys() {
  const r = await api("GET", "/api/v1/keys");
  const act = async (path, body) => {
    const res = await api("POST", path, body);
    if (!res.ok) alert(problemText(res.data));
    render();
  };
  return [el("h1", { text: "Key epochs" }),
    el("div", { class: "row" }, el("button", { type: "button", class: "primary", text: "Rotate keys",
      onclick: () => confirm("Start a new key epoch?") && act("/api/v1/keys/rotate", {}) })),
    table([["Epoch", k => String(k.epoch)], ["Created", k => when(k.created_at)],
      ["Retired", k => k.retired_at ? when(k.retired_at) : "—"],
      ["", k => k.retired_at ? "" : el("button", { type: "button", text: "Retire", onclick: () =>
        confirm("Retire epoch " + k.epoch + "? Its RTs stop validating.") && act("/api/v1/keys/retire", { epoch: k.epoch }) })]],
    r.ok ? r.data.epochs : [])];
}

async function viewStatus() {
  const r = await api("GET", "/api/v1/status");
  return [el("h1", { text: "Status" }), el("pre", { class: "card", text: JSON.stringify(r.data, null, 2) })];
}

document.addEventListener("DOMContentLoaded", boot);
