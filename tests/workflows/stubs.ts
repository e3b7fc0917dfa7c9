/**
 * Stand-in activities for workflow tests: they return well-formed results at once and record every call,
 * so a test exercises the workflow's own logic (ordering, gate, expiry, failure handling) on the real
 * Temporal server in seconds. The real activities are covered by the unit and end-to-end suites.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Activities } from '@tempered/activities';
import type { ArtifactKind, ArtifactRef } from '@tempered/contract';

const ref = (kind: ArtifactKind, n: number): ArtifactRef => ({ uri: `s3://stub/${kind}/${n}`, sha256: String(n).padStart(64, '0'), bytes: n, kind });

export interface StubLog {
  calls: string[];
  /** Learning rates the train stand-in was called with, and the model the rlhf stand-in received. */
  learningRates: number[];
  rlhfModel?: string;
  stages: Array<{ stage: string; status: string; error?: string }>;
  runs: string[];
  approvals: string[];
  /** The canary's weights as set, step by step, and how it ended. */
  canaryWeights: number[];
  canaryOutcome?: import('@tempered/contract').CanaryOutcome;
}

export function stubActivities(opts: { failTrain?: string; canaryBreaks?: number } = {}): { activities: Activities; log: StubLog } {
  const log: StubLog = { calls: [], learningRates: [], stages: [], runs: [], approvals: [], canaryWeights: [] };
  const call = (name: string) => log.calls.push(name);
  const activities: Activities = {
    async recordRun(i) {
      log.runs.push(i.status);
    },
    async recordStage(i) {
      log.stages.push({ stage: i.stage, status: i.status, error: i.error });
    },
    async recordApproval(i) {
      log.approvals.push(i.decision);
    },
    async ingest() {
      call('ingest');
      return { datasetVersionId: 'ds-stub', dataset: ref('dataset', 1), quarantine: ref('quarantine', 2), counts: { input: 10, kept: 9, quarantined: 1 } };
    },
    async clean() {
      call('clean');
      return { cleaned: ref('cleaned', 3), report: ref('clean-report', 4), counts: { input: 9, kept: 8, removed: 1, changed: 2 } };
    },
    async tokenize() {
      call('tokenize');
      return { tokenizer: ref('tokenizer', 5), encoded: ref('shard', 6), counts: { records: 8, tokens: 80 } };
    },
    async split() {
      call('split');
      return { train: ref('shard', 7), validation: ref('shard', 8), test: ref('shard', 9), counts: { train: 6, validation: 1, test: 1 } };
    },
    async train(i) {
      call('train');
      log.learningRates.push(i.learningRate ?? i.spec.train.learningRate);
      if (opts.failTrain) throw ApplicationFailure.create({ message: opts.failTrain, type: 'BadInput', nonRetryable: true });
      return { model: ref('checkpoint', 11), checkpoints: [ref('checkpoint', 10), ref('checkpoint', 11)], steps: 10, initialLoss: 5, finalLoss: 1 };
    },
    async validate(i) {
      call('validate');
      // In a sweep, the smallest learning rate validates best.
      const best = i.candidate === 'lr=0.001';
      return { best: ref('model', best ? 20 : 12), bestStep: 10, valLoss: best ? 0.5 : 1.1, perplexity: 3, initialValLoss: 5 };
    },
    async proposePairs(i) {
      call('proposePairs');
      const { required, pairs } = i.spec.rlhf.labels;
      const offered = pairs ?? Math.ceil(1.5 * required);
      return { pairs: offered, required: Math.min(required, offered) };
    },
    async rlhf(i) {
      call('rlhf');
      log.rlhfModel = i.model.uri;
      return { model: ref('model', 13), method: 'dpo' as const, steps: 5 };
    },
    async rewardModel() {
      call('rewardModel');
      return { rewardModel: ref('reward-model', 14), preferences: ref('preferences', 15), rewardAccuracy: 0.9, initialRewardAccuracy: 0.5 };
    },
    async rl(i) {
      call('rl');
      log.rlhfModel = i.model.uri;
      return { model: ref('model', 16), method: 'rl' as const, steps: 5 };
    },
    async test() {
      call('test');
      return { loss: 1.2, perplexity: 3.3, exactMatch: 0.9, baselineExactMatch: 0, examples: 1 };
    },
    async deploy(i) {
      call('deploy');
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
      log.canaryWeights.push(i.weight);
    },
    async canaryHealth() {
      const broken = opts.canaryBreaks !== undefined && log.canaryWeights.length >= opts.canaryBreaks;
      return { requests: 50, errors: broken ? 20 : 0, errorRate: broken ? 0.4 : 0, p95LatencyMs: 12, rated: 0, negative: 0, negativeRate: 0, ...(broken ? { breach: 'error rate 40.0% (20 of 50 requests) is above 5.0%' } : {}) };
    },
    async finishCanary(i) {
      log.canaryOutcome = i.outcome;
    },
    // The retrain trigger's check is real in tests/workflows/retrain.test.ts; nothing here calls it.
    async retrainCheck() {
      call('retrainCheck');
      return { decision: 'unchanged' as const, reason: 'stand-in' };
    },
  };
  return { activities, log };
}
