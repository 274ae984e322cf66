// Walks the console in headless system Chromium: login, article write/preview/publish, a push to
// completion (dev-mode fake WeChat), approving a submission, the statistics' SVG charts and a CSV
// download, then the public portal. On every page: no console error, no request to another host,
// a CSRF field in every POST form; screenshots at 1280 px and 390 px.
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
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error on ${page.url()}: ${m.text()}`); });
page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()} on ${page.url()}`); });
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

// 1. Log in.
await page.goto(`${BASE}/admin/`);
assert.match(page.url(), /\/admin\/login$/);
await check('login');
await page.fill('input[name=username]', 'browser');
await page.fill('input[name=password]', 'browser-test-password-1');
await Promise.all([page.waitForURL(`${BASE}/admin/`), page.click('button[type=submit]')]);
await check('dashboard');
step('log in');

// 2. Write, preview and publish an article.
await page.goto(`${BASE}/admin/articles/new`);
await page.fill('#f-title', '浏览器测试文章');
await page.fill('#f-summary', '摘要');
await page.fill('#f-body', '# 学习要点\n\n**认真学习** 党章党规');
await Promise.all([page.waitForLoadState('load'), page.click('button[value=preview]')]);
assert.equal(await page.textContent('#preview strong'), '认真学习');
await check('article-preview');
await Promise.all([page.waitForURL(/\/admin\/articles\/\d+$/), page.click('button[value=save]')]);
assert.match(await page.textContent('.flash.ok'), /草稿已保存/);
const articleId = page.url().split('/').pop();
page.once('dialog', (d) => d.accept());
await page.click('#publish');
// Wait for the page the publish redirect leads to: the draft's page already shows a flash.
await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#confirm-dialog button[value=ok]')]);
assert.match(await page.textContent('.flash.ok'), /已发布/);
await check('article-published');
await page.goto(`${BASE}/admin/articles?status=published`);
assert.ok((await page.content()).includes('浏览器测试文章'));
await check('articles');
step('write, preview and publish an article');

// 3. A push, watched to completion by the page's polling script.
await page.goto(`${BASE}/admin/pushes/new`);
await check('push-new');
await page.check(`input[name=article][value="${articleId}"]`);
await Promise.all([page.waitForURL(/\/admin\/pushes\/\d+$/), page.click('main button[type=submit]')]);
await page.waitForSelector('#push-progress[data-state=completed]', { timeout: 30000 });
assert.equal(await page.textContent('#push-progress .pct'), '100%');
// Dev mode's demo followers: the push really went out, through the built-in fake WeChat.
assert.ok(Number(await page.textContent('#push-progress [data-count=sent]')) > 0, 'sends recorded');
await check('push-detail');
await page.goto(`${BASE}/admin/pushes`);
await check('pushes');
step('create a push and watch its progress reach completed');

// 4. Approve a submission made through the mini-program API.
const api = await ctx.request.post(`${BASE}/api/mp/login`, { data: { code: 'browser_member' } });
assert.ok(api.ok(), `mp login ${api.status()}`);
const token = (await api.json()).token;
const sub = await ctx.request.post(`${BASE}/api/mp/submissions`, {
  headers: { authorization: `Bearer ${token}` }, data: { title: '支部<b>活动</b>投稿', content: '内容' },
});
assert.ok(sub.ok(), `submission ${sub.status()}`);
await page.goto(`${BASE}/admin/moderation`);
assert.ok((await page.textContent('main')).includes('支部<b>活动</b>投稿'), 'title shown as text');
await check('moderation');
await Promise.all([page.waitForLoadState('load'), page.click('button[value=approve]')]);
assert.match(await page.textContent('.flash.ok'), /已通过/);
await page.goto(`${BASE}/admin/moderation?tab=board`);
await check('moderation-board');
step('approve a submission');

// 5. Statistics: the figures as inline SVG charts, a CSV download per table.
await page.goto(`${BASE}/admin/stats`);
assert.ok((await page.locator('svg.chart').count()) >= 4, 'statistics charts');
assert.equal(await page.locator('#stats-pushes svg.chart').count(), 1, 'the push chart');
assert.equal(await page.locator('#stats-pushes a[href^="/admin/pushes/"]').count(), 1, 'the push in the table');
await check('stats');
const csvHref = await page.getAttribute('#stats-pushes a[download]', 'href');
const csv = await ctx.request.get(new URL(csvHref, BASE).href);
assert.ok(csv.ok(), `stats CSV ${csv.status()}`);
assert.match(await csv.text(), /^\uFEFF?push_id,channel,status/);
step('see the statistics as SVG charts and download a CSV');

// 6. The public portal at desktop and phone widths, then an article from it.
await page.goto(`${BASE}/portal`);
assert.ok((await page.textContent('main')).includes('浏览器测试文章'), 'the published article on the portal');
await check('portal');
await page.goto(`${BASE}/portal/board`);
await check('portal-board');
await page.goto(`${BASE}/portal/notices`);
await check('portal-notices');
await page.goto(`${BASE}/portal`);
await Promise.all([page.waitForURL(/\/articles\/\d+$/), page.click(`a[href="/articles/${articleId}"]`)]);
assert.equal(await page.textContent('h1'), '浏览器测试文章');
await check('portal-article');
step('read the portal at 1280 px and 390 px');

await browser.close();
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`all browser checks passed (${shots} screenshots in ${ART})`);
