// The console on a factory floor: a tap lands on the device its card shows, whatever arrives
// meanwhile; every view works at 360 px and 1280 px with data in it, and axe-core finds
// nothing; the smaller defects technicians and admins met stay fixed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  t, start, stop, api, simulate, signIn, context, shot, lineMatching, watchedPage, newPt,
  newTechnician, pendingOf, axeViolations, layoutProblems, PHONE, DESKTOP,
} from "./harness.mjs";

before(start);
after(stop);

for (const [size, viewport, n] of [["phone", PHONE, 20], ["desktop", DESKTOP, 30]]) {
test(`${viewport.width} px: a tap where valve-${n}'s Approve was approves valve-${n}, though valve-${n + 1} began meanwhile`, async () => {
  const [a, b] = [`valve-${n}`, `valve-${n + 1}`];
  const tech = await newTechnician(`Ana (line 3, ${size})`);
  // Two PTs, approval by a technician without a code (the card has no code field).
  const ptA = await newPt({ label: `line 3 valves (${size})`, kind: "fleet", max_registrations: 10, approval: "manual" });
  const ptB = await newPt({ label: `line 4 valves (${size})`, kind: "fleet", max_registrations: 10, approval: "manual" });
  const ctx = await context(viewport, { hasTouch: true, isMobile: size === "phone" });
  const page = await watchedPage(ctx);
  const approvals = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/api/v1/operations/approve")) approvals.push(JSON.parse(r.postData()).id);
  });
  await signIn(page, tech);
  await page.getByRole("heading", { name: "Pending operations" }).waitFor();

  const v20 = simulate(ptA, a);
  const op20 = await pendingOf(a);
  const approve20 = page.getByRole("button", { name: `Approve ${a}` });
  await approve20.waitFor();
  const box = await approve20.boundingBox();

  // The second device begins on the other PT: the console hears of it, and says so without
  // moving anything.
  const v21 = simulate(ptB, b);
  const op21 = await pendingOf(b);
  await page.getByRole("button", { name: "Show 1 new request" }).waitFor();
  assert.equal(await page.getByRole("button", { name: `Approve ${b}` }).count(), 0);
  assert.deepEqual(await approve20.boundingBox(), box, "the first device's Approve did not move");
  await shot(page, `technician-new-request-waits-${size}`);

  // The tap, where the first device's Approve was when the technician aimed.
  await page.touchscreen.tap(box.x + box.width / 2, box.y + box.height / 2);
  assert.equal(await v20.exited, 0, "the first device received its RT");
  assert.deepEqual(approvals, [op20.id], "the one approval sent names the first device's operation");
  const still = (await api("GET", "/api/v1/operations/" + op21.id)).data.operation;
  assert.equal(still.state, "pending", "the second device is still waiting");

  // Shown when asked for, the second device is approved by its own button.
  await page.getByRole("button", { name: "Show 1 new request" }).click();
  await page.getByRole("button", { name: `Approve ${b}` }).click();
  assert.equal(await v21.exited, 0);
  assert.deepEqual(approvals, [op20.id, op21.id]);
  assert.deepEqual(page.errors, []);
  await ctx.close();
});
}

for (const [size, viewport, n] of [["phone", PHONE, 50], ["desktop", DESKTOP, 60]]) {
test(`${viewport.width} px: a card whose operation is decided elsewhere stays in place, closed, and the cards below do not move`, async () => {
  const [a, b] = [`pump-${n}`, `pump-${n + 1}`];
  const tech = await newTechnician(`Ben (line 5, ${size})`);
  const pt = await newPt({ label: `line 5 pumps (${size})`, kind: "fleet", max_registrations: 10, approval: "manual" });
  const ctx = await context(viewport);
  const page = await watchedPage(ctx);
  await signIn(page, tech);
  const older = simulate(pt, a);
  await pendingOf(a);
  const newer = simulate(pt, b);
  await pendingOf(b);
  await page.goto(t.base + "/console/#devices");
  await page.getByRole("heading", { name: "Devices" }).waitFor();
  await page.getByRole("link", { name: "Pending" }).click();
  // Newest first: b's card, then a's.
  const lower = page.getByRole("button", { name: `Approve ${a}` });
  await lower.waitFor();
  const box = await lower.boundingBox();
  // An admin approves b elsewhere (its card is the first).
  const op51 = await pendingOf(b);
  assert.equal((await api("POST", "/api/v1/operations/approve", t.adminToken, { id: op51.id })).status, 200);
  assert.equal(await newer.exited, 0);
  const closed = page.locator(".card.closed", { hasText: b });
  await closed.waitFor();
  assert.equal(await closed.getByRole("button").count(), 0, "a closed card has no buttons");
  assert.deepEqual(await lower.boundingBox(), box, "a's Approve did not move");
  await lower.click();
  assert.equal(await older.exited, 0);
  await ctx.close();
});
}

/** Data in every view: active and revoked devices, a pending request, a revoked PT, two key
 *  epochs, a leak signal, tokens, and the audit events of all that. */
async function seed() {
  const fleet = await newPt({ label: "line 2 sensors (firmware 4.1)", kind: "fleet", max_registrations: 50, approval: "automatic" });
  for (const id of ["sensor-201", "sensor-202"]) assert.equal(await simulate(fleet, id).exited, 0);
  const regs = (await api("GET", "/api/v1/devices?device_id=sensor-202")).data.registrations;
  await api("POST", "/api/v1/devices/revoke", t.adminToken, { registration_id: regs[0].id, reason: "returned for repair" });
  const gone = (await api("POST", "/api/v1/pts", t.adminToken, { label: "line 1 (closed)", kind: "fleet", max_registrations: 5 })).data;
  await api("POST", "/api/v1/pts/revoke", t.adminToken, { id: gone.pt.id, reason: "line closed" });
  // A device still holding the revoked PT: a leak signal.
  assert.notEqual(await simulate(gone.token, "old-301").exited, 0);
  await api("POST", "/api/v1/keys/rotate", t.adminToken, {});
  await api("POST", "/api/v1/tokens", t.adminToken, { name: "Broker (hall B)", role: "service" });
  const coded = await newPt({ label: "line 3 presses", kind: "fleet", max_registrations: 20, approval: "manual_with_code" });
  const press = simulate(coded, "press-310");
  await lineMatching(press.next, /verification code: (\S+)/, "its code");
  return press;
}

test("every view works at 360 px and 1280 px with data in it, and axe-core finds nothing", async () => {
  const press = await seed();
  const tech = await newTechnician("Ana Lucía Fernández (line 3, night shift)");
  const views = { admin: ["pending", "devices", "pts", "leaks", "audit", "tokens", "keys", "status"],
    technician: ["pending", "devices", "status"] };
  for (const [role, token] of [["admin", t.adminToken], ["technician", tech]]) {
    for (const [size, viewport] of [["phone", PHONE], ["desktop", DESKTOP]]) {
      const ctx = await context(viewport);
      const page = await watchedPage(ctx);
      await signIn(page, token);
      for (const view of views[role]) {
        await page.goto(t.base + "/console/#" + view);
        await page.locator(`#nav a[data-view="${view}"][aria-current="page"]`).waitFor();
        await page.locator("#view h1").waitFor();
        // The view's data, not its empty state (the technician sees the devices too).
        if (["devices", "pts", "leaks", "audit", "tokens", "keys"].includes(view)) {
          await page.locator("#view table").waitFor();
        }
        if (view === "pending") await page.getByRole("button", { name: "Approve press-310" }).waitFor();
        const where = `${role} ${view} at ${viewport.width} px`;
        assert.deepEqual(await axeViolations(page), [], where);
        assert.deepEqual(await layoutProblems(page), [], where);
        const text = await page.locator("#view").innerText();
        assert.doesNotMatch(text, /\b(null|undefined|NaN|\[object)\b/, where);
        // Human words, not the API's values.
        assert.doesNotMatch(text, /\b(single_device|manual_with_code|revoked_token_use|admin_token\.create|registration\.revoke)\b/, where);
        await shot(page, `${role}-${view}-${size}`);
      }
      assert.deepEqual(page.errors, []);
      await ctx.close();
    }
  }
  press.child.kill();
});

for (const [size, viewport, n] of [["phone", PHONE, 77], ["desktop", DESKTOP, 78]]) {
test(`${viewport.width} px: Reject asks first; a wrong code is answered under the code field, which keeps it; the card shows its PT and expiry`, async () => {
  const press = `press-${n}`;
  const tech = await newTechnician(`Cem (line 7, ${size})`);
  const pt = await newPt({ label: `line 7 presses (${size})`, kind: "fleet", max_registrations: 10, approval: "manual_with_code" });
  const ctx = await context(viewport);
  const page = await watchedPage(ctx);
  const dev = simulate(pt, press);
  const code = (await lineMatching(dev.next, /verification code: (\S+)/, "its code"))[1];
  await signIn(page, tech);
  const card = page.locator(".card", { hasText: press });
  await card.waitFor();
  await card.getByText(`PT \u201cline 7 presses (${size})\u201d`).waitFor();
  await card.getByText(/expires in 1[45] min/).waitFor();

  const field = card.getByLabel("Code shown on the device");
  const wrong = code === "ZZZZ-ZZZZ" ? "YYYY-YYYY" : "ZZZZ-ZZZZ";
  await field.fill(wrong);
  await card.getByRole("button", { name: `Approve ${press}` }).click();
  const alert = card.getByRole("alert");
  await alert.getByText(/Wrong code — \d attempts left/).waitFor();
  assert.equal(await field.inputValue(), wrong, "the code typed is still there to correct");
  assert.ok(await field.evaluate((i) => i.nextElementSibling.getAttribute("role") === "alert"),
    "the message is right under the code field");
  await card.getByText("1 wrong code entered so far.").waitFor();
  await shot(page, `technician-wrong-code-${size}`);

  // Reject: a question first; cancelled, nothing happens.
  await card.getByRole("button", { name: `Reject ${press}` }).click();
  const dialog = page.getByRole("dialog", { name: `Reject ${press}?` });
  await shot(page, `technician-reject-confirm-${size}`);
  await dialog.getByRole("button", { name: "Cancel" }).click();
  const op = await pendingOf(press);
  assert.equal(op.state, "pending");
  await card.getByRole("button", { name: `Reject ${press}` }).click();
  await dialog.getByLabel("Reason (optional)").fill("not on this line");
  await dialog.getByRole("button", { name: `Reject ${press}` }).click();
  await page.locator(".card.closed", { hasText: press }).getByText("Rejected.").waitFor();
  const after = (await api("GET", "/api/v1/operations/" + op.id)).data.operation;
  assert.equal(after.state, "rejected");
  assert.equal(after.reason, "not on this line");
  assert.notEqual(await dev.exited, 0, "the device got no RT");
  assert.deepEqual(page.errors, []);
  await ctx.close();
});
}

for (const [size, viewport, n] of [["phone", PHONE, 81], ["desktop", DESKTOP, 91]]) {
test(`${viewport.width} px: a revoked device is no longer 'delivered', and the audit log says what happened in words`, async () => {
  const [auto, manualDevice] = [`valve-${n}`, `valve-${n + 1}`];
  const pt = await newPt({ label: `line 8 valves (${size})`, kind: "fleet", max_registrations: 10, approval: "automatic" });
  assert.equal(await simulate(pt, auto).exited, 0);
  const reg = (await api("GET", "/api/v1/devices?device_id=" + auto)).data.registrations[0];
  // An approved operation shows in "Decided in the last hour" when a technician decided it.
  const manual = await newPt({ label: `line 8 manual (${size})`, kind: "fleet", max_registrations: 10, approval: "manual" });
  const dev = simulate(manual, manualDevice);
  const op = await pendingOf(manualDevice);
  await api("POST", "/api/v1/operations/approve", t.adminToken, { id: op.id });
  assert.equal(await dev.exited, 0);
  const reg82 = (await api("GET", "/api/v1/devices?device_id=" + manualDevice)).data.registrations[0];
  await api("POST", "/api/v1/devices/revoke", t.adminToken, { registration_id: reg82.id, reason: "wrong valve" });
  const ctx = await context(viewport);
  const page = await watchedPage(ctx);
  await signIn(page, t.adminToken);
  const decided = page.locator(".decided li", { hasText: manualDevice });
  await decided.getByText("delivered, since revoked").waitFor();
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByRole("cell", { name: `Registration of ${manualDevice} revoked \u2014 \u201cwrong valve\u201d` }).waitFor();
  await page.getByRole("cell", { name: `Approved as ${manualDevice} (registration ${reg82.id})` }).waitFor();
  await page.getByRole("cell", { name: "The device collected its RT (registration " + reg.id + ")" }).waitFor();
  // Newest first.
  const first = await page.locator("tbody tr").first().innerText();
  assert.match(first, /Revocation/);
  await ctx.close();
});
}

for (const [size, viewport] of [["phone", PHONE], ["desktop", DESKTOP]]) {
test(`${viewport.width} px: Tokens shows a token as soon as it is made, forms are empty after Create, and Keys offers Retire only where it can work`, async () => {
  const person = `Dana (quality, ${size})`;
  const label = `line 9 pumps (${size})`;
  // An epoch to retire besides the current one.
  await api("POST", "/api/v1/keys/rotate", t.adminToken, {});
  const ctx = await context(viewport);
  const page = await watchedPage(ctx);
  await signIn(page, t.adminToken);
  await page.getByRole("link", { name: "Tokens" }).click();
  await page.getByLabel("Name (the person)").fill(person);
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByText(`Token created for ${person}`, { exact: false }).waitFor();
  await page.locator("td[data-label='Name']").getByText(person, { exact: true }).waitFor();
  assert.equal(await page.getByLabel("Name (the person)").inputValue(), "");

  // A PT: the form is empty again, so a second tap on Create makes no second PT.
  await page.getByRole("link", { name: "PTs" }).click();
  await page.getByLabel("Label", { exact: true }).fill(label);
  await page.getByRole("button", { name: "Create" }).click();
  await page.locator("#new-pt").waitFor();
  assert.equal(await page.getByLabel("Label", { exact: true }).inputValue(), "");
  await page.getByRole("button", { name: "Create" }).click();
  const named = (await api("GET", "/api/v1/pts?limit=1000")).data.pts.filter((p) => p.label === label);
  assert.equal(named.length, 1);

  // Keys: the current epoch has no Retire; an older one does, and retiring it works.
  await page.getByRole("link", { name: "Keys" }).click();
  const epochs = (await api("GET", "/api/v1/keys")).data.epochs;
  const currentEpoch = epochs.find((k) => k.current).epoch;
  const old = epochs.find((k) => !k.current && !k.retired_at);
  await page.locator("td[data-label='State']").getByText("Current").waitFor();
  assert.equal(await page.getByRole("button", { name: "Retire epoch " + currentEpoch }).count(), 0);
  await page.getByRole("button", { name: "Retire epoch " + old.epoch }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Retire epoch " + old.epoch }).click();
  await page.getByText("Epoch " + old.epoch + " was retired.").waitFor();
  assert.equal(await page.getByRole("button", { name: "Retire epoch " + old.epoch }).count(), 0);
  assert.deepEqual(page.errors, []);
  await ctx.close();
});
}

test("an admin pairs a technician's phone with a one-time code: no token is pasted, and the code works once", async () => {
  const desk = await context(DESKTOP);
  const admin = await watchedPage(desk);
  await signIn(admin, t.adminToken);
  await admin.getByRole("link", { name: "Tokens" }).click();
  await admin.getByLabel("Whose phone (their name)").fill("Eve (line 2)");
  await admin.getByRole("button", { name: "Issue a pairing code" }).click();
  const code = (await admin.locator("#pairing-code").textContent()).trim();
  assert.match(code, /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
  await admin.getByAltText("QR code of the console's pairing page").waitFor();
  await admin.getByRole("cell", { name: "Eve (line 2) (phone)", exact: true }).waitFor();
  await shot(admin, "admin-pairing-desktop");

  // The phone opens the pairing page (what the QR code holds: no secret in it), and types the
  // code as people do: lower case, without the dash.
  const phoneCtx = await context(PHONE);
  const phone = await watchedPage(phoneCtx);
  await phone.goto(t.base + "/console/#pair");
  const field = phone.getByLabel("Pairing code");
  await field.waitFor();
  assert.ok(await field.evaluate((e) => e === document.activeElement), "the pairing code field has the focus");
  assert.deepEqual(await axeViolations(phone), [], "sign-in page at 360 px");
  assert.deepEqual(await layoutProblems(phone), [], "sign-in page at 360 px");
  await shot(phone, "technician-pair-phone");
  await field.fill(code.replace("-", "").toLowerCase());
  await phone.getByRole("button", { name: "Pair" }).click();
  await phone.getByRole("heading", { name: "Pending operations" }).waitFor();
  assert.match(await phone.locator("#who").innerText(), /Eve \(line 2\) \(phone\)/);
  assert.equal(await phone.getByLabel("Token").count(), 1, "the token field exists but was never used");

  // The code works once.
  const againCtx = await context(PHONE);
  const again = await againCtx.newPage();
  await again.goto(t.base + "/console/#pair");
  await again.getByLabel("Pairing code").fill(code);
  await again.getByRole("button", { name: "Pair" }).click();
  await again.getByText("That pairing code was not accepted.", { exact: false }).waitFor();
  assert.equal((await again.context().cookies()).filter((c) => c.name === "tessera_session").length, 0);

  // Both steps are in the audit log; the code is nowhere in it.
  const events = (await api("GET", "/api/v1/audit?newest=true&limit=50")).data.events;
  const actions = events.map((e) => e.action);
  assert.ok(actions.includes("admin_token.pairing_issued") && actions.includes("admin_token.paired"), actions.join());
  assert.ok(!JSON.stringify(events).includes(code) && !JSON.stringify(events).includes(code.replace("-", "")));
  assert.deepEqual(admin.errors, []);
  assert.deepEqual(phone.errors, []);
  for (const c of [desk, phoneCtx, againCtx]) await c.close();
});
