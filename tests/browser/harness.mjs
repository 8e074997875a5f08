// What the browser tests share: a `tessera serve` started for the file's tests, headless
// Chromium (Debian's) driven by playwright-core, `tessera simulate` as the device, the admin
// API from the test itself, screenshots and axe-core.
//
//   TESSERA_BIN=target/debug/tessera node --test tests/browser/
//
// SCREENSHOTS=dir also writes the views at phone and desktop widths into dir.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const BIN = process.env.TESSERA_BIN || "target/debug/tessera";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOTS;
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

export const PHONE = { width: 360, height: 740 };
export const DESKTOP = { width: 1280, height: 900 };

// Node's fetch must trust the server's CA too.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

/** The running server and browser: `base` (the console's origin), `dir`, `adminToken`. */
export const t = { server: null, dir: null, base: null, deviceAddr: null, adminToken: null, browser: null };
const children = [];

/** Lines of a child's stdout, as an async queue. */
export function lines(child) {
  const queue = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (l) => {
    const w = waiters.shift();
    if (w) w(l); else queue.push(l);
  });
  return () => queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r));
}

export async function lineMatching(next, re, what) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const l = await Promise.race([next(), new Promise((r) => setTimeout(() => r(null), 30_000))]);
    if (l === null) break;
    const m = l.match(re);
    if (m) return m;
  }
  throw new Error("never printed " + what);
}

export async function start() {
  t.dir = mkdtempSync(join(tmpdir(), "tessera-console-"));
  t.server = spawn(BIN, ["serve", "--data-dir", join(t.dir, "data"), "--device-addr", "127.0.0.1:0",
    "--admin-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0", "--metrics-addr", "off"],
  { stdio: ["ignore", "pipe", "inherit"] });
  const next = lines(t.server);
  t.deviceAddr = (await lineMatching(next, /^tessera serving devices on (\S+)/, "the device address"))[1];
  t.base = (await lineMatching(next, /^console: (https:\/\/\S+?)\/?$/, "the console URL"))[1];
  t.adminToken = readFileSync(join(t.dir, "data", "admin.token"), "utf8").trim();
  t.browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

export async function stop() {
  if (t.browser) await t.browser.close();
  for (const c of children) c.kill("SIGKILL");
  if (t.server) t.server.kill("SIGTERM");
  rmSync(t.dir, { recursive: true, force: true });
}

/** The admin API with a bearer token, from the test (not the browser). */
export async function api(method, path, token, body) {
  const r = await fetch(t.base + path, {
    method, headers: { Authorization: "Bearer " + (token || t.adminToken), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, data: await r.json().catch(() => null) };
}

/** A new PT's token (the admin API's defaults, then `fields`). */
export async function newPt(fields) {
  const r = await api("POST", "/api/v1/pts", t.adminToken, fields);
  assert.equal(r.status, 200, JSON.stringify(r.data));
  return r.data.token;
}

/** A new technician's token. */
export async function newTechnician(name) {
  return (await api("POST", "/api/v1/tokens", t.adminToken, { name, role: "technician" })).data.token;
}

/** A device: `tessera simulate`, which prints its code and waits for approval. */
export function simulate(pt, deviceId, stateFile, hold) {
  const child = spawn(BIN, ["simulate", "--pt", pt, "--server", t.deviceAddr,
    "--ca", join(t.dir, "data", "tls", "ca.pem"), "--device-id", deviceId, "--timeout-secs", "60",
    ...(stateFile ? ["--state-file", stateFile] : []), ...(hold ? ["--hold"] : [])],
  { stdio: [hold ? "pipe" : "ignore", "pipe", "inherit"] });
  children.push(child);
  const next = lines(child);
  const exited = new Promise((r) => child.on("exit", (code) => r(code)));
  return { next, exited, child };
}

/** The pending operation of a device id, from the API (waits for it to begin). */
export async function pendingOf(deviceId) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ops = (await api("GET", "/api/v1/operations?state=pending")).data.operations;
    const op = ops.find((o) => o.requested_device_id === deviceId);
    if (op) return op;
    assert.ok(Date.now() < deadline, deviceId + " never began");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The server's count of open device connections. */
export async function openConnections() {
  return (await api("GET", "/api/v1/status")).data.open_connections;
}

/** Session cookies by token: the server limits sign-ins per address (10 at once, then one
 *  every 6 s), so a test that signs in again with a token reuses its live session. */
const sessions = new Map();

export async function signIn(page, token) {
  const cookies = sessions.get(token);
  if (cookies) await page.context().addCookies(cookies);
  await page.goto(t.base + "/console/");
  await page.waitForFunction(() => !document.getElementById("who").hidden ||
    !document.getElementById("signin-view").hidden);
  if (await page.locator("#who").isVisible()) return;
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who").waitFor();
  sessions.set(token, (await page.context().cookies()).filter((c) => c.name === "tessera_session"));
}

export async function context(viewport, extra) {
  // The server's certificate comes from its own CA, which this browser does not know.
  return t.browser.newContext({ ignoreHTTPSErrors: true, viewport, ...(extra || {}) });
}

/** A page that records script errors (failed loads are the API's answers, and do not count). */
export async function watchedPage(ctx) {
  const page = await ctx.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) page.errors.push(m.text());
  });
  return page;
}

export async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  // The whole page, unless it is very long (the audit log): then what the screen shows.
  const tall = await page.evaluate(() => document.documentElement.scrollHeight > 2400);
  await page.screenshot({ path: join(SHOTS, name + ".png"), fullPage: !tall });
}

/** axe-core's violations on the page as it is now (every rule axe runs by default). */
export async function axeViolations(page) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(AXE);
  const found = await page.evaluate(async () => (await window.axe.run(document)).violations
    .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")) })));
  return found;
}

/** The page's layout problems at its width: a horizontal scroll, controls under 44 px, a
 *  table cell narrow enough to break words letter by letter, a header on two lines. */
export async function layoutProblems(page) {
  return page.evaluate(() => {
    const out = [];
    const visible = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
    const what = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + " \u201c" +
      (e.textContent || e.getAttribute("aria-label") || "").trim().slice(0, 30) + "\u201d";
    if (document.documentElement.scrollWidth > window.innerWidth + 1) {
      out.push("scrolls sideways: " + document.documentElement.scrollWidth + " > " + window.innerWidth);
    }
    for (const e of document.querySelectorAll("button, a, input, select")) {
      if (!visible(e) || e.closest("dialog:not([open])")) continue;
      const r = e.getBoundingClientRect();
      if (r.height < 44 || r.width < 44) out.push("small target " + what(e) + ": " + Math.round(r.width) + "x" + Math.round(r.height));
    }
    for (const e of document.querySelectorAll("td, th")) {
      if (!visible(e) || e.classList.contains("sr-only") || e.closest("thead") && getComputedStyle(e.closest("thead")).position === "absolute") continue;
      if (e.getBoundingClientRect().width < 64) out.push("narrow cell " + what(e) + ": " + Math.round(e.getBoundingClientRect().width) + " px");
    }
    const top = document.querySelector("header.top");
    if (top.getBoundingClientRect().height > 64) out.push("the header wraps: " + Math.round(top.getBoundingClientRect().height) + " px");
    return out;
  });
}
