// Walks the editors' content pages in headless system Chromium: login, the categories page (create
// a category, see it counted, delete it after the confirmation), the banners page (a window that
// ends before it starts is refused beside the field, then the banner is created and shown in the
// preview), and a submission from the mini-program turned into an article draft from the
// moderation queue (twice: the same draft). On every page: no console error, no request to another
// host, a CSRF field in every POST form; screenshots at 1280 px and 390 px.
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
  await page.screenshot({ path: `${ART}/articles-${name}-1280.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${ART}/articles-${name}-390.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name}: page wider than 390 px by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 900 });
  shots += 2;
}
const step = (s) => console.log(`ok - ${s}`);
// Confirm the console's dialog after a click on a form with data-confirm.
// A destructive action: its button, then OK in the confirmation dialog, then the page the form's
// redirect leads to (waiting for a `.flash` alone could read the previous page's message).
async function confirmed(selector) {
  await page.click(selector);
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#confirm-dialog button[value=ok]')]);
}

// 1. Log in.
await page.goto(`${BASE}/admin/login`);
await page.fill('input[name=username]', USER);
await page.fill('input[name=password]', PASSWORD);
await Promise.all([page.waitForURL(`${BASE}/admin/`), page.click('button[type=submit]')]);
step('log in');

// 2. Categories: from the articles list, create one, see it with its count, delete it.
await page.goto(`${BASE}/admin/articles`);
await Promise.all([page.waitForURL(`${BASE}/admin/articles/categories`), page.click('main a[href="/admin/articles/categories"]')]);
await check('categories');
await page.fill('#c-name', '党建动态');
expected422 += 1;
await Promise.all([page.waitForLoadState('load'), page.click('#category-form button[type=submit]')]);
assert.match(await page.textContent('#c-name + .field-error'), /同名/);
await page.fill('#c-name', '浏览器栏目');
await Promise.all([page.waitForURL(`${BASE}/admin/articles/categories`), page.click('#category-form button[type=submit]')]);
assert.match(await page.textContent('.flash.ok'), /栏目已创建/);
const row = page.locator('tr[data-category="浏览器栏目"]');
assert.equal((await row.locator('td.num').first().textContent()).trim(), '0', 'no articles yet');
await check('category-created');
await confirmed('tr[data-category="浏览器栏目"] form[data-confirm] button');
assert.match(await page.textContent('.flash.ok'), /栏目已删除/);
assert.equal(await page.locator('tr[data-category="浏览器栏目"]').count(), 0);
step('create and delete a category');

// 3. Banners: the window error beside its field, then created and in the preview.
await page.click('main a[href="/admin/articles/banners"]');
await page.waitForURL(`${BASE}/admin/articles/banners`);
await page.click('main a[href="/admin/articles/banners/new"]');
await page.waitForURL(`${BASE}/admin/articles/banners/new`);
await page.fill('#b-title', '浏览器横幅');
await page.fill('#b-image', `${BASE}/static/banner-1.svg`);
const article = await page.$eval('#b-article option[value]:not([value=""])', (o) => o.value);
await page.selectOption('#b-article', article);
await page.fill('#b-from', '2026-07-02T08:00');
await page.fill('#b-until', '2026-07-01T08:00');
expected422 += 1;
await Promise.all([page.waitForLoadState('load'), page.click('#banner-form button[type=submit]')]);
assert.match(await page.textContent('#b-until + .field-error'), /结束时间必须晚于开始时间/);
assert.equal(await page.inputValue('#b-title'), '浏览器横幅', 'the form keeps what was typed');
await check('banner-refused');
await page.fill('#b-from', '');
await page.fill('#b-until', '');
await Promise.all([page.waitForURL(`${BASE}/admin/articles/banners`), page.click('#banner-form button[type=submit]')]);
assert.match(await page.textContent('.flash.ok'), /横幅已创建/);
assert.ok((await page.textContent('#banner-preview')).includes('浏览器横幅'), 'in the preview');
await page.waitForFunction(() => [...document.querySelectorAll('#banner-preview img')].every((i) => i.complete && i.naturalWidth > 0));
await check('banners');
const mp = await (await ctx.request.get(`${BASE}/api/mp/banners`)).json();
assert.ok(mp.items.some((b) => b.title === '浏览器横幅'), 'the mini-program gets it too');
step('create a banner and see the preview');

// 4. A submission from the mini-program becomes an article draft, with its attribution.
const api = await ctx.request.post(`${BASE}/api/mp/login`, { data: { code: 'browser_author' } });
assert.ok(api.ok(), `mp login ${api.status()}`);
const token = (await api.json()).token;
const sub = await ctx.request.post(`${BASE}/api/mp/submissions`, {
  headers: { authorization: `Bearer ${token}` }, data: { title: '浏览器来稿', content: '支部开展主题党日活动。' },
});
assert.ok(sub.ok(), `submission ${sub.status()}`);
const subId = (await sub.json()).id;
await page.goto(`${BASE}/admin/moderation`);
await check('moderation');
const toDraft = `form[action="/admin/moderation/submissions/${subId}/draft"] button`;
await Promise.all([page.waitForURL(/\/admin\/articles\/\d+$/), page.click(toDraft)]);
const draftUrl = page.url();
assert.match(await page.textContent('.flash.ok'), /已转为文章草稿/);
assert.equal(await page.inputValue('#f-title'), '浏览器来稿');
assert.match(await page.inputValue('#f-source'), /^来稿：/);
assert.match(await page.inputValue('#f-body'), /主题党日/);
await check('draft');
await page.goto(`${BASE}/admin/moderation`);
await Promise.all([page.waitForURL(/\/admin\/articles\/\d+$/), page.click(toDraft)]);
assert.equal(page.url(), draftUrl, 'the same draft the second time');
step('turn a submission into an article draft');

await browser.close();
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`all article browser checks passed (${shots} screenshots in ${ART})`);
