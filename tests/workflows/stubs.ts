/**
 * Stand-in activities for workflow tests: they return well-formed results at once and record every call
 * under the id of the workflow that made it, so a test exercises the workflow's own logic (ordering, gate,
 * expiry, failure handling) on the real Temporal server in seconds, and asserts on its own run alone: a run
 * of an earlier test that is still winding down (a cancellation, a canary) cannot make it pass or fail.
 * The real activities are covered by the unit and end-to-end suites.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Activities } from '@tempered/activities';
import type { ArtifactKind, ArtifactRef, CanaryOutcome, ChampionComparison } from '@tempered/contract';

const ref = (kind: ArtifactKind, n: number): ArtifactRef => ({ uri: `s3://stub/${kind}/${n}`, sha256: String(n).padStart(64, '0'), bytes: n, kind });

/** What the stand-ins saw of one workflow execution (a pipeline run, or its canary child `canary-<run>`). */
export interface RunLog {
  /** The stage activities called, in order (bookkeeping and canary activities are in the lists below). */
  calls: string[];
  /** Learning rates the train stand-in was called with, and the model the rlhf or rl stand-in received. */
  learningRates: number[];
  rlhfModel?: string;
  stages: Array<{ stage: string; status: string; error?: string }>;
  runs: string[];
  approvals: string[];
  /** The canary's weights as set, step by step, and how it ended. */
  canaryWeights: number[];
  canaryOutcome?: CanaryOutcome;
  /** How an on-demand evaluation's row was recorded by the workflow itself (a failure): status and error. */
  evaluations: Array<{ status: string; error?: string }>;
}

/** Every call of every run in `calls`, `stages`… (what a benchmark counts); a test reads its own run with `of`. */
export interface StubLog extends RunLog {
  /** The calls made by the workflow with this id (an empty log if it made none). */
  of(workflowId: string): RunLog;
}

/** The serving model a `championWins` stand-in compares with: it beats the challenger, so approving needs an override. */
export const STUB_CHAMPION: ChampionComparison = {
  modelVersionId: 'stub-v0',
  version: 1,
  championExactMatch: 0.95,
  challengerExactMatch: 0.9,
  winRate: 0.25,
  margin: 0,
  examples: 4,
  challengerWins: false,
};

export interface StubOptions {
  /** train fails with this message, non-retryable (type BadInput). */
  failTrain?: string;
  /** canaryHealth reports a breach from this step (1-based) of each canary on. */
  canaryBreaks?: number;
  /** test reports that the serving model beats the challenger (STUB_CHAMPION). */
  championWins?: boolean;
  /** retrainCheck decides to start the run it was offered, with the spec it was given. */
  retrainStarts?: boolean;
  /** evaluateSuites fails with this message, non-retryable (type BadInput). */
  failEvaluate?: string;
  /** The size ingest and clean report for their outputs (1 and 3 bytes otherwise): above data.shards.bytes, the data stages run on shards. */
  dataBytes?: number;
}

export function stubActivities(opts: StubOptions = {}): { activities: Activities; log: StubLog } {
  const emptyLog = (): RunLog => ({ calls: [], learningRates: [], stages: [], runs: [], approvals: [], canaryWeights: [], evaluations: [] });
  const all = emptyLog();
  const runs = new Map<string, RunLog>();
  const of = (workflowId: string): RunLog => {
    let log = runs.get(workflowId);
    if (!log) runs.set(workflowId, (log = emptyLog()));
    return log;
  };
  /**
   * Applies `record` to the log of the workflow execution whose activity is running (and to the log of all
   * runs); called outside an activity (a benchmark's direct calls), to the run the input names.
   */
  const note = (input: { runId?: string }, record: (log: RunLog) => void): RunLog => {
    let workflowId = input.runId ?? 'outside-a-workflow';
    try {
      workflowId = Context.current().info.workflowExecution?.workflowId ?? workflowId;
      // A data stage's child workflow (`<run>-clean`) counts as its run.
      if (input.runId && workflowId.startsWith(`${input.runId}-`)) workflowId = input.runId;
    } catch {
      // not in an activity
    }
    const log = of(workflowId);
    record(all);
    record(log);
    return log;
  };
  const call = (input: { runId?: string }, name: string) => note(input, (log) => log.calls.push(name));
  const cleaned = { cleaned: { ...ref('cleaned', 3), bytes: opts.dataBytes ?? 3 }, report: ref('clean-report', 4), counts: { input: 9, kept: 8, removed: 1, changed: 2 } };
  const tokenized = { tokenizer: ref('tokenizer', 5), encoded: ref('shard', 6), counts: { records: 8, tokens: 80 } };
  const activities: Activities = {
    async recordRun(i) {
      note(i, (log) => log.runs.push(i.status));
    },
    async recordStage(i) {
      note(i, (log) => log.stages.push({ stage: i.stage, status: i.status, ...(i.error !== undefined ? { error: i.error } : {}) }));
    },
    async recordApproval(i) {
      note(i, (log) => log.approvals.push(i.decision));
    },
    // Decisions here come from the tests themselves, unsigned; tests/integration/accounts.test.ts checks signatures.
    async verifyApproval() {
      return { ok: true } as const;
    },
    async ingest(i) {
      call(i, 'ingest');
      return { datasetVersionId: 'ds-stub', dataset: { ...ref('dataset', 1), bytes: opts.dataBytes ?? 1 }, quarantine: ref('quarantine', 2), counts: { input: 10, kept: 9, quarantined: 1 } };
    },
    async clean(i) {
      call(i, 'clean');
      return cleaned;
    },
    async tokenize(i) {
      call(i, 'tokenize');
      return tokenized;
    },
    async cleanFromCache(i) {
      call(i, 'cleanFromCache');
      return null;
    },
    async cleanShard(i) {
      call(i, `cleanShard ${i.range.start}-${i.range.end}`);
      return { candidates: ref('data-part', 100 + i.range.start), sidecar: ref('data-part', 200 + i.range.start), report: {}, counts: { input: 3, candidates: 3 } };
    },
    async mergeCleanShards(i) {
      call(i, `mergeCleanShards ${i.shards.length}`);
      return cleaned;
    },
    async tokenizeFromCache(i) {
      call(i, 'tokenizeFromCache');
      return null;
    },
    async shardTokenizer(i) {
      call(i, 'shardTokenizer');
      return tokenized.tokenizer;
    },
    async encodeShard(i) {
      call(i, `encodeShard ${i.range.start}-${i.range.end}`);
      return { encoded: ref('data-part', 300 + i.range.start), counts: { records: 3, tokens: 30 } };
    },
    async mergeEncodedShards(i) {
      call(i, `mergeEncodedShards ${i.shards.length}`);
      return tokenized;
    },
    async removeShardParts(i) {
      call(i, `removeShardParts ${i.parts.length}`);
      return { removed: i.parts.length };
    },
    async split(i) {
      call(i, 'split');
      return { train: ref('shard', 7), validation: ref('shard', 8), test: ref('shard', 9), counts: { train: 6, validation: 1, test: 1 } };
    },
    async train(i) {
      note(i, (log) => {
        log.calls.push('train');
        log.learningRates.push(i.learningRate ?? i.spec.train.learningRate);
      });
      if (opts.failTrain) throw ApplicationFailure.create({ message: opts.failTrain, type: 'BadInput', nonRetryable: true });
      return { model: ref('checkpoint', 11), checkpoints: [ref('checkpoint', 10), ref('checkpoint', 11)], steps: 10, initialLoss: 5, finalLoss: 1 };
    },
    async validate(i) {
      call(i, 'validate');
      // In a sweep, the smallest learning rate validates best.
      const best = i.candidate === 'lr=0.001';
      return { best: ref('model', best ? 20 : 12), bestStep: 10, valLoss: best ? 0.5 : 1.1, perplexity: 3, initialValLoss: 5 };
    },
    async proposePairs(i) {
      call(i, 'proposePairs');
      const { required, pairs } = i.spec.rlhf.labels;
      const offered = pairs ?? Math.ceil(1.5 * required);
      return { pairs: offered, required: Math.min(required, offered) };
    },
    async rlhf(i) {
      note(i, (log) => {
        log.calls.push('rlhf');
        log.rlhfModel = i.model.uri;
      });
      return { model: ref('model', 13), method: 'dpo' as const, steps: 5 };
    },
    async rewardModel(i) {
      call(i, 'rewardModel');
      return { rewardModel: ref('reward-model', 14), preferences: ref('preferences', 15), rewardAccuracy: 0.9, initialRewardAccuracy: 0.5 };
    },
    async rl(i) {
      note(i, (log) => {
        log.calls.push('rl');
        log.rlhfModel = i.model.uri;
      });
      return { model: ref('model', 16), method: 'rl' as const, steps: 5 };
    },
    async test(i) {
      call(i, 'test');
      return { loss: 1.2, perplexity: 3.3, exactMatch: 0.9, baselineExactMatch: 0, examples: 1, ...(opts.championWins ? { champion: STUB_CHAMPION } : {}) };
    },
    async optimize(i) {
      call(i, 'optimize');
      const file = { uri: 's3://stub/model-q8_0.gguf', sha256: 'stub', bytes: 138, kind: 'model' as const };
      const metric = { scope: 'test', metric: 'exact_match', value: 0.88, reference: 0.9, change: -0.02, loss: 0.02, within: true };
      return { tolerance: 0.02, forms: [{ type: 'q8_0', bytes: 138, file, tokensPerSec: 10, metrics: [metric], withinTolerance: true }] };
    },
    async deploy(i) {
      call(i, 'deploy');
      if (!i.spec.deploy.canary) return { modelVersionId: 'stub-v1', deploymentId: 'dep-stub', endpoint: 'http://127.0.0.1:1' };
      // With a canary in the spec, the stand-in pretends version 1 is serving and deploys version 2 beside it.
      return {
        modelVersionId: 'stub-v2',
        deploymentId: 'dep-stub-2',
        endpoint: 'http://127.0.0.1:2',
        previous: { modelVersionId: 'stub-v1', deploymentId: 'dep-stub', endpoint: 'http://127.0.0.1:1' },
      };
    },
    async setCanaryWeight(i) {
      note({}, (log) => log.canaryWeights.push(i.weight));
    },
    async canaryHealth() {
      // The step this canary is at: its own weights so far, whatever other canaries the stand-ins serve.
      const broken = opts.canaryBreaks !== undefined && note({}, () => {}).canaryWeights.length >= opts.canaryBreaks;
      return { requests: 50, errors: broken ? 20 : 0, errorRate: broken ? 0.4 : 0, p95LatencyMs: 12, rated: 0, negative: 0, negativeRate: 0, ...(broken ? { breach: 'error rate 40.0% (20 of 50 requests) is above 5.0%' } : {}) };
    },
    async finishCanary(i) {
      note({}, (log) => (log.canaryOutcome = i.outcome));
    },
    // The retrain trigger's check is real in tests/workflows/retrain.test.ts; the history recorder uses this one.
    async retrainCheck(i) {
      call(i, 'retrainCheck');
      if (opts.retrainStarts) return { decision: 'start' as const, reason: 'stand-in: 1 new or changed object(s)', runId: i.runId, spec: i.spec };
      return { decision: 'unchanged' as const, reason: 'stand-in' };
    },
    async evaluateSuites(i) {
      call({}, 'evaluateSuites');
      if (opts.failEvaluate) throw ApplicationFailure.create({ message: opts.failEvaluate, type: 'BadInput', nonRetryable: true });
      const suites = (i.spec.test.suites ?? []).filter((s) => !i.suites || i.suites.includes(s.name));
      return {
        modelVersionId: i.modelVersionId ?? 'stub-v1',
        suites: suites.map((s) => ({ name: s.name, input: 4, quarantined: 0, removed: 0, examples: 4, metrics: { exact_match: { value: 0.75, low: 0.25, high: 1, n: 4 } } })),
        answers: ref('answers', 17),
        breaches: [],
      };
    },
    async recordEvaluation(i) {
      note({}, (log) => log.evaluations.push({ status: i.status, ...(i.error !== undefined ? { error: i.error } : {}) }));
    },
  };
  return { activities, log: Object.assign(all, { of }) };
}
