/**
 * The lifecyclePipeline workflow with stand-in activities: stage order, the approval Update and its validator,
 * override, sweep, RL, rejection, cancellation and a failing stage on the real Temporal dev server; the gate's
 * expiry and the durable wait for labels on the SDK's time-skipping test server, where a day passes in
 * milliseconds. Every assertion reads the stand-ins' log of its own run.
 *
 * Histories of these branches for the replay test are recorded by `npm run record-histories`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  type Client,
  type WorkflowHandle,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, Worker } from '@temporalio/worker';
import { type PipelineInput, type PipelineOutcome, type PipelineProgress, STAGES } from '@tempered/contract';
import type { PipelineSpec } from '@tempered/spec';
import { approveDeploymentUpdate, labelsChangedSignal, progressQuery, taskQueueFor, WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, demoSpec, quietWorkerLogs, temporalClient, uniqueId, waitFor } from '../support';
import { workflowCode } from './histories';
import { type RunLog, STUB_CHAMPION, stubActivities } from './stubs';
import { timeSkippingEnv } from './time-skipping';

const UP_TO_THE_GATE = ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate', 'rlhf', 'test'];
/** The stage records of a run that completed every stage before the gate. */
const completedStages = (names = UP_TO_THE_GATE) => names.flatMap((stage) => [{ stage, status: 'running' }, { stage, status: 'completed' }]);

function specOn(pool: string, tweak: (spec: PipelineSpec) => void = () => {}): PipelineSpec {
  const spec = demoSpec();
  spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
  tweak(spec);
  return spec;
}

function startOn(client: Client, spec: PipelineSpec): Promise<WorkflowHandle> {
  const input: PipelineInput = { spec, requestedBy: 'alice' };
  return client.workflow.start(WORKFLOW_TYPE, { taskQueue: taskQueueFor(spec.pools.data), workflowId: uniqueId('wf'), args: [input] });
}

function atGate(handle: WorkflowHandle): Promise<PipelineProgress> {
  return waitFor('the deployment gate', 30_000, async () => {
    const p = await handle.query(progressQuery);
    return p.gate.status === 'waiting' ? p : undefined;
  });
}

/** The gate as the progress query shows it once decided, without the decision's time. */
async function decidedGate(handle: WorkflowHandle): Promise<Record<string, unknown>> {
  const { decidedAt, ...gate } = (await handle.query(progressQuery)).gate as { decidedAt?: string };
  assert.match(decidedAt ?? '', /^\d{4}-\d\d-\d\dT/, 'the decision has its time');
  return gate;
}

/** Waits until the run's latest recorded status is `status`. */
const recorded = (log: RunLog, status: string) => waitFor(`the ${status} record`, 10_000, async () => (log.runs.at(-1) === status ? true : undefined), 100);

/** Cancels a run and waits until it has ended as cancelled. */
async function cancelled(handle: WorkflowHandle): Promise<void> {
  await handle.cancel();
  await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure);
}

describe('lifecyclePipeline workflow (real server, stand-in activities)', () => {
  const pool = uniqueId('wft').toLowerCase();
  let client: Client;
  let closeClient: () => Promise<void>;
  let connection: NativeConnection;
  let workers: Worker[];
  let running: Promise<unknown>;
  const stub = stubActivities();
  const failing = stubActivities({ failTrain: 'train.steps: the stand-in refuses this spec' });
  const champion = stubActivities({ championWins: true });
  const large = stubActivities({ dataBytes: 5000 });

  before(async () => {
    quietWorkerLogs();
    ({ client, close: closeClient } = await temporalClient());
    connection = await NativeConnection.connect({ address: cfg.temporal.address });
    const { bundle } = await workflowCode();
    workers = await Promise.all(
      ([[pool, stub], [`${pool}-failing`, failing], [`${pool}-champion`, champion], [`${pool}-large`, large]] as const).map(([p, s]) =>
        Worker.create({ connection, taskQueue: taskQueueFor(p), workflowBundle: bundle, activities: s.activities }),
      ),
    );
    running = Promise.all(workers.map((w) => w.run()));
  });

  after(async () => {
    for (const w of workers) w.shutdown();
    await running;
    await connection.close();
    await closeClient();
  });

  const start = (tweak?: (spec: PipelineSpec) => void, onPool = pool) => startOn(client, specOn(onPool, tweak));
  const decide = (handle: WorkflowHandle, d: { decision: 'approve' | 'reject'; approver: string; comment?: string; override?: boolean }) =>
    handle.executeUpdate(approveDeploymentUpdate, { args: [d] });
  /** The validator refuses the decision, with this message, before it enters history. */
  const refuses = (handle: WorkflowHandle, d: Parameters<typeof decide>[1], message: RegExp) =>
    assert.rejects(decide(handle, d), (err: unknown) => {
      assert.ok(err instanceof WorkflowUpdateFailedError, String(err));
      assert.match(String((err.cause as Error | undefined)?.message), message);
      return true;
    });

  test('runs every stage in order, refuses bad approvals, deploys on approval', async () => {
    const handle = await start();
    const log = stub.log.of(handle.workflowId);
    const progress = await atGate(handle);
    assert.deepEqual(log.calls, UP_TO_THE_GATE);
    for (const s of STAGES.filter((s) => s !== 'deploy' && s !== 'optimize')) assert.equal(progress.stages[s].status, 'completed', s);
    assert.equal(progress.stages.optimize.status, 'skipped', 'a spec without optimize skips it');
    await recorded(log, 'waiting-approval'); // the query shows the gate before its bookkeeping activities ran
    assert.deepEqual(log.runs, ['running', 'waiting-approval']);

    // The validator refuses each before it enters history.
    await refuses(handle, { decision: 'approve', approver: 'alice' }, /^alice started this run and cannot approve its deployment; ask another approver$/);
    await refuses(handle, { decision: 'maybe' as 'approve', approver: 'bob' }, /^decision must be "approve" or "reject"$/);
    await refuses(handle, { decision: 'approve', approver: ' ' }, /^approver is required$/);
    assert.equal((await handle.query(progressQuery)).gate.status, 'waiting', 'the run stays at the gate after refused approvals');
    assert.deepEqual(log.approvals, [], 'no refused decision was recorded');

    const receipt = await decide(handle, { decision: 'approve', approver: 'bob', comment: 'ok' });
    assert.equal(receipt.approver, 'bob');
    assert.equal(receipt.decision, 'approve');
    assert.equal(receipt.override, undefined, 'no override when the challenger was not beaten');
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'deployed');
    assert.equal(outcome.deploy?.modelVersionId, 'stub-v1');
    assert.deepEqual(log.calls, [...UP_TO_THE_GATE, 'deploy']);
    assert.deepEqual(log.approvals, ['approve']);
    assert.deepEqual(log.runs, ['running', 'waiting-approval', 'deployed']);
    assert.deepEqual(log.stages, [
      ...completedStages(),
      { stage: 'optimize', status: 'skipped' },
      { stage: 'deploy', status: 'running' },
      { stage: 'deploy', status: 'running' },
      { stage: 'deploy', status: 'completed' },
    ]);
    assert.deepEqual(await decidedGate(handle), { status: 'approved', approver: 'bob', comment: 'ok' });
  });

  test('a spec with optimize scores the GGUF exports after test, before the gate, and the outcome carries them', async () => {
    const handle = await start((s) => (s.optimize = { types: ['q8_0'], tolerance: 0.02 }));
    const log = stub.log.of(handle.workflowId);
    const progress = await atGate(handle);
    assert.deepEqual(log.calls, [...UP_TO_THE_GATE, 'optimize']);
    assert.equal(progress.stages.optimize.status, 'completed');
    assert.equal((progress.stages.optimize.summary as { forms: Array<{ type: string }> }).forms[0].type, 'q8_0');
    await decide(handle, { decision: 'approve', approver: 'bob' });
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.optimize?.forms[0].metrics[0].metric, 'exact_match');
    assert.deepEqual(log.stages.slice(completedStages().length, completedStages().length + 2), [{ stage: 'optimize', status: 'running' }, { stage: 'optimize', status: 'completed' }]);
  });

  test('a challenger the serving model beats is refused without override and deployed with one, recorded as an override', async () => {
    const handle = await start(undefined, `${pool}-champion`);
    const log = champion.log.of(handle.workflowId);
    await atGate(handle);
    await refuses(
      handle,
      { decision: 'approve', approver: 'bob' },
      /^the challenger's exact match 0\.900 does not beat the serving model's 0\.950 by test\.championMargin 0; approve with override to deploy it anyway$/,
    );
    assert.equal((await handle.query(progressQuery)).gate.status, 'waiting');
    const receipt = await decide(handle, { decision: 'approve', approver: 'bob', comment: 'hotfix', override: true });
    assert.equal(receipt.override, true);
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'deployed');
    assert.deepEqual(outcome.test.champion, STUB_CHAMPION);
    assert.deepEqual(log.approvals, ['override']);
    assert.deepEqual(await decidedGate(handle), { status: 'approved', approver: 'bob', comment: 'hotfix', override: true });
  });

  test('a rejection of a challenger the serving model beats needs no override', async () => {
    const handle = await start(undefined, `${pool}-champion`);
    await atGate(handle);
    const receipt = await decide(handle, { decision: 'reject', approver: 'bob' });
    assert.equal(receipt.override, undefined);
    assert.equal(((await handle.result()) as PipelineOutcome).status, 'rejected');
    assert.deepEqual(champion.log.of(handle.workflowId).approvals, ['reject']);
  });

  test('data larger than data.shards.bytes is cleaned and tokenized on shards by child workflows, at most `parallel` at once', async () => {
    const handle = await start((s) => (s.data.shards = { bytes: 1024, parallel: 2 }), `${pool}-large`);
    const log = large.log.of(handle.workflowId);
    const progress = await atGate(handle);
    // 5000 bytes in shards of 1024: five ranges, the last one shorter.
    const ranges = ['0-1024', '1024-2048', '2048-3072', '3072-4096', '4096-5000'];
    const sorted = (calls: string[], prefix: string) => calls.filter((c) => c.startsWith(prefix)).sort();
    assert.deepEqual(sorted(log.calls, 'cleanShard '), ranges.map((r) => `cleanShard ${r}`));
    assert.deepEqual(sorted(log.calls, 'encodeShard '), ranges.map((r) => `encodeShard ${r}`));
    assert.deepEqual(
      log.calls.filter((c) => !/^(clean|encode)Shard /.test(c)),
      // Then each child deletes its parts: two per clean shard (candidates and sidecar), one per encoded shard.
      ['ingest', 'cleanFromCache', 'mergeCleanShards 5', 'removeShardParts 10', 'tokenizeFromCache', 'shardTokenizer', 'mergeEncodedShards 5', 'removeShardParts 5', 'split', 'train', 'validate', 'rlhf', 'test'],
    );
    assert.deepEqual([progress.stages.clean.summary?.shards, progress.stages.tokenize.summary?.shards], [5, 5]);
    // Each child's history: its shard activities never more than two at a time.
    for (const child of [`${handle.workflowId}-clean`, `${handle.workflowId}-tokenize`]) {
      let running = 0;
      let most = 0;
      for (const e of (await client.workflow.getHandle(child).fetchHistory()).events ?? []) {
        if (/^(clean|encode)Shard$/.test(e.activityTaskScheduledEventAttributes?.activityType?.name ?? '')) most = Math.max(most, ++running);
        if (e.activityTaskCompletedEventAttributes) running = Math.max(0, running - 1);
      }
      assert.equal(most, 2, `${child}: shards at once`);
    }
    await cancelled(handle);
  });

  test('a sweep trains one candidate per learning rate and continues with the best by validation loss', async () => {
    const handle = await start((s) => (s.train.sweep = { learningRates: [0.003, 0.001, 0.01] }));
    const log = stub.log.of(handle.workflowId);
    const progress = await atGate(handle);
    assert.deepEqual([...log.learningRates].sort(), [0.001, 0.003, 0.01]);
    assert.deepEqual(log.calls, ['ingest', 'clean', 'tokenize', 'split', 'train', 'train', 'train', 'validate', 'validate', 'validate', 'rlhf', 'test']);
    assert.equal(log.rlhfModel, 's3://stub/model/20', 'RLHF continues from the best candidate');
    const summary = progress.stages.validate.summary as { learningRate: number; valLoss: number; candidates: Array<{ learningRate: number; valLoss: number }> };
    assert.equal(summary.learningRate, 0.001);
    assert.equal(summary.valLoss, 0.5);
    assert.deepEqual(summary.candidates, [
      { learningRate: 0.003, valLoss: 1.1 },
      { learningRate: 0.001, valLoss: 0.5 },
      { learningRate: 0.01, valLoss: 1.1 },
    ]);
    await cancelled(handle);
  });

  test('rlhf method rl trains a reward model, then RL from the validated model', async () => {
    const handle = await start((s) => (s.rlhf = { ...s.rlhf, method: 'rl' }));
    const log = stub.log.of(handle.workflowId);
    const progress = await atGate(handle);
    assert.deepEqual(log.calls, ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate', 'rewardModel', 'rl', 'test']);
    assert.equal(log.rlhfModel, 's3://stub/model/12', 'RL starts from the validated model');
    assert.deepEqual(progress.stages.rlhf.summary, { method: 'rl', steps: 5, rewardAccuracy: 0.9 });
    await cancelled(handle);
  });

  test('a rejection ends the run undeployed; no decision is taken after the run ended', async () => {
    const handle = await start();
    const log = stub.log.of(handle.workflowId);
    await atGate(handle);
    await decide(handle, { decision: 'reject', approver: 'bob', comment: 'loss too high' });
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'rejected');
    const progress = await handle.query(progressQuery);
    assert.equal(progress.stages.deploy.status, 'skipped');
    assert.deepEqual(await decidedGate(handle), { status: 'rejected', approver: 'bob', comment: 'loss too high' });
    assert.ok(!log.calls.includes('deploy'), 'nothing deployed');
    assert.deepEqual(log.approvals, ['reject']);
    assert.equal(log.runs.at(-1), 'rejected');
    await assert.rejects(decide(handle, { decision: 'approve', approver: 'carol' }), (err: unknown) => err instanceof WorkflowNotFoundError && /already completed/.test(err.message));
    assert.deepEqual(log.approvals, ['reject'], 'the late approval was not recorded');
  });

  test('a run cancelled at the gate is recorded as cancelled', async () => {
    const handle = await start();
    const log = stub.log.of(handle.workflowId);
    await atGate(handle);
    // Cancel once the gate's bookkeeping has run: cancelling while it runs cancels that activity too, and the
    // run is then never recorded as waiting (which is right, but not this test's branch).
    await recorded(log, 'waiting-approval');
    await cancelled(handle);
    await recorded(log, 'cancelled');
    assert.deepEqual(log.runs, ['running', 'waiting-approval', 'cancelled']);
    assert.deepEqual(log.approvals, []);
    assert.ok(!log.calls.includes('deploy'));
  });

  test('a non-retryable stage failure fails the run once, with the reason recorded', async () => {
    const handle = await start(undefined, `${pool}-failing`);
    const log = failing.log.of(handle.workflowId);
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.ok(err.cause instanceof ActivityFailure, String(err.cause));
      assert.ok(err.cause.cause instanceof ApplicationFailure);
      assert.equal(err.cause.cause.type, 'BadInput');
      assert.equal(err.cause.cause.message, 'train.steps: the stand-in refuses this spec');
      return true;
    });
    assert.deepEqual(log.calls, ['ingest', 'clean', 'tokenize', 'split', 'train'], 'BadInput is not retried, and nothing runs after it');
    assert.deepEqual(log.stages.at(-1), { stage: 'train', status: 'failed', error: 'train.steps: the stand-in refuses this spec' });
    assert.deepEqual(log.runs, ['running', 'failed']);
  });
});

describe('lifecyclePipeline workflow (time-skipping test server, stand-in activities)', () => {
  const pool = uniqueId('wfts').toLowerCase();
  let env: TestWorkflowEnvironment;
  let worker: Worker;
  let running: Promise<void>;
  const stub = stubActivities();

  before(async () => {
    quietWorkerLogs();
    env = await timeSkippingEnv();
    const { bundle } = await workflowCode();
    worker = await Worker.create({ connection: env.nativeConnection, taskQueue: taskQueueFor(pool), workflowBundle: bundle, activities: stub.activities });
    running = worker.run();
  });

  after(async () => {
    worker.shutdown();
    await running;
    await env?.teardown();
  });

  test('a gate nobody decides expires after approvalTimeout (24h of the demo spec), undeployed, the expiry recorded', async () => {
    const spec = specOn(pool);
    assert.equal(spec.deploy.approvalTimeout, '24h');
    const handle = await startOn(env.client, spec);
    const log = stub.log.of(handle.workflowId);
    const waiting = await atGate(handle);
    const outcome: PipelineOutcome = await handle.result(); // skips the day
    assert.equal(outcome.status, 'expired');
    assert.deepEqual(log.calls, UP_TO_THE_GATE, 'nothing deployed');
    assert.deepEqual(log.approvals, ['expired']);
    assert.deepEqual(log.runs, ['running', 'waiting-approval', 'expired']);
    const p = await handle.query(progressQuery);
    assert.equal(p.stages.deploy.status, 'skipped');
    assert.ok(p.gate.status === 'expired' && waiting.gate.status === 'waiting', JSON.stringify(p.gate));
    const waited = Date.parse(p.gate.expiredAt) - Date.parse(waiting.gate.deadline);
    assert.ok(waited >= 0 && waited < 60_000, `expired at its deadline (${waited} ms after it)`);
    await assert.rejects(decide(handle), (err: unknown) => err instanceof WorkflowNotFoundError, 'no approval after the run ended');
    assert.deepEqual(log.approvals, ['expired']);
  });

  test('rlhf source labels waits durably for the labels (a week without them changes nothing), then continues; repeated counts never overcount', async () => {
    const handle = await startOn(env.client, specOn(pool, (s) => (s.rlhf = { ...s.rlhf, source: 'labels', labels: { ...s.rlhf.labels, required: 3, pairs: 5 } })));
    const log = stub.log.of(handle.workflowId);
    const waiting = await waitFor('the label wait', 30_000, async () => {
      const p = await handle.query(progressQuery);
      return p.labels ? p : undefined;
    });
    assert.deepEqual(waiting.labels, { required: 3, labeled: 0, pairs: 5 });
    assert.equal(waiting.stages.rlhf.status, 'running');
    await recorded(log, 'waiting-labels');
    await handle.signal(labelsChangedSignal, { labeled: 2 });
    await handle.signal(labelsChangedSignal, { labeled: 2 });
    await handle.signal(labelsChangedSignal, { labeled: 1 }); // late and out of order: ignored
    await env.sleep('7d');
    const still = await handle.query(progressQuery);
    assert.equal(still.labels?.labeled, 2);
    assert.equal(still.gate.status, 'not-reached', 'two labels of three do not let the run go on, however long it waits');
    assert.deepEqual(log.calls, ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate', 'proposePairs']);
    await handle.signal(labelsChangedSignal, { labeled: 3 });
    const gate = await atGate(handle);
    assert.equal(gate.stages.rlhf.status, 'completed');
    assert.deepEqual(gate.stages.rlhf.summary, { method: 'dpo', steps: 5 });
    assert.deepEqual(log.calls, ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate', 'proposePairs', 'rlhf', 'test']);
    await recorded(log, 'waiting-approval');
    assert.deepEqual(log.runs, ['running', 'waiting-labels', 'running', 'waiting-approval']);
    await decide(handle);
    assert.equal(((await handle.result()) as PipelineOutcome).status, 'deployed');
  });

  const decide = (handle: WorkflowHandle) => handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'bob' }] });
});
