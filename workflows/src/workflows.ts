/**
 * The model's life cycle as one durable workflow:
 *
 *   ingest → clean → tokenize → split → train → validate → RLHF → test → optimize → deploy (behind a human approval)
 *
 * (optimize, the GGUF exports scored, only when the spec asks for it.)
 * Workflow code only: deterministic, no I/O. Every stage is an activity on the pool the spec names; stages
 * hand each other small artifact references, never data. The deployment gate is the `approveDeployment`
 * Update, whose validator refuses a bad decision (or the run's own requester or the person behind it) before it enters history; a
 * timer turns silence into a recorded expiry.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  executeChild,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '@tempered/activities';
import { canaryRollout } from './canary';
import { type ApprovalDecision, type ArtifactRef, type ChampionComparison, championShortfall, type OptimizeResult, type PipelineInput, type PipelineOutcome, type PipelineProgress, STAGES, type StageName } from '@tempered/contract';
import { cleanShards, shardPlan, tokenizeShards } from './data';
import { approveDeploymentUpdate, canaryWorkflowId, failureMessage, NON_RETRYABLE, OPTIMIZE_STAGE_PATCH, SHARDED_DATA_PATCH, SIGNED_APPROVALS_PATCH, labelsChangedSignal, msOf, progressQuery, taskQueueFor } from './shared';

function activitiesOn(pool: string, timeouts: { startToClose: string; heartbeat?: string }, maximumAttempts: number) {
  return proxyActivities<Activities>({
    taskQueue: taskQueueFor(pool),
    startToCloseTimeout: timeouts.startToClose,
    heartbeatTimeout: timeouts.heartbeat,
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts, nonRetryableErrorTypes: NON_RETRYABLE },
  });
}

export async function lifecyclePipeline(input: PipelineInput): Promise<PipelineOutcome> {
  const { spec } = input;
  const runId = workflowInfo().workflowId;

  const book = activitiesOn(spec.pools.data, { startToClose: '1m' }, 10);
  const data = activitiesOn(spec.pools.data, { startToClose: '2h', heartbeat: '2m' }, 3);
  // Specs recorded before heartbeatTimeout existed replay with the value they ran with.
  const heartbeat = spec.train.heartbeatTimeout ?? '2m';
  const train = activitiesOn(spec.pools.train, { startToClose: '24h', heartbeat }, 5);
  const rlhf = activitiesOn(spec.pools.rlhf, { startToClose: '24h', heartbeat }, 5);
  const evaluate = activitiesOn(spec.pools.eval, { startToClose: '6h', heartbeat }, 3);
  const deploy = activitiesOn(spec.pools.data, { startToClose: '10m', heartbeat: '1m' }, 3);

  const progress: PipelineProgress = {
    stages: Object.fromEntries(STAGES.map((s) => [s, { status: 'pending' }])) as PipelineProgress['stages'],
    gate: { status: 'not-reached' },
  };
  setHandler(progressQuery, () => progress);
  // Counts, not deltas: a repeated or reordered signal never overcounts. Kept even before the pairs are
  // announced, since a person may label the first pair before the proposing activity's result arrives.
  let labeledCount = 0;
  setHandler(labelsChangedSignal, ({ labeled }) => {
    if (Number.isFinite(labeled)) labeledCount = Math.max(labeledCount, labeled);
    if (progress.labels) progress.labels.labeled = labeledCount;
  });

  let decision: (ApprovalDecision & { decidedAt: string }) | undefined;
  /** Set at the gate: whether the challenger lost to the serving model, so approving needs an override. */
  let championBeatsChallenger: ChampionComparison | undefined;
  setHandler(
    approveDeploymentUpdate,
    async (d) => {
      // Runs started since decisions are signed count one only after an activity checked the API's signature
      // (workflow code must not hold the key); runs from before replay as they ran.
      if (patched(SIGNED_APPROVALS_PATCH)) {
        const check = await book.verifyApproval({ runId, decision: d });
        if (!check.ok) throw ApplicationFailure.create({ message: check.reason, type: 'BadApproval', nonRetryable: true });
        // Another decision may have been counted while this one was being checked.
        if (decision !== undefined) throw ApplicationFailure.create({ message: 'the deployment gate was decided meanwhile', type: 'BadApproval', nonRetryable: true });
      }
      decision = { ...d, decidedAt: new Date().toISOString() };
      const override = d.decision === 'approve' && championBeatsChallenger !== undefined;
      return { decision: d.decision, approver: d.approver, decidedAt: decision.decidedAt, ...(override ? { override } : {}) };
    },
    {
      validator: (d) => {
        if (progress.gate.status !== 'waiting') {
          throw new Error(`the deployment gate is ${progress.gate.status}, not waiting for a decision`);
        }
        if (d?.decision !== 'approve' && d?.decision !== 'reject') throw new Error('decision must be "approve" or "reject"');
        if (typeof d.approver !== 'string' || d.approver.trim() === '') throw new Error('approver is required');
        if (d.approver === input.requestedBy) {
          throw new Error(`${d.approver} started this run and cannot approve its deployment; ask another approver`);
        }
        // A scheduled or triggered run's requester is `schedule:<id>`; the person behind it is `responsible`.
        if (input.responsible !== undefined && d.approver === input.responsible) {
          throw new Error(`${d.approver} is responsible for this run (they started it or created its schedule or trigger) and cannot approve its deployment; ask another approver`);
        }
        const lost = championBeatsChallenger;
        if (d.decision === 'approve' && lost && d.override !== true) {
          throw new Error(`${championShortfall(lost)}; approve with override to deploy it anyway`);
        }
      },
    },
  );

  /** Runs one stage: status in the progress query and in Postgres, failures recorded before they propagate. */
  async function stage<T>(name: StageName, run: () => Promise<T>, summarize: (r: T) => Record<string, unknown>): Promise<T> {
    const startedAt = new Date().toISOString();
    progress.stages[name] = { status: 'running', startedAt };
    await book.recordStage({ runId, stage: name, status: 'running' });
    try {
      const result = await run();
      const summary = summarize(result);
      progress.stages[name] = { status: 'completed', startedAt, finishedAt: new Date().toISOString(), summary };
      await book.recordStage({ runId, stage: name, status: 'completed', summary });
      return result;
    } catch (err) {
      const cancelled = isCancellation(err);
      const error = failureMessage(err);
      progress.stages[name] = { status: cancelled ? 'cancelled' : 'failed', startedAt, finishedAt: new Date().toISOString(), error };
      // Bookkeeping must happen even when the run itself is being cancelled.
      await CancellationScope.nonCancellable(async () => {
        await book.recordStage({ runId, stage: name, status: cancelled ? 'cancelled' : 'failed', error });
        await book.recordRun({ runId, status: cancelled ? 'cancelled' : 'failed', error: `${name}: ${error}` });
      });
      throw err;
    }
  }

  await book.recordRun({ runId, status: 'running', spec, specDir: input.specDir, requestedBy: input.requestedBy });
  try {
    return await stagesAndGate();
  } catch (err) {
    // A run cancelled while waiting at the gate (or between stages) is recorded as such.
    if (isCancellation(err)) {
      await CancellationScope.nonCancellable(() => book.recordRun({ runId, status: 'cancelled' }));
    }
    throw err;
  }

  async function stagesAndGate(): Promise<PipelineOutcome> {
    const ingested = await stage('ingest', () => data.ingest({ runId, spec, specDir: input.specDir }), (r) => ({ ...r.counts, datasetVersionId: r.datasetVersionId }));
    // Data larger than data.shards.bytes is cleaned and tokenized on shards, by child workflows; runs from
    // before that replay as they ran.
    const onShards = (artifact: ArtifactRef) => {
      const plan = shardPlan(spec, artifact);
      return plan && patched(SHARDED_DATA_PATCH) ? plan : undefined;
    };
    const cleanPlan = onShards(ingested.dataset);
    const cleaned = await stage(
      'clean',
      () =>
        cleanPlan
          ? executeChild(cleanShards, { workflowId: `${runId}-clean`, args: [{ runId, spec, dataset: ingested.dataset, plan: cleanPlan }] })
          : data.clean({ runId, spec, dataset: ingested.dataset }),
      (r) => ({ ...r.counts, ...(cleanPlan ? { shards: cleanPlan.ranges.length } : {}) }),
    );
    const tokenizePlan = onShards(cleaned.cleaned);
    const tokenized = await stage(
      'tokenize',
      () =>
        tokenizePlan
          ? executeChild(tokenizeShards, { workflowId: `${runId}-tokenize`, args: [{ runId, spec, specDir: input.specDir, cleaned: cleaned.cleaned, plan: tokenizePlan }] })
          : data.tokenize({ runId, spec, specDir: input.specDir, cleaned: cleaned.cleaned }),
      (r) => ({ ...r.counts, ...(tokenizePlan ? { shards: tokenizePlan.ranges.length } : {}) }),
    );
    const splits = await stage('split', () => data.split({ runId, spec, encoded: tokenized.encoded }), (r) => r.counts);
    // One training candidate, or one per learning rate of a sweep, trained in parallel.
    const sweep = spec.train.sweep?.learningRates;
    const candidates = (sweep ?? [spec.train.learningRate]).map((learningRate) => ({
      learningRate,
      label: sweep ? `lr=${learningRate}` : undefined,
    }));
    const trainedAll = await stage(
      'train',
      () =>
        Promise.all(
          candidates.map((c) => train.train({ runId, spec, specDir: input.specDir, trainShard: splits.train, tokenizer: tokenized.tokenizer, learningRate: c.learningRate, candidate: c.label })),
        ),
      (rs) =>
        rs.length === 1
          ? { steps: rs[0].steps, initialLoss: rs[0].initialLoss, finalLoss: rs[0].finalLoss, checkpoints: rs[0].checkpoints.length }
          : { candidates: rs.map((r, i) => ({ learningRate: candidates[i].learningRate, finalLoss: r.finalLoss })), steps: rs[0].steps, initialLoss: rs[0].initialLoss, finalLoss: Math.min(...rs.map((r) => r.finalLoss)) },
    );
    const validatedAll = await stage(
      'validate',
      () =>
        Promise.all(
          trainedAll.map((t, i) =>
            evaluate.validate({ runId, spec, specDir: input.specDir, checkpoints: t.checkpoints, validationShard: splits.validation, tokenizer: tokenized.tokenizer, candidate: candidates[i].label }),
          ),
        ),
      (rs) => {
        const b = bestOf(rs);
        return {
          bestStep: rs[b].bestStep,
          valLoss: rs[b].valLoss,
          perplexity: rs[b].perplexity,
          initialValLoss: rs[b].initialValLoss,
          ...(rs.length > 1 ? { learningRate: candidates[b].learningRate, candidates: rs.map((r, i) => ({ learningRate: candidates[i].learningRate, valLoss: r.valLoss })) } : {}),
        };
      },
    );
    const best = bestOf(validatedAll);
    const trained = trainedAll[best];
    const validated = validatedAll[best];
    let model = validated.best;
    if (spec.rlhf.method === 'none') {
      progress.stages.rlhf = { status: 'skipped' };
      await book.recordStage({ runId, stage: 'rlhf', status: 'skipped' });
    } else {
      const aligned = await stage(
        'rlhf',
        async () => {
          if (spec.rlhf.source === 'labels') await waitForLabels(model);
          if (spec.rlhf.method !== 'rl') return rlhf.rlhf({ runId, spec, specDir: input.specDir, model });
          // Two activities, so a crash during RL does not retrain the reward model.
          const reward = await rlhf.rewardModel({ runId, spec, specDir: input.specDir, model });
          const rl = await rlhf.rl({ runId, spec, model, rewardModel: reward.rewardModel, preferences: reward.preferences });
          return { ...rl, rewardAccuracy: reward.rewardAccuracy };
        },
        (r) => ({ method: r.method, steps: r.steps, ...(r.rewardAccuracy !== undefined ? { rewardAccuracy: r.rewardAccuracy } : {}) }),
      );
      model = aligned.model;
    }
    /**
     * Pairs sampled from the model go to people; the run waits (durably: days are fine) until enough are
     * labeled, then RLHF reads the labels from the database.
     */
    async function waitForLabels(from: typeof model): Promise<void> {
      const proposed = await rlhf.proposePairs({ runId, spec, model: from, cleaned: cleaned.cleaned });
      progress.labels = { required: proposed.required, labeled: labeledCount, pairs: proposed.pairs };
      progress.stages.rlhf = { ...progress.stages.rlhf, summary: { waitingForLabels: proposed.required, pairs: proposed.pairs } };
      await book.recordRun({ runId, status: 'waiting-labels' });
      const labels = progress.labels;
      await condition(() => labels.labeled >= labels.required);
      progress.stages.rlhf = { ...progress.stages.rlhf, summary: { labeled: labels.labeled } };
      await book.recordRun({ runId, status: 'running' });
    }

    const tested = await stage(
      'test',
      () =>
        evaluate.test({
          runId,
          spec,
          specDir: input.specDir,
          model,
          // The fine-tuned model before RLHF, so the test reports what each step of alignment changed.
          ...(model !== validated.best ? { sftModel: validated.best } : {}),
          baseline: trained.checkpoints[0],
          testShard: splits.test,
          tokenizer: tokenized.tokenizer,
          cleaned: cleaned.cleaned,
        }),
      (r) => ({ ...r }),
    );

    if (tested.champion && !tested.champion.challengerWins) championBeatsChallenger = tested.champion;

    // The GGUF exports scored against the model, before anyone decides; runs from before the stage replay as they ran.
    let optimized: OptimizeResult | undefined;
    if (patched(OPTIMIZE_STAGE_PATCH)) {
      if (spec.optimize) {
        optimized = await stage('optimize', () => evaluate.optimize({ runId, spec, specDir: input.specDir, model, testShard: splits.test, tested }), (r) => ({ ...r }));
      } else {
        progress.stages.optimize = { status: 'skipped' };
        await book.recordStage({ runId, stage: 'optimize', status: 'skipped' });
      }
    }
    const optimizedOutcome = optimized ? { optimize: optimized } : {};

    // The deployment gate: a person decides, or the timer records the expiry.
    const deadline = new Date(Date.now() + msOf(spec.deploy.approvalTimeout)).toISOString();
    progress.gate = { status: 'waiting', deadline };
    progress.stages.deploy = { status: 'running', startedAt: new Date().toISOString(), summary: { gate: 'waiting', deadline } };
    await book.recordStage({ runId, stage: 'deploy', status: 'running', summary: { gate: 'waiting', deadline } });
    await book.recordRun({ runId, status: 'waiting-approval' });

    const decided = await condition(() => decision !== undefined, spec.deploy.approvalTimeout);
    if (!decided || !decision) {
      const expiredAt = new Date().toISOString();
      progress.gate = { status: 'expired', expiredAt };
      progress.stages.deploy = { status: 'skipped', finishedAt: expiredAt, summary: { gate: 'expired' } };
      await book.recordApproval({ runId, decision: 'expired' });
      await book.recordStage({ runId, stage: 'deploy', status: 'skipped', summary: { gate: 'expired', deadline } });
      await book.recordRun({ runId, status: 'expired' });
      return { status: 'expired', test: tested, ...optimizedOutcome };
    }

    const { approver, comment = '', decidedAt } = decision;
    // An approval the champion rule alone would have refused is recorded as an override.
    const override = decision.decision === 'approve' && championBeatsChallenger !== undefined;
    progress.gate = { status: decision.decision === 'approve' ? 'approved' : 'rejected', approver, comment, decidedAt, ...(override ? { override } : {}) };
    await book.recordApproval({ runId, decision: override ? 'override' : decision.decision, approver, comment });
    if (decision.decision === 'reject') {
      progress.stages.deploy = { status: 'skipped', finishedAt: new Date().toISOString(), summary: { gate: 'rejected', approver } };
      await book.recordStage({ runId, stage: 'deploy', status: 'skipped', summary: { gate: 'rejected', approver, comment } });
      await book.recordRun({ runId, status: 'rejected' });
      return { status: 'rejected', test: tested, ...optimizedOutcome };
    }

    const deployed = await stage(
      'deploy',
      async () => {
        const d = await deploy.deploy({ runId, spec, model, datasetVersionId: ingested.datasetVersionId, metrics: tested, approver });
        if (!d.previous || !spec.deploy.canary) return d;
        // Another version serves: move the traffic in steps, watched, in a child workflow of its own.
        progress.stages.deploy = { ...progress.stages.deploy, summary: { canary: 'running', previous: d.previous.modelVersionId } };
        await book.recordRun({ runId, status: 'canary' });
        const canary = await executeChild(canaryRollout, {
          workflowId: canaryWorkflowId(runId),
          args: [{ runId, pool: spec.pools.data, modelName: spec.name, canary: spec.deploy.canary, candidate: d, previous: d.previous }],
        });
        return { ...d, canary };
      },
      (r) => ({ ...r, gate: 'approved', approver }),
    );
    const rolledBack = deployed.canary?.status === 'rolled-back';
    await book.recordRun({ runId, status: rolledBack ? 'rolled-back' : 'deployed', ...(rolledBack ? { error: `canary rolled back: ${deployed.canary!.reason}` } : {}) });
    return { status: rolledBack ? 'rolled-back' : 'deployed', deploy: deployed, test: tested, ...optimizedOutcome };
  }
}

/** Index of the candidate with the lowest validation loss. */
function bestOf(results: Array<{ valLoss: number }>): number {
  return results.reduce((best, r, i) => (r.valLoss < results[best].valLoss ? i : best), 0);
}

export { retrainTrigger } from './retrain';
export { canaryRollout } from './canary';
export { evaluateModel } from './evaluate';
export { cleanShards, tokenizeShards } from './data';
