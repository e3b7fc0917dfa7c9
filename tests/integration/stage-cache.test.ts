/**
 * The stage cache against the real S3 server and PostgreSQL (activities, no workflow): a second run with the
 * same spec and data reuses ingest, clean, tokenize and split (and train and validate), with the same
 * artifacts recorded for it; a changed clean setting reuses ingest only; changed data reuses nothing; an
 * artifact gone from the store turns its entry into a miss whose recomputed result replaces it; a reused
 * validation still answers to the run's own gate; TEMPERED_STAGE_CACHE=off (or `cache: false` in the spec)
 * neither reads nor writes.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots } from '@tempered/activities';
import { ancestors, node } from '@tempered/db';
import { generateDemoData } from '@tempered/examples';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, CleanResult, IngestResult, SplitResult, TokenizeResult, TrainResult, ValidateResult } from '@tempered/contract';
import { cfg, db, demoSpec, store, trainerServer, uniqueId } from '../support';

interface Chain {
  ingest: IngestResult;
  clean: CleanResult;
  tokenize: TokenizeResult;
  split: SplitResult;
  ms: number;
}

describe('the stage cache', { timeout: 10 * 60_000 }, () => {
  const database = db();
  const artifacts = store();
  const activities = createActivities({ cfg, db: database, store: artifacts, slots: TrainerSlots.unlimited(), trainerServer });
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 120_000 });
  const tag = uniqueId('cache');
  const dataDir = path.join(cfg.dataDir, 'uploads', tag);
  const changedDir = path.join(cfg.dataDir, 'uploads', `${tag}-changed`);
  const runs: string[] = [];

  async function newRun(name: string): Promise<string> {
    const id = uniqueId(`cache-${name}`);
    await database.insertInto('runs').values({ id, name: 'stage-cache', spec: '{}', status: 'running', requested_by: 'test' }).execute();
    runs.push(id);
    return id;
  }

  const spec = (): PipelineSpec => {
    const s = demoSpec();
    s.data.sources = [{ uri: 'train.jsonl', encoding: 'utf-8' }];
    s.train = { ...s.train, steps: 6, checkpointEvery: 3, warmupSteps: 1, batchSize: 8 };
    return s;
  };

  async function chain(runId: string, s: PipelineSpec, specDir = dataDir): Promise<Chain> {
    const t0 = performance.now();
    const ingest: IngestResult = await env.run(activities.ingest, { runId, spec: s, specDir });
    const clean: CleanResult = await env.run(activities.clean, { runId, spec: s, dataset: ingest.dataset });
    const tokenize: TokenizeResult = await env.run(activities.tokenize, { runId, spec: s, cleaned: clean.cleaned });
    const split: SplitResult = await env.run(activities.split, { runId, spec: s, encoded: tokenize.encoded });
    return { ingest, clean, tokenize, split, ms: performance.now() - t0 };
  }

  /** The artifacts of a chain, by stage (what must be identical when reused). */
  const refsOf = (c: Chain): Record<string, ArtifactRef[]> => ({
    ingest: [c.ingest.dataset, c.ingest.quarantine],
    clean: [c.clean.cleaned, c.clean.report],
    tokenize: [c.tokenize.tokenizer, c.tokenize.encoded],
    split: [c.split.train, c.split.validation, c.split.test],
  });

  async function usesOf(runId: string): Promise<Array<{ stage: string; source_run_id: string; key: string }>> {
    return database.selectFrom('stage_cache_uses').select(['stage', 'source_run_id', 'key']).where('run_id', '=', runId).orderBy('stage').execute();
  }
  const stagesReused = async (runId: string) => (await usesOf(runId)).map((u) => u.stage);

  async function artifactCounts(runId: string): Promise<Record<string, number>> {
    const rows = await database.selectFrom('artifacts').select(['stage']).where('run_id', '=', runId).execute();
    const counts: Record<string, number> = {};
    for (const r of rows) counts[r.stage] = (counts[r.stage] ?? 0) + 1;
    return counts;
  }

  let cold: Chain;
  let coldRun: string;
  let warm: Chain;
  let warmRun: string;

  before(async () => {
    // Data no other suite (or earlier test session on this stack) has: the first run is a miss for sure.
    generateDemoData(dataDir, { records: 240 });
    // (Ingest keeps prompt and response only, so the difference must be in them.)
    const digits = [...randomBytes(8)].map((b) => b % 10);
    const unique = { prompt: `reverse ${digits.join(' ')}`, response: [...digits].reverse().join(' ') };
    appendFileSync(path.join(dataDir, 'train.jsonl'), `${JSON.stringify(unique)}\n`);
    mkdirSync(changedDir, { recursive: true });
    copyFileSync(path.join(dataDir, 'train.jsonl'), path.join(changedDir, 'train.jsonl'));
    appendFileSync(path.join(changedDir, 'train.jsonl'), `${JSON.stringify({ prompt: 'reverse 8 0 8 2', response: '2 8 0 8' })}\n`);
  });
  after(() => database.destroy());

  test('a second run with the same spec and data reuses ingest, clean, tokenize and split', async () => {
    coldRun = await newRun('cold');
    warmRun = await newRun('warm');
    cold = await chain(coldRun, spec());
    assert.deepEqual(await stagesReused(coldRun), [], 'nothing to reuse on the first run');
    warm = await chain(warmRun, spec());
    console.log(`data stages: cold ${(cold.ms / 1000).toFixed(2)} s, from the cache ${(warm.ms / 1000).toFixed(2)} s`);

    const uses = await usesOf(warmRun);
    assert.deepEqual(uses.map((u) => u.stage), ['clean', 'ingest', 'split', 'tokenize']);
    for (const u of uses) assert.equal(u.source_run_id, coldRun, u.stage);
    // Same artifacts, same counts, same dataset version; the hit is marked on the result.
    assert.deepEqual(refsOf(warm), refsOf(cold));
    assert.deepEqual(warm.ingest.counts, cold.ingest.counts);
    assert.deepEqual(warm.split.counts, cold.split.counts);
    assert.equal(warm.ingest.datasetVersionId, cold.ingest.datasetVersionId);
    for (const r of [warm.ingest, warm.clean, warm.tokenize, warm.split] as unknown as Array<Record<string, unknown>>) {
      assert.equal(r.cached, true);
      assert.equal(r.cachedFrom, coldRun);
    }
    assert.equal((cold.ingest as unknown as Record<string, unknown>).cached, undefined, 'a computed result is not marked');
    const entries = await database.selectFrom('stage_cache').selectAll().where('key', 'in', uses.map((u) => u.key)).execute();
    assert.equal(entries.length, 4);
    for (const e of entries) {
      assert.equal(e.hits, 1, e.stage);
      assert.equal(e.run_id, coldRun, e.stage);
    }

    // The reusing run has its bookkeeping as if it had computed: artifacts, dataset version, lineage, log.
    assert.deepEqual(await artifactCounts(warmRun), await artifactCounts(coldRun));
    assert.deepEqual(await artifactCounts(warmRun), { ingest: 2, clean: 2, tokenize: 2, split: 3 });
    const version = await database.selectFrom('dataset_versions').selectAll().where('id', '=', warm.ingest.datasetVersionId).executeTakeFirstOrThrow();
    assert.equal(version.sha256, warm.ingest.dataset.sha256);
    const up = (await ancestors(database, node.artifact(warm.split.train))).map((e) => e.parent);
    assert.ok(up.includes(node.artifact(warm.ingest.dataset)), 'the train split descends from the dataset snapshot');
    const lines = (await database.selectFrom('run_logs').select('line').where('run_id', '=', warmRun).execute()).map((r) => r.line);
    for (const stage of ['ingest', 'clean', 'tokenize', 'split']) {
      assert.ok(lines.some((l) => l.startsWith(`${stage}: reused the result of run ${coldRun}`)), `${stage} in ${JSON.stringify(lines)}`);
    }

    // A retried activity repeats the hit without counting it twice.
    await env.run(activities.split, { runId: warmRun, spec: spec(), encoded: warm.tokenize.encoded });
    const splitEntry = await database.selectFrom('stage_cache').select('hits').where('key', '=', uses.find((u) => u.stage === 'split')!.key).executeTakeFirstOrThrow();
    assert.equal(splitEntry.hits, 1);
  });

  test('changing a clean setting reuses ingest only', async () => {
    const runId = await newRun('clean-changed');
    const s = spec();
    s.clean = { ...s.clean, dedupe: 'none' }; // the demo data has planted duplicates: the cleaned records differ
    const changed = await chain(runId, s);
    assert.deepEqual(await stagesReused(runId), ['ingest']);
    assert.notEqual(changed.clean.cleaned.sha256, cold.clean.cleaned.sha256);
    assert.notEqual(changed.split.train.sha256, cold.split.train.sha256);
  });

  test('changing the data reuses nothing', async () => {
    const runId = await newRun('data-changed');
    const changed = await chain(runId, spec(), changedDir);
    assert.deepEqual(await stagesReused(runId), []);
    assert.notEqual(changed.ingest.datasetVersionId, cold.ingest.datasetVersionId);
  });

  test('an artifact gone from the store makes its entry a miss; the recomputed result replaces the entry', async () => {
    const cleanKey = (await usesOf(warmRun)).find((u) => u.stage === 'clean')!.key;
    await artifacts.remove(cold.clean.cleaned.uri);
    assert.equal(await artifacts.exists(cold.clean.cleaned.uri), false);

    const runId = await newRun('lost');
    const again = await chain(runId, spec());
    // Clean is recomputed (to the same bytes), so tokenize and split downstream are hits again.
    assert.deepEqual(await stagesReused(runId), ['ingest', 'split', 'tokenize']);
    assert.equal(await artifacts.exists(cold.clean.cleaned.uri), true, 'the recomputed artifact is back');
    assert.deepEqual(refsOf(again), refsOf(cold));
    const entry = await database.selectFrom('stage_cache').selectAll().where('key', '=', cleanKey).executeTakeFirstOrThrow();
    assert.equal(entry.run_id, runId, 'the entry now names the run that recomputed it');
    assert.equal(entry.hits, 0);
    const lines = (await database.selectFrom('run_logs').select('line').where('run_id', '=', runId).execute()).map((r) => r.line);
    assert.ok(lines.some((l) => l.startsWith('clean: the cached result of run') && l.includes('recomputing')), JSON.stringify(lines));
  });

  test('the stage cache switched off in the config, or cache: false in the spec, neither reads nor writes the cache', async () => {
    const runId = await newRun('off');
    const before = await database.selectFrom('stage_cache').select(['key', 'run_id', 'hits']).orderBy('key').execute();
    // A worker started with TEMPERED_STAGE_CACHE=off has this configuration (see the unit test of the switch).
    const offActivities = createActivities({ cfg: { ...cfg, stageCache: false }, db: database, store: artifacts, slots: TrainerSlots.unlimited(), trainerServer });
    const ingest: IngestResult = await env.run(offActivities.ingest, { runId, spec: spec(), specDir: dataDir });
    assert.equal(ingest.dataset.sha256, cold.ingest.dataset.sha256, 'recomputed to the same bytes');
    assert.equal((ingest as unknown as Record<string, unknown>).cached, undefined);
    // The same for a run whose spec says `cache: false` (a field the spec schema is to get).
    const offSpec = Object.assign(spec(), { cache: false });
    const clean: CleanResult = await env.run(activities.clean, { runId, spec: offSpec, dataset: cold.ingest.dataset });
    assert.equal(clean.cleaned.sha256, cold.clean.cleaned.sha256);
    assert.deepEqual(await stagesReused(runId), []);
    assert.deepEqual(await database.selectFrom('stage_cache').select(['key', 'run_id', 'hits']).orderBy('key').execute(), before);
    assert.deepEqual(await artifactCounts(runId), { ingest: 2, clean: 2 }, 'the stages still record their artifacts');
  });

  test('train and validate are reused when their inputs and settings are unchanged, not when the seed changes', async () => {
    const trainOf = (runId: string, s: PipelineSpec): Promise<TrainResult> =>
      env.run(activities.train, { runId, spec: s, trainShard: warm.split.train, tokenizer: warm.tokenize.tokenizer });
    const validateOf = (runId: string, s: PipelineSpec, t: TrainResult): Promise<ValidateResult> =>
      env.run(activities.validate, { runId, spec: s, checkpoints: t.checkpoints, validationShard: warm.split.validation, tokenizer: warm.tokenize.tokenizer });
    const strip = <T extends object>(r: T) => Object.fromEntries(Object.entries(r).filter(([k]) => !['cached', 'cachedFrom', 'cacheKey'].includes(k)));

    let t0 = performance.now();
    const trained = await trainOf(coldRun, spec());
    const validated = await validateOf(coldRun, spec(), trained);
    const coldMs = performance.now() - t0;
    t0 = performance.now();
    const trainedAgain = await trainOf(warmRun, spec());
    const validatedAgain = await validateOf(warmRun, spec(), trainedAgain);
    console.log(`train + validate: computed ${((coldMs) / 1000).toFixed(2)} s, from the cache ${((performance.now() - t0) / 1000).toFixed(2)} s`);

    assert.deepEqual((await usesOf(warmRun)).map((u) => u.stage), ['clean', 'ingest', 'split', 'tokenize', 'train', 'validate']);
    assert.deepEqual(strip(trainedAgain), strip(trained));
    assert.deepEqual(strip(validatedAgain), strip(validated));
    assert.equal((validatedAgain as unknown as Record<string, unknown>).cachedFrom, coldRun);
    // The run that reused them has the checkpoints, the model and the curves.
    const counts = await artifactCounts(warmRun);
    assert.equal(counts.train, trained.checkpoints.length);
    assert.equal(counts.validate, 1);
    const curve = (runId: string, stage: string, name: string) =>
      database.selectFrom('metrics').select(['step', 'value']).where('run_id', '=', runId).where('stage', '=', stage).where('name', '=', name).orderBy('step').execute();
    assert.deepEqual(await curve(warmRun, 'train', 'loss'), await curve(coldRun, 'train', 'loss'));
    assert.equal((await curve(coldRun, 'train', 'loss')).length, 6);
    assert.deepEqual(await curve(warmRun, 'validate', 'val_loss'), await curve(coldRun, 'validate', 'val_loss'));
    assert.deepEqual(await curve(warmRun, 'train', 'start_step'), [], "the source run's attempts are not this run's");
    const up = (await ancestors(database, node.artifact(validatedAgain.best))).map((e) => e.parent);
    assert.ok(up.includes(node.artifact(warm.split.train)), 'the model descends from the train split');

    // A reused validation still answers to this run's gate.
    const gated = spec();
    gated.validate = { maxLoss: validated.valLoss / 2 };
    const gateRun = await newRun('gate');
    await assert.rejects(validateOf(gateRun, gated, trained), (err: unknown) => err instanceof ApplicationFailure && err.type === 'GateFailed' && /validate\.maxLoss/.test(err.message));
    assert.deepEqual(await stagesReused(gateRun), ['validate']);

    // Another seed is another training: nothing reused, and the validation of its checkpoints is new too.
    const seeded = spec();
    seeded.train = { ...seeded.train, seed: 1 };
    const seedRun = await newRun('seed');
    const other = await trainOf(seedRun, seeded);
    await validateOf(seedRun, seeded, other);
    assert.deepEqual(await stagesReused(seedRun), []);
    assert.equal((other as unknown as Record<string, unknown>).cached, undefined);
  });
});
