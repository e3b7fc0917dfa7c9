/**
 * The Temporal side of the contract between workflows, the worker, the API and the CLI: workflow types, task
 * queues, the approval Update, queries and signals. The values they carry are @tempered/contract's.
 *
 * This module is imported by workflow code, so it must stay deterministic and free of Node APIs.
 */
import { ApplicationFailure, defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ApprovalDecision, ApprovalReceipt, CanaryState, PipelineProgress } from '@tempered/contract';

export const WORKFLOW_TYPE = 'lifecyclePipeline';

/** Failure types that retrying cannot fix: the activity options list them as non-retryable. */
export const NON_RETRYABLE = ['BadInput', 'GateFailed', 'ArtifactPathError'];

/** Pools are task queues: a worker started with `--pool gpu` polls `tempered-gpu`. */
export function taskQueueFor(pool: string): string {
  return `tempered-${pool.replace(':', '-')}`;
}
/** The queue of the workflows themselves and of bookkeeping activities. */
export const CONTROL_TASK_QUEUE = 'tempered-control';

export const approveDeploymentUpdate = defineUpdate<ApprovalReceipt, [ApprovalDecision]>('approveDeployment');
/** The patch id under which a decision counts only once its signature is checked (see workflows.ts). */
export const SIGNED_APPROVALS_PATCH = 'signed-approvals';
export const progressQuery = defineQuery<PipelineProgress>('progress');
export const canaryQuery = defineQuery<CanaryState>('canary');
/** A person ends a canary early: promote sends all traffic to the new version, abort rolls back. */
export const promoteCanarySignal = defineSignal<[{ by: string; comment?: string }]>('promoteCanary');
export const abortCanarySignal = defineSignal<[{ by: string; comment?: string }]>('abortCanary');
export const CANARY_WORKFLOW_TYPE = 'canaryRollout';
export const RETRAIN_WORKFLOW_TYPE = 'retrainTrigger';
export const EVALUATE_WORKFLOW_TYPE = 'evaluateModel';
/** Child workflows of a run whose data is larger than data.shards.bytes (workflows/src/data.ts). */
export const CLEAN_SHARDS_WORKFLOW_TYPE = 'cleanShards';
export const TOKENIZE_SHARDS_WORKFLOW_TYPE = 'tokenizeShards';
/** The patch id under which a run cleans and tokenizes large data on shards (see workflows.ts). */
export const SHARDED_DATA_PATCH = 'sharded-data';
/** Patch id: the sharded data stages delete their shard parts once merged (histories before it have no such activity). */
export const SHARD_PARTS_REMOVED_PATCH = 'shard-parts-removed';
/** Patch id: a run has an optimize stage between test and the gate, run or recorded as skipped (histories before it have neither). */
export const OPTIMIZE_STAGE_PATCH = 'optimize-stage';
export const canaryWorkflowId = (runId: string) => `canary-${runId}`;

/** Sent by the API after each label with the run's count of labeled pairs (a count, not a delta: idempotent). */
export const labelsChangedSignal = defineSignal<[{ labeled: number }]>('labelsChanged');

/** Milliseconds of a spec duration ("90s", "10m", "24h", "2d"); the spec schema guarantees the shape. */
export function msOf(duration: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(duration);
  if (!m) throw ApplicationFailure.nonRetryable(`bad duration ${duration}`, 'BadInput');
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
}

/** The message of a failure: an ActivityFailure wraps the activity's own ApplicationFailure, whose message is the useful one. */
export function failureMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e?.cause && (e.cause as { message?: string }).message) e = e.cause as typeof e;
  return e?.message ?? String(err);
}
