// The console in a real browser: Debian's Chromium, headless, driven by playwright-core, against
// a `tessera serve` started here, with `tessera simulate` as the device.
//
//   TESSERA_BIN=target/debug/tessera node --test tests/browser/
//
// SCREENSHOTS=dir also writes the technician and admin views at phone and desktop widths.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const BIN = process.env.TESSERA_BIN || "target/debug/tessera";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOTS;

let server, dir, base, deviceAddr, adminToken, browser;
const children = [];

/** Lines of a child's stdout, as an async queue. */
function lines(child) {
  const queue = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (l) => {
    const w = waiters.shift();
    if (w) w(l); else queue.push(l);
  });
  return () => queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r));
}

async function lineMatching(next, re, what) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const l = await Promise.race([next(), new Promise((r) => setTimeout(() => r(null), 30_000))]);
    if (l === null) break;
    const m = l.match(re);
    if (m) return m;
  }
  throw new Error("never printed " + what);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "tessera-console-"));
  server = spawn(BIN, ["serve", "--data-dir", join(dir, "data"), "--device-addr", "127.0.0.1:0",
    "--admin-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0", "--metrics-addr", "off"],
  { stdio: ["ignore", "pipe", "inherit"] });
  const next = lines(server);
  deviceAddr = (await lineMatching(next, /^tessera serving devices on (\S+)/, "the device address"))[1];
  base = (await lineMatching(next, /^console: (https:\/\/\S+?)\/?$/, "the console URL"))[1];
  adminToken = readFileSync(join(dir, "data", "admin.token"), "utf8").trim();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const c of children) c.kill("SIGKILL");
  if (server) server.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

/** The admin API with a bearer token, from the test (not the browser). */
async function api(method, path, token, body) {
  const r = await fetch(base + path, {
    method, headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, data: await r.json().catch(() => null) };
}

/** A device: `tessera simulate`, which prints its code and waits for approval. */
function simulate(pt, deviceId, stateFile, hold) {
  const child = spawn(BIN, ["simulate", "--pt", pt, "--server", deviceAddr,
    "--ca", join(dir, "data", "tls", "ca.pem"), "--device-id", deviceId, "--timeout-secs", "60",
    ...(stateFile ? ["--state-file", stateFile] : []), ...(hold ? ["--hold"] : [])],
  { stdio: [hold ? "pipe" : "ignore", "pipe", "inherit"] });
  children.push(child);
  const next = lines(child);
  const exited = new Promise((r) => child.on("exit", (code) => r(code)));
  return { next, exited, child };
}

/** The server's count of open device connections. */
async function openConnections() {
  return (await api("GET", "/api/v1/status", adminToken)).data.open_connections;
}

async function signIn(page, token) {
  await page.goto(base + "/console/");
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who").waitFor();
}

async function context(viewport) {
  // The server's certificate comes from its own CA, which this browser does not know.
  return browser.newContext({ ignoreHTTPSErrors: true, viewport });
}

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name + ".png"), fullPage: true });
}

// Node's fetch must trust the server's CA too.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

test("an admin creates a PT with the code policy, and the PT shown once provisions a device", async () => {
  const ctx = await context({ width: 1280, height: 900 });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // Failed loads are the API's answers (401 before sign-in): only script errors count here.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  await signIn(page, adminToken);
  await page.getByRole("link", { name: "PTs" }).click();
  await page.getByLabel("Label", { exact: true }).fill("line 7 firmware");
  await page.getByLabel("Kind").selectOption("fleet");
  await page.getByLabel("Approval").selectOption("manual_with_code");
  await page.getByRole("button", { name: "Create" }).click();
  const pt = (await page.locator("#new-pt").textContent()).trim();
  assert.match(pt, /^tspt_/);
  await page.getByAltText("QR code of the new PT").waitFor();
  await shot(page, "admin-pts-desktop");
  // The PT is in the list, and is not shown again there.
  await page.getByRole("cell", { name: "line 7 firmware" }).waitFor();
  assert.equal(await page.getByText(pt).count(), 1);

  // The device provisions with it; the admin approves with the device's code.
  const dev = simulate(pt, "press-12");
  const code = (await lineMatching(dev.next, /verification code: (\S+)/, "its code"))[1];
  await page.getByRole("link", { name: "Pending" }).click();
  const card = page.locator(".card", { hasText: "press-12" });
  await card.getByLabel("Code shown on the device").fill(code);
  await card.getByRole("button", { name: "Approve" }).click();
  assert.equal(await dev.exited, 0);
  await page.getByText("delivered").first().waitFor();
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("a technician on a phone sees the operation appear, gets the attempts left for a wrong code, and approves", async () => {
  const tech = (await api("POST", "/api/v1/tokens", adminToken, { name: "Ana (line 3)", role: "technician" })).data.token;
  const pt = (await api("POST", "/api/v1/pts", adminToken,
    { label: "line 3", kind: "fleet", max_registrations: 10, approval: "manual_with_code" })).data.token;
  const ctx = await context({ width: 360, height: 740 });
  const page = await ctx.newPage();
  await signIn(page, tech);
  await page.getByRole("heading", { name: "Pending operations" }).waitFor();
  // No PT creation for a technician: not in the menu, and the page falls back to Pending.
  assert.equal(await page.getByRole("link", { name: "PTs" }).count(), 0);
  await page.goto(base + "/console/#pts");
  await page.getByRole("heading", { name: "Pending operations" }).waitFor();

  // The device begins; its operation appears without a reload.
  const dev = simulate(pt, "pump-44");
  const code = (await lineMatching(dev.next, /verification code: (\S+)/, "its code"))[1];
  const card = page.locator(".card", { hasText: "pump-44" });
  await card.waitFor({ timeout: 10_000 });
  await shot(page, "technician-pending-phone");
  await card.getByLabel("Code shown on the device").fill("ZZZZ-ZZZZ");
  await card.getByRole("button", { name: "Approve" }).click();
  await page.getByText(/Wrong code — \d attempts? left/).waitFor();
  await shot(page, "technician-wrong-code-phone");
  await page.locator(".card", { hasText: "pump-44" }).getByLabel("Code shown on the device").fill(code);
  await page.locator(".card", { hasText: "pump-44" }).getByRole("button", { name: "Approve" }).click();
  assert.equal(await dev.exited, 0, "the device received its RT");
  await page.getByText("delivered").first().waitFor();
  await shot(page, "technician-delivered-phone");
  // No view shows an empty value as text.
  for (const view of ["#pending", "#devices"]) {
    await page.goto(base + "/console/" + view);
    await page.locator("#view h1").waitFor();
    const text = await page.locator("#view").innerText();
    assert.doesNotMatch(text, /\b(null|undefined|NaN|false)\b/, view);
  }

  // The API refuses the technician's PT creation too.
  const r = await page.evaluate(async () => {
    const s = await (await fetch("/console/session")).json();
    const res = await fetch("/api/v1/pts", { method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": s.csrf },
      body: JSON.stringify({ label: "not mine" }) });
    return res.status;
  });
  assert.equal(r, 403);
  await ctx.close();
});

test("revoking a device in the console closes its connection and refuses its RT from then on", async () => {
  const pt = (await api("POST", "/api/v1/pts", adminToken,
    { label: "line 9", kind: "fleet", max_registrations: 10, approval: "automatic" })).data.token;
  const stateFile = join(dir, "valve-9.json");
  // The device stays connected after registering, and refreshes when told.
  const dev = simulate(pt, "valve-9", stateFile, true);
  await lineMatching(dev.next, /^registered: device valve-9/, "its registration");
  assert.equal(await openConnections(), 1, "the device holds its connection");
  // The device's RT, as it keeps it, and a broker's service token to check it with.
  const rt = JSON.parse(readFileSync(stateFile, "utf8")).rt;
  const svc = (await api("POST", "/api/v1/tokens", adminToken, { name: "broker", role: "service" })).data.token;
  assert.equal((await api("POST", "/api/v1/introspect", svc, { rt })).status, 200);
  const ctx = await context({ width: 1280, height: 900 });
  const page = await ctx.newPage();
  await signIn(page, adminToken);
  await page.getByRole("link", { name: "Devices" }).click();
  await page.getByLabel("Device id").fill("valve-9");
  await page.getByRole("button", { name: "Search" }).click();
  const row = page.getByRole("row", { name: /valve-9/ });
  await row.getByText("active").waitFor();
  await shot(page, "admin-devices-desktop");
  page.once("dialog", (d) => d.accept());
  await row.getByRole("button", { name: "Revoke" }).click();
  await page.getByRole("row", { name: /valve-9/ }).getByText("revoked").waitFor();
  const regs = (await api("GET", "/api/v1/devices?device_id=valve-9", adminToken)).data.registrations;
  assert.equal(regs[0].status, "revoked");
  const after = await api("POST", "/api/v1/introspect", svc, { rt });
  assert.equal(after.status, 422);
  assert.equal(after.data.code, 12, "revoked");
  // The server closed the device's connection; its next refresh is refused.
  const deadline = Date.now() + 10_000;
  while (await openConnections() !== 0) {
    assert.ok(Date.now() < deadline, "the connection was not closed");
    await new Promise((r) => setTimeout(r, 50));
  }
  dev.child.stdin.write("refresh\n");
  const outcome = await lineMatching(dev.next, /^(refresh refused|refreshed)/, "the refresh's outcome");
  assert.equal(outcome[1], "refresh refused", outcome.input);
  dev.child.stdin.end();
  assert.equal(await dev.exited, 0);
  await ctx.close();
});

test("sign-out ends the session, and a forged cross-site request is refused", async () => {
  const ctx = await context({ width: 1280, height: 900 });
  const page = await ctx.newPage();
  await signIn(page, adminToken);
  // The cookie is HttpOnly, Secure, SameSite=Strict, and the token is nowhere in the page's
  // storage.
  const cookies = await ctx.cookies();
  const c = cookies.find((k) => k.name === "tessera_session");
  assert.ok(c && c.httpOnly && c.secure && c.sameSite === "Strict", JSON.stringify(cookies));
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.ok(!stored.includes(adminToken));
  // A state change with the cookie but from another site, or without the CSRF token: refused.
  const forged = await ctx.request.post(base + "/api/v1/keys/rotate", {
    headers: { Origin: "https://evil.example", "Content-Type": "application/json" }, data: {},
  });
  assert.equal(forged.status(), 403);
  const noToken = await page.evaluate(async () => (await fetch("/api/v1/keys/rotate", { method: "POST",
    headers: { "Content-Type": "application/json" }, body: "{}" })).status);
  assert.equal(noToken, 403);
  const keys = (await api("GET", "/api/v1/keys", adminToken)).data.epochs;
  assert.equal(keys.length, 1, "nothing was rotated");
  // Sign out: the session is gone on the server, not only in this browser.
  const cookie = "tessera_session=" + c.value;
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  const after = await fetch(base + "/console/session", { headers: { Cookie: cookie } });
  assert.equal(after.status, 401);
  // A wrong token is refused with a message.
  await page.getByLabel("Token").fill("tsat_nope");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("That token was not accepted.").waitFor();
  await ctx.close();
});
