// Tessera console. Plain DOM, no framework, no inline script (the page's CSP forbids it).
// Every text from the server goes in through textContent, never as markup.
//
// On the Pending view nothing moves under a finger: the cards shown stay where they are, in
// the order they were shown, until the technician asks for the new ones; a card whose
// operation was decided elsewhere stays in its place, closed, at its height; and what a live
// update adds to a card goes below its buttons. Each button names its device, and sends the
// id of the operation its card shows.
"use strict";

const state = { session: null, events: null };

// ---- helpers ---------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
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

function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function until(ms) {
  const s = Math.round((ms - Date.now()) / 1000);
  if (s <= 0) return "now";
  if (s < 60) return "in " + s + " s";
  if (s < 3600) return "in " + Math.round(s / 60) + " min";
  return "in " + Math.round(s / 3600) + " h";
}

// One short local format for every date: "7 Dec, 15:22" (the year only when it is not this
// year's), in the browser's language and time zone.
const SHORT = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
const LONG = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
function when(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  return (d.getFullYear() === new Date().getFullYear() ? SHORT : LONG).format(d);
}
function date(ms) { return el("time", { class: "date", datetime: new Date(ms).toISOString(), text: when(ms) }); }

// Human labels for the values the API sends.
const LABELS = {
  kind: { single_device: "Single device", fleet: "Fleet" },
  approval: { manual_with_code: "Technician, with the device's code", manual: "Technician",
    automatic: "Automatic", attribute_rule: "Automatic when the attributes match" },
  device_id_policy: { device: "The device's", technician: "The technician's", either: "Device or technician" },
  role: { technician: "Technician", admin: "Admin", service: "Service (broker)" },
  registration: { active: "Active", revoked: "Revoked", superseded: "Superseded", expired: "Expired" },
  leak: { parallel_operations: "Several devices on one PT at once", rotation_reuse: "An old RT was used again",
    revoked_token_use: "A revoked token was used", code_guessing: "Wrong codes, repeatedly",
    many_sources: "One RT from many addresses", device_id_collision: "Device id already registered" },
};
function label(group, value) { return (LABELS[group] && LABELS[group][value]) || String(value).replace(/_/g, " "); }

function problemText(p) {
  if (!p || typeof p !== "object") return "Something went wrong.";
  if (p.code === 22) {
    return "Wrong code — " + plural(p.remaining_attempts, "attempt") + " left. Read it again off the device.";
  }
  if (p.code === 23) return "Too many wrong codes: this operation is closed.";
  if (p.code === 21) return "This operation is no longer pending.";
  if (p.code === 40) return "Your token's role may not do this.";
  return p.detail || "Something went wrong.";
}

function message(text, ok) {
  return el("p", { class: ok ? "okmsg" : "error", role: ok ? "status" : "alert", text });
}

// A table on a desktop; below 720 px each row is a card of "label: value" lines (every cell
// carries its column's label). A column of buttons is headed "Actions" for screen readers.
function table(allColumns, rows, empty) {
  if (!rows.length) return el("p", { class: "empty", text: empty || "Nothing here." });
  // A column of buttons with no button in it is left out.
  const columns = allColumns.filter(c => c[0] || rows.some(r => c[1](r) !== ""));
  const head = (c) => c[0] ? el("th", { scope: "col", text: c[0] })
    : el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Actions" }));
  const cell = (c, r) => el("td", { "data-label": c[0] || null, class: c[0] ? null : "actions" }, c[1](r));
  return el("div", { class: "scroll" }, el("table", { class: "rows" },
    el("thead", {}, el("tr", {}, columns.map(head))),
    el("tbody", {}, rows.map(r => el("tr", {}, columns.map(c => cell(c, r)))))));
}

function badge(text, tone) { return el("span", { class: "badge " + (tone || ""), text }); }

function copyButton(text, what) {
  return el("button", {
    type: "button", text: "Copy " + what,
    onclick: async (ev) => {
      try { await navigator.clipboard.writeText(text); ev.target.textContent = "Copied"; }
      catch (_) { ev.target.textContent = "Select and copy the text"; }
    },
  });
}

async function qrImage(text, alt) {
  const qr = await fetch("/console/qr", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf },
    body: JSON.stringify({ text }) });
  if (!qr.ok) return null;
  return el("img", { class: "qr", alt, src: "data:image/svg+xml;base64," + btoa(await qr.text()) });
}

// A question in a modal dialog, in place of the browser's confirm(): `reason` adds a text
// field (required when `reason.required`). Resolves to the reason (or "" without one), or
// null when cancelled.
function ask({ title, text, confirm, danger, reason }) {
  return new Promise((resolve) => {
    const input = reason ? el("input", { id: "ask-reason", autocomplete: "off", "aria-required": reason.required ? "true" : null }) : null;
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const dialog = el("dialog", { class: "ask", "aria-labelledby": "ask-title" });
    const done = (value) => { dialog.close(); dialog.remove(); resolve(value); };
    const form = el("form", { method: "dialog", onsubmit: (ev) => {
      ev.preventDefault();
      const v = input ? input.value.trim() : "";
      if (input && reason.required && !v) { error.hidden = false; error.textContent = "Give a reason."; input.focus(); return; }
      done(v);
    } },
    el("h2", { id: "ask-title", text: title }),
    text ? el("p", { text }) : null,
    input ? el("label", { for: "ask-reason", text: reason.label }) : null, input, error,
    el("div", { class: "row" },
      el("button", { type: "button", text: "Cancel", onclick: () => done(null) }),
      el("button", { type: "submit", class: danger ? "danger" : "primary", text: confirm })));
    if (input) input.addEventListener("input", () => { error.hidden = true; });
    dialog.append(form);
    dialog.addEventListener("cancel", (ev) => { ev.preventDefault(); done(null); });
    document.body.append(dialog);
    dialog.showModal();
    (input || form.querySelector("button[type=submit]")).focus();
  });
}

// ---- sign-in and session ---------------------------------------------------------------

const SIGNIN_ERRORS = {
  refused: "That token was not accepted.",
  service: "Service tokens cannot sign in to the console.",
  rate: "Too many attempts. Wait a minute and try again.",
  bad: "The sign-in form was not complete.",
  expired: "Your session has ended. Sign in again.",
  pair: "That pairing code was not accepted. A code works once, for 10 minutes: ask for a new one.",
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
  // A phone sent here to pair (the QR code an admin shows) starts at the pairing code.
  const pairing = location.hash === "#pair" || reason === "pair";
  if (reason === "pair") document.getElementById("pair").after(err);
  document.getElementById(pairing ? "pair-code" : "token").focus();
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
  who.replaceChildren(el("span", { class: "name", text: state.session.name }),
    badge(label("role", state.session.role), "role"));
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
  state.events.addEventListener("change", () => { if (VIEWS[current()].live) render("live"); });
  window.addEventListener("hashchange", () => render("nav"));
  render("nav");
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

// `why`: "nav" (the view was opened), "live" (the server announced a change) or "action"
// (after something done here).
let rendering = null;
async function render(why) {
  const name = current();
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view = document.getElementById("view");
  const token = {};
  rendering = token;
  const content = await VIEWS[name].render(why || "action");
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

// ---- pending operations ----------------------------------------------------------------

const PENDING_PAGE = 200;
const pending = {
  shown: null, // operation ids in the order their cards are shown; null: show what is pending
  first: {}, // id -> the operation as its card was first shown (what sits above its buttons)
  notes: {}, // id -> { text, ok }: the answer to the last action on that card
  codes: {}, // id -> the code typed into the card
  pages: 1,
};

function deviceName(o) { return o.requested_device_id || o.device_id || null; }
// What a card and its buttons call the device.
function cardName(o) { return deviceName(o) || "request " + o.id.slice(3, 11); }

async function viewPending(why) {
  const ops = [];
  const pts = {};
  let next = null;
  for (let page = 0; page < pending.pages; page++) {
    const r = await api("GET", "/api/v1/operations?state=pending&limit=" + PENDING_PAGE +
      (next ? "&before=" + encodeURIComponent(next) : ""));
    if (!r.ok) break;
    ops.push(...r.data.operations);
    Object.assign(pts, r.data.pts || {});
    next = r.data.next;
    if (!next) break;
  }
  const [recent, regs] = await Promise.all([api("GET", "/api/v1/operations?limit=50"),
    api("GET", "/api/v1/devices?limit=100")]);
  const recentOps = recent.ok ? recent.data.operations : [];
  const byId = Object.fromEntries(ops.map(o => [o.id, o]));
  const recentById = Object.fromEntries(recentOps.map(o => [o.id, o]));
  Object.assign(pts, recent.ok ? recent.data.pts || {} : {});

  // Which cards: on opening the view, or when no card is left open, what is pending now;
  // otherwise the same cards as before, and a count of the new ones.
  const open = (pending.shown || []).filter(id => byId[id]);
  if (why === "nav" || pending.shown === null || (open.length === 0 && pending.shown.length === 0)) {
    pending.shown = ops.map(o => o.id);
    pending.first = Object.fromEntries(ops.map(o => [o.id, o]));
  }
  const fresh = ops.filter(o => !pending.shown.includes(o.id));
  const cards = pending.shown.map(id => byId[id]
    ? pendingCard(byId[id], pts[byId[id].pt_id])
    : closedCard(id, recentById[id]));

  const showNew = () => {
    pending.shown = null;
    pending.first = {};
    pending.notes = {};
    render("action");
  };
  // The bar keeps its height whether or not it has something to say.
  const bar = el("div", { class: "newbar", "aria-live": "polite" }, fresh.length
    ? el("button", { type: "button", class: "primary", onclick: showNew,
      text: "Show " + plural(fresh.length, "new request") })
    : el("span", { class: "meta", text: cards.length ? "New requests wait here until you show them." : "" }));

  const revoked = new Set((regs.ok ? regs.data.registrations : [])
    .filter(g => g.status !== "active").map(g => g.id));
  const decided = recentOps
    .filter(o => o.state !== "pending" && o.decided_at && Date.now() - o.decided_at < 3600e3);
  return [
    el("h1", { text: "Pending operations" }),
    bar,
    cards.length ? el("div", { class: "cards" }, cards)
      : el("p", { class: "empty", text: "No device is waiting. New requests appear here by themselves." }),
    next ? el("div", { class: "row" }, el("button", { type: "button", text: "Show older requests",
      onclick: () => { pending.pages++; pending.shown = null; render("action"); } })) : null,
    el("h2", { text: "Decided in the last hour" }),
    decided.length ? el("ul", { class: "decided" }, decided.map(o => el("li", {},
      el("strong", { text: deviceName(o) || "—" }), " ", stateBadge(o, revoked),
      el("span", { class: "meta", text: " " + actorName(o.decided_by) + ", " + age(o.decided_at) }))))
      : el("p", { class: "empty", text: "Nothing decided in the last hour." }),
  ];
}

// Who decided, as people say it: "Ana (line 3)", "automatically".
function actorName(a) {
  if (!a) return "";
  if (a === "system") return "automatically";
  return a.replace(/^operator:/, "");
}

function stateBadge(o, revoked) {
  if (o.state === "completed" && revoked && revoked.has(o.registration_id)) {
    return badge("delivered, since revoked", "bad");
  }
  const text = { approved: "approved — waiting for the device", completed: "delivered",
    rejected: "rejected", expired: "expired", cancelled: "cancelled" }[o.state] || o.state;
  return badge(text, o.state === "completed" ? "ok" : o.state === "approved" ? "" : "bad");
}

// The operation's card was shown and its operation is no longer pending: the card stays in its
// place, at least as tall as it was, without buttons.
function closedCard(id, o) {
  const before = document.querySelector('.card[data-operation="' + CSS.escape(id) + '"]');
  const first = pending.first[id] || o || { id };
  const card = el("div", { class: "card closed", "data-operation": id },
    el("h2", { text: cardName(first) }),
    o ? el("p", {}, stateBadge(o), o.decided_by ? " " + (o.decided_by === "system" ? "" : "by ") + actorName(o.decided_by) : "") : el("p", { text: "No longer pending." }),
    pending.notes[id] ? message(pending.notes[id].text, pending.notes[id].ok) : null);
  if (before) card.style.minHeight = before.offsetHeight + "px";
  return card;
}

function pendingCard(o, pt) {
  const id = o.id;
  const first = pending.first[id] || o;
  const name = cardName(first);
  const codeId = "code-" + id;
  const attrs = Object.entries(first.attributes || {}).map(([k, v]) => k + " = " + v).join(", ");
  const note = pending.notes[id];
  const approve = async () => {
    const code = first.uses_code ? document.getElementById(codeId).value.trim() : undefined;
    if (first.uses_code) pending.codes[id] = code;
    const r = await api("POST", "/api/v1/operations/approve", { id, code });
    pending.notes[id] = r.ok ? { text: "Approved.", ok: true } : { text: problemText(r.data), ok: false };
    render("action");
  };
  const reject = async () => {
    const reason = await ask({ title: "Reject " + name + "?",
      text: "The device gets no RT, and has to ask again.",
      confirm: "Reject " + name, danger: true,
      reason: { label: "Reason (optional)" } });
    if (reason === null) return;
    const r = await api("POST", "/api/v1/operations/reject", { id, reason: reason || "rejected at the console" });
    pending.notes[id] = r.ok ? { text: "Rejected.", ok: true } : { text: problemText(r.data), ok: false };
    render("action");
  };
  const ptLine = pt ? "PT \u201c" + pt.label + "\u201d" : "PT " + o.pt_id;
  // Above the buttons: what was known when the card was first shown.
  const warnings = (x) => [
    x.conflict ? el("p", { class: "warn", text: "Other devices are asking on the same PT right now: make sure this is the one in front of you." }) : null,
    (x.replaces || []).length ? el("p", { class: "warn", text: "Approving replaces the registration this device id has now." }) : null,
  ];
  // Below them: what a live update added since.
  const later = [
    o.conflict && !first.conflict ? warnings({ conflict: true })[0] : null,
    (o.replaces || []).length && !(first.replaces || []).length ? warnings({ replaces: o.replaces })[1] : null,
    o.code_failures ? el("p", { class: "warn", text: plural(o.code_failures, "wrong code") + " entered so far." }) : null,
    pt && pt.max_registrations && pt.registrations_created >= 0.9 * pt.max_registrations
      ? el("p", { class: "warn", text: "PT \u201c" + pt.label + "\u201d is near its cap: " +
        pt.registrations_created + " of " + pt.max_registrations + " registrations used." }) : null,
  ];
  return el("div", { class: "card", "data-operation": id },
    el("h2", { text: name }),
    el("p", { class: "meta", text: ptLine + " \u00b7 from " + (first.source || "an unknown address") }),
    el("p", { class: "meta" }, "Asked ", age(first.created_at), " \u00b7 expires ", until(first.expires_at),
      " (", date(first.expires_at), ")"),
    el("p", { class: "meta", text: "Attributes: " + (attrs || "none") }),
    warnings(first),
    first.uses_code ? el("label", { for: codeId, text: "Code shown on the device" }) : null,
    first.uses_code ? el("input", { id: codeId, class: "code-input", inputmode: "text", autocomplete: "off",
      autocapitalize: "characters", spellcheck: "false", placeholder: "ABCD-EFGH",
      value: pending.codes[id] || null }) : null,
    note && !note.ok ? message(note.text, false) : null,
    el("div", { class: "row" },
      el("button", { type: "button", class: "primary", onclick: approve, text: "Approve " + name }),
      el("button", { type: "button", class: "danger", onclick: reject, text: "Reject " + name })),
    note && note.ok ? message(note.text, true) : null,
    later);
}

// ---- devices ---------------------------------------------------------------------------

async function viewDevices() {
  const q = sessionStorage.getItem("device-query") || "";
  const form = el("form", { class: "row", role: "search", onsubmit: (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("device-query", document.getElementById("device-q").value.trim());
    render("action");
  } },
  el("input", { id: "device-q", "aria-label": "Device id", placeholder: "Device id", value: q }),
  el("button", { type: "submit", class: "primary", text: "Search" }));
  const r = await api("GET", "/api/v1/devices?limit=100" + (q ? "&device_id=" + encodeURIComponent(q) : ""));
  const regs = r.ok ? r.data.registrations : [];
  const admin = state.session.role === "admin";
  const status = el("div", { "aria-live": "polite" });
  const act = async (path, body, done) => {
    const res = await api("POST", path, body);
    if (!res.ok) { status.replaceChildren(message(problemText(res.data))); return; }
    sessionStorage.setItem("device-note", done);
    render("action");
  };
  const note = sessionStorage.getItem("device-note");
  sessionStorage.removeItem("device-note");
  if (note) status.replaceChildren(message(note, true));
  const revoke = async (g) => {
    const reason = await ask({ title: "Revoke " + g.device_id + "?",
      text: "Registration " + g.id + " stops working at once: its RT is refused and its connections close.",
      confirm: "Revoke " + g.device_id, danger: true, reason: { label: "Reason", required: true } });
    if (reason !== null) act("/api/v1/devices/revoke", { registration_id: g.id, reason }, g.device_id + " was revoked.");
  };
  const block = async (g) => {
    const reason = await ask({ title: "Block " + g.device_id + "?",
      text: "Its registrations are revoked, and no PT can register this device id until it is unblocked.",
      confirm: "Block " + g.device_id, danger: true, reason: { label: "Reason", required: true } });
    if (reason !== null) act("/api/v1/devices/block", { device_id: g.device_id, reason }, g.device_id + " was blocked.");
  };
  const statusCell = (g) => g.status === "active" ? badge(label("registration", g.status), "ok")
    : el("span", {}, badge(label("registration", g.status), "bad"),
      g.revoked_at ? el("span", { class: "meta" }, " ", date(g.revoked_at)) : null,
      g.revoke_reason ? el("span", { class: "meta", text: " \u2014 " + g.revoke_reason }) : null);
  return [
    el("h1", { text: "Devices" }), form, status,
    table([
      ["Device", g => el("strong", { text: g.device_id })],
      ["Registration", g => String(g.id) + " (generation " + g.generation + ")"],
      ["Status", statusCell],
      ["Last refresh", g => date(g.issued_at * 1000)],
      ["RT expires", g => g.status === "active" ? date(g.expires_at * 1000) : "\u2014"],
      ["", g => admin && g.status === "active" ? el("div", { class: "row" },
        el("button", { type: "button", class: "danger", text: "Revoke " + g.device_id, onclick: () => revoke(g) }),
        el("button", { type: "button", text: "Block " + g.device_id, onclick: () => block(g) }))
        : ""],
    ], regs, q ? "No registrations of " + q + "." : "No registrations."),
    admin && q ? el("div", { class: "row" }, el("button", { type: "button", text: "Unblock " + q,
      onclick: () => act("/api/v1/devices/unblock", { device_id: q }, q + " may register again.") })) : null,
  ];
}

// ---- PTs -------------------------------------------------------------------------------

async function viewPts() {
  const shown = el("div", { "aria-live": "polite" });
  const create = async (ev) => {
    ev.preventDefault();
    const formEl = ev.target;
    const f = new FormData(formEl);
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
      formEl.reset();
      const a = el("a", { href: URL.createObjectURL(r.data), download: "pt-batch-" + body.label + ".tsv",
        text: "Download the batch file (" + plural(count, "PT") + ")" });
      shown.replaceChildren(message("Batch created. The file is the only copy of these PTs.", true), a);
      refreshList();
      return;
    }
    const r = await api("POST", "/api/v1/pts", body);
    if (!r.ok) { shown.replaceChildren(message(problemText(r.data))); return; }
    // A second tap makes nothing: the form is empty again.
    formEl.reset();
    shown.replaceChildren(
      message("PT \u201c" + r.data.pt.label + "\u201d created. It is shown this once: put it in the firmware image now.", true),
      el("p", { class: "secret", id: "new-pt", text: r.data.token }),
      el("div", { class: "row" }, copyButton(r.data.token, "PT")));
    // A QR code of it, for a factory station that scans it.
    const img = await qrImage(r.data.token, "QR code of the new PT");
    if (img) shown.append(img);
    refreshList();
  };
  const list = el("div");
  const filter = el("input", { id: "pt-filter", "aria-label": "Search PTs",
    placeholder: "Filter by label or id", autocomplete: "off",
    oninput: () => refreshList() });
  const revoke = async (p) => {
    const reason = await ask({ title: "Revoke " + p.label + "?",
      text: "This also revokes the " + plural(p.registrations_created, "registration") + " it produced.",
      confirm: "Revoke " + p.label, danger: true, reason: { label: "Reason", required: true } });
    if (reason === null) return;
    const res = await api("POST", "/api/v1/pts/revoke", { id: p.id, reason });
    shown.replaceChildren(res.ok ? message(p.label + " was revoked.", true) : message(problemText(res.data)));
    refreshList();
  };
  const refreshList = async () => {
    const r = await api("GET", "/api/v1/pts?limit=500&include_revoked=true");
    const f = filter.value.trim().toLowerCase();
    const pts = (r.ok ? r.data.pts : []).filter(p => !f ||
      p.label.toLowerCase().includes(f) || p.id.toLowerCase().includes(f));
    list.replaceChildren(table([
      ["Label", p => el("strong", { text: p.label })],
      ["Id", p => el("code", { class: "id", text: p.id })],
      ["Kind", p => label("kind", p.kind.kind) + (p.kind.max_registrations
        ? " (" + p.registrations_created + " of " + p.kind.max_registrations + " used)" : "")],
      ["Approval", p => label("approval", p.approval.policy)],
      ["Created", p => date(p.created_at)],
      ["", p => p.revoked_at ? badge("Revoked", "bad") :
        el("button", { type: "button", class: "danger", text: "Revoke " + p.label, onclick: () => revoke(p) })],
    ], pts, "No PTs."));
  };
  await refreshList();
  const field = (text, input) => el("div", {}, el("label", { for: input.id, text }), input);
  return [
    el("h1", { text: "Provisioning tokens" }),
    el("form", { class: "inline", onsubmit: create, autocomplete: "off" },
      field("Label", el("input", { id: "pt-label", name: "label", required: true })),
      field("Kind", el("select", { id: "pt-kind", name: "kind" },
        el("option", { value: "single", text: "Single device" }), el("option", { value: "fleet", text: "Fleet" }))),
      field("Most registrations (fleet)", el("input", { id: "pt-max", name: "max_registrations", type: "number", min: "1", value: "100" })),
      field("Approval", el("select", { id: "pt-approval", name: "approval" },
        ["manual_with_code", "manual", "automatic"].map(v => el("option", { value: v, text: label("approval", v) })))),
      field("Device id", el("select", { id: "pt-policy", name: "device_id_policy" },
        ["either", "device", "technician"].map(v => el("option", { value: v, text: label("device_id_policy", v) })))),
      field("Batch: how many (0 for one PT, at most 10,000)", el("input", { id: "pt-count", name: "count", type: "number", min: "0", max: "10000", value: "0" })),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary", text: "Create" }))),
    shown, el("h2", { text: "All PTs" }), filter, list,
  ];
}

// ---- leak signals and the audit log ------------------------------------------------------

async function viewLeaks() {
  const r = await api("GET", "/api/v1/leaks?limit=200");
  return [el("h1", { text: "Leak signals" }), table([
    ["When", s => date(s.at)], ["Kind", s => label("leak", s.kind)], ["PT", s => s.pt_id || "\u2014"],
    ["Registration", s => s.registration_id ? String(s.registration_id) : "\u2014"],
    ["Source", s => s.source || "\u2014"], ["Action", s => s.action], ["Detail", s => s.detail],
  ], r.ok ? r.data.signals.slice().reverse() : [], "No leak signals.")];
}

// What an audit event says, in words.
function auditText(e) {
  const d = e.detail || {};
  const reason = d.reason ? " \u2014 \u201c" + d.reason + "\u201d" : "";
  switch (e.action) {
    case "operation.begin":
      return "Device " + (d.requested_device_id || "(no id asked)") + " asked to register on PT " + d.pt +
        (d.conflict ? "; other devices were asking on the same PT" : "") +
        ((d.replaces || []).length ? "; it would replace an active registration" : "");
    case "operation.approve":
      return "Approved as " + d.device_id + " (registration " + d.registration_id + ")" +
        (d.reassign ? ", moved from another PT" : "");
    case "operation.reject": return "Rejected" + reason;
    case "operation.cancel": return "Cancelled" + reason;
    case "operation.expire": return "Expired before anyone decided";
    case "operation.collect": return "The device collected its RT (registration " + d.registration_id + ")";
    case "operation.code_failed":
      return plural(d.failures, "wrong code") + " entered" + (d.rejected ? "; the operation was rejected" : "");
    case "registration.revoke": return "Registration of " + d.device_id + " revoked" + reason;
    case "device.block": return "Device id blocked, " + plural(d.registrations_revoked, "registration") + " revoked" + reason;
    case "device.unblock": return "Device id unblocked";
    case "pt.create": return "PT \u201c" + d.label + "\u201d created (" + label("kind", d.kind && d.kind.kind) + ", " +
      label("approval", d.approval && d.approval.policy) + ")";
    case "pt.batch_create": return plural(d.count, "PT") + " \u201c" + d.label + "\u201d created in one batch";
    case "pt.revoke": return "PT revoked, " + plural(d.registrations_revoked, "registration") + " with it" + reason;
    case "keys.init": return "First key epoch made";
    case "keys.rotate": return "New key epoch; RTs of epoch " + d.previous + " still validate until they expire";
    case "keys.retire": return "Key epoch retired: its RTs no longer validate";
    case "admin_token.create": return label("role", d.role) + " token created for " + d.name;
    case "admin_token.revoke": return "Token revoked";
    case "admin_token.pairing_issued": return "Pairing code issued, valid until " + when(d.expires_at);
    case "admin_token.paired": return "A phone was paired with its pairing code";
    default: return Object.keys(d).length ? JSON.stringify(d) : "";
  }
}

const ACTIONS = {
  "operation.begin": "Request", "operation.approve": "Approval", "operation.reject": "Rejection",
  "operation.cancel": "Cancellation", "operation.expire": "Expiry", "operation.collect": "RT collected",
  "operation.code_failed": "Wrong code", "registration.revoke": "Revocation", "device.block": "Block",
  "device.unblock": "Unblock", "pt.create": "PT created", "pt.batch_create": "PT batch", "pt.revoke": "PT revoked",
  "keys.init": "Keys", "keys.rotate": "Key rotation", "keys.retire": "Key retired",
  "admin_token.create": "Token created", "admin_token.revoke": "Token revoked",
  "admin_token.pairing_issued": "Pairing code", "admin_token.paired": "Phone paired",
};

async function viewAudit() {
  const filter = (sessionStorage.getItem("audit-filter") || "").toLowerCase();
  const r = await api("GET", "/api/v1/audit?newest=true&limit=200");
  const events = (r.ok ? r.data.events : []).slice().sort((a, b) => b.seq - a.seq)
    .map(e => ({ ...e, text: auditText(e) }))
    .filter(e => !filter || (e.action + " " + (ACTIONS[e.action] || "") + " " + e.actor + " " +
      e.subject + " " + e.text).toLowerCase().includes(filter));
  return [el("h1", { text: "Audit log" }),
    el("input", { id: "audit-filter", "aria-label": "Filter", placeholder: "Filter by action, actor, subject or detail",
      value: filter, oninput: (ev) => { sessionStorage.setItem("audit-filter", ev.target.value); render("action"); } }),
    table([["When", e => date(e.at)], ["Who", e => e.actor === "system" ? "Tessera" : actorName(e.actor)],
      ["What", e => ACTIONS[e.action] || e.action], ["Subject", e => el("code", { class: "id", text: e.subject })],
      ["Details", e => e.text || "\u2014"]], events, "No events.")];
}

// ---- tokens and keys -------------------------------------------------------------------

async function viewTokens() {
  const shown = el("div", { "aria-live": "polite" });
  const list = el("div");
  const revoke = async (t) => {
    const ok = await ask({ title: "Revoke the token of " + t.name + "?",
      text: "Their sessions end and the token stops working.", confirm: "Revoke " + t.name, danger: true });
    if (ok === null) return;
    const res = await api("POST", "/api/v1/tokens/revoke", { id: t.id });
    shown.replaceChildren(res.ok ? message("The token of " + t.name + " was revoked.", true) : message(problemText(res.data)));
    refreshList();
  };
  const refreshList = async () => {
    const r = await api("GET", "/api/v1/tokens");
    list.replaceChildren(table([["Name", t => el("strong", { text: t.name })], ["Role", t => label("role", t.role)],
      ["Id", t => el("code", { class: "id", text: t.id })], ["Created", t => date(t.created_at)],
      ["", t => t.revoked_at ? badge("Revoked", "bad") :
        el("button", { type: "button", class: "danger", text: "Revoke " + t.name, onclick: () => revoke(t) })]],
    r.ok ? r.data.admin_tokens : [], "No tokens."));
  };
  const create = async (ev) => {
    ev.preventDefault();
    const formEl = ev.target;
    const f = new FormData(formEl);
    const res = await api("POST", "/api/v1/tokens", { name: f.get("name"), role: f.get("role") });
    if (!res.ok) { shown.replaceChildren(message(problemText(res.data))); return; }
    formEl.reset();
    shown.replaceChildren(message("Token created for " + res.data.admin_token.name +
      ". It is shown this once: hand it to its person.", true),
    el("p", { class: "secret", text: res.data.token }), el("div", { class: "row" }, copyButton(res.data.token, "token")));
    refreshList();
  };
  // Pairing a phone: a one-time code instead of a token to paste.
  const paired = el("div", { "aria-live": "polite" });
  const pair = async (ev) => {
    ev.preventDefault();
    const formEl = ev.target;
    const name = new FormData(formEl).get("name");
    const r = await fetch("/console/pairings", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf },
      body: JSON.stringify({ name }) });
    const data = await r.json().catch(() => null);
    if (!r.ok) { paired.replaceChildren(message(problemText(data))); return; }
    formEl.reset();
    const url = location.origin + "/console/#pair";
    const img = await qrImage(url, "QR code of the console's pairing page");
    paired.replaceChildren(
      message("Pairing code for " + data.admin_token.name + ", valid until " + when(data.expires_at) +
        ". It works once.", true),
      el("p", { class: "pairing-code", id: "pairing-code", text: data.code }),
      el("p", {}, "On the phone, scan the QR code or open ", el("strong", { text: url }),
        ", and type the code under “Pair this phone”."),
      img);
    refreshList();
  };
  await refreshList();
  return [el("h1", { text: "Admin tokens" }),
    el("form", { class: "inline", onsubmit: create, autocomplete: "off" },
      el("div", {}, el("label", { for: "tok-name", text: "Name (the person)" }), el("input", { id: "tok-name", name: "name", required: true })),
      el("div", {}, el("label", { for: "tok-role", text: "Role" }), el("select", { id: "tok-role", name: "role" },
        ["technician", "admin", "service"].map(v => el("option", { value: v, text: label("role", v) })))),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary", text: "Create" }))),
    shown,
    el("h2", { text: "Pair a technician's phone" }),
    el("form", { class: "inline", onsubmit: pair, autocomplete: "off" },
      el("div", {}, el("label", { for: "pair-name", text: "Whose phone (their name)" }), el("input", { id: "pair-name", name: "name", required: true })),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary", text: "Issue a pairing code" }))),
    paired,
    el("h2", { text: "All tokens" }), list];
}

async function viewKeys() {
  const r = await api("GET", "/api/v1/keys");
  const status = el("div", { "aria-live": "polite" });
  const act = async (question, path, body, done) => {
    if (await ask(question) === null) return;
    const res = await api("POST", path, body);
    if (!res.ok) { status.replaceChildren(message(problemText(res.data))); return; }
    sessionStorage.setItem("keys-note", done);
    render("action");
  };
  const note = sessionStorage.getItem("keys-note");
  sessionStorage.removeItem("keys-note");
  if (note) status.replaceChildren(message(note, true));
  const stateOf = (k) => k.current ? badge("Current", "ok") : k.retired_at ? badge("Retired", "bad")
    : badge(k.rt_key_loaded ? "Validates its RTs" : "Closed");
  return [el("h1", { text: "Key epochs" }), status,
    el("div", { class: "row" }, el("button", { type: "button", class: "primary", text: "Rotate keys",
      onclick: () => act({ title: "Start a new key epoch?", text: "New RTs are minted under it; RTs of the current epoch keep validating until they expire.",
        confirm: "Rotate keys" }, "/api/v1/keys/rotate", {}, "A new key epoch started.") })),
    table([["Epoch", k => String(k.epoch)], ["State", stateOf], ["Created", k => date(k.created_at)],
      ["Retired", k => k.retired_at ? date(k.retired_at) : "\u2014"],
      // Only an epoch that is neither current nor retired can be retired.
      ["", k => k.current || k.retired_at ? "" : el("button", { type: "button", class: "danger", text: "Retire epoch " + k.epoch,
        onclick: () => act({ title: "Retire epoch " + k.epoch + "?", text: "Its RTs stop validating at once.",
          confirm: "Retire epoch " + k.epoch, danger: true }, "/api/v1/keys/retire", { epoch: k.epoch },
        "Epoch " + k.epoch + " was retired.") })]],
    r.ok ? r.data.epochs : [], "No key epochs.")];
}

// ---- status ----------------------------------------------------------------------------

async function viewStatus() {
  const r = await api("GET", "/api/v1/status");
  if (!r.ok) return [el("h1", { text: "Status" }), message(problemText(r.data))];
  const s = r.data;
  const e = s.engine;
  const n = (x) => Number(x).toLocaleString();
  const section = (title, rows) => el("section", { class: "card" }, el("h2", { text: title }),
    el("dl", { class: "facts" }, rows.filter(Boolean).map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])));
  const feed = e.feed;
  return [el("h1", { text: "Status" }),
    el("div", { class: "cards" },
      section("Devices", [
        ["Connections open", n(s.open_connections)],
        ["Devices waiting for a decision", n(s.long_polls)],
        ["Active registrations", n(e.counts.active_registrations)],
        ["Pending operations", n(e.counts.pending_operations)],
      ]),
      section("Tokens and keys", [
        ["PTs", n(e.counts.pts)],
        ["Current key epoch", String(e.current_key_epoch)],
        ["Leak signals", n(e.counts.leak_signals)],
        ["Audit events", n(e.counts.audit_events)],
      ]),
      section("Server", [
        ["Server time", date(s.server_time_ms)],
        ["Brokers following revocations", n(s.revocation_polls)],
        ["Resumed TLS handshakes", n(s.tls_resumed)],
        ["Store commits (failed)", n(e.commits.batches) + " (" + n(e.commits.failed_commits) + ")"],
        feed ? ["Change feed", (feed.current ? "current" : "behind") + ", " + plural(feed.lag, "change") + " behind"] : null,
      ])),
  ];
}

document.addEventListener("DOMContentLoaded", boot);
