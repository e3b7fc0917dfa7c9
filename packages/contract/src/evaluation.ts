/**
 * On-demand evaluations: a model version's test suites run again, outside any pipeline run. `tempered eval
 * VERSION --suite NAME` asks for one; a schedule in eval mode runs one on whatever version serves a model name
 * (drift: the same suites, the same model, new answers from today's serving stack and judge). The workflow is
 * workflows/src/evaluate.ts, its activity activities/src/evaluate.ts; the `evaluations` table keeps the results.
 */
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, SuiteResult } from './pipeline';

export interface EvaluationInput {
  /** The spec whose `test.suites` (and clean rules, test settings) are run: the version's own run's, or a schedule's. */
  spec: PipelineSpec;
  specDir?: string;
  /** The version to evaluate; absent: the version serving `spec.name` when the evaluation starts. */
  modelVersionId?: string;
  /** Names of the spec's suites to run; absent: every one. */
  suites?: string[];
  /** A person, or `eval-schedule:<id>`. */
  requestedBy: string;
}

export type EvaluationStatus = 'running' | 'completed' | 'failed';

export interface EvaluationOutcome {
  modelVersionId: string;
  suites: SuiteResult[];
  /** Each suite's answers, one JSON line per record (the contract's TestAnswer, with `suite`). */
  answers: ArtifactRef;
  /**
   * Each of the suites' `min` / `max` bounds the figures cross, said as the test stage's gate says it. An
   * evaluation fails no run: a breach is reported, for whoever watches the schedule or asked.
   */
  breaches: string[];
}
