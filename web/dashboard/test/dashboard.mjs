// The dashboard in a real browser (Debian's Chromium driven by playwright-core), run by
// tests/tests/dashboard.rs, which owns the backend: it reads this script's stdout and
// answers on its stdin when a step needs something done outside the page.
//
// Environment: DEMO_URL, OPERATOR_URL, SCREENSHOT, CHROMIUM, DEMO_VMS, ALL_VMS.

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(question) {
  console.log(question);
  const answer = await lines.next();
  if (answer.done) throw new Error(`no answer to ${question}`);
  return answer.value.trim();
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const badge = (page, table, name) =>
  page.locator(`#${table} tr[data-name="${name}"] .badge`).textContent();

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const pageErrors = [];
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    await page.goto(process.env.DEMO_URL);
    await page.waitForSelector("body[data-ready=true]", { timeout: 15000 });

    // The demo tenant's VMs, and only theirs.
    const demoVms = Number(process.env.DEMO_VMS);
    await page.waitForFunction((n) => document.querySelectorAll("#vms tbody tr").length === n, demoVms, { timeout: 10000 });
    const tenants = await page.locator("#vms tbody tr td:nth-child(2)").allTextContents();
    check(tenants.every((t) => t === "demo"), `the demo page lists other tenants' VMs: ${tenants}`);
    check((await badge(page, "vms", "web")) === "running", "web is not shown running");

    // A stop from outside the page turns the badge within a second, without a reload.
    const sent = await ask("STOP web");
    check(sent === "sent", `unexpected answer ${sent}`);
    const started = Date.now();
    await page.waitForFunction(
      () => document.querySelector('#vms tr[data-name="web"] .badge')?.textContent === "stopped",
      null,
      { timeout: 1000 },
    );
    console.log(`badge turned after ${Date.now() - started} ms`);

    // Stop from the page: the command goes over the same connection, the answer shows.
    await page.locator('#vms tr[data-name="db"] button', { hasText: "Stop" }).click();
    await page.waitForFunction(() => document.querySelector("#notice")?.textContent.includes("vm stop: accepted"), null, { timeout: 10000 });
    await page.waitForFunction(
      () => document.querySelector('#vms tr[data-name="db"] .badge')?.textContent === "stopped",
      null,
      { timeout: 10000 },
    );

    // Reset demands a confirmation; dismissing it sends nothing.
    check((await badge(page, "pods", "blog")) === "running", "the pod is not shown running");
    page.once("dialog", (dialog) => dialog.dismiss());
    await page.locator('#pods tr[data-name="blog"] button', { hasText: "Reset" }).click();
    await page.waitForFunction(() => document.querySelector("#notice")?.textContent.includes("not confirmed"), null, { timeout: 5000 });
    const afterReset = await ask("RESET dismissed");
    check(afterReset === "no reset", `the backend saw ${afterReset}`);

    // NATS itself refuses another tenant's status to the demo user.
    const refused = await page.evaluate(async () => {
      const sub = window.__berth.nc.subscribe("status.acme.>");
      const closed = sub.closed.then((error) => (error ? String(error.message || error) : "closed without error"));
      const open = new Promise((resolve) => setTimeout(() => resolve("still open"), 5000));
      return Promise.race([closed, open]);
    });
    check(/permission/i.test(refused), `subscribing to status.acme.> was not refused: ${refused}`);

    // The operator sees every tenant; once it shows acme's VM stopped, the demo page has
    // still never shown anything of acme.
    const operator = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await operator.goto(process.env.OPERATOR_URL);
    await operator.waitForSelector("body[data-ready=true]", { timeout: 15000 });
    const allVms = Number(process.env.ALL_VMS);
    await operator.waitForFunction((n) => document.querySelectorAll("#vms tbody tr").length === n, allVms, { timeout: 10000 });
    check((await ask("STOP shop")) === "sent", "the acme stop was not sent");
    await operator.waitForFunction(
      () => document.querySelector('#vms tr[data-name="shop"] .badge')?.textContent === "stopped",
      null,
      { timeout: 10000 },
    );
    const demoText = await page.locator("main").textContent();
    check(!demoText.includes("acme") && !demoText.includes("shop"), "the demo page shows acme's VM");
    const leaked = await page.evaluate(() => [...window.__berth.items.values()].filter((i) => i.tenant !== "demo").length);
    check(leaked === 0, `the demo page received ${leaked} statuses of other tenants`);

    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    check(pageErrors.length === 0, `page errors: ${pageErrors.join("; ")}`);
    console.log("DONE");
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.log(`FAIL: ${error.message}`);
    process.exit(1);
  },
);
