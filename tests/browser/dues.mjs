// Walks the dues (党费) pages in headless system Chromium: login, open a month through the form
// (a second submit makes no bill), the month's bills in yuan, an adjustment refused next to its
// field, the printable ledger (and its print stylesheet). On every page: no console error, no
// request to another host, a CSRF field in every POST form; screenshots at 1280 px and 390 px.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const BASE = process.env.BASE;
const ART = process.env.ARTIFACTS;
const USER = process.env.DANGJIAN_ADMIN_USER || 'browser';
const PASSWORD = process.env.DANGJIAN_ADMIN_PASSWORD || 'browser-test-password-1';
const origin = new URL(BASE).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-gpu'],
});
const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
const page = await ctx.newPage();
const problems = [];
// A refused form answers 422 (with the page and its field errors), which Chromium reports as a
// console error: expected only where the script submits a wrong form on purpose.
let expect422 = false;
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  if (expect422 && /status of 422/.test(m.text())) return;
  problems.push(`console error on ${page.url()}: ${m.text()}`);
});
page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
page.on('request', (r) => {
  const u = new URL(r.url());
  if (u.protocol !== 'data:' && u.origin !== origin) problems.push(`request to another host: ${r.url()}`);
});

let shots = 0;
async function check(name) {
  const forms = await page.$$eval('form[method=post]', (fs) => fs.map((f) => [f.action, !!f.querySelector('input[type=hidden][name=csrf][value]:not([value=""])')]));
  for (const [action, ok] of forms) assert.ok(ok, `form ${action} on ${page.url()} has no CSRF field`);
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: `${ART}/${name}-1280.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${ART}/${name}-390.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name}: page wider than 390 px by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 900 });
  shots += 2;
}
const step = (s) => console.log(`ok - ${s}`);

// 0. A roster through the admin API (the console's own import page belongs to the members pages).
const login = await ctx.request.post(`${BASE}/api/admin/login`, { data: { username: USER, password: PASSWORD } });
assert.ok(login.ok(), `api login ${login.status()}`);
const token = (await login.json()).token;
const suffix = String(Date.now()).slice(-6);
const imported = await ctx.request.post(`${BASE}/api/admin/members`, {
  headers: { authorization: `Bearer ${token}` },
  data: [
    { name: `党费甲${suffix}`, phone: `139${suffix}01`, category: 'employed', monthly_income_fen: 812345, org_unit: '浏览器测试支部' },
    { name: `党费乙${suffix}`, phone: `139${suffix}02`, category: 'student', org_unit: '浏览器测试支部' },
  ],
});
assert.ok(imported.ok(), `roster import ${imported.status()} ${await imported.text()}`);

// 1. Log in.
await page.goto(`${BASE}/admin/login`);
await page.fill('input[name=username]', USER);
await page.fill('input[name=password]', PASSWORD);
await Promise.all([page.waitForURL(`${BASE}/admin/`), page.click('button[type=submit]')]);
step('log in');

// 2. Open this month through the form; a second submit makes nothing new.
await page.click('nav.main a[href="/admin/dues"]');
await page.waitForURL(`${BASE}/admin/dues`);
await check('dues-months');
const month = await page.inputValue('input[name=month]');
assert.match(month, /^\d{4}-\d{2}$/);
await Promise.all([page.waitForURL(/\/admin\/dues\/bills\?month=/), page.click('#assess')]);
assert.match(await page.textContent('.flash.ok'), /新生成 2 张账单/);
step('open a month');

// 3. The bills, in yuan.
const table = await page.textContent('main table');
assert.ok(table.includes(`党费甲${suffix}`) && table.includes('121.85') && table.includes('0.20'), table);
await check('dues-bills');
await page.goto(`${BASE}/admin/dues`);
await Promise.all([page.waitForURL(/\/admin\/dues\/bills\?month=/), page.click('#assess')]);
assert.match(await page.textContent('.flash.ok'), /新生成 0 张账单/);
await page.goto(`${BASE}/admin/dues`);
assert.match(await page.textContent(`tr[data-month="${month}"]`), /已开账/);
step('see the bills; opening again makes none');

// 4. An adjustment without a reason: the error sits under the field, nothing changes.
await page.goto(`${BASE}/admin/dues/bills?month=${month}&q=${encodeURIComponent(`党费甲${suffix}`)}`);
await Promise.all([page.waitForURL(/\/admin\/dues\/bills\/\d+$/), page.click('main table a:text("调整")')]);
await page.fill('#f-amount', '100.00');
await page.fill('#f-reason', '');
expect422 = true;
await Promise.all([page.waitForLoadState('load'), page.click('main form[action$="/adjust"] button[type=submit]')]);
assert.match(await page.textContent('#f-reason + .field-error'), /请填写调整原因/);
assert.equal(await page.textContent('[data-amount]'), '121.85');
await check('dues-adjust-refused');
expect422 = false;
step('an adjustment without a reason is refused next to its field');

// 5. The printable ledger: title, totals, signature line; printing hides the navigation and buttons.
await page.goto(`${BASE}/admin/dues`);
await Promise.all([page.waitForURL(/\/admin\/dues\/ledger\?month=/), page.click(`tr[data-month="${month}"] a:text("台账")`)]);
assert.match(await page.textContent('h1.ledger-title'), /党费收缴台账/);
assert.equal(await page.textContent('[data-total=due]'), '122.05');
assert.ok((await page.textContent('.ledger-sign')).includes('党支部书记签字'));
assert.ok(await page.getAttribute('a[download]', 'href'), 'the CSV link');
await check('dues-ledger');
await page.emulateMedia({ media: 'print' });
assert.equal(await page.isVisible('header.top'), false, 'no navigation in print');
assert.equal(await page.isVisible('button[data-print]'), false, 'no buttons in print');
assert.equal(await page.isVisible('h1.ledger-title'), true);
await page.screenshot({ path: `${ART}/dues-ledger-print.png`, fullPage: true });
shots += 1;
await page.emulateMedia({ media: 'screen' });
step('open the printable ledger');

await browser.close();
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`all dues browser checks passed (${shots} screenshots in ${ART})`);
