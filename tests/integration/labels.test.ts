/**
 * Preference pairs labeled by people (`rlhf.source: labels`) as activities against the real S3 server and
 * PostgreSQL (no workflow): proposePairs samples pairs from a briefly trained model and stores them once,
 * labeled pairs become the preferences artifact DPO and the reward model train on, and ties alone are refused.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots, type ProposePairsResult } from '@tempered/activities';
import { generateDemoData } from '@tempered/examples';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, CleanResult, IngestResult, RewardModelResult, RlhfResult, SplitResult, TokenizeResult, TrainResult, ValidateResult } from '@tempered/contract';
import { cfg, db, demoSpec, store, trainerServer, uniqueId } from '../support';

describe('preference pairs labeled by people', { timeout: 10 * 60_000 }, () => {
  const database = db();
  const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), trainerServer });
  const env = new MockActivityEnvironment();
  const runId = uniqueId('labels');
  const tiesRunId = uniqueId('labels-ties');
  const unlabeledRunId = uniqueId('labels-none');
  const dataDir = path.join(cfg.dataDir, 'uploads', 'labels');
  let cleaned: ArtifactRef;
  let model: ArtifactRef;

  const spec = (): PipelineSpec => {
    const s = demoSpec();
    s.data.sources = [{ uri: 'train.jsonl', encoding: 'utf-8' }];
    s.train = { ...s.train, steps: 20, checkpointEvery: 20, batchSize: 16 };
    s.rlhf = {
      ...s.rlhf,
      method: 'dpo',
      source: 'labels',
      preferences: undefined,
      labels: { required: 4, temperature: 1, maxNewTokens: 12 }, // pairs: 1.5 × 4 = 6 by default
      steps: 2,
      batchSize: 2,
      reward: { ...s.rlhf.reward, steps: 2 },
    };
    return s;
  };

  const pairsOf = (id: string) => database.selectFrom('preference_pairs').selectAll().where('run_id', '=', id).orderBy('idx').execute();

  before(async () => {
    generateDemoData(dataDir, { records: 300 });
    for (const id of [runId, tiesRunId, unlabeledRunId]) {
      await database.insertInto('runs').values({ id, name: 'labels', spec: '{}', status: 'running', requested_by: 'test' }).execute();
    }
    // A model to sample from: the pipeline's stages up to validate, with a few training steps.
    const s = spec();
    const ingested: IngestResult = await env.run(activities.ingest, { runId, spec: s, specDir: dataDir });
    const clean: CleanResult = await env.run(activities.clean, { runId, spec: s, dataset: ingested.dataset });
    const tokenized: TokenizeResult = await env.run(activities.tokenize, { runId, spec: s, cleaned: clean.cleaned });
    const splits: SplitResult = await env.run(activities.split, { runId, spec: s, encoded: tokenized.encoded });
    const trained: TrainResult = await env.run(activities.train, { runId, spec: s, trainShard: splits.train, tokenizer: tokenized.tokenizer });
    const validated: ValidateResult = await env.run(activities.validate, {
      runId,
      spec: s,
      checkpoints: trained.checkpoints,
      validationShard: splits.validation,
      tokenizer: tokenized.tokenizer,
    });
    cleaned = clean.cleaned;
    model = validated.best;
  });
  after(() => database.destroy());

  test('proposePairs stores distinct sampled pairs once, however often it runs', async () => {
    const first: ProposePairsResult = await env.run(activities.proposePairs, { runId, spec: spec(), model, cleaned });
    assert.deepEqual(first, { pairs: 6, required: 4 });
    const rows = await pairsOf(runId);
    assert.deepEqual(rows.map((r) => r.idx), [0, 1, 2, 3, 4, 5]);
    const cleanedPrompts = new Set((await store().getBytes(cleaned.uri)).toString('utf8').trim().split('\n').map((l) => JSON.parse(l).prompt));
    for (const r of rows) {
      assert.equal(r.source, 'model-samples');
      assert.ok(cleanedPrompts.has(r.prompt), `${r.prompt} is a prompt of the cleaned data`);
      assert.notEqual(r.response_a, r.response_b, `pair ${r.idx} offers two identical responses`);
      assert.equal(r.label, null);
    }
    assert.equal(new Set(rows.map((r) => r.prompt)).size, rows.length, 'each prompt is offered once');

    const again: ProposePairsResult = await env.run(activities.proposePairs, { runId, spec: spec(), model, cleaned });
    assert.deepEqual(again, first);
    assert.deepEqual(await pairsOf(runId), rows, 'a second call inserts and changes nothing');

    // Fewer pairs than the spec requires labels for: the run waits for as many as there are.
    const few = spec();
    few.rlhf.labels = { ...few.rlhf.labels, required: 50, pairs: 3 };
    const fewRun = uniqueId('labels-few');
    await database.insertInto('runs').values({ id: fewRun, name: 'labels', spec: '{}', status: 'running', requested_by: 'test' }).execute();
    const capped: ProposePairsResult = await env.run(activities.proposePairs, { runId: fewRun, spec: few, model, cleaned });
    assert.deepEqual(capped, { pairs: 3, required: 3 });
  });

  test('labeled pairs become the preferences artifact: a prefers response_a, b response_b, ties are skipped', async () => {
    const rows = await pairsOf(runId);
    const labels: Record<number, string> = { 0: 'a', 1: 'b', 2: 'tie', 3: 'a' }; // 4 and 5 stay unlabeled
    for (const [idx, label] of Object.entries(labels)) {
      await database
        .updateTable('preference_pairs')
        .set({ label, labeled_by: 'labeler', labeled_at: new Date() })
        .where('run_id', '=', runId)
        .where('idx', '=', Number(idx))
        .execute();
    }
    const dpo: RlhfResult = await env.run(activities.rlhf, { runId, spec: spec(), model });
    assert.equal(dpo.method, 'dpo');
    assert.equal(dpo.model.kind, 'model');

    const recorded = await database
      .selectFrom('artifacts')
      .selectAll()
      .where('run_id', '=', runId)
      .where('stage', '=', 'rlhf')
      .where('kind', '=', 'preferences')
      .execute();
    assert.equal(recorded.length, 1);
    const bytes = await store().getBytes(recorded[0].uri);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), recorded[0].sha256, 'content-addressed');
    const prefs = bytes.toString('utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(prefs, [
      { prompt: rows[0].prompt, chosen: rows[0].response_a, rejected: rows[0].response_b },
      { prompt: rows[1].prompt, chosen: rows[1].response_b, rejected: rows[1].response_a },
      { prompt: rows[3].prompt, chosen: rows[3].response_a, rejected: rows[3].response_b },
    ]);

    // The reward model (method rl) reads the same labels, so it gets the very same artifact.
    const rlSpec = spec();
    rlSpec.rlhf.method = 'rl';
    const rm: RewardModelResult = await env.run(activities.rewardModel, { runId, spec: rlSpec, model });
    assert.equal(rm.preferences.sha256, recorded[0].sha256);
    assert.equal(rm.preferences.kind, 'preferences');
  });

  test('only ties, or no labels at all, is bad input that names what to do', async () => {
    await database
      .insertInto('preference_pairs')
      .values([0, 1, 2].map((idx) => ({ run_id: tiesRunId, idx, prompt: `reverse ${idx} 1`, response_a: 'x', response_b: 'y', source: 'model-samples', label: 'tie' })))
      .execute();
    const isBadInput = (pattern: RegExp) => (err: unknown) =>
      err instanceof ApplicationFailure && err.type === 'BadInput' && err.nonRetryable && pattern.test(err.message);
    const ties = /all 3 labels were ties; label at least one pair A or B/;
    await assert.rejects(env.run(activities.rlhf, { runId: tiesRunId, spec: spec(), model }), isBadInput(ties));
    await assert.rejects(env.run(activities.rewardModel, { runId: tiesRunId, spec: spec(), model }), isBadInput(ties));
    await assert.rejects(env.run(activities.rlhf, { runId: unlabeledRunId, spec: spec(), model }), isBadInput(/no pair of this run is labeled/));
  });
});
