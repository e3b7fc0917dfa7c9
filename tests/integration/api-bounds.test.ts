/**
 * Bad input and oversized requests refused at the field with a 4xx, against the real test stack: specs the
 * YAML parser or the database cannot take (an alias bomb, NUL, a lone surrogate), list queries the database
 * cannot take (a negative limit, an id past bigint), a path that is not a URL, specs and schedules beyond
 * the deployment's limits (`cfg.limits`), local data paths outside the allowed roots (refused at submit by
 * the worker's own rule, with one answer whether or not the file exists), and a cancel of a finished run.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { DEFAULT_LIMITS, limitsFrom, localData } from '@tempered/config';
import { parseSpec, SpecError } from '@tempered/spec';
import { CONTROL_TASK_QUEUE, WORKFLOW_TYPE } from '@tempered/workflows';
import { apiCall, cfg, db, demoSpec, repoRoot, temporalClient, uniqueId } from './../support';

const database = db();
after(() => database.destroy());

/** The demo spec with its data paths absolute (a spec sent as JSON has no folder of its own), changed by `edit`. */
function spec(edit: (s: Record<string, any>) => void = () => {}): Record<string, any> {
  const s = demoSpec() as unknown as Record<string, any>;
  const demoDir = path.join(repoRoot, 'examples', 'demo');
  for (const src of s.data.sources) src.uri = path.resolve(demoDir, src.uri);
  s.rlhf.preferences.uri = path.resolve(demoDir, s.rlhf.preferences.uri);
  edit(s);
  return s;
}
const paths = (body: any) => (body.issues ?? []).map((i: any) => i.path);
const startRun = (body: unknown) => apiCall('POST', '/api/runs', 'operator', body);

describe('input the parser or the database cannot take is a 400, not a 500', () => {
  test('a YAML alias bomb is refused before it expands', async () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (const [i, name] of ['b', 'c', 'd', 'e', 'f', 'g', 'h'].entries()) {
      const prev = String.fromCharCode('a'.charCodeAt(0) + i);
      levels.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const res = await apiCall('POST', '/api/runs', 'operator', `apiVersion: tempered/v1\nname: bomb\n${levels.join('\n')}\n`);
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.deepEqual(paths(res.body), ['spec']);
    assert.match(res.body.issues[0].message, /at most 50 aliases/);
  });

  test('NUL or a lone surrogate in a spec string is refused at its field', async () => {
    const nul = await startRun({ spec: spec((s) => (s.description = 'a\u0000b')) });
    assert.equal(nul.status, 400, JSON.stringify(nul.body));
    assert.deepEqual(nul.body.issues, [{ path: 'description', message: 'text contains a NUL character (U+0000)' }]);
    const lone = await startRun({ spec: spec((s) => (s.description = 'half a pair: \ud800')) });
    assert.equal(lone.status, 400, JSON.stringify(lone.body));
    assert.deepEqual(lone.body.issues, [{ path: 'description', message: 'text contains a lone surrogate (not well-formed Unicode)' }]);
    const yaml = await apiCall('POST', '/api/runs', 'operator', 'apiVersion: tempered/v1\nname: nul\ndescription: "a\\0b"\ndata: {sources: [{uri: s3://x/y.jsonl}]}\n');
    assert.equal(yaml.status, 400);
    assert.deepEqual(paths(yaml.body), ['description']);
  });

  test("a clean quality rule's unknown language code or threshold out of range is refused at its field", async () => {
    const res = await startRun({
      spec: spec((s) => (s.clean = { languages: ['en', 'xx'], nearThreshold: 1.5, blocklist: { languages: ['zz'] }, quality: { maxDigitRatio: 2 } })),
    });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.deepEqual(paths(res.body).sort(), ['clean.blocklist.languages.0', 'clean.languages.1', 'clean.nearThreshold', 'clean.quality.maxDigitRatio']);
  });

  test('a list limit that is not 1 to its maximum, or a row id past bigint, is refused at the field', async () => {
    const runId = uniqueId('bounds');
    for (const [url, field, message] of [
      ['/api/runs?limit=-1', 'limit', 'expected a whole number from 1 to 500'],
      ['/api/runs?limit=0', 'limit', 'expected a whole number from 1 to 500'],
      ['/api/runs?limit=501', 'limit', 'at most 500'],
      ['/api/audit?limit=-5', 'limit', 'expected a whole number from 1 to 1000'],
      [`/api/runs/${runId}/logs?limit=-1`, 'limit', 'expected a whole number from 1 to 2000'],
      [`/api/runs/${runId}/logs?after=1e20`, 'after', 'expected a row id (a whole number)'],
      [`/api/runs/${runId}/logs?after=99999999999999999999`, 'after', 'expected a row id (a whole number)'],
      [`/api/runs/${runId}/logs?after=-3`, 'after', 'expected a row id (a whole number)'],
    ] as const) {
      const res = await apiCall('GET', url, 'operator');
      assert.equal(res.status, 400, `${url}: ${JSON.stringify(res.body)}`);
      assert.deepEqual(res.body.issues, [{ path: field, message }], url);
    }
    assert.equal((await apiCall('GET', '/api/runs?limit=500', 'operator')).status, 200);
    assert.equal((await apiCall('GET', '/api/audit?limit=3', 'operator')).body.entries.length <= 3, true);
    assert.deepEqual((await apiCall('GET', `/api/runs/${runId}/logs?after=5&limit=10`, 'operator')).body, { lines: [] });
  });

  test('a path that is not a valid URL is a 400 for anyone, with no stack trace in the log', async () => {
    const log = path.join(cfg.dataDir, 'logs', 'api.log');
    const before = readFileSync(log, 'utf8').length;
    for (const p of ['/%', '/api/%', '/api/runs/%zz']) {
      const res = await fetch(`${cfg.api.url}${p}`);
      assert.equal(res.status, 400, p);
      assert.deepEqual(await res.json(), { error: 'the path is not a valid URL: a % must start an escape such as %2F' }, p);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', 'the security headers too');
    }
    await new Promise((r) => setTimeout(r, 300));
    const added = readFileSync(log, 'utf8').slice(before);
    assert.doesNotMatch(added, /failed:|\n\s+at /, added);
  });
});

describe('specs beyond the deployment limits are refused at the field', () => {
  const cases: Array<[string, (s: Record<string, any>) => void, string, string | RegExp]> = [
    ['train.steps: 1e12', (s) => (s.train.steps = 1e12), 'train.steps', `at most ${DEFAULT_LIMITS.trainSteps}`],
    ['train.batchSize: 1e9', (s) => (s.train.batchSize = 1e9), 'train.batchSize', `at most ${DEFAULT_LIMITS.batchSize}`],
    ['rlhf.steps: 1e7', (s) => (s.rlhf.steps = 1e7), 'rlhf.steps', `at most ${DEFAULT_LIMITS.trainSteps}`],
    ['48 layers × 8192', (s) => Object.assign(s.model, { nLayer: 48, nEmbd: 8192, nHead: 64 }), 'model', /about 38\d{3} M parameters; at most 100 M/],
    ['approvalTimeout 99999999999999d', (s) => (s.deploy.approvalTimeout = '99999999999999d'), 'deploy.approvalTimeout', 'at most 366d'],
    ['approvalTimeout 60d', (s) => (s.deploy.approvalTimeout = '60d'), 'deploy.approvalTimeout', 'at most 30d'],
    ['train.gpus: 0', (s) => (s.train.gpus = 0), 'train.gpus', 'Too small: expected number to be >=1'],
    ['train.gpus: 65', (s) => (s.train.gpus = 65), 'train.gpus', 'Too big: expected number to be <=64'],
    ['train.gpus: 3 with batchSize 32', (s) => Object.assign(s.train, { gpus: 3, batchSize: 32 }), 'train.batchSize', /multiple of gpus/],
  ];
  for (const [name, edit, field, message] of cases) {
    test(`${name}: 400 naming ${field}, for a run and a schedule alike`, async () => {
      for (const res of [
        await startRun({ spec: spec(edit) }),
        await apiCall('POST', '/api/schedules', 'operator', { id: uniqueId('bounds'), spec: spec(edit), every: '1h', paused: true }),
      ]) {
        assert.equal(res.status, 400, JSON.stringify(res.body));
        assert.deepEqual(paths(res.body), [field]);
        if (typeof message === 'string') assert.equal(res.body.issues[0].message, message);
        else assert.match(res.body.issues[0].message, message);
        assert.ok(res.body.error.includes(`- ${field}: `), res.body.error);
      }
    });
  }
});

describe('schedules: runs may not pile up, backfills are bounded', () => {
  const created: string[] = [];
  after(async () => {
    for (const id of created) await apiCall('DELETE', `/api/schedules/${id}`, 'operator');
  });
  const create = async (body: Record<string, unknown>) => {
    const id = uniqueId('bounds');
    const res = await apiCall('POST', '/api/schedules', 'operator', { id, spec: spec(), paused: true, ...body });
    if (res.status === 201) created.push(id);
    return { id, res };
  };

  test('every 1 s with overlap ALLOW_ALL (or BUFFER_ALL) is refused; SKIP at 1 s and ALLOW_ALL hourly are taken', async () => {
    for (const overlap of ['ALLOW_ALL', 'BUFFER_ALL']) {
      const { res } = await create({ every: '1s', overlap });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.deepEqual(res.body.issues, [
        { path: 'every', message: `with overlap ${overlap} at least 1h between runs (this starts one every 1s, faster than runs end); give a longer interval, or overlap SKIP or BUFFER_ONE` },
      ]);
    }
    assert.equal((await create({ every: '1s' })).res.status, 201, 'SKIP keeps one run at a time');
    assert.equal((await create({ every: '1h', overlap: 'ALLOW_ALL' })).res.status, 201);
  });

  test('a cron that fires every minute with ALLOW_ALL is refused, and no schedule is left behind', async () => {
    const { id, res } = await create({ cron: '* * * * *', overlap: 'ALLOW_ALL', paused: false });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.deepEqual(paths(res.body), ['cron']);
    assert.match(res.body.issues[0].message, /this starts one every 1m/);
    assert.equal((await apiCall('GET', `/api/schedules/${id}`, 'operator')).status, 404);
    const hourly = await create({ cron: '0 * * * *', overlap: 'ALLOW_ALL', paused: false });
    assert.equal(hourly.res.status, 201, JSON.stringify(hourly.res.body));
    assert.equal(hourly.res.body.paused, false, 'created running as asked, once its timing was checked');
  });

  test('a 366-day backfill, or one that would start more than 100 runs, is refused', async () => {
    const { id, res } = await create({ every: '1h', overlap: 'ALLOW_ALL' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const year = await apiCall('POST', `/api/schedules/${id}/backfill`, 'operator', { from: '2024-01-01T00:00:00Z', to: '2024-12-31T00:00:00Z' });
    assert.equal(year.status, 400, JSON.stringify(year.body));
    assert.deepEqual(year.body.issues, [{ path: 'to', message: `a backfill covers at most ${DEFAULT_LIMITS.maxBackfillDays} days` }]);
    const many = await apiCall('POST', `/api/schedules/${id}/backfill`, 'operator', { from: '2024-01-01T00:00:00Z', to: '2024-01-06T00:00:00Z' });
    assert.equal(many.status, 400, JSON.stringify(many.body));
    assert.deepEqual(paths(many.body), ['from']);
    assert.match(many.body.issues[0].message, /about 120 actions .* at most 100/);
    const audited = await database.selectFrom('audit_log').select('action').where('target', '=', `schedule:${id}`).execute();
    assert.deepEqual(audited.map((r) => r.action), ['schedule.create'], 'a refused backfill is not audited');
  });
});

describe('local data paths outside the allowed roots are refused at submit, saying nothing of the file', () => {
  const uploads = path.join(cfg.dataDir, 'uploads');
  const link = path.join(uploads, `${uniqueId('escape')}.jsonl`);
  after(() => rmSync(link, { force: true }));

  test('an existing and a missing file outside the roots get the same answer', async () => {
    const answer = async (uri: string) => {
      const res = await startRun({ spec: spec((s) => (s.data.sources[0].uri = uri)) });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.deepEqual(paths(res.body), ['data.sources.0.uri']);
      return res.body.issues[0].message.replace(uri, '<uri>');
    };
    const exists = await answer('/etc/passwd');
    assert.match(exists, /^<uri> is outside the allowed local data roots/);
    assert.equal(await answer('/etc/no-such-file.jsonl'), exists);
    assert.equal(await answer(path.join(cfg.dataDir, 'credentials.json')), exists, 'the data directory is not a data root');
    assert.equal(await answer(path.join(cfg.dataDir, 'no-such-file.json')), exists);
  });

  test('a link inside a root that leads out is refused; preferences and a base model by path are checked too', async () => {
    mkdirSync(uploads, { recursive: true });
    symlinkSync('/etc/passwd', link);
    const res = await startRun({
      spec: spec((s) => {
        s.data.sources[0].uri = link;
        s.rlhf.preferences.uri = '/etc/hostname';
        s.model.base = { uri: 'file:///etc' };
      }),
    });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.deepEqual(paths(res.body), ['data.sources.0.uri', 'rlhf.preferences.uri', 'model.base.uri']);
    assert.ok(res.body.issues.every((i: any) => /outside the allowed local data roots/.test(i.message)), JSON.stringify(res.body));
  });

  test('the worker applies the same rule (one function), and a missing file inside the roots is its to report', () => {
    const outside = localData(cfg, '/etc/passwd', undefined);
    assert.deepEqual(outside.ok ? undefined : outside.reason, 'outside');
    const missingOutside = localData(cfg, '/etc/nope.jsonl', undefined);
    assert.equal(missingOutside.ok ? undefined : missingOutside.reason, 'outside');
    const missingInside = localData(cfg, path.join(uploads, 'nope.jsonl'), undefined);
    assert.equal(missingInside.ok ? undefined : missingInside.reason, 'missing');
    const demo = localData(cfg, 'data/train.jsonl', path.join(repoRoot, 'examples', 'demo'));
    assert.notEqual(demo.ok ? 'ok' : demo.reason, 'outside', 'a relative path resolves against the spec folder, inside examples/');
    assert.equal(localData(cfg, 'http://example.com/x.jsonl', undefined).ok, false);
    writeFileSync(path.join(uploads, 'ok.jsonl'), '{}\n');
    assert.equal(localData(cfg, `file://${path.join(uploads, 'ok.jsonl')}`, undefined).ok, true);
  });
});

test('cancelling a finished run is a 409, and writes no audit row', async () => {
  const { client, close } = await temporalClient();
  try {
    const runId = uniqueId('bounds-finished');
    // A run's workflow on a queue no worker serves, ended at once: a finished run, without training one.
    const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: `${CONTROL_TASK_QUEUE}-nobody`, workflowId: runId, args: [{ spec: spec(), requestedBy: 'operator' }] });
    await handle.terminate('test: a finished run');
    const res = await apiCall('POST', `/api/runs/${runId}/cancel`, 'operator');
    assert.equal(res.status, 409, JSON.stringify(res.body));
    assert.equal(res.body.error, `run ${runId} has already finished (terminated); there is nothing to cancel`);
    const rows = await database.selectFrom('audit_log').select('action').where('target', '=', `run:${runId}`).execute();
    assert.deepEqual(rows, []);
    assert.equal((await apiCall('POST', '/api/runs/no-such-run-bounds/cancel', 'operator')).status, 404);
  } finally {
    await close();
  }
});

test('an admin sets the limits in the environment; a bad value stops the process at start, naming the variable', () => {
  const limits = limitsFrom({ TEMPERED_MAX_TRAIN_STEPS: '500', TEMPERED_MAX_APPROVAL_TIMEOUT: '7d', TEMPERED_MIN_STACKING_INTERVAL: '10m' });
  assert.deepEqual(limits, { ...DEFAULT_LIMITS, trainSteps: 500, approvalTimeoutMs: 7 * 86_400_000, minStackingIntervalMs: 600_000 });
  assert.throws(() => limitsFrom({ TEMPERED_MAX_BATCH_SIZE: '-1' }), /TEMPERED_MAX_BATCH_SIZE=-1 is not a positive whole number/);
  assert.throws(() => limitsFrom({ TEMPERED_MAX_APPROVAL_TIMEOUT: 'a week' }), /TEMPERED_MAX_APPROVAL_TIMEOUT=a week is not a duration/);
  const yaml = 'apiVersion: tempered/v1\nname: x\ndata: {sources: [{uri: s3://b/k.jsonl}]}\nrlhf: {method: none}\ntrain: {steps: 600}\n';
  assert.equal(parseSpec(yaml).train.steps, 600, 'without limits (the CLI, the dashboard) the schema alone decides');
  assert.throws(() => parseSpec(yaml, limits), (err: unknown) => err instanceof SpecError && err.issues[0].path === 'train.steps' && err.issues[0].message === 'at most 500');
});
