/**
 * The canary rollout on the real Temporal dev server, with stand-in activities: a healthy canary walks its
 * steps and is promoted; one whose health breaks is rolled back at that step with the reason; a person can
 * abort one by hand. The pipeline's own outcome follows the canary's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { PipelineOutcome } from '@tempered/contract';
import { abortCanarySignal, approveDeploymentUpdate, canaryQuery, canaryWorkflowId, progressQuery, taskQueueFor, WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, demoSpec, quietWorkerLogs, temporalClient, uniqueId, waitFor } from '../support';
import { stubActivities } from './stubs';

describe('canary rollout (real server, stand-in activities)', () => {
  const healthyPool = uniqueId('canary-ok').toLowerCase();
  const breakingPool = uniqueId('canary-bad').toLowerCase();
  let client: Client;
  let closeClient: () => Promise<void>;
  let connection: NativeConnection;
  let workers: Worker[];
  let running: Promise<unknown>;
  const healthy = stubActivities();
  const breaking = stubActivities({ canaryBreaks: 2 });

  before(async () => {
    quietWorkerLogs();
    ({ client, close: closeClient } = await temporalClient());
    connection = await NativeConnection.connect({ address: cfg.temporal.address });
    const workflowsPath = require.resolve('@tempered/workflows/workflows');
    workers = await Promise.all([
      Worker.create({ connection, taskQueue: taskQueueFor(healthyPool), workflowsPath, activities: healthy.activities }),
      Worker.create({ connection, taskQueue: taskQueueFor(breakingPool), workflowsPath, activities: breaking.activities }),
    ]);
    running = Promise.all(workers.map((w) => w.run()));
  });

  after(async () => {
    for (const w of workers) w.shutdown();
    await running;
    await connection.close();
    await closeClient();
  });

  async function deployWithCanary(pool: string, hold: string) {
    const spec = demoSpec();
    spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
    spec.deploy.canary = { steps: [10, 50, 100], hold, checkEvery: '1s', minRequests: 20, maxErrorRate: 0.05, maxP95LatencyMs: 5000, maxNegativeFeedbackRate: 0.5 };
    const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: taskQueueFor(pool), workflowId: uniqueId('wf-canary'), args: [{ spec, requestedBy: 'alice' }] });
    await waitFor('the gate', 30_000, async () => ((await handle.query(progressQuery)).gate.status === 'waiting' ? true : undefined));
    await handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'bob' }] });
    return handle;
  }

  test('a healthy canary takes every step and is promoted', { timeout: 60_000 }, async () => {
    const handle = await deployWithCanary(healthyPool, '2s');
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'deployed');
    assert.equal(outcome.deploy?.canary?.status, 'promoted');
    assert.deepEqual(healthy.log.canaryWeights, [10, 50, 100]);
    assert.equal(healthy.log.canaryOutcome?.decidedBy, 'canary');
    assert.ok(healthy.log.runs.includes('canary'));
  });

  test('a canary whose health breaks is rolled back at that step, with the reason', { timeout: 60_000 }, async () => {
    const handle = await deployWithCanary(breakingPool, '2s');
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'rolled-back');
    assert.equal(outcome.deploy?.canary?.status, 'rolled-back');
    assert.deepEqual(breaking.log.canaryWeights, [10, 50], 'no step after the breach');
    assert.match(outcome.deploy!.canary!.reason, /step 2 \(50%\): error rate 40\.0%/);
    assert.equal(breaking.log.runs.at(-1), 'rolled-back');
  });

  test('a person aborts a canary by hand', { timeout: 60_000 }, async () => {
    const handle = await deployWithCanary(healthyPool, '1m');
    const canary = client.workflow.getHandle(canaryWorkflowId(handle.workflowId));
    await waitFor('the canary', 30_000, async () => {
      try {
        return (await canary.query(canaryQuery)).weight === 10 ? true : undefined;
      } catch {
        return undefined; // not started yet
      }
    });
    await canary.signal(abortCanarySignal, { by: 'carol', comment: 'users complain' });
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'rolled-back');
    assert.equal(outcome.deploy?.canary?.decidedBy, 'carol');
    assert.match(outcome.deploy!.canary!.reason, /aborted by hand: users complain/);
  });
});
