// Real-browser tests of pgfleet's HTML dashboard: Debian's headless Chromium, driven by
// puppeteer-core, against a live `pgfleet serve` that the Rust harness started (see README.md).
//
// Environment (all set by the harness; a missing one fails the file at once, it never skips):
//   PGFLEET_DASHBOARD_URL   base URL of the dashboard, e.g. http://127.0.0.1:40123
//   PGFLEET_ADMIN_TOKEN     an admin token
//   PGFLEET_READ_TOKEN      a read-only token
//   PGFLEET_TENANT_KEY      a ready tenant's key, e.g. alice@example.com
//   PGFLEET_TENANT_URL      a postgres:// admin URL connected to that tenant's database
//   PGFLEET_DROP_SQL        SQL that drops one of the tenant's tables,
//                           e.g. DROP TABLE "t0123".chat_threads CASCADE
//   PGFLEET_DROPPED_TABLE   that table's name, e.g. chat_threads
// Optional:
//   PGFLEET_SCREENSHOT_DIR  where a full-page PNG of each page visited goes (01-login.png,
//                           02-overview.png, ...); none are taken without it
//   CHROMIUM                the browser binary (default /usr/bin/chromium, Debian's package
//                           `chromium`: bash scripts/bootstrap.sh --with-chromium)
//
// The flows, each in its own browser context (own cookies), steps in order; once a step of a flow
// fails, its later steps are skipped (the run fails all the same):
//   1. admin: sign in, overview, tenants (search, paging), the tenant page, the table dropped with
//      PGFLEET_DROP_SQL, Check shows the drift, Fix repairs it, Check is clean, servers, events,
//      a rollout watched until done over server-sent events, sign out;
//   2. read token: a wrong token is refused, sign in, Check works, no Fix / Drop / Reset / rollout
//      forms, a forged Fix is refused with 403;
//   3. forgery: Fix without or with a wrong CSRF token is refused with 403; Drop and Reset with a
//      confirmation that is not the key are refused and leave the tenant alone.
import assert from 'node:assert/strict';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';
import puppeteer from 'puppeteer-core';

// ---------------------------------------------------------------------------------------------
// The environment contract

const REQUIRED = [
  'PGFLEET_DASHBOARD_URL',
  'PGFLEET_ADMIN_TOKEN',
  'PGFLEET_READ_TOKEN',
  'PGFLEET_TENANT_KEY',
  'PGFLEET_TENANT_URL',
  'PGFLEET_DROP_SQL',
  'PGFLEET_DROPPED_TABLE',
];
const missing = REQUIRED.filter((name) => !process.env[name]);
if (missing.length > 0) {
  throw new Error(
    `pgfleet dashboard browser tests: missing environment variable(s) ${missing.join(', ')}. ` +
      'These tests run against a live `pgfleet serve`; the Rust harness sets them (see tests/browser/README.md).',
  );
}

const BASE = new URL(process.env.PGFLEET_DASHBOARD_URL);
const ADMIN_TOKEN = process.env.PGFLEET_ADMIN_TOKEN;
const READ_TOKEN = process.env.PGFLEET_READ_TOKEN;
const KEY = process.env.PGFLEET_TENANT_KEY;
const TENANT_URL = process.env.PGFLEET_TENANT_URL;
const DROP_SQL = process.env.PGFLEET_DROP_SQL;
const DROPPED_TABLE = process.env.PGFLEET_DROPPED_TABLE;
const SCREENSHOT_DIR = process.env.PGFLEET_SCREENSHOT_DIR || null;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

try {
  accessSync(CHROMIUM, fsConstants.X_OK);
} catch {
  throw new Error(
    `pgfleet dashboard browser tests: no Chromium at ${CHROMIUM} ` +
      '(Debian: bash scripts/bootstrap.sh --with-chromium; or set CHROMIUM to a Chromium/Chrome binary)',
  );
}

// A broken page fails fast instead of hanging.
const WAIT_MS = 15_000;
const STEP = { timeout: 45_000 };
const ROLLOUT_MS = 60_000;
const NAV_PATHS = ['/', '/tenants', '/servers', '/rollouts', '/events'];
const ROLLOUT_STATES = ['running', 'done', 'failed', 'abandoned'];

// The table PGFLEET_DROP_SQL drops, schema-qualified as written there (e.g. "t0123".chat_threads),
// to check in the database that it is gone and back; null when the SQL has another shape.
const DROPPED_QUALIFIED = (() => {
  const name = String.raw`(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`;
  const m = new RegExp(String.raw`drop\s+table\s+(?:if\s+exists\s+)?(${name}(?:\s*\.\s*${name})?)`, 'i').exec(DROP_SQL);
  return m ? m[1].replace(/\s+/g, '') : null;
})();

// ---------------------------------------------------------------------------------------------
// Helpers

/** An absolute URL of the dashboard. */
const url = (path) => new URL(path, BASE).href;
/** The path of a URL (percent-encoding kept). */
const pathOf = (href) => new URL(href).pathname;
/** The tenant page's path as the contract writes it: /tenants/<percent-encoded key>. */
const TENANT_PATH = `/tenants/${encodeURIComponent(KEY)}`;
/** The submit control of a form. */
const submitOf = (form) =>
  `${form} :is(button:not([type]), button[type="submit"], input[type="submit"], input[type="image"])`;

let browser;
let shots = 0;

before(async () => {
  if (SCREENSHOT_DIR) await mkdir(SCREENSHOT_DIR, { recursive: true });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // --no-sandbox: Chromium's sandbox refuses to run as root (the harness, CI).
    args: ['--no-sandbox', '--disable-gpu', '--headless=new', '--disable-dev-shm-usage'],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh browser context (its own cookie jar), a page in it and the page's uncaught errors. */
async function newSession() {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.setDefaultNavigationTimeout(WAIT_MS);
  await page.setViewport({ width: 1280, height: 900 });
  const errors = [];
  page.on('pageerror', (err) => errors.push(`${page.url()}: ${err.message ?? err}`));
  return { context, page, errors };
}

/** A name for a screenshot of the page shown: overview, tenants, tenant, rollout, ... */
function slugOf(page) {
  const parts = pathOf(page.url()).split('/').filter(Boolean);
  if (parts.length === 0) return 'overview';
  if (parts.length === 2 && ['tenants', 'rollouts'].includes(parts[0])) return parts[0].slice(0, -1);
  return parts.join('-').replace(/[^A-Za-z0-9-]+/g, '_');
}

/** A full-page screenshot NN-slug.png in PGFLEET_SCREENSHOT_DIR, when set. */
async function shot(page, slug = slugOf(page)) {
  if (!SCREENSHOT_DIR) return;
  shots += 1;
  await page.screenshot({ path: join(SCREENSHOT_DIR, `${String(shots).padStart(2, '0')}-${slug}.png`), fullPage: true });
}

/** GET a page of the dashboard; it must answer 200 with HTML. A screenshot unless `slug` is false. */
async function visit(page, path, slug) {
  const res = await page.goto(url(path), { waitUntil: 'load' });
  assert.ok(res, `GET ${path}: no response`);
  assert.equal(res.status(), 200, `GET ${path} answered ${res.status()}, expected 200 (landed on ${page.url()})`);
  assert.match(res.headers()['content-type'] ?? '', /^text\/html/, `GET ${path}: Content-Type is not text/html`);
  if (slug !== false) await shot(page, slug);
  return res;
}

/** Clicks the submit control of `form` and waits for the navigation it starts; the final response. */
async function submit(page, form, slug) {
  await page.waitForSelector(submitOf(form), { visible: true });
  let res;
  try {
    [res] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(submitOf(form))]);
  } catch (err) {
    throw new Error(`submitting ${form} on ${page.url()} did not load a page: ${err.message}`);
  }
  assert.ok(res, `submitting ${form}: no response`);
  await shot(page, slug);
  return res;
}

/** The first response of a navigation's redirect chain: [status, method, path]. */
function firstHop(res) {
  const chain = res.request().redirectChain();
  if (chain.length === 0) return [res.status(), res.request().method(), pathOf(res.url())];
  const first = chain[0];
  return [first.response()?.status(), first.method(), pathOf(first.url())];
}

/** Text of the first element matching `selector`, trimmed; null when there is none. */
const textOf = (page, selector) => page.$eval(selector, (el) => el.textContent.trim()).catch(() => null);
const count = (page, selector) => page.$$eval(selector, (els) => els.length);
const exists = async (page, selector) => (await page.$(selector)) !== null;

/** Every signed-in page: the nav links and the sign-out form with its CSRF token. */
async function assertChrome(page) {
  const where = pathOf(page.url());
  const links = await page.$$eval('nav a[href]', (as) => as.map((a) => new URL(a.href).pathname));
  for (const p of NAV_PATHS) {
    assert.ok(links.includes(p), `${where}: nav has no link to ${p} (links: ${links.join(', ') || 'none'})`);
  }
  const logout = await page
    .$eval('form#logout', (f) => ({
      method: (f.getAttribute('method') ?? 'get').toLowerCase(),
      action: new URL(f.action).pathname,
      csrf: f.querySelector('input[name="csrf"]')?.value ?? null,
      csrfType: f.querySelector('input[name="csrf"]')?.type ?? null,
    }))
    .catch(() => null);
  assert.ok(logout, `${where}: no form#logout`);
  assert.equal(logout.method, 'post', `${where}: form#logout must POST`);
  assert.equal(logout.action, '/logout', `${where}: form#logout must post to /logout`);
  assert.ok(logout.csrf, `${where}: form#logout has no hidden input[name=csrf] with a value`);
  assert.equal(logout.csrfType, 'hidden', `${where}: form#logout's csrf input must be hidden`);
  assert.ok(await exists(page, submitOf('form#logout')), `${where}: form#logout has no submit button`);
}

/** GET / without a session: 303 to /login, which shows the sign-in form. */
async function assertSentToLogin(page, slug) {
  const res = await page.goto(url('/'), { waitUntil: 'load' });
  const [status, , from] = firstHop(res);
  assert.equal(from, '/', 'the navigation started at /');
  assert.equal(status, 303, `GET / without a session answered ${status}, expected 303 to /login`);
  assert.equal(pathOf(page.url()), '/login', `GET / without a session landed on ${page.url()}, expected /login`);
  assert.equal(res.status(), 200, `GET /login answered ${res.status()}`);
  assert.ok(await exists(page, 'form#login'), '/login has no form#login');
  await shot(page, slug);
}

/** Fills in the token on /login and submits it; the final response. */
async function typeToken(page, token, slug) {
  if (pathOf(page.url()) !== '/login') await page.goto(url('/login'), { waitUntil: 'load' });
  const type = await page.$eval('form#login input[name="token"]', (i) => i.type).catch(() => null);
  assert.equal(type, 'password', 'form#login needs an input[name=token] of type password');
  await page.$eval('form#login input[name="token"]', (i) => {
    i.value = '';
  });
  await page.type('form#login input[name="token"]', token);
  return submit(page, 'form#login', slug);
}

/** Signs in with `token`: 303 to / and the overview; checks the session cookie's attributes. */
async function signIn(context, page, token, slug) {
  const res = await typeToken(page, token, slug);
  const [status, method, from] = firstHop(res);
  assert.equal(`${method} ${from}`, 'POST /login', 'signing in posts form#login to /login');
  assert.equal(status, 303, `POST /login with a valid token answered ${status}, expected 303 to /`);
  assert.equal(pathOf(page.url()), '/', `signing in landed on ${page.url()}, expected /`);
  assert.equal(res.status(), 200, `GET / after signing in answered ${res.status()}`);
  const cookie = (await context.cookies()).find((c) => c.name === 'pgfleet_session');
  assert.ok(cookie, 'signing in set no pgfleet_session cookie');
  assert.equal(cookie.httpOnly, true, 'the pgfleet_session cookie must be HttpOnly');
  assert.equal(cookie.sameSite, 'Strict', `the pgfleet_session cookie must be SameSite=Strict, is ${cookie.sameSite}`);
  const visible = await page.evaluate(() => document.cookie);
  assert.ok(!visible.includes('pgfleet_session'), 'the session cookie must not be readable from JavaScript');
  return cookie;
}

/** The fields of a form as its submission would send them (hidden inputs included). */
const formFields = (page, form) =>
  page.$eval(form, (f) => [...new FormData(f)].map(([k, v]) => [k, String(v)]));
const formAction = (page, form) => page.$eval(form, (f) => f.action);

/** A POST from inside the page (same origin, the page's cookies), not following redirects. */
const postFromPage = (page, action, fields) =>
  page.evaluate(
    async (action, fields) => {
      const res = await fetch(action, {
        method: 'POST',
        body: new URLSearchParams(fields),
        redirect: 'manual',
        credentials: 'same-origin',
      });
      // A redirect answers as an opaque response of status 0.
      return { status: res.status, type: res.type };
    },
    action,
    fields,
  );

/** The findings of #drift after a Check: its class list and the text of each li.finding. */
const driftOf = (page) =>
  page.$eval('#drift', (d) => ({
    clean: d.classList.contains('clean'),
    findings: [...d.querySelectorAll('li.finding')].map((li) => li.textContent.trim()),
  }));

/** Runs `fn` with a pg client on the tenant's database (short lock and statement timeouts). */
async function withTenantDb(fn) {
  const client = new pg.Client({ connectionString: TENANT_URL, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await client.query("set lock_timeout = '5s'");
    await client.query("set statement_timeout = '15s'");
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * The OID of the table PGFLEET_DROP_SQL drops: null while it does not exist, undefined when its
 * name is not known. A new OID means the table was dropped and made again (a reset).
 */
async function droppedTableOid() {
  if (!DROPPED_QUALIFIED) return undefined;
  return withTenantDb(async (c) => {
    const { rows } = await c.query('select to_regclass($1)::oid::text as oid', [DROPPED_QUALIFIED]);
    return rows[0].oid;
  });
}

/**
 * `it` for the tests of one flow, in order: `step` for one the later tests build on (once it
 * fails they are skipped, naming it), `check` for one they do not.
 */
function flow() {
  let failed = null;
  const run = (gate) => (name, fn, opts = STEP) =>
    it(name, opts, async (t) => {
      if (failed) {
        t.skip(`the earlier step "${failed}" failed`);
        return;
      }
      try {
        await fn(t);
      } catch (err) {
        if (gate) failed = name;
        throw err;
      }
    });
  return { step: run(true), check: run(false) };
}

// Learnt by the admin flow, used by the others: the Fix form's action URL.
let fixAction = null;

// ---------------------------------------------------------------------------------------------
// 1. The admin's walk through the dashboard

describe('admin', () => {
  const { step, check } = flow();
  let context;
  let page;
  let errors;
  let tenantHref;
  let sessionCookie;

  before(async () => {
    ({ context, page, errors } = await newSession());
  });
  after(async () => {
    await context?.close();
  });

  step('GET / without a session answers 303 to /login, which has the sign-in form', async () => {
    await assertSentToLogin(page, 'login');
    assert.ok(await exists(page, submitOf('form#login')), 'form#login has no submit button');
  });

  step('signing in with the admin token answers 303 to / and sets an HttpOnly SameSite=Strict cookie', async () => {
    sessionCookie = await signIn(context, page, ADMIN_TOKEN, 'overview');
  });

  check('the overview counts at least one ready tenant and lists the servers', async () => {
    await assertChrome(page);
    assert.equal(await textOf(page, 'h1'), 'Overview', 'the overview\'s h1 must read "Overview"');
    const ready = await textOf(page, '#tenants-by-state [data-state="ready"] .count');
    assert.ok(ready !== null, 'no #tenants-by-state [data-state="ready"] .count on the overview');
    const n = Number(/\d+/.exec(ready)?.[0]);
    assert.ok(n >= 1, `the overview counts ${ready} ready tenants, expected at least 1 (${KEY} is ready)`);
    assert.ok(await exists(page, '#servers'), 'no #servers table on the overview');
    const servers = await count(page, '#servers tr:has(td)');
    assert.ok(servers >= 1, `#servers has ${servers} server rows, expected at least 1`);
  });

  step('the tenants page lists tenants, searches by key and pages with a#next', async () => {
    await visit(page, '/tenants', 'tenants');
    await assertChrome(page);
    const rowsSel = 'table#tenants tbody tr[data-key]';
    const firstPage = await page.$$eval(rowsSel, (rs) => rs.map((r) => r.dataset.key));
    assert.ok(firstPage.length >= 1, '/tenants lists no tenant (table#tenants tbody tr[data-key])');
    const form = await page
      .$eval('form#search', (f) => ({ method: (f.getAttribute('method') ?? 'get').toLowerCase() }))
      .catch(() => null);
    assert.ok(form, '/tenants has no form#search');
    assert.equal(form.method, 'get', 'form#search must use GET');

    // A prefix of the key finds it, and every row found contains the prefix.
    const prefix = KEY.slice(0, Math.max(1, Math.min(5, KEY.indexOf('@') > 0 ? KEY.indexOf('@') : KEY.length)));
    await page.type('form#search input[name="q"]', prefix);
    const res = await submit(page, 'form#search', 'tenants-search');
    assert.equal(res.status(), 200, `searching /tenants answered ${res.status()}`);
    assert.equal(new URL(page.url()).searchParams.get('q'), prefix, 'form#search must send q in the query string');
    const found = await page.$$eval(rowsSel, (rs) =>
      rs.map((r) => ({ key: r.dataset.key, href: r.querySelector('a')?.href ?? null })),
    );
    const row = found.find((r) => r.key === KEY);
    assert.ok(row, `searching for "${prefix}" does not list ${KEY} (found: ${found.map((r) => r.key).join(', ') || 'nothing'})`);
    for (const r of found) {
      assert.ok(r.key.toLowerCase().includes(prefix.toLowerCase()), `searching for "${prefix}" lists ${r.key}`);
    }
    assert.ok(row.href, `the row of ${KEY} has no link`);
    const path = pathOf(row.href);
    assert.ok(path.startsWith('/tenants/'), `the row of ${KEY} links to ${path}, expected /tenants/<key>`);
    const segment = path.slice('/tenants/'.length);
    assert.ok(!segment.includes('/'), `the link ${path} must carry the key as one percent-encoded segment`);
    assert.equal(decodeURIComponent(segment), KEY, `the link ${path} does not name ${KEY}`);
    tenantHref = row.href;

    // A search that matches nothing lists nothing.
    await visit(page, `/tenants?q=${encodeURIComponent(`no-such-tenant-${Date.now()}`)}`, 'tenants-search-none');
    assert.equal(await count(page, rowsSel), 0, 'a search that matches no key still lists tenants');

    // Paging, when there is more than one page.
    await visit(page, '/tenants');
    if (await exists(page, 'a#next')) {
      const [next] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('a#next')]);
      assert.equal(next.status(), 200, `following a#next answered ${next.status()}`);
      await shot(page, 'tenants-next');
      const secondPage = await page.$$eval(rowsSel, (rs) => rs.map((r) => r.dataset.key));
      assert.ok(secondPage.length >= 1, 'the page a#next leads to lists no tenant');
      const again = secondPage.filter((k) => firstPage.includes(k));
      assert.deepEqual(again, [], 'the next page repeats tenants of the first');
    }
  });

  step('the tenant page shows the placement and the admin\'s forms', async () => {
    await visit(page, '/tenants');
    await page.type('form#search input[name="q"]', KEY);
    await submit(page, 'form#search');
    const link = (
      await page.evaluateHandle(
        (key) =>
          [...document.querySelectorAll('table#tenants tbody tr[data-key]')]
            .find((r) => r.dataset.key === key)
            ?.querySelector('a') ?? null,
        KEY,
      )
    ).asElement();
    assert.ok(link, `searching for the whole key does not list ${KEY} with a link`);
    const [res] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), link.click()]);
    assert.equal(res.status(), 200, `opening the tenant page answered ${res.status()}`);
    assert.equal(page.url(), tenantHref, 'the link found by the whole key differs from the one found by a prefix');
    await shot(page, 'tenant');
    await assertChrome(page);
    const h1 = await textOf(page, 'h1');
    assert.ok(h1?.includes(KEY), `the tenant page's h1 "${h1}" does not contain ${KEY}`);
    const placement = await textOf(page, '#placement');
    assert.ok(placement, 'the tenant page has no #placement (server, mode, state, version)');
    assert.match(placement, /ready/i, `#placement does not show the state ready: ${placement}`);
    for (const form of ['form#check', 'form#fix']) {
      assert.ok(await exists(page, form), `the admin's tenant page has no ${form}`);
      assert.ok(await exists(page, submitOf(form)), `${form} has no button`);
    }
    for (const form of ['form#check', 'form#fix']) {
      const csrf = await page.$eval(`${form} input[name="csrf"]`, (i) => i.value).catch(() => null);
      assert.ok(csrf, `${form} has no hidden input[name=csrf] with a value`);
    }
    for (const form of ['form#drop', 'form#reset']) {
      assert.ok(await exists(page, form), `the admin's tenant page has no ${form}`);
      assert.ok(await exists(page, `${form} input[name="confirm"]`), `${form} has no input[name=confirm]`);
    }
    fixAction = await formAction(page, 'form#fix');
    assert.ok(pathOf(await formAction(page, 'form#check')).endsWith('/check'), 'form#check must post to .../check');
  });

  step('after PGFLEET_DROP_SQL, Check shows the drift naming the dropped table', async () => {
    await withTenantDb((c) => c.query(DROP_SQL));
    const oid = await droppedTableOid();
    assert.ok(oid === null || oid === undefined, `${DROPPED_QUALIFIED} still exists after PGFLEET_DROP_SQL`);
    await visit(page, pathOf(tenantHref));
    const res = await submit(page, 'form#check', 'drift');
    assert.equal(res.status(), 200, `Check answered ${res.status()}`);
    await page.waitForSelector('#drift');
    const drift = await driftOf(page);
    assert.ok(drift.findings.length >= 1, '#drift has no li.finding after a table was dropped');
    assert.equal(drift.clean, false, '#drift is marked clean although a table was dropped');
    assert.ok(
      drift.findings.some((f) => f.includes(DROPPED_TABLE)),
      `no finding names ${DROPPED_TABLE}: ${JSON.stringify(drift.findings)}`,
    );
  });

  step('Fix lists the applied changes and the tenant\'s events show the correction', async () => {
    await visit(page, pathOf(tenantHref));
    const res = await submit(page, 'form#fix', 'repair');
    assert.equal(res.status(), 200, `Fix answered ${res.status()}`);
    await page.waitForSelector('#repair');
    const changes = await page.$$eval('#repair li.change', (lis) => lis.map((li) => li.textContent.trim()));
    assert.ok(changes.length >= 1, '#repair lists no li.change after a table was dropped');
    assert.ok(
      changes.some((c) => c.includes(DROPPED_TABLE)),
      `no change names ${DROPPED_TABLE}: ${JSON.stringify(changes)}`,
    );
    assert.notEqual(await droppedTableOid(), null, `${DROPPED_QUALIFIED} is still missing after Fix`);

    // The event may be written just after the answer: look again for a while.
    const deadline = Date.now() + WAIT_MS;
    let kinds = [];
    for (;;) {
      await visit(page, pathOf(tenantHref), false);
      kinds = await page.$$eval('#events li[data-kind]', (lis) => lis.map((li) => li.dataset.kind));
      if (kinds.some((k) => k.includes('correct')) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    await shot(page, 'tenant-events');
    assert.ok(
      kinds.some((k) => k.includes('correct')),
      `#events has no li whose data-kind contains "correct" (kinds: ${kinds.join(', ') || 'none'})`,
    );
  });

  check('Check after Fix is clean', async () => {
    const res = await submit(page, 'form#check', 'clean');
    assert.equal(res.status(), 200, `Check answered ${res.status()}`);
    await page.waitForSelector('#drift');
    const drift = await driftOf(page);
    assert.equal(drift.clean, true, `#drift is not marked clean after Fix: ${JSON.stringify(drift.findings)}`);
    assert.deepEqual(drift.findings, [], 'a clean #drift lists no li.finding');
  });

  check('the servers and events pages load', async () => {
    await visit(page, '/servers', 'servers');
    await assertChrome(page);
    await visit(page, '/events', 'events');
    await assertChrome(page);
  });

  check(
    'a rollout started from /rollouts answers 303 to its page, which follows it live until done',
    async () => {
      await visit(page, '/rollouts', 'rollouts');
      await assertChrome(page);
      assert.ok(await exists(page, 'form#start-rollout'), "the admin's /rollouts has no form#start-rollout");
      assert.ok(await exists(page, 'form#start-rollout input[name="canary"]'), 'form#start-rollout has no input[name=canary]');
      const res = await submit(page, 'form#start-rollout', 'rollout');
      const [status, method] = firstHop(res);
      assert.equal(method, 'POST', 'starting a rollout posts form#start-rollout');
      assert.equal(status, 303, `starting a rollout answered ${status}, expected 303 to /rollouts/<id>`);
      assert.match(pathOf(page.url()), /^\/rollouts\/[^/]+$/, `starting a rollout landed on ${page.url()}`);
      assert.equal(res.status(), 200, `the rollout page answered ${res.status()}`);
      await assertChrome(page);
      assert.ok(await exists(page, 'progress#rollout-progress'), 'the rollout page has no progress#rollout-progress');
      const first = await textOf(page, '#rollout-state');
      assert.ok(ROLLOUT_STATES.includes(first), `#rollout-state reads "${first}", expected one of ${ROLLOUT_STATES.join('|')}`);

      // No reload from here on: the page's JavaScript follows the server-sent events.
      let state;
      try {
        state = await (
          await page.waitForFunction(
            () => {
              const s = document.querySelector('#rollout-state')?.textContent.trim();
              return s === 'done' || s === 'failed' || s === 'abandoned' ? s : false;
            },
            { timeout: ROLLOUT_MS, polling: 250 },
          )
        ).jsonValue();
      } catch (err) {
        const now = await textOf(page, '#rollout-state');
        await shot(page, 'rollout-stuck');
        throw new Error(`#rollout-state still reads "${now}" after ${ROLLOUT_MS / 1000} s: ${err.message}`);
      }
      await shot(page, 'rollout-done');
      assert.equal(state, 'done', `the rollout ended ${state}, expected done`);
      const progress = await page.$eval('progress#rollout-progress', (p) => ({ value: p.value, max: p.max }));
      assert.equal(progress.value, progress.max, `a done rollout's progress is ${progress.value}/${progress.max}`);
    },
    { timeout: ROLLOUT_MS + 45_000 },
  );

  check('signing out ends the session: GET / goes to /login again', async () => {
    await visit(page, '/');
    await submit(page, 'form#logout', 'signed-out');
    await assertSentToLogin(page);
    // The old cookie itself no longer opens a session.
    await context.setCookie(sessionCookie);
    await assertSentToLogin(page);
    await context.deleteCookie(sessionCookie);
  });

  check('no page had an uncaught JavaScript error', async () => {
    assert.deepEqual(errors, [], 'uncaught errors in the dashboard\'s JavaScript');
  });
});

// ---------------------------------------------------------------------------------------------
// 2. The read token: reads, never writes

describe('read token', () => {
  const { step, check } = flow();
  let context;
  let page;
  let errors;

  before(async () => {
    ({ context, page, errors } = await newSession());
  });
  after(async () => {
    await context?.close();
  });

  check('a wrong token shows the form again with an error and status 401', async () => {
    await assertSentToLogin(page);
    const res = await typeToken(page, `not-a-token-${Date.now()}`, 'login-wrong-token');
    assert.equal(res.status(), 401, `POST /login with a wrong token answered ${res.status()}, expected 401`);
    assert.ok(await exists(page, 'form#login'), 'a wrong token must show form#login again');
    const error = await textOf(page, '.error');
    assert.ok(error, 'a wrong token must show an .error with text');
    const cookie = (await context.cookies()).find((c) => c.name === 'pgfleet_session');
    assert.ok(!cookie, 'a wrong token set a pgfleet_session cookie');
  });

  step('signing in with the read token works', async () => {
    await signIn(context, page, READ_TOKEN, 'read-overview');
    await assertChrome(page);
    assert.equal(await textOf(page, 'h1'), 'Overview', 'the overview\'s h1 must read "Overview"');
  });

  check('the tenant page has Check but no Fix, Drop or Reset, and Check works', async () => {
    await visit(page, TENANT_PATH, 'read-tenant');
    await assertChrome(page);
    assert.ok(await exists(page, 'form#check'), 'the read token\'s tenant page has no form#check');
    for (const form of ['form#fix', 'form#drop', 'form#reset']) {
      assert.equal(await exists(page, form), false, `the read token's tenant page shows ${form}`);
    }
    const res = await submit(page, 'form#check', 'read-check');
    assert.equal(res.status(), 200, `Check with the read token answered ${res.status()}`);
    assert.ok(await exists(page, '#drift'), 'Check with the read token shows no #drift');
  });

  check('/rollouts has no form#start-rollout', async () => {
    await visit(page, '/rollouts', 'read-rollouts');
    await assertChrome(page);
    assert.equal(await exists(page, 'form#start-rollout'), false, 'the read token\'s /rollouts shows form#start-rollout');
  });

  check('a forged Fix with the read session and a valid CSRF token is refused with 403', async () => {
    await visit(page, TENANT_PATH);
    const csrf = await page.$eval('form#check input[name="csrf"]', (i) => i.value).catch(() => null);
    assert.ok(csrf, 'form#check has no hidden input[name=csrf] with a value');
    const action = fixAction ?? (await formAction(page, 'form#check')).replace(/\/check$/, '/fix');
    const res = await postFromPage(page, action, [['csrf', csrf]]);
    assert.equal(res.status, 403, `POST ${pathOf(action)} with the read session answered ${res.status || res.type}, expected 403`);
  });

  check('no page had an uncaught JavaScript error', async () => {
    assert.deepEqual(errors, [], 'uncaught errors in the dashboard\'s JavaScript');
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Forged and careless requests with the admin session

describe('forgery and confirmation', () => {
  const { step, check } = flow();
  let context;
  let page;
  let errors;

  before(async () => {
    ({ context, page, errors } = await newSession());
  });
  after(async () => {
    await context?.close();
  });

  step('the admin signs in again', async () => {
    await assertSentToLogin(page);
    await signIn(context, page, ADMIN_TOKEN);
    await visit(page, TENANT_PATH);
    assert.ok(await exists(page, 'form#fix'), "the admin's tenant page has no form#fix");
  });

  check('Fix without a CSRF token is refused with 403', async () => {
    const action = await formAction(page, 'form#fix');
    const fields = (await formFields(page, 'form#fix')).filter(([k]) => k !== 'csrf');
    const res = await postFromPage(page, action, fields);
    assert.equal(res.status, 403, `POST ${pathOf(action)} without csrf answered ${res.status || res.type}, expected 403`);
  });

  check('Fix with a wrong CSRF token is refused with 403', async () => {
    const action = await formAction(page, 'form#fix');
    const fields = (await formFields(page, 'form#fix')).map(([k, v]) => [k, k === 'csrf' ? `${v}x` : v]);
    assert.ok(fields.some(([k]) => k === 'csrf'), 'form#fix has no csrf field');
    const res = await postFromPage(page, action, fields);
    assert.equal(res.status, 403, `POST ${pathOf(action)} with a wrong csrf answered ${res.status || res.type}, expected 403`);
    const wrong = [['csrf', 'forged-' + Date.now()]];
    const res2 = await postFromPage(page, action, wrong);
    assert.equal(res2.status, 403, `POST ${pathOf(action)} with a made-up csrf answered ${res2.status || res2.type}, expected 403`);
  });

  for (const form of ['form#drop', 'form#reset']) {
    check(`${form} with a confirmation that is not the key is refused and leaves the tenant alone`, async () => {
      await visit(page, TENANT_PATH);
      const action = await formAction(page, form);
      const fields = await formFields(page, form);
      assert.ok(fields.some(([k]) => k === 'csrf'), `${form} has no csrf field`);
      const before = await droppedTableOid();
      for (const confirm of ['', `${KEY}x`, KEY.toUpperCase() === KEY ? 'x' : KEY.toUpperCase()]) {
        const sent = [...fields.filter(([k]) => k !== 'confirm'), ['confirm', confirm]];
        const res = await postFromPage(page, action, sent);
        // Refused: a 4xx (the form again with an error), or a redirect back that changed nothing.
        assert.ok(
          (res.status >= 400 && res.status < 500) || res.type === 'opaqueredirect',
          `POST ${pathOf(action)} with confirm=${JSON.stringify(confirm)} answered ${res.status}, expected a refusal`,
        );
      }
      await visit(page, TENANT_PATH);
      assert.match((await textOf(page, '#placement')) ?? '', /ready/i, `the tenant is no longer ready after ${form} with a confirmation that is not the key`);
      assert.equal(await droppedTableOid(), before, `${form} with a confirmation that is not the key dropped or remade ${DROPPED_QUALIFIED}`);
    });
  }

  check('no page had an uncaught JavaScript error', async () => {
    assert.deepEqual(errors, [], 'uncaught errors in the dashboard\'s JavaScript');
  });
});
