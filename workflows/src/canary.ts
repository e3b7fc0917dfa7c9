/**
 * The canary rollout, a child of the pipeline after a deploy that found another version serving: the new
 * version gets each step's share of the traffic for the step's hold, while an activity reads its health
 * from the gateway's request log and feedback; a breach (or a person's abort) rolls back to the previous
 * version, the last step (or a person's promote) promotes. Rolling back is the compensation of the deploy:
 * routes back to the previous version, the new server stopped, the reason recorded.
 *
 * Workflow code only: deterministic, no I/O. Timers are durable, so a worker restart mid-step resumes the
 * same step with its remaining hold.
 */
import { condition, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '@tempered/activities';
import type { CanaryInput, CanaryOutcome, CanaryState } from '@tempered/contract';
import { abortCanarySignal, canaryQuery, msOf, promoteCanarySignal, taskQueueFor } from './shared';

export async function canaryRollout(input: CanaryInput): Promise<CanaryOutcome> {
  const { canary } = input;
  const acts = proxyActivities<Pick<Activities, 'setCanaryWeight' | 'canaryHealth' | 'finishCanary'>>({
    taskQueue: taskQueueFor(input.pool),
    startToCloseTimeout: '1m',
    retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 20 },
  });
  const state: CanaryState = { status: 'running', weight: 0, step: 0 };
  setHandler(canaryQuery, () => state);
  let manual: { action: 'promote' | 'abort'; by: string; comment?: string } | undefined;
  setHandler(promoteCanarySignal, ({ by, comment }) => void (manual ??= { action: 'promote', by, comment }));
  setHandler(abortCanarySignal, ({ by, comment }) => void (manual ??= { action: 'abort', by, comment }));

  const steps: CanaryOutcome['steps'] = [];
  const finish = async (status: CanaryOutcome['status'], reason: string, decidedBy: string): Promise<CanaryOutcome> => {
    const outcome: CanaryOutcome = { status, reason, decidedBy, steps };
    await acts.finishCanary({ ...input, outcome });
    Object.assign(state, { status, reason, decidedBy, weight: status === 'promoted' ? 100 : 0 });
    return outcome;
  };

  for (const [i, weight] of canary.steps.entries()) {
    await acts.setCanaryWeight({ modelName: input.modelName, candidate: input.candidate, previous: input.previous, weight });
    const stepStartedAt = new Date().toISOString();
    Object.assign(state, { weight, step: i + 1, stepStartedAt, health: undefined });
    steps.push({ weight });
    const holdUntil = Date.now() + msOf(canary.hold);
    while (Date.now() < holdUntil) {
      await condition(() => manual !== undefined, Math.min(msOf(canary.checkEvery), Math.max(1, holdUntil - Date.now())));
      if (manual?.action === 'abort') return finish('rolled-back', `aborted by hand${manual.comment ? `: ${manual.comment}` : ''}`, manual.by);
      if (manual?.action === 'promote') return finish('promoted', `promoted by hand${manual.comment ? `: ${manual.comment}` : ''}`, manual.by);
      const health = await acts.canaryHealth({ modelVersionId: input.candidate.modelVersionId, since: stepStartedAt, canary });
      state.health = health;
      steps[steps.length - 1].health = health;
      if (health.breach) return finish('rolled-back', `step ${i + 1} (${weight}%): ${health.breach}`, 'canary');
    }
  }
  return finish('promoted', `healthy through every step (${canary.steps.join('% → ')}%)`, 'canary');
}
