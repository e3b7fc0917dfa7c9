/**
 * Clean and tokenize on shards (workflows/src/data.ts, activities/src/data-shards.ts) by two worker processes of
 * one data pool, on the real stack: the cleaned records, the tokenizer and the encoded shard are byte for byte
 * those of the one-activity stages, whatever the number of shards, with a vocabulary learnt from every record or
 * from a sample; both workers take shards; the shard parts are deleted once merged; and a stage whose result is
 * cached runs no shard at all.
 *
 * The data is the demo's (2,000 reversal records with planted duplicates), cleaned with `dedupe: near`: its
 * short, similar texts make near duplicates whose first copy is in another shard.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots } from '@tempered/activities';
import { generateDemoData } from '@tempered/examples';
import { type ArtifactRef, type CleanResult, type IngestResult, shardRanges, type ShardPlan, type TokenizeResult } from '@tempered/contract';
import type { PipelineSpec } from '@tempered/spec';
import { CLEAN_SHARDS_WORKFLOW_TYPE, CONTROL_TASK_QUEUE, TOKENIZE_SHARDS_WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, db, demoSpec, startWorkerProcess, store, temporalClient, trainerServer, uniqueId } from '../support';

describe('clean and tokenize on shards, by two workers of one pool', () => {
  const database = db();
  const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), stageCache: false, trainerServer });
  const env = new MockActivityEnvironment();
  const runId = uniqueId('shards');
  const pool = uniqueId('scale').toLowerCase();
  const workers: ChildProcess[] = [];
  let client: Client;
  let closeClient: () => Promise<void>;
  let ingested: IngestResult;
  let whole: { cleaned: CleanResult; tokenized: TokenizeResult };

  const spec = (cache = false): PipelineSpec => {
    const s = demoSpec();
    s.data.sources = [{ uri: 'train.jsonl', encoding: 'utf-8' }];
    s.clean = { ...s.clean, dedupe: 'near' };
    s.pools = { ...s.pools, data: pool };
    s.cache = cache;
    return s;
  };

  before(async () => {
    const dataDir = path.join(cfg.dataDir, 'uploads', 'scale-out');
    generateDemoData(dataDir, { records: 2000 });
    await database.insertInto('runs').values({ id: runId, name: 'scale-out', spec: '{}', status: 'running', requested_by: 'test' }).execute();
    ingested = await env.run(activities.ingest, { runId, spec: spec(), specDir: dataDir });
    const cleaned: CleanResult = await env.run(activities.clean, { runId, spec: spec(), dataset: ingested.dataset });
    const tokenized: TokenizeResult = await env.run(activities.tokenize, { runId, spec: spec(), cleaned: cleaned.cleaned });
    whole = { cleaned, tokenized };
    ({ client, close: closeClient } = await temporalClient());
    workers.push(...(await Promise.all([startWorkerProcess([pool]), startWorkerProcess([pool])])));
  });

  after(async () => {
    for (const w of workers) if (w.pid) process.kill(-w.pid, 'SIGTERM');
    await closeClient?.();
    await database.destroy();
  });

  const plan = (bytes: number, size: number): ShardPlan => ({ ranges: shardRanges(bytes, size), parallel: 8 });
  const execute = <T>(type: string, input: object): Promise<{ result: T; workflowId: string }> => {
    const workflowId = uniqueId(`${runId}-${type}`);
    return client.workflow.execute(type, { taskQueue: CONTROL_TASK_QUEUE, workflowId, args: [input] }).then((result) => ({ result: result as T, workflowId }));
  };
  /** The worker identity that started each shard activity of a workflow. */
  async function shardWorkers(workflowId: string): Promise<string[]> {
    const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
    const scheduled = new Map(events.filter((e) => e.activityTaskScheduledEventAttributes).map((e) => [String(e.eventId), e.activityTaskScheduledEventAttributes!.activityType?.name]));
    return events
      .filter((e) => e.activityTaskStartedEventAttributes && /^(clean|encode)Shard$/.test(scheduled.get(String(e.activityTaskStartedEventAttributes.scheduledEventId)) ?? ''))
      .map((e) => e.activityTaskStartedEventAttributes!.identity ?? '');
  }

  /**
   * Every part the workflow's shard activities returned (from their completed events): each was a scratch part
   * of this workflow (parts/<workflow id>/) and is gone from S3 once the stage finished.
   */
  async function assertPartsRemoved(workflowId: string): Promise<void> {
    const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
    const shardEvents = new Set(events.filter((e) => /^(clean|encode)Shard$/.test(e.activityTaskScheduledEventAttributes?.activityType?.name ?? '')).map((e) => String(e.eventId)));
    const parts = events
      .filter((e) => e.activityTaskCompletedEventAttributes && shardEvents.has(String(e.activityTaskCompletedEventAttributes.scheduledEventId)))
      .map((e) => JSON.parse(Buffer.from(e.activityTaskCompletedEventAttributes!.result!.payloads![0].data!).toString('utf8')) as { candidates?: ArtifactRef; sidecar?: ArtifactRef; encoded?: ArtifactRef })
      .flatMap((r) => [r.candidates, r.sidecar, r.encoded].filter((p): p is ArtifactRef => p !== undefined));
    assert.ok(parts.length > 0, `${workflowId}: its shards wrote parts`);
    // The deletion can name scratch parts only: a stage's own (content-addressed) artifact is refused.
    await assert.rejects(store().removePart(whole.cleaned.cleaned.uri), /is not a scratch part/);
    for (const part of parts) {
      assert.ok(part.uri.includes(`/parts/${workflowId}/`), `${part.uri} is a scratch part of ${workflowId}`);
      assert.equal(await store().exists(part.uri), false, `${part.uri} was removed after the merge`);
    }
  }

  test('the cleaned records are byte for byte the one-activity stage\'s on 1, 7 and 30 shards, and with an empty one', { timeout: 600_000 }, async () => {
    const bytes = ingested.dataset.bytes;
    // The corpus has what the shards must agree on: exact and near duplicates.
    const report = JSON.parse((await store().getBytes(whole.cleaned.report.uri)).toString('utf8'));
    assert.ok(report.removed.duplicate >= 5 && report.removed.nearDuplicate > 0, JSON.stringify(report.removed));
    for (const count of [1, 7, 30]) {
      const { result, workflowId } = await execute<CleanResult>(CLEAN_SHARDS_WORKFLOW_TYPE, { runId, spec: spec(), dataset: ingested.dataset, plan: plan(bytes, Math.ceil(bytes / count)) });
      assert.equal(result.cleaned.sha256, whole.cleaned.cleaned.sha256, `${count} shards`);
      assert.equal(result.report.sha256, whole.cleaned.report.sha256, `${count} shards: the report`);
      assert.deepEqual(result.counts, whole.cleaned.counts);
      const by = await shardWorkers(workflowId);
      assert.equal(by.length, count, 'one activity per shard');
      // Each worker runs at most four CPU activities at once, so eight at a time cannot all be one worker's.
      if (count === 30) assert.equal(new Set(by).size, 2, `both workers took shards: ${[...new Set(by)].join(', ')}`);
      await assertPartsRemoved(workflowId);
    }
    const uneven = { ranges: [{ start: 0, end: 10 }, { start: 10, end: 20 }, { start: 20, end: bytes }], parallel: 8 };
    const { result } = await execute<CleanResult>(CLEAN_SHARDS_WORKFLOW_TYPE, { runId, spec: spec(), dataset: ingested.dataset, plan: uneven });
    assert.equal(result.cleaned.sha256, whole.cleaned.cleaned.sha256, 'with a range no line begins in');
  });

  test('the tokenizer and the encoded records are byte for byte the one-activity stage\'s on 1 and 6 shards, and with an empty one', { timeout: 600_000 }, async () => {
    const cleaned = whole.cleaned.cleaned;
    for (const count of [1, 6]) {
      const { result, workflowId } = await execute<TokenizeResult>(TOKENIZE_SHARDS_WORKFLOW_TYPE, { runId, spec: spec(), cleaned, plan: plan(cleaned.bytes, Math.ceil(cleaned.bytes / count)) });
      assert.equal(result.tokenizer.sha256, whole.tokenized.tokenizer.sha256, `${count} shards: the tokenizer`);
      assert.equal(result.encoded.sha256, whole.tokenized.encoded.sha256, `${count} shards: the encoded records`);
      assert.deepEqual(result.counts, whole.tokenized.counts);
      assert.equal((await shardWorkers(workflowId)).length, count);
      await assertPartsRemoved(workflowId);
    }
    // A range no line begins in (the first record is longer than 10 bytes): that shard encodes nothing.
    const uneven = { ranges: [{ start: 0, end: 10 }, { start: 10, end: 20 }, { start: 20, end: cleaned.bytes }], parallel: 8 };
    const { result } = await execute<TokenizeResult>(TOKENIZE_SHARDS_WORKFLOW_TYPE, { runId, spec: spec(), cleaned, plan: uneven });
    assert.equal(result.encoded.sha256, whole.tokenized.encoded.sha256, 'with an empty shard');
  });

  test('a vocabulary learnt from a sample (tokenizer.sampleBytes) is the same in one activity and on 4 shards', { timeout: 600_000 }, async () => {
    const cleaned = whole.cleaned.cleaned;
    const sampling = spec();
    sampling.tokenizer.sampleBytes = Math.floor(cleaned.bytes / 5);
    const one: TokenizeResult = await env.run(activities.tokenize, { runId, spec: sampling, cleaned });
    const { result } = await execute<TokenizeResult>(TOKENIZE_SHARDS_WORKFLOW_TYPE, { runId, spec: sampling, cleaned, plan: plan(cleaned.bytes, Math.ceil(cleaned.bytes / 4)) });
    assert.equal(result.tokenizer.sha256, one.tokenizer.sha256, 'the tokenizer');
    assert.equal(result.encoded.sha256, one.encoded.sha256, 'the encoded records');
    // A fifth of the records counts fewer pairs than all of them: a different vocabulary, every record encoded.
    assert.notEqual(one.tokenizer.sha256, whole.tokenized.tokenizer.sha256);
    assert.deepEqual(one.counts.records, whole.tokenized.counts.records);
  });

  test('a cached clean runs no shard: the second run of the same data and spec reuses the first one\'s result', { timeout: 300_000 }, async () => {
    const cached = spec(true);
    // A bound no record comes near makes this test's cache key its own (a rerun on the same stack misses too).
    cached.clean.maxChars = 1_000_000 + Math.floor(Math.random() * 1_000_000);
    const input = { runId, spec: cached, dataset: ingested.dataset, plan: plan(ingested.dataset.bytes, 20_000) };
    const first = await execute<CleanResult>(CLEAN_SHARDS_WORKFLOW_TYPE, input);
    const second = await execute<CleanResult & { cached?: boolean }>(CLEAN_SHARDS_WORKFLOW_TYPE, input);
    assert.equal(second.result.cleaned.sha256, whole.cleaned.cleaned.sha256);
    assert.ok((await shardWorkers(first.workflowId)).length > 1);
    assert.deepEqual(await shardWorkers(second.workflowId), []);
  });
});
