// The console in a real browser: the flows an admin and a technician go through, sign-in and
// sign-out, and revocation from the console (harness.mjs starts the server and the browser).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  t, start, stop, api, simulate, signIn, context, shot, lineMatching, openConnections, watchedPage,
  PHONE, DESKTOP,
} from "./harness.mjs";

before(start);
after(stop);

test("an admin creates a PT with the code policy, and the PT shown once provisions a device", async () => {
  const ctx = await context(DESKTOP);
  const page = await watchedPage(ctx);
  await signIn(page, t.adminToken);
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
  await page.getByRole("cell", { name: "line 7 firmware", exact: true }).waitFor();
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
  assert.deepEqual(page.errors, []);
  await ctx.close();
});

test("a technician on a phone sees the operation appear, gets the attempts left for a wrong code, and approves", async () => {
  const tech = (await api("POST", "/api/v1/tokens", t.adminToken, { name: "Ana (line 3)", role: "technician" })).data.token;
  const pt = (await api("POST", "/api/v1/pts", t.adminToken,
    { label: "line 3", kind: "fleet", max_registrations: 10, approval: "manual_with_code" })).data.token;
  const ctx = await context(PHONE);
  const page = await ctx.newPage();
  await signIn(page, tech);
  await page.getByRole("heading", { name: "Pending operations" }).waitFor();
  // No PT creation for a technician: not in the menu, and the page falls back to Pending.
  assert.equal(await page.getByRole("link", { name: "PTs" }).count(), 0);
  await page.goto(t.base + "/console/#pts");
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
    await page.goto(t.base + "/console/" + view);
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
  const pt = (await api("POST", "/api/v1/pts", t.adminToken,
    { label: "line 9", kind: "fleet", max_registrations: 10, approval: "automatic" })).data.token;
  const stateFile = join(t.dir, "valve-9.json");
  // The device stays connected after registering, and refreshes when told.
  const dev = simulate(pt, "valve-9", stateFile, true);
  await lineMatching(dev.next, /^registered: device valve-9/, "its registration");
  assert.equal(await openConnections(), 1, "the device holds its connection");
  // The device's RT, as it keeps it, and a broker's service token to check it with.
  const rt = JSON.parse(readFileSync(stateFile, "utf8")).rt;
  const svc = (await api("POST", "/api/v1/tokens", t.adminToken, { name: "broker", role: "service" })).data.token;
  assert.equal((await api("POST", "/api/v1/introspect", svc, { rt })).status, 200);
  const ctx = await context(DESKTOP);
  const page = await ctx.newPage();
  await signIn(page, t.adminToken);
  await page.getByRole("link", { name: "Devices" }).click();
  await page.getByLabel("Device id").fill("valve-9");
  await page.getByRole("button", { name: "Search" }).click();
  const row = page.getByRole("row", { name: /valve-9/ });
  await row.getByText("active").waitFor();
  await shot(page, "admin-devices-desktop");
  // Revoke asks for a reason, and will not go on without one.
  await row.getByRole("button", { name: "Revoke valve-9" }).click();
  const dialog = page.getByRole("dialog", { name: "Revoke valve-9?" });
  await dialog.getByRole("button", { name: "Revoke valve-9" }).click();
  await dialog.getByText("Give a reason.").waitFor();
  await dialog.getByLabel("Reason").fill("stolen from line 9");
  await shot(page, "admin-revoke-reason-desktop");
  await dialog.getByRole("button", { name: "Revoke valve-9" }).click();
  await page.getByText("valve-9 was revoked.").waitFor();
  // The row says when and why, and no longer shows an RT expiry.
  const revoked = page.getByRole("row", { name: /valve-9/ });
  await revoked.getByText("stolen from line 9").waitFor();
  assert.match(await revoked.locator("td[data-label='Status']").innerText(), /Revoked/);
  assert.equal((await revoked.locator("td[data-label='RT expires']").innerText()).trim(), "\u2014");
  const regs = (await api("GET", "/api/v1/devices?device_id=valve-9", t.adminToken)).data.registrations;
  assert.equal(regs[0].status, "revoked");
  assert.equal(regs[0].revoke_reason, "stolen from line 9");
  const after = await api("POST", "/api/v1/introspect", svc, { rt });
  assert.equal(after.status, 422);
  assert.equal(after.data.code, 12, "revoked");
  // The server closed the device's connection; its next refresh is refused.
  const deadline = Date.now() + 10_000;
  while (await openConnections() !== 0) {
    assert.ok(Date.now() < deadline, "the connection was not closed");
    await new Promise((r) => setTimeout(r, 50));
  }
  // The device says so at once, before it tries anything.
  await lineMatching(dev.next, /^connection closed by the server: the registration was revoked \(0x10\)$/,
    "the closed connection");
  dev.child.stdin.write("refresh\n");
  const outcome = await lineMatching(dev.next, /^(refresh refused|refreshed)/, "the refresh's outcome");
  assert.equal(outcome[1], "refresh refused", outcome.input);
  dev.child.stdin.end();
  assert.equal(await dev.exited, 0);
  await ctx.close();
});

test("sign-out ends the session, and a forged cross-site request is refused", async () => {
  const ctx = await context(DESKTOP);
  const page = await ctx.newPage();
  await signIn(page, t.adminToken);
  // The cookie is HttpOnly, Secure, SameSite=Strict, and the token is nowhere in the page's
  // storage.
  const cookies = await ctx.cookies();
  const c = cookies.find((k) => k.name === "tessera_session");
  assert.ok(c && c.httpOnly && c.secure && c.sameSite === "Strict", JSON.stringify(cookies));
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.ok(!stored.includes(t.adminToken));
  // A state change with the cookie but from another site, or without the CSRF token: refused.
  const forged = await ctx.request.post(t.base + "/api/v1/keys/rotate", {
    headers: { Origin: "https://evil.example", "Content-Type": "application/json" }, data: {},
  });
  assert.equal(forged.status(), 403);
  const noToken = await page.evaluate(async () => (await fetch("/api/v1/keys/rotate", { method: "POST",
    headers: { "Content-Type": "application/json" }, body: "{}" })).status);
  assert.equal(noToken, 403);
  const keys = (await api("GET", "/api/v1/keys", t.adminToken)).data.epochs;
  assert.equal(keys.length, 1, "nothing was rotated");
  // Sign out: the session is gone on the server, not only in this browser.
  const cookie = "tessera_session=" + c.value;
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  const after = await fetch(t.base + "/console/session", { headers: { Cookie: cookie } });
  assert.equal(after.status, 401);
  // A wrong token is refused with a message.
  await page.getByLabel("Token").fill("tsat_nope");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("That token was not accepted.").waitFor();
  await ctx.close();
});
