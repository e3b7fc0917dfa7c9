/**
 * Serving that holds what the records say, on the real stack: two versions of one model deployed through the
 * API (the second replacing the first, no canary). The serving version's model server is killed, and comes
 * back by the worker's supervisor; then the worker itself and the server are stopped and the stack started
 * again (`stack.ts up`, as `npm start` does), and the gateway answers again. Then a rollback by hand: refused
 * at the field for an unknown name or version, a version of another model, no reason or the wrong role; done
 * by an approver through the API (traffic back to the first version, its server started again, the second's
 * stopped but still downloadable, audited), through the CLI (`--to 2`) and the Deployments page's button.
 * Between the last two, a server that cannot start (its model file broken) is tried again after 2 s, then 4 s,
 * and serves once it can. Prints how long each recovery took.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { generateDemoData } from '@tempered/examples';
import { chromium } from 'playwright-core';
import { isModelServer } from '@tempered/activities';
import { apiCall, approvedRun, cfg, credentialsOf, db, demoSpec, repoRoot, tokenOf, waitFor } from '../support';

const database = db();
const NAME = `serving-${randomBytes(2).toString('hex')}`;
const OTHER = `${NAME}-other`;
const run = promisify(execFile);
const tsx = path.join(repoRoot, 'node_modules', '.bin', 'tsx');

async function deployVersion(): Promise<string> {
  const dataDir = path.join(cfg.dataDir, 'uploads', 'serving');
  generateDemoData(dataDir, { records: 1000 });
  const spec = demoSpec();
  spec.name = NAME;
  spec.data.sources = [{ uri: path.join(dataDir, 'train.jsonl'), encoding: 'utf-8' }];
  spec.train = { ...spec.train, steps: 120, checkpointEvery: 60 };
  spec.rlhf = { ...spec.rlhf, method: 'none' };
  spec.test = { ...spec.test, minExactMatch: undefined, championMargin: -1 };
  const runId = await approvedRun(spec, 'serving e2e');
  const d = await waitFor(`${runId} deployed`, 5 * 60_000, async () => {
    const body = (await apiCall('GET', `/api/runs/${runId}`, 'operator')).body;
    if (body.run.status === 'failed') throw new Error(`run failed: ${body.run.error}`);
    return body.run.status === 'deployed' ? body : undefined;
  }, 1000);
  return d.deployment.model_version_id;
}

/** One completion through the gateway: its status and the version that answered. */
async function ask(): Promise<{ status: number; version?: string }> {
  const res = await fetch(`${cfg.gateway.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: NAME, prompt: 'reverse 1 2 3', max_tokens: 8 }),
  });
  const body: any = await res.json().catch(() => ({}));
  return { status: res.status, version: body.model };
}

/** Waits until the gateway answers 200 from `version`; returns how long that took. */
async function answersWithin(version: string, limitMs: number): Promise<number> {
  const t0 = Date.now();
  await waitFor(`the gateway to answer from ${version}`, limitMs, async () => {
    const r = await ask().catch(() => undefined);
    return r?.status === 200 && r.version === version ? true : undefined;
  });
  return Date.now() - t0;
}

const deploymentOf = (versionId: string) =>
  database.selectFrom('deployments').selectAll().where('model_version_id', '=', versionId).orderBy('created_at', 'desc').executeTakeFirstOrThrow();

/** A live model server (the pid alone could be any process's by now). */
const alive = (pid: number | null) => isModelServer(pid);
/** The worker's process is alive (and no zombie: the stack that started it may be this test's parent's). */
const workerRunning = (pid: number) => {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
};

describe('serving that outlives a restart, and rolling back by hand', () => {
  let v1: string;
  let v2: string;

  before(async () => {
    v1 = await deployVersion();
    v2 = await deployVersion();
    assert.notEqual(v1, v2);
    assert.equal((await deploymentOf(v1)).status, 'stopped');
    assert.equal((await ask()).version, v2);
  });

  after(async () => {
    await database.deleteFrom('model_versions').where('name', '=', OTHER).execute();
    await database.destroy();
  });

  test('a model server that dies is started again by the supervisor, on the same endpoint', async () => {
    const before = await deploymentOf(v2);
    assert.ok(alive(before.pid), 'the deployment records a live server');
    process.kill(-before.pid!, 'SIGKILL');
    await waitFor('the server to be gone', 10_000, async () => (alive(before.pid) ? undefined : true), 100);
    assert.equal((await ask()).status, 502, 'the gateway cannot reach a dead server');
    const ms = await answersWithin(v2, 90_000);
    // The supervisor records the new pid once the server answers its health check: a moment after the gateway may.
    const now = await waitFor('the new pid recorded', 10_000, async () => {
      const row = await deploymentOf(v2);
      return row.pid !== before.pid && alive(row.pid) ? row : undefined;
    }, 100);
    assert.equal(now.status, 'serving');
    assert.equal(now.endpoint, before.endpoint);
    const log = readFileSync(path.join(cfg.dataDir, 'logs', 'worker.log'), 'utf8');
    assert.match(log, new RegExp(`${now.id} \\(${v2}\\) should serve at .* but its server \\(pid ${before.pid}\\) is not running`));
    console.log(`# a killed model server answered again through the gateway after ${(ms / 1000).toFixed(1)} s`);
  });

  test('after the worker and the model server stop, starting the stack brings the serving version back', async () => {
    const dep = await deploymentOf(v2);
    const workerPid = Number(readFileSync(path.join(cfg.dataDir, 'run', 'worker.pid'), 'utf8'));
    // What `npm start` runs: it starts what is not running (here, the worker).
    const up = () => run(tsx, [path.join(repoRoot, 'infra', 'src', 'stack.ts'), 'up'], { cwd: repoRoot, env: process.env });
    let t0 = 0;
    try {
      process.kill(-workerPid, 'SIGTERM');
      process.kill(-dep.pid!, 'SIGTERM');
      await waitFor('the worker and the server to stop', 30_000, async () => (workerRunning(workerPid) || alive(dep.pid) ? undefined : true), 200);
      assert.equal((await ask()).status, 502);
      t0 = Date.now();
      assert.match((await up()).stdout, /worker\s+… started/);
    } finally {
      // Whatever failed above, the suites after this one need the stack's worker.
      if (!t0) await up();
    }
    await answersWithin(v2, 120_000);
    console.log(`# after the worker and the model server were stopped: stack up and answering in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  test('a rollback is refused at the field: unknown name or version, another model\'s version, no reason, wrong role', async () => {
    await database
      .insertInto('model_versions')
      .values({ id: `${OTHER}-v1`, name: OTHER, version: 1, run_id: `no-run-${OTHER}`, model_uri: 's3://none', sha256: 'none', metrics: '{}' })
      .execute();
    const rollback = (name: string, body: unknown, user: 'approver' | 'operator' = 'approver') => apiCall('POST', `/api/deployments/${name}/rollback`, user, body);
    const reason = 'e2e: refused cases';
    const cases: Array<[string, Awaited<ReturnType<typeof rollback>>, number, RegExp]> = [
      ['unknown name', await rollback('no-such-model', { reason }), 404, /no model is named no-such-model/],
      ['unknown version', await rollback(NAME, { to: 99, reason }), 404, new RegExp(`${NAME} has no version 99`)],
      ['unknown version id', await rollback(NAME, { to: `${NAME}-v99`, reason }), 404, /no model version/],
      ['another model\'s version', await rollback(NAME, { to: `${OTHER}-v1`, reason }), 400, new RegExp(`is a version of ${OTHER}, not of ${NAME}`)],
      ['no reason', await rollback(NAME, {}), 400, /reason/],
      ['a blank reason', await rollback(NAME, { reason: '  ' }), 400, /reason/],
      ['the serving version itself', await rollback(NAME, { to: v2, reason }), 409, /already serves/],
      ['an operator', await rollback(NAME, { reason }, 'operator'), 403, /./],
    ];
    for (const [what, res, status, message] of cases) {
      assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.error, message, what);
    }
    const missing = cases.find(([what]) => what === 'no reason')![1];
    assert.ok(missing.body.issues.some((i: { path: string }) => i.path === 'reason'), JSON.stringify(missing.body));
    assert.equal((await deploymentOf(v2)).status, 'serving', 'nothing changed');
    assert.equal((await ask()).version, v2);
  });

  test('an approver rolls back through the API: all traffic to the earlier version, its server started, the newer one stopped but downloadable, audited', async () => {
    const newer = await deploymentOf(v2);
    const t0 = Date.now();
    const res = await apiCall('POST', `/api/deployments/${NAME}/rollback`, 'approver', { reason: 'e2e: v2 answers worse' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.from, v2);
    assert.equal(res.body.to, v1);
    assert.ok(res.body.startedInMs > 0, 'the earlier version had to be started');
    // Every answer from now on is the earlier version's.
    for (let i = 0; i < 5; i++) assert.deepEqual(await ask(), { status: 200, version: v1 });
    console.log(`# rollback to a stopped version: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${(res.body.startedInMs / 1000).toFixed(1)} s of it starting its server`);
    const [older, rolledBack] = [await deploymentOf(v1), await deploymentOf(v2)];
    assert.equal(older.status, 'serving');
    assert.equal(rolledBack.status, 'rolled-back');
    await waitFor('the rolled-back server to stop', 30_000, async () => (alive(newer.pid) ? undefined : true));
    const deployments = (await apiCall('GET', '/api/deployments', 'operator')).body.deployments.filter((d: any) => d.model_name === NAME);
    assert.equal(deployments.find((d: any) => d.model_version_id === v1).weight, 100);
    assert.equal(deployments.find((d: any) => d.model_version_id === v2).weight, 0);

    const entry = await database.selectFrom('audit_log').selectAll().where('action', '=', 'deployment.rollback').where('target', '=', `model:${NAME}`).executeTakeFirstOrThrow();
    assert.equal(entry.actor, 'approver');
    assert.equal(entry.comment, 'e2e: v2 answers worse');
    assert.deepEqual({ from: (entry.details as any).from, to: (entry.details as any).to }, { from: v2, to: v1 });
    assert.ok(entry.at instanceof Date && Date.now() - entry.at.getTime() < 10 * 60_000, 'when');

    // The rolled-back version is still registered, and its model still downloads, byte for byte.
    const version = await database.selectFrom('model_versions').selectAll().where('id', '=', v2).executeTakeFirstOrThrow();
    const artifact = await database.selectFrom('artifacts').select(['id', 'bytes']).where('uri', '=', version.model_uri).executeTakeFirstOrThrow();
    const download = await fetch(`${cfg.api.url}/api/artifacts/${artifact.id}`, { headers: { authorization: `Bearer ${tokenOf('approver')}` } });
    assert.equal(download.status, 200);
    assert.equal((await download.arrayBuffer()).byteLength, Number(artifact.bytes));
  });

  test('the CLI rolls forward again with --to 2, and refuses no reason before asking', async () => {
    const cli = (args: string[]) => run(tsx, [path.join(repoRoot, 'services', 'cli', 'src', 'main.ts'), ...args], { cwd: repoRoot, env: process.env });
    await assert.rejects(cli(['deployments', 'rollback', NAME, '--to', '2']), (err: { stderr: string }) => /--reason/.test(err.stderr));
    const { stdout } = await cli(['deployments', 'rollback', NAME, '--to', '2', '--reason', 'e2e: back to v2', '--json']);
    const done = JSON.parse(stdout);
    assert.deepEqual({ from: done.from, to: done.to }, { from: v1, to: v2 });
    await answersWithin(v2, 10_000);
    assert.equal((await deploymentOf(v1)).status, 'rolled-back');
  });

  test('a server that cannot start is tried again after a doubling wait, each failure logged, until it starts', async () => {
    const dep = await deploymentOf(v2);
    const tar = path.join(cfg.dataDir, 'models', v2, 'model.tar');
    const workerLog = path.join(cfg.dataDir, 'logs', 'worker.log');
    const logFrom = statSync(workerLog).size;
    const failures = () => readFileSync(workerLog).subarray(logFrom).toString('utf8').split('\n').filter((l) => l.includes(`starting ${dep.id} failed`));
    renameSync(tar, `${tar}.saved`);
    try {
      writeFileSync(tar, 'not a model');
      process.kill(-dep.pid!, 'SIGKILL');
      const [first, second] = await waitFor('two failed starts', 90_000, async () => (failures().length >= 2 ? failures() : undefined));
      assert.match(first, /\(1 in a row\): the model server exited during start-up.*next try in 2s/);
      assert.match(second, /\(2 in a row\).*next try in 4s/);
    } finally {
      renameSync(`${tar}.saved`, tar);
    }
    const ms = await answersWithin(v2, 90_000);
    console.log(`# a server that failed to start twice answered ${(ms / 1000).toFixed(1)} s after its model was whole again`);
  });

  test("the Deployments page's Roll back button: a reason is asked for, then the traffic goes back (Debian's Chromium)", async () => {
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    try {
      const page = await (await browser.newContext({ viewport: { width: 1280, height: 860 } })).newPage();
      const thrown: string[] = [];
      page.on('pageerror', (err) => thrown.push(err.message));
      await page.goto(`${cfg.api.url}/deployments`);
      await page.getByLabel('Username').fill('approver');
      await page.getByLabel('Password').fill(credentialsOf('approver').password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      const table = page.getByTestId('deployments-table');
      const older = table.locator(`tr[data-deployment-id="${(await deploymentOf(v1)).id}"]`);
      await older.getByTestId('rollback-open').click();
      assert.equal(await table.locator(`tr[data-deployment-id="${(await deploymentOf(v2)).id}"]`).getByTestId('rollback-open').count(), 0, 'the serving row offers none');
      await older.getByTestId('rollback-send').click();
      await older.getByText('a rollback needs a reason').waitFor();
      await older.getByTestId('rollback-reason').fill('e2e: the button');
      await older.getByTestId('rollback-send').click();
      assert.match((await page.getByTestId('rollback-done').textContent({ timeout: 150_000 })) ?? '', new RegExp(`traffic goes to ${v1}; ${v2} is rolled back`));
      await answersWithin(v1, 10_000);
      assert.deepEqual(thrown, []);
    } finally {
      await browser.close();
    }
  });
});
