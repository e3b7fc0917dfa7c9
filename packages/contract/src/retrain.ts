/**
 * Triggered retrains' values: what a retrain trigger's workflow is given, what its check activity decides,
 * and what a check ends with (the workflow itself is workflows/src/retrain.ts).
 */
import type { PipelineSpec } from '@tempered/spec';

export interface RetrainTriggerInput {
  /** The schedule's id; the key of the trigger's state in `retrain_triggers`. */
  triggerId: string;
  /** The pipeline's spec, with its `retrain.watch` and/or `retrain.feedback` thresholds. */
  spec: PipelineSpec;
  specDir?: string;
  /** `trigger:<id>`: whom the runs it starts are recorded as requested by. */
  requestedBy: string;
  /** The person who created the trigger: passed on as the runs' `responsible`, who may not approve them. */
  responsible?: string;
  /**
   * SKIP (default): no retrain starts while the previous one this trigger started is still in progress; the
   * change is kept and starts one at the first check after it ends. Any other policy starts one regardless.
   */
  overlap?: string;
}

export interface RetrainCheckInput {
  triggerId: string;
  /** The id the run gets if the check starts one: chosen by the workflow, so a retried check is idempotent. */
  runId: string;
  spec: PipelineSpec;
  requestedBy: string;
  overlap: string;
}

export type RetrainDecision = 'baseline' | 'unchanged' | 'below-threshold' | 'busy' | 'start';

export type RetrainCheckResult =
  | { decision: Exclude<RetrainDecision, 'start'>; reason: string }
  /** `spec` is the run's: the pipeline's spec with the watched prefix's data files appended to its sources. */
  | { decision: 'start'; reason: string; runId: string; spec: PipelineSpec };

export interface RetrainTriggerOutcome {
  decision: RetrainDecision;
  reason: string;
  runId?: string;
}
