/**
 * Schedules through the real API of the test stack (Temporal Schedules, the stack's worker running the
 * workflows): a schedule every 2 s starts runs that appear in the runs list as requested by `schedule:<id>`;
 * pausing stops them; trigger-now starts one; a backfill over a past window starts exactly the missed ones;
 * resuming starts them again; overlap SKIP (the default) starts nothing while a run is in progress; a
 * trigger-mode schedule starts a retrain when a new object appears under its watched prefix, and not
 * otherwise. Also roles, the audit trail and bad input.
 *
 * The runs' stages are stand-ins (tests/workflows/stubs.ts) on a pool served only by this test; their
 * bookkeeping is real, so runs show up where the API reads them.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, TrainerSlots } from '@tempered/activities';
import { TERMINAL_RUN_STATUSES } from '@tempered/contract';
import { type PipelineSpec, validateSpec } from '@tempered/spec';
import { taskQueueFor } from '@tempered/workflows';
import { stubActivities } from '../workflows/stubs';
import { apiCall, cfg, db, demoSpec, quietWorkerLogs, repoRoot, store, temporalClient, uniqueId, waitFor } from '../support';

const database = db();
const artifacts = store();
const pool = uniqueId('sched').toLowerCase();
const created: string[] = [];
let connection: NativeConnection;
let worker: Worker;
let running: Promise<void>;

before(async () => {
  quietWorkerLogs();
  connection = await NativeConnection.connect({ address: cfg.temporal.address });
  const real = createActivities({ cfg, db: database, store: artifacts, slots: TrainerSlots.unlimited() });
  worker = await Worker.create({
    connection,
    taskQueue: taskQueueFor(pool),
    activities: {
      ...stubActivities().activities,
      recordRun: real.recordRun, recordStage: real.recordStage, recordApproval: real.recordApproval, retrainCheck: real.retrainCheck,
      evaluateSuites: real.evaluateSuites, recordEvaluation: real.recordEvaluation,
    },
  });
  running = worker.run();
});

after(async () => {
  for (const id of created) await apiCall('DELETE', `/api/schedules/${id}`, 'admin').catch(() => undefined);
  worker.shutdown();
  await running;
  await connection.close();
  await database.destroy();
});

/** The demo pipeline on this test's pool; its gate expires at once unless told otherwise, so runs end by themselves. */
function pipeline(extra: Record<string, unknown> = {}, approvalTimeout = '1s'): PipelineSpec {
  const spec = demoSpec();
  return validateSpec({ ...spec, pools: { data: pool, train: pool, rlhf: pool, eval: pool }, deploy: { ...spec.deploy, approvalTimeout }, ...extra });
}
/** The folder the demo's relative data paths resolve against (a spec sent inline without it is refused). */
const specDir = path.join(repoRoot, 'examples', 'demo');

function newId(prefix: string): string {
  const id = uniqueId(prefix).toLowerCase();
  created.push(id);
  return id;
}

/** Runs a schedule started, with the nominal time Temporal appended to each workflow id (`<id>-<RFC 3339>`). */
async function runsOf(requestedBy: string): Promise<Array<{ id: string; status: string; at: number }>> {
  const { body } = await apiCall('GET', `/api/runs?q=${encodeURIComponent(requestedBy)}&limit=500`, 'operator');
  return body.runs
    .filter((r: any) => r.requested_by === requestedBy)
    .map((r: any) => ({ id: r.id, status: r.status, at: Date.parse(r.id.slice(-20)) }));
}

const describeSchedule = async (id: string) => (await apiCall('GET', `/api/schedules/${id}`, 'operator')).body;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a schedule every 2 s through the API', () => {
  const id = newId('every2s');
  const by = `schedule:${id}`;
  let pausedAt = 0;
  let triggeredRun = '';

  test('creating it returns its description; the same id again is a conflict', async () => {
    const res = await apiCall('POST', '/api/schedules', 'operator', { id, spec: pipeline(), specDir, every: '2s', comment: 'e2e every 2s' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.id, id);
    assert.equal(res.body.mode, 'run');
    assert.equal(res.body.every, '2s');
    assert.equal(res.body.overlap, 'SKIP', 'overlap SKIP by default');
    assert.equal(res.body.paused, false);
    assert.equal(res.body.createdBy, 'operator');
    assert.equal(res.body.spec.pools.data, pool);
    assert.ok(res.body.nextActionTimes.length > 0);
    const again = await apiCall('POST', '/api/schedules', 'operator', { id, spec: pipeline(), specDir, every: '2s' });
    assert.equal(again.status, 409);
    assert.equal(again.body.issues[0].path, 'id');
  });

  // Runs take turns (overlap SKIP) and each is some thirty workflow tasks on the stack's worker, which in CI shares
  // two cores with the lanes that train: two runs ended took over 45 s there once, so the wait is generous. A run
  // that ends otherwise than expired fails the test with its status, rather than as a time-out.
  test('it starts runs, which appear in the runs list as requested by the schedule and go through the pipeline', { timeout: 180_000 }, async () => {
    const runs = await waitFor('two scheduled runs that ended', 150_000, async () => {
      const rs = (await runsOf(by)).filter((r) => (TERMINAL_RUN_STATUSES as readonly string[]).includes(r.status));
      return rs.length >= 2 ? rs : undefined;
    });
    assert.deepEqual(runs.map((r) => r.status), runs.map(() => 'expired'), 'each run passes every stage and its gate expires');
    assert.ok(runs.every((r) => r.id.startsWith(`${id}-`) && Number.isFinite(r.at)), JSON.stringify(runs));
    const listed = (await apiCall('GET', '/api/schedules', 'operator')).body.schedules.find((s: any) => s.id === id);
    assert.ok(listed, 'the schedule is listed');
    assert.ok(listed.recentActions.length >= 2);
  });

  test('pausing stops it: no run for a time after the pause, within several intervals', { timeout: 30_000 }, async () => {
    const res = await apiCall('POST', `/api/schedules/${id}/pause`, 'operator', { comment: 'hold for the test' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    pausedAt = Date.now();
    assert.equal(res.body.paused, true);
    assert.match(res.body.note, /paused by operator: hold for the test/);
    await sleep(1500);
    const taken = (await describeSchedule(id)).actionsTaken;
    await sleep(7000);
    const d = await describeSchedule(id);
    assert.equal(d.actionsTaken, taken, 'no action while paused');
    assert.deepEqual((await runsOf(by)).filter((r) => r.at > pausedAt), [], 'no run for a time after the pause');
  });

  test('trigger now starts exactly one run, paused or not', { timeout: 30_000 }, async () => {
    const takenBefore = (await describeSchedule(id)).actionsTaken;
    const triggeredAt = Date.now() - 1000; // nominal times are whole seconds
    const res = await apiCall('POST', `/api/schedules/${id}/trigger`, 'operator', { comment: 'one now' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const fresh = await waitFor('the triggered run', 20_000, async () => {
      const rs = (await runsOf(by)).filter((r) => r.at >= triggeredAt);
      return rs.length > 0 ? rs : undefined;
    });
    await sleep(3000);
    assert.equal((await runsOf(by)).filter((r) => r.at >= triggeredAt).length, 1, JSON.stringify(fresh));
    triggeredRun = fresh[0].id;
    assert.equal((await describeSchedule(id)).actionsTaken, takenBefore + 1);
  });

  test('a backfill over a past window starts exactly the missed runs', { timeout: 60_000 }, async () => {
    // Interval times are multiples of 2 s since the epoch: a window from an odd second to ten seconds later holds five.
    const t = Math.floor(Date.now() / 2000) * 2000 - 600_000;
    const from = new Date(t + 1000);
    const to = new Date(t + 11_000);
    const res = await apiCall('POST', `/api/schedules/${id}/backfill`, 'operator', { from: from.toISOString(), to: to.toISOString(), comment: 'missed while down' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.overlap, 'ALLOW_ALL');
    const inWindow = async () => (await runsOf(by)).filter((r) => r.at >= from.getTime() && r.at <= to.getTime());
    await waitFor('five backfilled runs', 40_000, async () => ((await inWindow()).length >= 5 ? true : undefined));
    await sleep(3000);
    const runs = await inWindow();
    assert.deepEqual(runs.map((r) => r.at - t).sort((a, b) => a - b), [2000, 4000, 6000, 8000, 10_000]);
  });

  test('resuming starts runs again', { timeout: 30_000 }, async () => {
    const res = await apiCall('POST', `/api/schedules/${id}/resume`, 'operator', {});
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.paused, false);
    const resumedAt = Date.now();
    await waitFor('a run after resuming', 20_000, async () => ((await runsOf(by)).some((r) => r.at >= resumedAt) ? true : undefined));
    // Times that passed while it was paused are not taken afterwards (that is what backfill is for).
    const duringPause = (await runsOf(by)).filter((r) => r.at > pausedAt + 2000 && r.at < resumedAt - 1000);
    assert.deepEqual(duringPause.map((r) => r.id), [triggeredRun]);
  });

  test('deleting it stops it; every change is in the audit log with who and why', async () => {
    const res = await apiCall('DELETE', `/api/schedules/${id}?comment=done`, 'operator');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal((await apiCall('GET', `/api/schedules/${id}`, 'operator')).status, 404);
    const entries = (await apiCall('GET', `/api/audit?target=schedule:${id}`, 'operator')).body.entries;
    assert.deepEqual(
      entries.map((e: any) => [e.actor, e.action, e.comment]).reverse(),
      [
        ['operator', 'schedule.create', 'e2e every 2s'],
        ['operator', 'schedule.pause', 'hold for the test'],
        ['operator', 'schedule.trigger', 'one now'],
        ['operator', 'schedule.backfill', 'missed while down'],
        ['operator', 'schedule.resume', null],
        ['operator', 'schedule.delete', 'done'],
      ],
    );
    const create = entries.find((e: any) => e.action === 'schedule.create');
    assert.deepEqual({ mode: create.details.mode, every: create.details.every, overlap: create.details.overlap }, { mode: 'run', every: '2s', overlap: 'SKIP' });
  });
});

test('overlap SKIP: while a run waits at its gate, the schedule starts no other', { timeout: 150_000 }, async () => {
  const id = newId('skip');
  const res = await apiCall('POST', '/api/schedules', 'operator', { id, spec: pipeline({}, '10m'), specDir, every: '2s' });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const [first] = await waitFor('the first run at its gate', 120_000, async () => {
    const rs = (await runsOf(`schedule:${id}`)).filter((r) => r.status === 'waiting-approval');
    return rs.length ? rs : undefined;
  });
  await sleep(6000);
  const d = await describeSchedule(id);
  assert.equal(d.actionsTaken, 1);
  assert.ok(d.skippedOverlap >= 2, `skipped ${d.skippedOverlap}`);
  assert.deepEqual(d.running, [first.id]);
  assert.equal((await runsOf(`schedule:${id}`)).length, 1);
  await apiCall('DELETE', `/api/schedules/${id}`, 'operator');
  const { client, close } = await temporalClient();
  await client.workflow.getHandle(first.id).cancel();
  await close();
});

test('a trigger-mode schedule starts a retrain when a new object appears under the watched prefix, and not otherwise', { timeout: 60_000 }, async () => {
  const id = newId('watch');
  const folder = `inputs/${id}/`;
  const scratch = mkdtempSync(path.join(tmpdir(), 'sched-test-'));
  const put = async (name: string) => {
    writeFileSync(path.join(scratch, name), '{"prompt":"reverse 5 6","response":"6 5"}\n');
    return artifacts.putNamed(`${folder}${name}`, path.join(scratch, name));
  };
  const old = await put('old.jsonl');
  const spec = pipeline({ retrain: { watch: { prefix: artifacts.uriOf(`${artifacts.prefix}${folder}`) }, checkEvery: '2s' } });
  const res = await apiCall('POST', '/api/schedules', 'operator', { id, spec, specDir, comment: 'retrain on new data' });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.mode, 'trigger', 'a spec with retrain.watch makes a trigger');
  assert.equal(res.body.every, '2s', 'from retrain.checkEvery');

  // The first check (taken at once) records the baseline; later checks see nothing new.
  await waitFor('the baseline and two more checks', 20_000, async () => {
    const d = await describeSchedule(id);
    return d.trigger && d.actionsTaken >= 3 ? d : undefined;
  });
  const quiet = await describeSchedule(id);
  assert.match(quiet.trigger.lastCheck, /0 new or changed object/);
  assert.equal(quiet.trigger.watchedObjects, 1);
  assert.deepEqual(await runsOf(`trigger:${id}`), [], 'nothing changed: no retrain');

  const added = await put('new.jsonl');
  const [run] = await waitFor('the retrain', 20_000, async () => {
    const rs = await runsOf(`trigger:${id}`);
    return rs.length ? rs : undefined;
  });
  const logs = (await apiCall('GET', `/api/runs/${run.id}/logs`, 'operator')).body.lines;
  assert.match(logs[0].line, new RegExp(`retrain triggered by ${id}: 1 new or changed object.*new\\.jsonl`));
  const detail = (await apiCall('GET', `/api/runs/${run.id}`, 'operator')).body;
  assert.equal(detail.run.requested_by, `trigger:${id}`);
  assert.deepEqual(detail.run.spec.data.sources.slice(-2).map((s: any) => s.uri), [added, old], 'the watched data files, in key order, after the spec\'s own');
  assert.equal((await describeSchedule(id)).trigger.lastRunId, run.id);

  await sleep(6000);
  assert.equal((await runsOf(`trigger:${id}`)).length, 1, 'no second retrain for the same change');
  assert.equal((await apiCall('DELETE', `/api/schedules/${id}`, 'operator')).status, 200);
  assert.equal(await database.selectFrom('retrain_triggers').select('id').where('id', '=', id).executeTakeFirst(), undefined, 'deleting forgets the trigger state');
});

describe('roles and bad input', () => {
  let viewer: { token: string };

  before(async () => {
    const username = `viewer${Date.now().toString(36)}`;
    assert.equal((await apiCall('POST', '/api/users', 'admin', { username, password: 'a viewer password', role: 'viewer' })).status, 201);
    const res = await fetch(`${cfg.api.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: 'a viewer password' }) });
    viewer = { token: ((await res.json()) as any).token };
  });

  test('viewers and approvers read schedules but may not manage them; operators and admins may', async () => {
    const id = newId('roles');
    const body = { id, spec: pipeline(), specDir, every: '1h', paused: true };
    assert.equal((await apiCall('GET', '/api/schedules', viewer)).status, 200);
    const refused = await apiCall('POST', '/api/schedules', viewer, body);
    assert.equal(refused.status, 403);
    assert.match(refused.body.error, /may not create a schedule/);
    assert.equal((await apiCall('POST', '/api/schedules', 'approver', body)).status, 403);
    assert.equal((await apiCall('POST', '/api/schedules', undefined, body)).status, 401);
    const made = await apiCall('POST', '/api/schedules', 'admin', body);
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.paused, true);
    assert.equal((await apiCall('GET', `/api/schedules/${id}`, viewer)).status, 200);
    for (const action of ['pause', 'resume', 'trigger']) {
      assert.equal((await apiCall('POST', `/api/schedules/${id}/${action}`, viewer, {})).status, 403, action);
      assert.equal((await apiCall('POST', `/api/schedules/${id}/${action}`, 'approver', {})).status, 403, action);
    }
    assert.equal((await apiCall('POST', `/api/schedules/${id}/backfill`, viewer, { from: '2020-01-01T00:00:00Z', to: '2020-01-02T00:00:00Z' })).status, 403);
    assert.equal((await apiCall('DELETE', `/api/schedules/${id}`, viewer)).status, 403);
    assert.equal((await apiCall('POST', `/api/schedules/${id}/resume`, 'operator', { comment: 'operators manage what admins made' })).status, 200);
    assert.equal((await apiCall('DELETE', `/api/schedules/${id}`, 'operator')).status, 200);
    assert.deepEqual(
      (await apiCall('GET', `/api/audit?target=schedule:${id}`, 'operator')).body.entries.map((e: any) => `${e.actor} ${e.action}`).reverse(),
      ['admin schedule.create', 'operator schedule.resume', 'operator schedule.delete'],
    );
  });

  test('bad input is refused with the field and the reason', async () => {
    const spec = pipeline();
    const cases: Array<[unknown, string, RegExp?]> = [
      [{ spec, every: '2s' }, 'id'],
      [{ id: 'Not_An_Id', spec, every: '2s' }, 'id'],
      [{ id: 'ok-id', every: '2s' }, 'spec', /exactly one of spec and example/],
      [{ id: 'ok-id', spec, cron: '0 3 * * *', every: '1h' }, 'every', /not both/],
      [{ id: 'ok-id', spec, every: 'two seconds' }, 'every'],
      [{ id: 'ok-id', spec, every: '0s' }, 'every'],
      [{ id: 'ok-id', spec, cron: 'every day' }, 'cron'],
      [{ id: 'ok-id', spec, cron: '99 * * * *' }, 'cron', /[Mm]inute/],
      [{ id: 'ok-id', spec }, 'every', /give cron or every/],
      [{ id: 'ok-id', spec, every: '2s', overlap: 'SOMETIMES' }, 'overlap'],
      [{ id: 'ok-id', spec, every: '2s', colour: 'blue' }, '', /unknown field\(s\): colour/],
      [{ id: 'ok-id', spec: { ...spec, train: { ...spec.train, steps: -1 } }, every: '2s' }, 'train.steps'],
      [{ id: 'ok-id', example: '../package.yaml', every: '2s' }, 'example'],
      [{ id: 'ok-id', spec, every: '2s', mode: 'trigger' }, 'mode', /retrain\.watch or retrain\.feedback/],
      [{ id: 'ok-id', spec: { ...spec, retrain: { watch: { prefix: 's3://elsewhere/data/' } } }, every: '2s' }, 'retrain.watch.prefix', /outside the artifact bucket/],
      [{ id: 'ok-id', spec: { ...spec, retrain: { watch: { prefix: artifacts.uriOf(`${artifacts.prefix}artifacts/`) } } }, every: '2s' }, 'retrain.watch.prefix', /own artifacts/],
      [{ id: 'ok-id', spec: { ...spec, retrain: { schedule: { every: '1h', cron: '@daily' } } } }, 'retrain.schedule.cron', /exactly one of cron and every/],
    ];
    for (const [given, field, message] of cases) {
      // The demo's data paths are relative: a spec sent inline names the folder they resolve against.
      const body = typeof given === 'object' && given !== null && 'spec' in given ? { specDir, ...given } : given;
      const res = await apiCall('POST', '/api/schedules', 'operator', body);
      assert.equal(res.status, 400, `${JSON.stringify(body).slice(0, 120)}: ${JSON.stringify(res.body)}`);
      assert.ok(res.body.issues.some((i: any) => i.path === field && (!message || message.test(i.message))), `${field}: ${JSON.stringify(res.body.issues)}`);
    }
    assert.equal((await apiCall('GET', '/api/schedules/ok-id', 'operator')).status, 404, 'nothing was created');

    const id = newId('bad');
    assert.equal((await apiCall('POST', '/api/schedules', 'operator', { id, spec, specDir, every: '1h', paused: true })).status, 201);
    const backfills: Array<[unknown, string]> = [
      [{ from: 'yesterday', to: '2020-01-01T00:00:00Z' }, 'from'],
      [{ from: '2020-01-02T00:00:00Z', to: '2020-01-01T00:00:00Z' }, 'to'],
      [{ from: '2000-01-01T00:00:00Z', to: '2020-01-01T00:00:00Z' }, 'to'],
      [{ to: '2020-01-01T00:00:00Z' }, 'from'],
      [{ from: '2020-01-01T00:00:00Z', to: '2020-01-02T00:00:00Z', overlap: 'MAYBE' }, 'overlap'],
    ];
    for (const [body, field] of backfills) {
      const res = await apiCall('POST', `/api/schedules/${id}/backfill`, 'operator', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.ok(res.body.issues.some((i: any) => i.path === field), `${field}: ${JSON.stringify(res.body.issues)}`);
    }
    assert.equal((await apiCall('POST', `/api/schedules/${id}/pause`, 'operator', { comment: 1 })).status, 400);
    for (const [method, route] of [['GET', ''], ['POST', '/pause'], ['POST', '/resume'], ['POST', '/trigger'], ['DELETE', '']]) {
      assert.equal((await apiCall(method, `/api/schedules/no-such-schedule${route}`, 'operator', method === 'POST' ? {} : undefined)).status, 404, `${method} ${route}`);
    }
    assert.equal((await apiCall('DELETE', `/api/schedules/${id}`, 'operator')).status, 200);
  });
});

describe('an eval-mode schedule (drift) through the API', () => {
  test("needs the spec's test suites; each action evaluates the version serving its name, and says so when none serves", { timeout: 120_000 }, async () => {
    const id = newId('drift');
    const bare = await apiCall('POST', '/api/schedules', 'operator', { id, spec: pipeline(), specDir, mode: 'eval', every: '1h' });
    assert.equal(bare.status, 400, JSON.stringify(bare.body));
    assert.deepEqual(bare.body.issues.map((i: any) => i.path), ['mode']);
    const base = pipeline();
    const name = uniqueId('drift').toLowerCase().slice(0, 40);
    const suiteFile = path.join(cfg.dataDir, 'uploads', `${name}.jsonl`);
    mkdirSync(path.dirname(suiteFile), { recursive: true });
    writeFileSync(suiteFile, '{"prompt": "reverse 1 2", "response": "2 1"}\n');
    const spec = pipeline({ name, test: { ...base.test, suites: [{ name: 'digits', source: { uri: suiteFile }, metrics: ['exact_match'] }] } });
    const created = await apiCall('POST', '/api/schedules', 'operator', { id, spec, specDir, mode: 'eval', every: '1h', comment: 'drift watch' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.mode, 'eval');
    assert.equal((await apiCall('POST', `/api/schedules/${id}/trigger`, 'operator', {})).status, 200);
    const by = `eval-schedule:${id}`;
    const evaluation = await waitFor('the drift evaluation', 90_000, async () => {
      const { evaluations } = (await apiCall('GET', '/api/evaluations', 'operator')).body;
      return evaluations.find((e: any) => e.requestedBy === by && e.status !== 'running');
    }, 1000);
    assert.deepEqual([evaluation.status, evaluation.modelName, evaluation.modelVersionId, evaluation.suites], ['failed', name, null, ['digits']]);
    assert.match(evaluation.error, new RegExp(`no version of ${name} is serving`));
  });
});
