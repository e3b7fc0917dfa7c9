/**
 * A triggered retrain on the real stack reuses the cached upstream stages. A trigger-mode schedule watches an
 * S3 prefix that holds the spec's RLHF preference pairs (the SFT data is a separate local upload); its first
 * check records the baseline. One ordinary run of the same spec, started through the API, computes every
 * stage to its gate and so fills the stage cache. Then a new version of the preferences object lands under
 * the watched prefix: the trigger starts a retrain (requested by `trigger:<id>`) which, per
 * `stage_cache_uses` and its log, reuses ingest, clean, tokenize, split, train and validate from the first
 * run, runs rlhf and test anew, and aligns on the new pairs (its preferences artifact is theirs). Prints the
 * retrain's wall time from start to gate against the first run's.
 *
 * Real worker, real trainer, kept tiny (40 SFT steps, a few DPO steps, no exact-match floor, championMargin
 * -1 so the gate needs no override).
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateDemoData } from '@tempered/examples';
import { type PipelineSpec, validateSpec } from '@tempered/spec';
import { apiCall, cfg, db, demoSpec, store, uniqueId, waitFor } from '../support';

const REUSED = ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate'] as const;
const ANEW = ['rlhf', 'test'] as const;

describe('a retrain triggered by new data under the watched prefix reuses the cached upstream stages', () => {
  const database = db();
  const artifacts = store();
  const tag = randomBytes(3).toString('hex');
  const scheduleId = uniqueId('rc-watch');
  const folder = `inputs/retrain-${tag}-${Date.now().toString(36)}/`;
  const prefsKey = `${folder}preferences.jsonl`;
  const runs: string[] = [];
  let spec: PipelineSpec;
  const scratch = mkdtempSync(path.join(tmpdir(), 'retrain-cache-'));
  let newPrefsFile: string;
  let firstRun: string;
  let retrain: string;
  let uploadedAt: number;

  const runRow = (id: string) => database.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
  const stagesOf = (id: string) => database.selectFrom('stages').selectAll().where('run_id', '=', id).execute();
  const cacheUsesOf = (id: string) => database.selectFrom('stage_cache_uses').selectAll().where('run_id', '=', id).execute();
  const artifactOf = (id: string, stage: string, kind: string) =>
    database.selectFrom('artifacts').selectAll().where('run_id', '=', id).where('stage', '=', stage).where('kind', '=', kind).executeTakeFirstOrThrow();

  async function atGate(runId: string, timeoutMs: number): Promise<any> {
    return waitFor(`${runId} at its gate`, timeoutMs, async () => {
      const d = (await apiCall('GET', `/api/runs/${runId}`, 'operator')).body;
      if (['failed', 'cancelled', 'expired', 'rejected'].includes(d.run?.status)) throw new Error(`run ${runId} ${d.run.status}: ${d.run.error}`);
      return d.run?.status === 'waiting-approval' ? d : undefined;
    }, 1000);
  }

  /** Seconds from the run's row (its start) to its gate (the deploy stage waiting for a decision). */
  async function startToGate(runId: string): Promise<number> {
    const run = (await runRow(runId))!;
    const deploy = (await stagesOf(runId)).find((s) => s.name === 'deploy')!;
    return (deploy.started_at!.getTime() - run.created_at.getTime()) / 1000;
  }

  const seconds = (s: { started_at: Date | null; finished_at: Date | null } | undefined) =>
    s?.started_at && s.finished_at ? (s.finished_at.getTime() - s.started_at.getTime()) / 1000 : NaN;

  before(async () => {
    // A seed of this test's own: no other run (of another suite on a shared stack) has this data in the cache.
    const seed = randomInt(1, 2 ** 31);
    const dataDir = path.join(cfg.dataDir, 'uploads', `retrain-cache-${tag}`);
    const data = generateDemoData(dataDir, { records: 300, preferencePairs: 40, seed });
    // The second version of the pairs: other prompts, from another seed.
    const later = generateDemoData(scratch, { records: 300, preferencePairs: 40, seed: seed + 1 });
    newPrefsFile = later.preferences.path;
    const prefsUri = await artifacts.putNamed(prefsKey, data.preferences.path);

    const demo = demoSpec();
    spec = validateSpec({
      ...demo,
      name: `rc-${tag}`,
      data: { ...demo.data, sources: [{ uri: path.join(dataDir, 'train.jsonl'), encoding: 'utf-8' }] },
      train: { ...demo.train, steps: 40, checkpointEvery: 40, warmupSteps: 5 },
      rlhf: { ...demo.rlhf, method: 'dpo', source: 'dataset', preferences: { uri: prefsUri, encoding: 'utf-8' }, steps: 8, batchSize: 8 },
      test: { ...demo.test, minExactMatch: undefined, championMargin: -1 },
      deploy: { ...demo.deploy, approvalTimeout: '1h' },
      retrain: { watch: { prefix: artifacts.uriOf(`${artifacts.prefix}${folder}`), minNewObjects: 1, sources: 'none' }, checkEvery: '2s' },
    });
  });

  after(async () => {
    await apiCall('DELETE', `/api/schedules/${scheduleId}?comment=retrain-cache%20e2e%20done`, 'operator').catch(() => undefined);
    for (const id of runs) {
      const status = (await runRow(id).catch(() => undefined))?.status;
      if (status === 'waiting-approval') await apiCall('POST', `/api/runs/${id}/approval`, 'approver', { decision: 'reject', comment: 'retrain-cache e2e cleanup' }).catch(() => undefined);
      else if (status === 'queued' || status === 'running') await apiCall('POST', `/api/runs/${id}/cancel`, 'operator').catch(() => undefined);
    }
    await database.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('the trigger-mode schedule records the watched prefix as its baseline', { timeout: 60_000 }, async () => {
    const res = await apiCall('POST', '/api/schedules', 'operator', { id: scheduleId, spec, comment: 'retrain when new preference pairs land' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.mode, 'trigger');
    assert.equal(res.body.every, '2s');
    const d = await waitFor('the baseline', 45_000, async () => {
      const s = (await apiCall('GET', `/api/schedules/${scheduleId}`, 'operator')).body;
      return s.trigger ? s : undefined;
    });
    assert.match(d.trigger.lastCheck, /first check: recorded 1 object/);
    assert.equal(d.trigger.watchedObjects, 1);
  });

  test('a first run of the same spec computes every stage to its gate (the cache is warm)', { timeout: 4 * 60_000 }, async () => {
    const started = await apiCall('POST', '/api/runs', 'operator', { spec });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    firstRun = started.body.runId;
    runs.push(firstRun);
    await atGate(firstRun, 4 * 60_000);
    assert.deepEqual(await cacheUsesOf(firstRun), [], 'the first run reused nothing: it computed every stage');
    const entries = await database.selectFrom('stage_cache').select(['stage', 'run_id']).where('run_id', '=', firstRun).execute();
    assert.deepEqual(entries.map((e) => e.stage).sort(), [...REUSED].sort(), 'its cacheable stages are in the cache');
    // Nothing new under the prefix meanwhile: the trigger started nothing.
    assert.deepEqual(await database.selectFrom('runs').select('id').where('requested_by', '=', `trigger:${scheduleId}`).execute(), []);
    // The first run is done with: its gate is declined, its cached results stay usable.
    const rejected = await apiCall('POST', `/api/runs/${firstRun}/approval`, 'approver', { decision: 'reject', comment: 'only here to warm the cache' });
    assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
  });

  test('new preference pairs under the watched prefix start a retrain that reaches its gate', { timeout: 3 * 60_000 }, async () => {
    const uri = await artifacts.putNamed(prefsKey, newPrefsFile);
    uploadedAt = Date.now();
    const [row] = await waitFor('the retrain', 30_000, async () => {
      const rs = await database.selectFrom('runs').selectAll().where('requested_by', '=', `trigger:${scheduleId}`).execute();
      return rs.length ? rs : undefined;
    }, 500);
    retrain = row.id;
    runs.push(retrain);
    const detail = await atGate(retrain, 3 * 60_000);
    const gateSeenAt = Date.now();
    assert.equal(detail.run.requested_by, `trigger:${scheduleId}`);
    assert.deepEqual(detail.run.spec.data.sources, spec.data.sources, 'sources: none: the retrain reads the spec\'s own sources');
    const [first] = await database.selectFrom('run_logs').selectAll().where('run_id', '=', retrain).orderBy('id').limit(1).execute();
    assert.equal(first.stage, 'trigger');
    assert.ok(first.line.startsWith(`retrain triggered by ${scheduleId}: 1 new or changed object(s)`), first.line);
    assert.ok(first.line.includes(uri), first.line);
    for (const s of [...REUSED, ...ANEW]) assert.equal(detail.stages.find((x: any) => x.name === s)?.status, 'completed', `stage ${s}`);

    const [a, b] = [await startToGate(firstRun), await startToGate(retrain)];
    console.log(`# start to gate: first run ${a.toFixed(1)} s, triggered retrain ${b.toFixed(1)} s (${((1 - b / a) * 100).toFixed(0)}% less); upload to retrain's gate seen ${((gateSeenAt - uploadedAt) / 1000).toFixed(1)} s`);
    const [s1, s2] = [await stagesOf(firstRun), await stagesOf(retrain)];
    const per = [...REUSED, ...ANEW].map((n) => `${n} ${seconds(s1.find((s) => s.name === n)).toFixed(1)}→${seconds(s2.find((s) => s.name === n)).toFixed(1)}`);
    console.log(`# stage wall times (first run → retrain, s): ${per.join(', ')}`);
    assert.ok(b < a, `the retrain (${b} s) is faster to its gate than the run that computed everything (${a} s)`);
  });

  test('ingest, clean, tokenize, split, train and validate were reused from the first run; rlhf and test ran anew', async () => {
    const uses = await cacheUsesOf(retrain);
    assert.deepEqual(uses.map((u) => u.stage).sort(), [...REUSED].sort(), JSON.stringify(uses));
    assert.ok(uses.every((u) => u.source_run_id === firstRun), JSON.stringify(uses));
    const cached = await database.selectFrom('stage_cache').select(['key', 'stage', 'run_id']).where('key', 'in', uses.map((u) => u.key)).execute();
    assert.ok(cached.length === REUSED.length && cached.every((c) => c.run_id === firstRun), 'the entries it used are the first run\'s');

    const logs = await database.selectFrom('run_logs').select(['stage', 'line']).where('run_id', '=', retrain).orderBy('id').execute();
    for (const stage of REUSED) {
      assert.ok(
        logs.some((l) => l.stage === stage && l.line.startsWith(`${stage}: reused the result of run ${firstRun} (stage cache key `)),
        `the log says ${stage} was reused: ${JSON.stringify(logs.filter((l) => l.stage === stage))}`,
      );
    }
    for (const stage of ANEW) assert.ok(!logs.some((l) => l.stage === stage && /reused the result/.test(l.line)), `${stage} was not reused`);

    // Same upstream outputs: the SFT model both runs aligned is one and the same artifact.
    assert.equal((await artifactOf(retrain, 'validate', 'model')).sha256, (await artifactOf(firstRun, 'validate', 'model')).sha256);
    // rlhf computed anew: its own DPO loss series (not copied), and a different aligned model.
    const dpo = await database.selectFrom('metrics').select('step').where('run_id', '=', retrain).where('stage', '=', 'rlhf').where('name', '=', 'dpo_loss').execute();
    assert.ok(dpo.length > 0 && dpo.every((m) => m.step <= spec.rlhf.steps), `this run's own DPO loss points: ${JSON.stringify(dpo)}`);
    assert.notEqual((await artifactOf(retrain, 'rlhf', 'model')).sha256, (await artifactOf(firstRun, 'rlhf', 'model')).sha256);
  });

  test('the retrain aligned on the new pairs', async () => {
    const [before, now] = [await artifactOf(firstRun, 'rlhf', 'preferences'), await artifactOf(retrain, 'rlhf', 'preferences')];
    assert.notEqual(now.sha256, before.sha256, 'the preferences artifact changed');
    const pairs = (text: string) => text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
    const stored = pairs((await artifacts.getBytes(now.uri)).toString('utf8'));
    const expected = pairs(readFileSync(newPrefsFile, 'utf8')).filter((p) => typeof p.prompt === 'string' && typeof p.chosen === 'string' && typeof p.rejected === 'string' && p.chosen !== p.rejected);
    assert.deepEqual(
      stored.map((p) => [p.prompt, p.chosen, p.rejected]),
      expected.map((p) => [p.prompt.normalize('NFKC'), p.chosen.normalize('NFKC'), p.rejected.normalize('NFKC')]),
      'the retrain\'s preferences are the new object\'s well-formed pairs',
    );
    const old = new Set(pairs((await artifacts.getBytes(before.uri)).toString('utf8')).map((p) => p.prompt));
    assert.ok(stored.some((p) => !old.has(p.prompt)), 'pairs the first run did not have');

    // One retrain for the one change: later checks found nothing new.
    await new Promise((r) => setTimeout(r, 4000));
    const triggered = await database.selectFrom('runs').select('id').where('requested_by', '=', `trigger:${scheduleId}`).execute();
    assert.deepEqual(triggered.map((r) => r.id), [retrain]);
    const d = (await apiCall('GET', `/api/schedules/${scheduleId}`, 'operator')).body;
    assert.equal(d.trigger.lastRunId, retrain);
  });
});
