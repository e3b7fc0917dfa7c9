/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) against the real stack: an
 * operator signs in, starts the labels demo from the browser and watches it live to the labeling step,
 * labels every pair with the keyboard, and watches the run reach its deployment gate; a viewer sees the gate
 * without buttons and the API refuses them; an approver approves from the inbox with a comment, and the
 * operator's open run page turns deployed. The operator then creates a paused schedule from the demo pipeline
 * (so it never runs), sees it listed and deletes it, sees the deployed model serving all the traffic, and in the
 * playground chats with it (streamed), rates its answer and prefers one of two answers, both stored. Any
 * console error or uncaught exception on any page fails the test. Screenshots of the main pages go to
 * tests/browser/screenshots/.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { generateDemoData } from '@tempered/examples';
import { apiCall, cfg, credentialsOf, db, repoRoot, uniqueId, waitFor } from '../support';

/** The page's globals used by functions evaluated in it (this suite's tsconfig has no DOM library). */
declare const document: { querySelector(selector: string): { getAttribute(name: string): string | null } | null; documentElement: { scrollWidth: number; scrollHeight: number } };
declare const window: { innerWidth: number };

const CHROMIUM = '/usr/bin/chromium';
const EXAMPLE = 'demo/labels.yaml';
const SHOTS = path.join(repoRoot, 'tests', 'browser', 'screenshots');
const base = cfg.api.url;
const database = db();

/** Console errors and uncaught exceptions of every page, with the page they came from. */
const problems: string[] = [];

function watch(page: Page, who: string): Page {
  page.on('pageerror', (err) => problems.push(`[${who}] uncaught ${err.name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const where = msg.location().url;
    // Chromium logs every 4xx response of a fetch. Two 401s are designed states, not faults: the signed-out
    // check (`GET /api/me`) that shows the login page, and a wrong password at the login page.
    if (/status of 401/.test(msg.text()) && /\/api\/(me|login)$/.test(where)) return;
    problems.push(`[${who}] console ${msg.type()}: ${msg.text()} (${where})`);
  });
  return page;
}

async function signIn(context: BrowserContext, who: string, username: string, password: string): Promise<Page> {
  const page = watch(await context.newPage(), who);
  await page.goto(`${base}/runs`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('who').locator('strong', { hasText: username }).waitFor();
  return page;
}

const runStatus = (page: Page) => page.locator('h1 [data-testid="run-status"]').getAttribute('data-status');

/** Waits on the open run page (live updates only, no reload) until the run's status is `want`. */
async function untilStatus(page: Page, want: string, timeoutMs: number): Promise<void> {
  const handle = await page.waitForFunction(
    (want) => {
      const s = document.querySelector('h1 [data-testid="run-status"]')?.getAttribute('data-status');
      return s === want || s === 'failed' || s === 'cancelled' || s === 'rejected' || s === 'expired' ? s : null;
    },
    want,
    { timeout: timeoutMs, polling: 500 },
  );
  const got = await handle.jsonValue();
  if (got !== want) {
    const error = await page.locator('.callout.error').first().textContent().catch(() => '');
    assert.fail(`the run is ${got}, not ${want}: ${error}`);
  }
}

/** What a step needs from the steps before it (node:test goes on after a failure; these fail fast). */
function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) assert.fail(`no ${what}: an earlier step failed`);
  return value;
}

/** A screenshot of the page's top `height` pixels (the whole window by default); kept small for the repo. */
async function shot(page: Page, name: string, height?: number): Promise<void> {
  const width = page.viewportSize()!.width;
  await page.screenshot({
    path: path.join(SHOTS, `${name}.png`),
    fullPage: height !== undefined,
    clip: height !== undefined ? { x: 0, y: 0, width, height: Math.min(height, await page.evaluate(() => document.documentElement.scrollHeight)) } : undefined,
    animations: 'disabled',
    caret: 'hide',
  });
}

describe('the dashboard in a browser', () => {
  let browser: Browser;
  let operator: BrowserContext;
  let opPage: Page;
  let runId: string;
  const viewer = { username: uniqueId('viewer').replace(/[^a-z0-9-]/g, '').slice(0, 32), password: `pw-${uniqueId('v')}` };

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: the browser tests drive Debian's Chromium. Run \`bash infra/bootstrap.sh\` (it installs it) or \`apt-get install chromium\`.`);
    }
    if (!existsSync(path.join(repoRoot, 'services', 'dashboard', 'dist', 'index.html'))) {
      throw new Error('the dashboard is not built: run `npm run build -w @tempered/dashboard` (infra/test.sh and infra/up.sh do it)');
    }
    if (!existsSync(path.join(repoRoot, 'examples', 'demo', 'data', 'train.jsonl'))) generateDemoData();
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const created = await apiCall('POST', '/api/users', 'admin', { ...viewer, role: 'viewer' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    operator = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  });

  after(async () => {
    await browser?.close();
    await database.destroy();
  });

  test('a wrong password gets a clear error; the operator signs in', async () => {
    const page = watch(await operator.newPage(), 'operator');
    await page.goto(`${base}/runs`);
    await page.getByLabel('Username').fill('operator');
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    assert.match((await page.getByTestId('login-error').textContent()) ?? '', /wrong username or password/i);
    await page.close();
    opPage = await signIn(operator, 'operator', 'operator', credentialsOf('operator').password);
    await opPage.getByRole('heading', { name: 'Runs' }).waitFor();
    assert.equal(await opPage.getByRole('navigation', { name: 'Main' }).getByRole('link').count(), 8);
  });

  test('the spec editor shows each issue at its line and blocks submit until the spec is valid', async () => {
    need(opPage, 'signed-in operator');
    await opPage.getByTestId('start-run').click();
    await opPage.getByTestId('tab-yaml').click();
    const editor = opPage.getByTestId('spec-yaml');
    await editor.fill('apiVersion: tempered/v1\nname: Bad Name\ndata:\n  sources: []\ntrain:\n  steps: -5\n  bogus: 1\nrlhf:\n  method: dpo\n');
    const issues = opPage.getByTestId('spec-issues');
    await issues.getByText('train.steps').waitFor();
    const text = (await issues.textContent()) ?? '';
    assert.match(text, /line 2\s*name/, text);
    assert.match(text, /line 4\s*data\.sources/, text);
    assert.match(text, /line 6\s*train\.steps/, text);
    assert.match(text, /line 7\s*train.*unknown field\(s\): bogus/, text);
    // A missing field is reported at its parent's line.
    assert.match(text, /line 8\s*rlhf\.preferences/, text);
    assert.equal(await opPage.getByTestId('submit-run').isDisabled(), true);
    // The gutter marks the same lines.
    assert.deepEqual(await opPage.locator('.gutter-line.has-issue').allTextContents(), ['2', '4', '6', '7', '8']);
    await shot(opPage, 'start-run-validation');
  });

  test('the operator starts the labels demo from the browser and watches it reach the labeling step', { timeout: 12 * 60_000 }, async () => {
    await opPage.getByRole('tab', { name: 'From an example' }).click();
    await opPage.getByRole('radio', { name: new RegExp(EXAMPLE.replace('.', '\\.')) }).check();
    await opPage.getByTestId('spec-valid').waitFor();
    await opPage.getByTestId('submit-run').click();
    await opPage.waitForURL(/\/runs\/demo-reverse-labels-/);
    runId = decodeURIComponent(new URL(opPage.url()).pathname.split('/').pop()!);
    await opPage.getByTestId('stage-ingest').waitFor();
    assert.equal(await opPage.locator('[data-testid^="stage-"][data-status]').count(), 10);

    await untilStatus(opPage, 'waiting-labels', 10 * 60_000);
    for (const s of ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate']) {
      assert.equal(await opPage.getByTestId(`stage-${s}`).getAttribute('data-status'), 'completed', s);
    }
    assert.equal(await opPage.getByTestId('stage-rlhf').getAttribute('data-status'), 'running');
    // The loss curves came in live, training and validation on one chart.
    const lossChart = opPage.getByTestId('chart-loss');
    await lossChart.waitFor();
    assert.match((await lossChart.getAttribute('aria-label')) ?? '', /train loss: .* at step \d+; validation loss/);
    await opPage.getByTestId('artifacts').getByText('clean-report').first().waitFor();
    await opPage.getByTestId('clean-report').waitFor();
    await shot(opPage, 'run-detail', 1500);
  });

  test('the runs list shows the run, live', async () => {
    need(runId, 'run');
    const page = watch(await operator.newPage(), 'operator');
    await page.goto(`${base}/runs`);
    const row = page.locator(`tr[data-run-id="${runId}"]`);
    await row.waitFor();
    assert.equal(await row.getByTestId('run-status').getAttribute('data-status'), 'waiting-labels');
    await shot(page, 'runs');
    await page.close();
  });

  test('the operator labels every pair with the keyboard, and the run continues', { timeout: 3 * 60_000 }, async () => {
    need(runId, 'run');
    // A page behind another gets no animation frames; bring the operator's back to the front.
    await opPage.bringToFront();
    await opPage.getByTestId('label-link').click();
    await opPage.waitForURL(/\/labeling\//);
    const bar = opPage.getByTestId('label-progress').getByRole('progressbar');
    await opPage.getByTestId('pair-prompt').waitFor();
    const required = Number(await bar.getAttribute('aria-valuemax'));
    assert.ok(required >= 1, `required ${required}`);
    await shot(opPage, 'labeling');
    const keys = ['1', 'ArrowRight', 't', 'ArrowLeft', '2', '3'];
    for (let i = Number(await bar.getAttribute('aria-valuenow')); i < required; i++) {
      await opPage.getByTestId('pair-prompt').waitFor();
      await opPage.keyboard.press(keys[i % keys.length]);
      await opPage.waitForFunction(
        (n) => Number(document.querySelector('[data-testid="label-progress"] [role="progressbar"]')?.getAttribute('aria-valuenow')) >= n,
        i + 1,
        { timeout: 15_000, polling: 100 },
      );
    }
    const done = opPage.getByTestId('labeling-done');
    await done.waitFor();
    assert.match((await done.textContent()) ?? '', /the run continues/);
  });

  test('the run reaches its deployment gate; its requester cannot decide it', { timeout: 10 * 60_000 }, async () => {
    need(runId, 'run');
    await opPage.getByRole('link', { name: 'Watch the run' }).click();
    await untilStatus(opPage, 'waiting-approval', 8 * 60_000);
    assert.equal(await opPage.getByTestId('stage-rlhf').getAttribute('data-status'), 'completed');
    assert.equal(await opPage.getByTestId('stage-test').getAttribute('data-status'), 'completed');
    assert.match((await opPage.getByTestId('gate').getByTestId('cannot-decide').textContent()) ?? '', /cannot decide deployment gates/i);
    assert.equal(await opPage.getByTestId('approve').count(), 0);
    await opPage.getByTestId('pending-count').waitFor();

    // The Evaluation view: each figure with its interval, and the answers themselves, filterable.
    const evaluation = opPage.getByTestId('evaluation');
    assert.match((await evaluation.getByTestId('intervals').textContent()) ?? '', /exactMatch: \d\.\d{3} \(95% interval \d\.\d{3} to \d\.\d{3}, n = \d+ records\)/);
    const { counts } = (await apiCall('GET', `/api/runs/${runId}/answers?filter=wrong`, 'operator')).body;
    assert.ok(counts.all > 0, JSON.stringify(counts));
    await evaluation.getByTestId('answers').locator('tr[data-key]').first().waitFor();
    assert.equal(await evaluation.getByTestId('answers').locator('tr[data-key]').count(), Math.min(counts.all, 100));
    await evaluation.getByTestId('answers-wrong').click();
    const wrong = Math.min(counts.wrong, 100);
    await waitFor('the wrong answers listed', 30_000, async () => ((await evaluation.locator('tr[data-key]').count()) === wrong && (await evaluation.getByTestId('answers-wrong').getAttribute('aria-selected')) === 'true') || undefined);
    assert.equal(await evaluation.locator('tr[data-key][data-correct="true"]').count(), 0, 'only wrong answers');
  });

  test('a viewer sees the gate without buttons, and the API refuses their decision', async () => {
    need(runId, 'run');
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await signIn(context, 'viewer', viewer.username, viewer.password);
    await page.getByRole('link', { name: /Approvals/ }).click();
    const item = page.locator(`[data-testid="pending-approval"][data-run-id="${runId}"]`);
    await item.waitFor();
    assert.equal(await item.getByTestId('approve').count(), 0);
    assert.equal(await item.getByTestId('reject').count(), 0);
    assert.match((await item.getByTestId('cannot-decide').textContent()) ?? '', /viewer/i);
    await context.close();

    const login = await fetch(`${base}/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tempered': '1' },
      body: JSON.stringify(viewer),
    });
    assert.equal(login.status, 200);
    const { token } = (await login.json()) as { token: string };
    const refused = await apiCall('POST', `/api/runs/${runId}/approval`, { token }, { decision: 'approve', comment: 'not mine to decide' });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
  });

  test('an approver approves from the inbox with a comment, and the run page turns deployed', { timeout: 8 * 60_000 }, async () => {
    need(runId, 'run');
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await signIn(context, 'approver', 'approver', credentialsOf('approver').password);
    await page.getByRole('link', { name: /Approvals/ }).click();
    const item = page.locator(`[data-testid="pending-approval"][data-run-id="${runId}"]`);
    await item.waitFor();
    await item.getByTestId('metrics-compare').locator('[data-metric="exactMatch"]').waitFor();
    assert.match((await item.getByTestId('countdown').textContent()) ?? '', /left/);
    await shot(page, 'approvals');
    await item.getByTestId('decision-comment').fill('Labels look right; exact match above the baseline.');
    await item.getByTestId('approve').click();
    await page.getByTestId('decision-done').waitFor();

    // The operator's run page, open all along, follows the decision and the deployment live.
    await untilStatus(opPage, 'deployed', 6 * 60_000);
    await opPage.getByTestId('gate-decision').getByText('Labels look right').waitFor();
    assert.equal(await opPage.getByTestId('stage-deploy').getAttribute('data-status'), 'completed');

    await page.getByRole('link', { name: 'Models' }).click();
    const serving = page.locator('[data-testid="model"][data-serving="true"]').first();
    await serving.waitFor();
    await serving.getByRole('button', { name: 'Lineage' }).click();
    await serving.getByTestId('lineage').locator('[data-node^="deployment:"]').waitFor();
    await serving.getByTestId('lineage').locator('[data-node^="dataset_version:"]').waitFor();
    await shot(page, 'models');
    await context.close();
  });

  test('datasets: counts, the cleaning report and the quarantined records with reasons', async () => {
    const page = watch(await operator.newPage(), 'operator');
    await page.goto(`${base}/datasets`);
    await page.getByTestId('datasets').waitFor();
    await shot(page, 'datasets');
    await page.getByTestId('datasets').getByRole('link').first().click();
    await page.getByTestId('clean-report').waitFor();
    const quarantine = page.getByTestId('quarantine');
    await quarantine.waitFor();
    assert.ok((await quarantine.locator('tbody tr').count()) >= 1);
    assert.ok(((await quarantine.locator('td.reason').first().textContent()) ?? '').length > 0);
    await shot(page, 'dataset-detail', 1400);
    await page.close();
  });

  test('the run page works in a narrow window', async () => {
    need(runId, 'run');
    const context = await browser.newContext({ viewport: { width: 420, height: 900 }, storageState: await operator.storageState() });
    const page = watch(await context.newPage(), 'operator (narrow)');
    await page.goto(`${base}/runs/${encodeURIComponent(runId)}`);
    await page.getByTestId('stage-deploy').waitFor();
    assert.equal(await runStatus(page), 'deployed');
    await page.getByTestId('chart-loss').waitFor();
    await page.getByTestId('clean-report').waitFor();
    // Nothing wider than the window: the page does not scroll sideways.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the window`);
    await shot(page, 'run-detail-narrow', 2000);
    await context.close();
  });

  test('schedules: the operator creates a paused schedule from the demo pipeline, sees it listed and deletes it', async () => {
    const page = watch(await operator.newPage(), 'operator');
    const id = uniqueId('dash-schedule').replace(/[^a-z0-9-]/g, '');
    try {
      await page.goto(`${base}/runs`);
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Schedules' }).click();
      await page.getByRole('heading', { name: 'Schedules' }).waitFor();
      await page.getByTestId('new-schedule').click();
      const form = page.getByTestId('schedule-form');
      // A bad interval is refused at its field, before anything is sent.
      await form.getByTestId('schedule-every').fill('hourly');
      await form.getByTestId('field-error').getByText(/expected an interval/).waitFor();
      await form.getByTestId('schedule-id').fill(id);
      await form.getByRole('radio', { name: /demo\/pipeline\.yaml/ }).check();
      await form.getByTestId('spec-valid').waitFor();
      await form.getByTestId('schedule-every').fill('1h');
      // Paused, an hourly schedule never takes an action while the test runs.
      await form.getByTestId('schedule-start-paused').check();
      await form.getByTestId('schedule-create-comment').fill('browser test: created paused, deleted at once');
      await form.getByTestId('create-schedule').click();
      const row = page.locator(`tr[data-schedule-id="${id}"]`);
      await row.waitFor();
      assert.equal(await row.getAttribute('data-paused'), 'true');
      assert.match((await row.textContent()) ?? '', /every 1h/);
      const described = await apiCall('GET', `/api/schedules/${id}`, 'operator');
      assert.equal(described.status, 200, JSON.stringify(described.body));
      assert.equal(described.body.paused, true);
      assert.equal(described.body.pipeline, 'demo-reverse');
      assert.equal(described.body.mode, 'run');

      await row.getByTestId('schedule-manage').click();
      await page.getByTestId('schedule-panel').getByTestId('schedule-resume').waitFor();
      await shot(page, 'schedules');
      await page.getByTestId('schedule-comment').fill('done with it');
      await page.getByTestId('schedule-delete').click();
      await page.getByTestId('schedule-delete-confirm').click();
      await row.waitFor({ state: 'detached' });
      assert.match((await page.getByTestId('schedules-notice').textContent()) ?? '', new RegExp(`Deleted schedule ${id}`));
      assert.equal((await apiCall('GET', `/api/schedules/${id}`, 'operator')).status, 404);
    } finally {
      // Whatever failed above, leave no schedule behind (404 when it is gone already).
      await apiCall('DELETE', `/api/schedules/${id}`, 'operator').catch(() => {});
      await page.close();
    }
  });

  test('deployments: the approved model serves all of its traffic', async () => {
    need(runId, 'run');
    const page = watch(await operator.newPage(), 'operator');
    await page.goto(`${base}/runs`);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Deployments' }).click();
    const row = page.getByTestId('deployments-table').locator(`tr[data-run-id="${runId}"]`);
    await row.waitFor();
    assert.equal(await row.getAttribute('data-status'), 'serving');
    assert.equal(await row.getByTestId('deployment-status').textContent(), 'serving');
    assert.equal(await row.getByTestId('traffic').getAttribute('data-weight'), '100');
    assert.match((await row.getByTestId('traffic').textContent()) ?? '', /100%/);
    await shot(page, 'deployments');
    await page.close();
  });

  test('playground: the operator chats with the deployed version, streamed, rates the answer and prefers one of two; both are stored as feedback', { timeout: 3 * 60_000 }, async () => {
    need(runId, 'run');
    const deployed = (await apiCall('GET', '/api/deployments', 'operator')).body.deployments.find((d: any) => d.run_id === runId);
    assert.ok(deployed, 'the run has a deployment');
    const unknown = await apiCall('POST', '/api/playground/chat', 'operator', { model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    assert.match(unknown.body.error, /no-such-model/);
    const page = watch(await operator.newPage(), 'operator');
    await page.goto(`${base}/runs`);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Playground' }).click();
    await page.locator('#model-a').selectOption(deployed.model_version_id);
    await page.locator('#temperature').fill('0');
    await page.locator('#max-tokens').fill('12');
    await page.getByTestId('chat-input').fill('Hello there');
    await page.getByTestId('chat-input').press('Enter');
    const answer = page.locator('[data-testid="assistant-turn"][data-done="true"]');
    await answer.waitFor({ timeout: 90_000 });
    const requestId = need((await answer.getAttribute('data-request-id')) ?? undefined, 'request id');
    await answer.getByTestId('rate-up').click();
    await answer.getByTestId('rated').waitFor();
    const rating = await database.selectFrom('feedback_ratings').select(['rating', 'model_version_id']).where('request_id', '=', requestId).executeTakeFirst();
    assert.deepEqual(rating, { rating: 'up', model_version_id: deployed.model_version_id }, 'the rating is stored with the version that answered');
    await shot(page, 'playground');

    await page.getByTestId('mode-compare').check();
    await page.locator('#model-b').selectOption(deployed.model_version_id);
    await page.getByTestId('chat-input').fill('Which is better?');
    await page.getByTestId('send').click();
    await page.getByTestId('prefer-a').click();
    await page.getByTestId('preference-stored').waitFor();
    const pairs = await database.selectFrom('feedback_pairwise').select(['preferred', 'model_version_a', 'model_version_b']).where('prompt', '=', 'Which is better?').execute();
    assert.deepEqual(pairs, [{ preferred: 'a', model_version_a: deployed.model_version_id, model_version_b: deployed.model_version_id }]);
    await page.close();
  });

  test('no page logged an error or threw', () => {
    assert.deepEqual(problems, []);
  });
});
