/**
 * On-demand evaluation: a model version's test suites run again, outside any pipeline run (`tempered eval`, the
 * API's POST /api/models/:id/evaluations, or a schedule in eval mode on the serving version: drift). One activity
 * on the spec's eval pool answers, judges and scores every suite and stores the results; when it fails for good
 * the evaluation's row says why. An evaluation fails no run and deploys nothing.
 *
 * Workflow code only: deterministic, no I/O.
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '@tempered/activities';
import type { EvaluationInput, EvaluationOutcome } from '@tempered/contract';
import { failureMessage, taskQueueFor } from './shared';

export async function evaluateModel(input: EvaluationInput): Promise<EvaluationOutcome> {
  const evaluationId = workflowInfo().workflowId;
  const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', nonRetryableErrorTypes: ['BadInput'] };
  const { evaluateSuites } = proxyActivities<Activities>({
    taskQueue: taskQueueFor(input.spec.pools.eval),
    startToCloseTimeout: '6h',
    heartbeatTimeout: input.spec.train.heartbeatTimeout ?? '2m',
    retry: { ...retry, maximumAttempts: 3 },
  });
  const { recordEvaluation } = proxyActivities<Activities>({ taskQueue: taskQueueFor(input.spec.pools.data), startToCloseTimeout: '1m', retry: { ...retry, maximumAttempts: 10 } });
  try {
    return await evaluateSuites({ ...input, evaluationId });
  } catch (err) {
    // With what the row needs to be created: a drift evaluation that found nothing serving has none yet.
    const suites = input.suites ?? (input.spec.test.suites ?? []).map((s) => s.name);
    await recordEvaluation({ evaluationId, status: 'failed', error: failureMessage(err), modelName: input.spec.name, suites, requestedBy: input.requestedBy });
    throw err;
  }
}
