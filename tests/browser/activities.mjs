// Walks the activities console in headless system Chromium: login, create an activity through the
// form, its page, the check-in page with the QR code (and the script's refresh of it), the list
// and the 三会一课 report. On every page: no console error, no request to another host, a CSRF
// field in every POST form; screenshots at 1280 px and 390 px.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const BASE = process.env.BASE;
const ART = process.env.ARTIFACTS;
const origin = new URL(BASE).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-gpu'],
});
const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
const page = await ctx.newPage();
const problems = [];
// A refused form answers 422 (with the form and its errors), which Chromium logs as a failed load:
// each refusal the walk asks for excuses one such message.
let expected422 = 0;
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  if (expected422 > 0 && /status of 422/.test(m.text())) { expected422 -= 1; return; }
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
  await page.screenshot({ path: `${ART}/activities-${name}-1280.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${ART}/activities-${name}-390.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name}: page wider than 390 px by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 900 });
  shots += 2;
}
const step = (s) => console.log(`ok - ${s}`);
// A `datetime-local` value `hours` from now, in Asia/Shanghai.
const local = (hours) => new Date(Date.now() + (hours + 8) * 3600e3).toISOString().slice(0, 16);

// 1. Log in.
await page.goto(`${BASE}/admin/login`);
await page.fill('input[name=username]', 'browser');
await page.fill('input[name=password]', 'browser-test-password-1');
await Promise.all([page.waitForURL(`${BASE}/admin/`), page.click('button[type=submit]')]);
assert.ok(await page.isVisible('nav.main a[href="/admin/activities"]'), 'the 活动 link is in the navigation');
step('log in');

// 2. Create an activity; a bad capacity first comes back beside its field.
await page.goto(`${BASE}/admin/activities/new`);
await page.fill('#f-title', '浏览器测试：观看专题片');
await page.fill('#f-capacity', '零');
await page.fill('#f-opens', local(-1));
await page.fill('#f-closes', local(24));
await page.fill('#f-starts', local(48));
await page.fill('#f-ends', local(50));
await page.fill('#f-location', '学院报告厅');
await page.fill('#f-description', '请准时到场签到。');
expected422 += 1;
await Promise.all([page.waitForLoadState('load'), page.click('#activity-form button[type=submit]')]);
assert.match(await page.textContent('#f-capacity + .field-error'), /名额/);
await check('form-error');
await page.fill('#f-capacity', '30');
await Promise.all([page.waitForURL(/\/admin\/activities\/\d+$/), page.click('#activity-form button[type=submit]')]);
assert.match(await page.textContent('.flash.ok'), /活动已创建/);
await check('detail');
step('create an activity through the form');

// 3. The check-in page shows the QR code, and the script replaces it with a fresh one.
await Promise.all([page.waitForURL(/\/checkin$/), page.click('#open-checkin')]);
await page.waitForSelector('#checkin-qr svg');
const box = await page.$eval('#checkin-qr svg', (s) => { s.dataset.first = '1'; const r = s.getBoundingClientRect(); return [r.width, r.height]; });
assert.ok(box[0] > 100 && box[1] > 100, `QR code drawn (${box})`);
await check('checkin');
await page.waitForFunction(() => { const s = document.querySelector('#checkin-qr svg'); return s && !s.dataset.first; }, null, { timeout: 40000 });
assert.match(await page.textContent('#checkin-status'), /有效至/);
step('open the check-in page and see the QR code refresh');

// 4. The list with its counts, and the rhythm report.
await page.goto(`${BASE}/admin/activities`);
assert.ok((await page.textContent('main')).includes('0/30'), 'confirmed/capacity shown');
await check('list');
await page.goto(`${BASE}/admin/activities/rhythm`);
await check('rhythm');
step('list and rhythm report');

await browser.close();
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`all activity browser checks passed (${shots} screenshots in ${ART})`);
