/**
 * The lifecyclePipeline workflow on the real Temporal dev server, with stand-in activities: stage order,
 * the approval Update and its validator, expiry of the gate, rejection, and a failing stage. With
 * RECORD_HISTORIES=1 the approved run's history is saved for the replay test.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { WorkflowFailedError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { type PipelineInput, type PipelineOutcome, STAGES } from '@tempered/contract';
import { approveDeploymentUpdate, labelsChangedSignal, progressQuery, taskQueueFor, WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, demoSpec, quietWorkerLogs, repoRoot, temporalClient, uniqueId, waitFor } from '../support';
import { stubActivities, type StubLog } from './stubs';

describe('lifecyclePipeline workflow (real server, stand-in activities)', () => {
  const pool = uniqueId('wft').toLowerCase();
  const taskQueue = taskQueueFor(pool);
  let client: Client;
  let closeClient: () => Promise<void>;
  let connection: NativeConnection;
  let worker: Worker;
  let running: Promise<void>;
  let stub: ReturnType<typeof stubActivities>;
  let failing: ReturnType<typeof stubActivities>;
  let failingWorker: Worker;

  before(async () => {
    quietWorkerLogs();
    ({ client, close: closeClient } = await temporalClient());
    connection = await NativeConnection.connect({ address: cfg.temporal.address });
    stub = stubActivities();
    failing = stubActivities({ failTrain: 'train.steps: the stand-in refuses this spec' });
    const workflowsPath = require.resolve('@tempered/workflows/workflows');
    worker = await Worker.create({ connection, taskQueue, workflowsPath, activities: stub.activities });
    failingWorker = await Worker.create({ connection, taskQueue: `${taskQueue}-failing`, workflowsPath, activities: failing.activities });
    running = Promise.all([worker.run(), failingWorker.run()]).then(() => undefined);
  });

  after(async () => {
    worker.shutdown();
    failingWorker.shutdown();
    await running;
    await connection.close();
    await closeClient();
  });

  function start(approvalTimeout = '10m', onPool = pool, sweep?: number[]) {
    const spec = demoSpec();
    if (sweep) spec.train.sweep = { learningRates: sweep };
    spec.deploy.approvalTimeout = approvalTimeout;
    spec.pools = { data: onPool, train: onPool, rlhf: onPool, eval: onPool };
    const input: PipelineInput = { spec, requestedBy: 'alice' };
    return client.workflow.start(WORKFLOW_TYPE, { taskQueue: taskQueueFor(onPool), workflowId: uniqueId('wf'), args: [input] });
  }

  async function atGate(handle: Awaited<ReturnType<typeof start>>) {
    return waitFor('the deployment gate', 30_000, async () => {
      const p = await handle.query(progressQuery);
      return p.gate.status === 'waiting' ? p : undefined;
    });
  }

  test('runs every stage in order, refuses bad approvals, deploys on approval', async () => {
    const handle = await start();
    const progress = await atGate(handle);
    assert.deepEqual(stub.log.calls.slice(-8), ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate', 'rlhf', 'test']);
    for (const s of STAGES.filter((s) => s !== 'deploy')) assert.equal(progress.stages[s].status, 'completed', s);

    // The requester may not approve their own run; the validator rejects it before it enters history.
    await assert.rejects(
      handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'alice' }] }),
      (err: unknown) => err instanceof WorkflowUpdateFailedError && /cannot approve/.test(String((err.cause as Error)?.message)),
    );
    await assert.rejects(
      handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'maybe' as 'approve', approver: 'bob' }] }),
      (err: unknown) => err instanceof WorkflowUpdateFailedError,
    );
    await assert.rejects(
      handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: ' ' }] }),
      (err: unknown) => err instanceof WorkflowUpdateFailedError,
    );
    assert.equal((await handle.query(progressQuery)).gate.status, 'waiting', 'the run stays at the gate after refused approvals');
    assert.ok(!stub.log.calls.includes('deploy'));

    const receipt = await handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'bob', comment: 'ok' }] });
    assert.equal(receipt.approver, 'bob');
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'deployed');
    assert.equal(outcome.deploy?.modelVersionId, 'stub-v1');
    assert.ok(stub.log.approvals.includes('approve'));
    assert.equal(stub.log.runs.at(-1), 'deployed');

    if (process.env.RECORD_HISTORIES === '1') {
      const history = await handle.fetchHistory();
      writeFileSync(path.join(repoRoot, 'tests', 'histories', 'lifecycle-approved.json'), historyToJSON(history));
    }
  });

  test('a sweep trains one candidate per learning rate and continues with the best by validation loss', async () => {
    const handle = await start('10m', pool, [0.003, 0.001, 0.01]);
    const progress = await atGate(handle);
    assert.deepEqual(stub.log.learningRates.slice(-3).sort(), [0.001, 0.003, 0.01]);
    assert.equal(stub.log.rlhfModel, 's3://stub/model/20', 'RLHF continues from the best candidate');
    const summary = progress.stages.validate.summary as { learningRate: number; candidates: unknown[] };
    assert.equal(summary.learningRate, 0.001);
    assert.equal(summary.candidates.length, 3, 'every candidate is recorded');
    await handle.cancel();
  });

  test('rlhf method rl trains a reward model, then RL from the validated model', async () => {
    const spec = demoSpec();
    spec.rlhf = { ...spec.rlhf, method: 'rl' };
    spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
    const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue, workflowId: uniqueId('wf'), args: [{ spec, requestedBy: 'alice' }] });
    const progress = await atGate(handle);
    const calls = stub.log.calls.slice(-4);
    assert.deepEqual(calls, ['validate', 'rewardModel', 'rl', 'test']);
    assert.equal(progress.stages.rlhf.summary?.method, 'rl');
    assert.equal(progress.stages.rlhf.summary?.rewardAccuracy, 0.9);
    await handle.cancel();
  });

  test('rlhf source labels waits durably for the labels, then continues; repeated counts never overcount', async () => {
    const spec = demoSpec();
    spec.rlhf = { ...spec.rlhf, source: 'labels', labels: { ...spec.rlhf.labels, required: 3, pairs: 5 } };
    spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
    const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue, workflowId: uniqueId('wf'), args: [{ spec, requestedBy: 'alice' }] });
    const waiting = await waitFor('the label wait', 30_000, async () => {
      const p = await handle.query(progressQuery);
      return p.labels ? p : undefined;
    });
    assert.deepEqual(waiting.labels, { required: 3, labeled: 0, pairs: 5 });
    assert.equal(waiting.stages.rlhf.status, 'running');
    await waitFor('the waiting-labels status', 10_000, async () => (stub.log.runs.includes('waiting-labels') ? true : undefined));
    await handle.signal(labelsChangedSignal, { labeled: 2 });
    await handle.signal(labelsChangedSignal, { labeled: 2 });
    await handle.signal(labelsChangedSignal, { labeled: 1 }); // late and out of order: ignored
    await new Promise((r) => setTimeout(r, 1000));
    const still = await handle.query(progressQuery);
    assert.equal(still.labels?.labeled, 2);
    assert.equal(still.gate.status, 'not-reached', 'two labels of three do not let the run go on');
    await handle.signal(labelsChangedSignal, { labeled: 3 });
    const gate = await atGate(handle);
    assert.equal(gate.stages.rlhf.status, 'completed');
    assert.deepEqual(stub.log.calls.slice(-4), ['validate', 'proposePairs', 'rlhf', 'test']);
    await handle.cancel();
  });

  test('an expired gate ends the run undeployed and records the expiry', async () => {
    const before = stub.log.calls.filter((c) => c === 'deploy').length;
    const handle = await start('2s');
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'expired');
    assert.equal(stub.log.calls.filter((c) => c === 'deploy').length, before, 'nothing deployed');
    assert.ok(stub.log.approvals.includes('expired'));
    const p = await handle.query(progressQuery);
    assert.equal(p.gate.status, 'expired');
    await assert.rejects(
      handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'bob' }] }),
      'no approval after the run ended',
    );
  });

  test('a rejection ends the run undeployed', async () => {
    const handle = await start();
    await atGate(handle);
    await handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'reject', approver: 'bob', comment: 'loss too high' }] });
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'rejected');
    assert.equal((await handle.query(progressQuery)).stages.deploy.status, 'skipped');
  });

  test('a run cancelled at the gate is recorded as cancelled', async () => {
    const handle = await start();
    await atGate(handle);
    await handle.cancel();
    await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError);
    await waitFor('the cancelled record', 10_000, async () => (stub.log.runs.at(-1) === 'cancelled' ? true : undefined));
  });

  test('a non-retryable stage failure fails the run once, with the reason recorded', async () => {
    const handle = await start('10m', `${pool}-failing`);
    await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError);
    assert.equal(failing.log.calls.filter((c) => c === 'train').length, 1, 'BadInput is not retried');
    const failed = failing.log.stages.find((s) => s.status === 'failed');
    assert.equal(failed?.stage, 'train');
    assert.match(failed?.error ?? '', /the stand-in refuses this spec/);
    assert.equal(failing.log.runs.at(-1), 'failed');
  });
});
