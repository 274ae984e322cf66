// Walks the roster pages in headless system Chromium: log in, create an org unit, import a roster
// CSV (chosen as a file) with one bad row and see that row's error, import the corrected CSV, find
// the masked phone in the list and reveal it once. On every page: no console error, no request to
// another host, a CSRF field in every POST form; screenshots at 1280 px and 390 px.
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
// A form answered with its errors comes back 422 (on purpose); Chromium logs that as an error.
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
  await page.screenshot({ path: `${ART}/members-${name}-1280.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${ART}/members-${name}-390.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name}: page wider than 390 px by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 900 });
  shots += 2;
}
const step = (s) => console.log(`ok - ${s}`);

// 1. Log in and open the members page from the navigation.
await page.goto(`${BASE}/admin/login`);
await page.fill('input[name=username]', 'browser');
await page.fill('input[name=password]', 'browser-test-password-1');
await Promise.all([page.waitForURL(`${BASE}/admin/`), page.click('button[type=submit]')]);
await Promise.all([page.waitForURL(`${BASE}/admin/members`), page.click('nav.main a[href="/admin/members"]')]);
await check('list-empty');
step('log in and open the members page');

// 2. An org unit for the roster.
await page.goto(`${BASE}/admin/org`);
await page.fill('#org-new input[name=name]', '浏览器测试支部');
await page.selectOption('#org-new select[name=kind]', 'branch');
await Promise.all([page.waitForLoadState('load'), page.click('#org-new button[type=submit]')]);
assert.match(await page.textContent('.flash.ok'), /已创建/);
assert.ok((await page.textContent('#org-tree')).includes('浏览器测试支部'));
await check('org');
step('create an org unit');

// 3. Import a CSV file with one bad row: the row's error, nothing imported.
const head = 'name,phone,category,monthly_income_fen,org_unit\n';
const bad = `${head}浏览器甲,13587653001,employed,800000,浏览器测试支部\n浏览器乙,1358765,employed,700000,浏览器测试支部\n浏览器丙,13587653003,student,,浏览器测试支部\n`;
await page.goto(`${BASE}/admin/members/import`);
await page.setInputFiles('#f-file', { name: 'roster.csv', mimeType: 'text/csv', buffer: Buffer.from(bad, 'utf-8') });
await page.waitForFunction(() => document.getElementById('f-csv').value.includes('浏览器丙'));
expect422 = true;
const [answer] = await Promise.all([page.waitForNavigation(), page.click('#import-submit')]);
expect422 = false;
assert.equal(answer.status(), 422);
const report = await page.textContent('#import-errors');
assert.ok(report.includes('2') && report.includes('手机号') && report.includes('phone must be'), report);
assert.ok(!report.includes('浏览器甲'), 'the report names rows and fields, not the data');
assert.match(await page.textContent('#import-summary'), /1 行有误，未导入任何记录/);
await check('import-error');
step('import a CSV with one bad row and see the row error');

// 4. Corrected (the CSV stayed in the form): imported.
await page.fill('#f-csv', bad.replace('1358765,', '13587653002,'));
await Promise.all([page.waitForLoadState('load'), page.click('#import-submit')]);
assert.match(await page.textContent('#import-summary'), /新增 3 人/);
await check('import-done');
await page.goto(`${BASE}/admin/members`);
const roster = await page.textContent('#roster');
assert.ok(roster.includes('135****3001') && !roster.includes('13587653001'), 'phones are masked');
await check('list');
step('import the corrected CSV; the list masks phones');

// 5. A member's page: reveal once after the confirmation dialog.
await Promise.all([page.waitForURL(/\/admin\/members\/\d+$/), page.click('#roster a:text("浏览器甲")')]);
assert.equal(await page.textContent('#phone'), '135****3001');
await check('member');
await page.click('#reveal');
await page.click('#confirm-dialog button[value=ok]');
// The confirmed form posts and the revealed page replaces this one: wait for it, not for "load"
// (which the current page has already reached).
await page.waitForSelector('#revealed', { timeout: 15000 });
assert.equal(await page.textContent('#phone'), '13587653001');
assert.ok(await page.isVisible('#revealed'));
await check('member-revealed');
step('reveal a member once');

await browser.close();
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`all members browser checks passed (${shots} screenshots in ${ART})`);
