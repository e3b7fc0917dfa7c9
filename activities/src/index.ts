/**
 * The activities of the life cycle, one module per stage, bound to their dependencies once per worker.
 * Workflows see only the type `Activities`; the worker registers `createActivities(deps)`.
 */
import type { Deps } from './context';
import { recordApproval, recordRun, recordStage } from './bookkeeping';
import { ingest } from './ingest';
import { clean } from './clean';
import { tokenize } from './tokenize';
import { cleanFromCache, cleanShard, encodeShard, mergeCleanShards, mergeEncodedShards, removeShardParts, shardTokenizer, tokenizeFromCache } from './data-shards';
import { split } from './split';
import { train } from './train';
import { validate } from './validate';
import { rewardModel, rl, rlhf } from './rlhf';
import { proposePairs } from './labels';
import { test } from './test';
import { optimize } from './optimize';
import { deploy } from './deploy';
import { canaryHealth, finishCanary, setCanaryWeight } from './canary';
import { retrainCheck } from './triggers';
import { verifyApproval } from './approvals';
import { evaluateSuites, recordEvaluation } from './evaluate';

export type { Deps } from './context';
export { defaultCpuSlots, TrainerSlots } from './slots';
export { TrainerServer } from './trainer-server';
export { isModelServer, ModelServerSupervisor } from './model-server';
export { runTrainer, STARTUP_LIMIT_MS, type TrainerEvent } from './trainer';
export type { ProposePairsResult } from './labels';
export { STAGE_CODE_VERSIONS, type CacheMark } from './cache';
export { APPROVAL_SIGNATURE_MAX_AGE_MS, verifyApproval } from './approvals';
export { stageBaseModel, type StagedBaseModel } from './base-models';

type Bound<F> = F extends (deps: Deps, ...args: infer A) => infer R ? (...args: A) => R : never;

const stages = { recordRun, recordStage, recordApproval, ingest, clean, tokenize, cleanFromCache, cleanShard, mergeCleanShards, tokenizeFromCache, shardTokenizer, encodeShard, mergeEncodedShards, removeShardParts, split, train, validate, proposePairs, rlhf, rewardModel, rl, test, optimize, deploy, setCanaryWeight, canaryHealth, finishCanary, retrainCheck, verifyApproval, evaluateSuites, recordEvaluation };

export type Activities = { [K in keyof typeof stages]: Bound<(typeof stages)[K]> };

export function createActivities(deps: Deps): Activities {
  return Object.fromEntries(
    Object.entries(stages).map(([name, fn]) => [name, (...args: unknown[]) => (fn as (d: Deps, ...a: unknown[]) => unknown)(deps, ...args)]),
  ) as Activities;
}
