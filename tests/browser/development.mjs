// Walks the 发展党员 (Party membership development) pages in headless system Chromium: login, the
// pipeline and list, a person's record, a step refused beside its date (the rule named), then the
// same step recorded through the form and shown in the steps table, and the deadlines page. On
// every page: no console error, no request to another host, a CSRF field in every POST form;
// screenshots at 1280 px and 390 px.
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
  await page.screenshot({ path: `${ART}/development-${name}-1280.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${ART}/development-${name}-390.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name}: page wider than 390 px by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 900 });
  shots += 2;
}
const step = (s) => console.log(`ok - ${s}`);

// A resident ID number with its check digit (GB 11643), from the first 17 digits.
function idNumber(first17) {
  const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...first17].reduce((s, d, i) => s + Number(d) * w[i], 0);
  return first17 + '10X98765432'[sum % 11];
}

// 0. A member, their development record and the application letter, through the admin API (the
// record is opened from the members' side; this walk is about the development pages).
const login = await ctx.request.post(`${BASE}/api/admin/login`, { data: { username: USER, password: PASSWORD } });
assert.ok(login.ok(), `api login ${login.status()}`);
const auth = { authorization: `Bearer ${(await login.json()).token}` };
const suffix = String(Date.now()).slice(-6);
const name = `发展甲${suffix}`;
const imported = await ctx.request.post(`${BASE}/api/admin/members`, {
  headers: auth,
  data: [{ name, phone: `137${suffix}01`, category: 'student', org_unit: '浏览器测试支部', id_number: idNumber('11010120000501123') }],
});
assert.ok(imported.ok(), `roster import ${imported.status()} ${await imported.text()}`);
const members = await (await ctx.request.get(`${BASE}/api/admin/members?q=${encodeURIComponent(name)}`, { headers: auth })).json();
const member = members.members.find((m) => m.name === name);
assert.ok(member, `member ${name} listed`);
const created = await ctx.request.post(`${BASE}/api/admin/development`, { headers: auth, data: { member_id: member.id } });
assert.ok(created.ok(), `development record ${created.status()} ${await created.text()}`);
const record = (await created.json()).record.id;
const upload = await ctx.request.post(`${BASE}/api/admin/development/${record}/documents?kind=${encodeURIComponent('入党申请书')}&file_name=scan.pdf`, {
  headers: { ...auth, 'content-type': 'application/pdf' },
  data: Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n%%EOF\n', 'latin1'),
});
assert.ok(upload.ok(), `document upload ${upload.status()} ${await upload.text()}`);
const doc = (await upload.json()).id;

// 1. Log in and open the pipeline from the navigation.
await page.goto(`${BASE}/admin/login`);
await page.fill('input[name=username]', USER);
await page.fill('input[name=password]', PASSWORD);
await Promise.all([page.waitForURL(`${BASE}/admin/`), page.click('button[type=submit]')]);
await Promise.all([page.waitForURL(`${BASE}/admin/development`), page.click('nav.main a[href="/admin/development"]')]);
assert.ok(await page.isVisible('#pipeline'), 'the pipeline');
assert.ok((await page.textContent('main')).includes(name), 'the person is listed');
await check('list');
step('open the development list');

// 2. The record; a step dated before the person may apply comes back beside the date.
await Promise.all([page.waitForURL(`${BASE}/admin/development/${record}`), page.click(`a[href="/admin/development/${record}"]`)]);
assert.ok((await page.textContent('h1')).includes(name));
await check('record');
await page.selectOption('#f-step', 'application');
await page.fill('#f-date', '2017-09-10');
await page.check(`input[name=document][value="${doc}"]`);
expected422 += 1;
await Promise.all([page.waitForLoadState('load'), page.click('#step-form button[type=submit]')]);
assert.match(await page.textContent('#f-date + .field-error'), /applicant_min_age_18/);
assert.equal(await page.locator('#steps tbody tr[id^=entry-]').count(), 0, 'nothing recorded');
await check('step-refused');
step('a step that breaks a rule is refused beside its date');

// 3. Advance one step: the application, recorded and shown.
await page.fill('#f-date', '2021-09-10');
if (!(await page.isChecked(`input[name=document][value="${doc}"]`))) await page.check(`input[name=document][value="${doc}"]`);
await Promise.all([page.waitForURL(`${BASE}/admin/development/${record}`), page.click('#step-form button[type=submit]')]);
await page.waitForSelector('#steps tbody tr[id^=entry-]');
const row = await page.textContent('#steps tbody tr[id^=entry-]');
assert.ok(row.includes('2021-09-10'), `the step is listed: ${row}`);
assert.ok(await page.locator('.flash.ok').count() === 1, 'a success message');
await check('step-recorded');
step('advance the person one step through the form');

// 4. The deadlines page and the list by stage.
await page.goto(`${BASE}/admin/development/deadlines`);
await check('deadlines');
await page.goto(`${BASE}/admin/development`);
assert.ok((await page.textContent('main')).includes(name));
await check('list-after');
step('deadlines and the list after the step');

await browser.close();
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`all development browser checks passed (${shots} screenshots in ${ART})`);
