/**
 * The clean and tokenize stages on shards of their input, each a child workflow of the life cycle (so the run's
 * own history holds one event pair per stage, however many shards), for data larger than `data.shards.bytes`.
 *
 * Shard activities run at most `parallel` at a time on the data pool's task queue, so every worker polling it
 * takes its share; then one activity merges the parts in order, and another deletes them. A stage whose result
 * is cached skips its shards.
 * Workflow code only: deterministic, no I/O (activities/src/data-shards.ts does the work).
 */
import { CancellationScope, log, patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '@tempered/activities';
import { type ArtifactRef, type CleanResult, type ShardPlan, shardRanges, type TokenizeResult } from '@tempered/contract';
import type { PipelineSpec } from '@tempered/spec';
import { NON_RETRYABLE, SHARD_PARTS_REMOVED_PATCH, taskQueueFor } from './shared';

export interface ShardedCleanInput {
  runId: string;
  spec: PipelineSpec;
  dataset: ArtifactRef;
  plan: ShardPlan;
}

export interface ShardedTokenizeInput {
  runId: string;
  spec: PipelineSpec;
  specDir?: string;
  cleaned: ArtifactRef;
  plan: ShardPlan;
}

/** The shards of an artifact larger than data.shards.bytes, and how many run at once; undefined for one piece. */
export function shardPlan(spec: PipelineSpec, artifact: ArtifactRef): ShardPlan | undefined {
  // Specs recorded before data.shards existed have no such field: their data was never sharded.
  const shards = spec.data.shards as PipelineSpec['data']['shards'] | undefined;
  if (!shards || artifact.bytes <= shards.bytes) return undefined;
  return { ranges: shardRanges(artifact.bytes, shards.bytes), parallel: shards.parallel };
}

function dataActivities(spec: PipelineSpec) {
  return proxyActivities<Activities>({
    taskQueue: taskQueueFor(spec.pools.data),
    startToCloseTimeout: '2h',
    heartbeatTimeout: '2m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 3, nonRetryableErrorTypes: NON_RETRYABLE },
  });
}

export async function cleanShards(input: ShardedCleanInput): Promise<CleanResult> {
  const { runId, spec, dataset, plan } = input;
  const data = dataActivities(spec);
  const cached = await data.cleanFromCache({ runId, spec, dataset });
  if (cached) return cached;
  const parts: ArtifactRef[] = [];
  return removingParts(data, runId, parts, async () => {
    const shards = await atMost(plan.parallel, plan.ranges, async (range) => {
      const shard = await data.cleanShard({ runId, spec, dataset, range });
      parts.push(shard.candidates, shard.sidecar);
      return shard;
    });
    return data.mergeCleanShards({ runId, spec, dataset, shards });
  });
}

export async function tokenizeShards(input: ShardedTokenizeInput): Promise<TokenizeResult> {
  const { runId, spec, specDir, cleaned, plan } = input;
  const data = dataActivities(spec);
  const cached = await data.tokenizeFromCache({ runId, spec, specDir, cleaned });
  if (cached) return cached;
  const tokenizer = await data.shardTokenizer({ runId, spec, specDir, cleaned });
  const parts: ArtifactRef[] = [];
  return removingParts(data, runId, parts, async () => {
    const shards = await atMost(plan.parallel, plan.ranges, async (range) => {
      const shard = await data.encodeShard({ runId, spec, specDir, cleaned, range, tokenizer });
      if (shard.encoded) parts.push(shard.encoded);
      return shard;
    });
    return data.mergeEncodedShards({ runId, spec, specDir, cleaned, tokenizer, shards });
  });
}

/**
 * `work`, then the shard parts it wrote deleted, whether it merged them or failed (a failed stage's parts would
 * otherwise stay in S3 forever), and even when the run is cancelled. Histories recorded before the parts were
 * removed have no such activity: the patch keeps them replaying.
 */
async function removingParts<T>(data: ReturnType<typeof dataActivities>, runId: string, parts: ArtifactRef[], work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } finally {
    if (parts.length > 0 && patched(SHARD_PARTS_REMOVED_PATCH)) {
      // Parts left behind cost space, not correctness: a store that cannot delete them never fails the stage.
      await CancellationScope.nonCancellable(() => data.removeShardParts({ runId, parts })).catch((error: unknown) => {
        log.warn('shard parts were not removed', { parts: parts.length, error: String(error) });
      });
    }
  }
}

/** `f` of every item, at most `limit` running at once, results in the items' order. */
async function atMost<T, R>(limit: number, items: readonly T[], f: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await f(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}
