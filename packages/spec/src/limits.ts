/**
 * The bounds a deployment puts on what one spec may ask of its workers: training length, batch size, the
 * size of a model trained from scratch, and how long a run may hold its deployment gate open. The schema
 * (./schema.ts) keeps what is true of every deployment (a positive step count, a duration Temporal can
 * represent); these are a host's resources, so an admin sets them (TEMPERED_MAX_* in @tempered/config) and
 * the API checks every spec against them at submit, naming the field: `train.steps: at most 100000`.
 */
import type { SpecIssue } from '.';
import { durationMs, type PipelineSpec } from './schema';

export interface SpecLimits {
  /** train.steps, rlhf.steps and rlhf.reward.steps. */
  trainSteps: number;
  /** train.batchSize and rlhf.batchSize. */
  batchSize: number;
  /** Parameters of a model trained from scratch (`model` without `base`), estimated as GPT-2 counts them. */
  modelParameters: number;
  /** deploy.approvalTimeout, in milliseconds: how long a run may wait at its gate, holding its artifacts. */
  approvalTimeoutMs: number;
}

/**
 * Defaults for one machine: 100,000 steps is hours of a small model on a GPU (the examples take 300);
 * 1,024 examples a batch fills a large GPU with the contexts allowed; 100 M parameters trains on a GPU in
 * hours (and is still a crawl on CPU; fine-tune a base model for anything bigger); a gate waits 30 days.
 */
export const DEFAULT_SPEC_LIMITS: SpecLimits = {
  trainSteps: 100_000,
  batchSize: 1024,
  modelParameters: 100_000_000,
  approvalTimeoutMs: 30 * 86_400_000,
};

/** Parameters of a GPT-2 model of this shape: 12·d² a block (attention and MLP) plus token and position embeddings (the head is tied). */
export function estimatedParameters(model: { nLayer: number; nEmbd: number; contextLength: number }, vocabSize: number): number {
  return 12 * model.nLayer * model.nEmbd ** 2 + (vocabSize + model.contextLength) * model.nEmbd;
}

/** A duration in the spec's own units, for messages: 2592000000 ms is "30d". */
export function durationText(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Every field of a validated spec that asks for more than `limits` allow; empty when none does. */
export function specLimitIssues(spec: PipelineSpec, limits: SpecLimits): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const atMost = (path: string, value: number, max: number) => {
    if (value > max) issues.push({ path, message: `at most ${max}` });
  };
  atMost('train.steps', spec.train.steps, limits.trainSteps);
  atMost('train.batchSize', spec.train.batchSize, limits.batchSize);
  if (spec.rlhf.method !== 'none') {
    atMost('rlhf.steps', spec.rlhf.steps, limits.trainSteps);
    atMost('rlhf.batchSize', spec.rlhf.batchSize, limits.batchSize);
    if (spec.rlhf.method === 'rl') atMost('rlhf.reward.steps', spec.rlhf.reward.steps, limits.trainSteps);
  }
  if (!spec.model.base) {
    const params = estimatedParameters(spec.model, spec.tokenizer.vocabSize);
    if (params > limits.modelParameters) {
      issues.push({
        path: 'model',
        message: `nLayer ${spec.model.nLayer} × nEmbd ${spec.model.nEmbd} is about ${Math.round(params / 1e6)} M parameters; at most ${Math.round(limits.modelParameters / 1e6)} M for a model trained from scratch (fine-tune a base model instead)`,
      });
    }
  }
  const timeout = durationMs(spec.deploy.approvalTimeout)!;
  if (timeout > limits.approvalTimeoutMs) issues.push({ path: 'deploy.approvalTimeout', message: `at most ${durationText(limits.approvalTimeoutMs)}` });
  return issues;
}
