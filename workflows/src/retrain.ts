/**
 * Triggered retrains. A Temporal Schedule in trigger mode (see services/api/src/routes/schedules.ts) starts
 * `retrainTrigger` every `retrain.checkEvery`; one activity compares the watched S3 prefix and the count of
 * new feedback with what the trigger last acted on, and when a threshold of the spec passes, the workflow
 * starts a `lifecyclePipeline` run.
 *
 * The run is a child workflow with ParentClosePolicy ABANDON rather than a start through a client inside the
 * activity: the start is a command recorded in this workflow's history, so it happens exactly once even when
 * the activity is retried or a worker dies; no activity needs a Temporal client; the Web UI links each run
 * to the check that started it; and ABANDON lets the run (which may wait days at its gate) outlive the check,
 * which ends as soon as the run has started.
 *
 * Workflow code only: deterministic, no I/O.
 */
import { ChildWorkflowCancellationType, ParentClosePolicy, proxyActivities, startChild, uuid4 } from '@temporalio/workflow';
import type { Activities } from '@tempered/activities';
import type { PipelineInput, RetrainTriggerInput, RetrainTriggerOutcome } from '@tempered/contract';
import { CONTROL_TASK_QUEUE, taskQueueFor, WORKFLOW_TYPE } from './shared';

export async function retrainTrigger(input: RetrainTriggerInput): Promise<RetrainTriggerOutcome> {
  const { retrainCheck } = proxyActivities<Activities>({
    taskQueue: taskQueueFor(input.spec.pools.data),
    startToCloseTimeout: '5m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes: ['BadInput'] },
  });
  // Date.now and uuid4 are deterministic in workflow code: a replay computes the same id.
  const runId = `${input.spec.name}-${Date.now().toString(36)}-${uuid4().slice(0, 6)}`;
  const check = await retrainCheck({ triggerId: input.triggerId, runId, spec: input.spec, requestedBy: input.requestedBy, overlap: input.overlap ?? 'SKIP' });
  if (check.decision !== 'start') return { decision: check.decision, reason: check.reason };

  const run: PipelineInput = {
    spec: check.spec,
    specDir: input.specDir,
    requestedBy: input.requestedBy,
    // The trigger's creator: they may not approve what their trigger started.
    ...(input.responsible !== undefined ? { responsible: input.responsible } : {}),
  };
  await startChild(WORKFLOW_TYPE, {
    workflowId: check.runId,
    taskQueue: CONTROL_TASK_QUEUE,
    args: [run],
    parentClosePolicy: ParentClosePolicy.ABANDON,
    cancellationType: ChildWorkflowCancellationType.ABANDON,
  });
  return { decision: 'start', reason: check.reason, runId: check.runId };
}
