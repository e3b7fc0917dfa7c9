/**
 * The canary rollout on the SDK's time-skipping test server, with stand-in activities and the holds a real
 * spec has (10 minutes a step, health checked every minute), which pass in milliseconds: a healthy canary
 * walks its steps and is promoted; one whose health breaks is rolled back at that step with the reason; a
 * person can abort one by hand. The pipeline's own outcome follows the canary's. Every assertion reads the
 * stand-ins' log of its own canary (`canary-<run>`) and run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { PipelineOutcome } from '@tempered/contract';
import { abortCanarySignal, approveDeploymentUpdate, canaryQuery, canaryWorkflowId, progressQuery, taskQueueFor, WORKFLOW_TYPE } from '@tempered/workflows';
import { demoSpec, quietWorkerLogs, uniqueId, waitFor } from '../support';
import { workflowCode } from './histories';
import { stubActivities } from './stubs';
import { timeSkippingEnv } from './time-skipping';

describe('canary rollout (time-skipping test server, stand-in activities)', () => {
  const healthyPool = uniqueId('canary-ok').toLowerCase();
  const breakingPool = uniqueId('canary-bad').toLowerCase();
  let env: TestWorkflowEnvironment;
  let workers: Worker[];
  let running: Promise<unknown>;
  const healthy = stubActivities();
  const breaking = stubActivities({ canaryBreaks: 2 });

  before(async () => {
    quietWorkerLogs();
    env = await timeSkippingEnv();
    const { bundle } = await workflowCode();
    workers = await Promise.all([
      Worker.create({ connection: env.nativeConnection, taskQueue: taskQueueFor(healthyPool), workflowBundle: bundle, activities: healthy.activities }),
      Worker.create({ connection: env.nativeConnection, taskQueue: taskQueueFor(breakingPool), workflowBundle: bundle, activities: breaking.activities }),
    ]);
    running = Promise.all(workers.map((w) => w.run()));
  });

  after(async () => {
    for (const w of workers ?? []) w.shutdown();
    await running;
    await env?.teardown();
  });

  async function deployWithCanary(pool: string, hold: string, checkEvery: string) {
    const spec = demoSpec();
    spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
    spec.deploy.canary = { steps: [10, 50, 100], hold, checkEvery, minRequests: 20, maxErrorRate: 0.05, maxP95LatencyMs: 5000, maxNegativeFeedbackRate: 0.5 };
    const handle = await env.client.workflow.start(WORKFLOW_TYPE, { taskQueue: taskQueueFor(pool), workflowId: uniqueId('wf-canary'), args: [{ spec, requestedBy: 'alice' }] });
    await waitFor('the gate', 30_000, async () => ((await handle.query(progressQuery)).gate.status === 'waiting' ? true : undefined));
    await handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'bob' }] });
    return handle;
  }

  test('a healthy canary takes every step for its whole hold and is promoted', { timeout: 60_000 }, async () => {
    const handle = await deployWithCanary(healthyPool, '10m', '1m');
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'deployed');
    const canary = outcome.deploy?.canary;
    assert.equal(canary?.status, 'promoted');
    assert.equal(canary.decidedBy, 'canary');
    assert.equal(canary.reason, 'healthy through every step (10% → 50% → 100%)');
    assert.deepEqual(canary.steps.map((s) => s.weight), [10, 50, 100]);
    const log = healthy.log.of(canaryWorkflowId(handle.workflowId));
    assert.deepEqual(log.canaryWeights, [10, 50, 100]);
    assert.deepEqual(log.canaryOutcome, canary);
    // Health checked every minute of each 10-minute hold: the steps were held, not skipped.
    const history = await env.client.workflow.getHandle(canaryWorkflowId(handle.workflowId)).fetchHistory();
    const checks = history.events?.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'canaryHealth').length;
    assert.equal(checks, 30);
    assert.deepEqual(healthy.log.of(handle.workflowId).runs, ['running', 'waiting-approval', 'canary', 'deployed']);
  });

  test('a canary whose health breaks is rolled back at that step, with the reason', { timeout: 60_000 }, async () => {
    const handle = await deployWithCanary(breakingPool, '10m', '1m');
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'rolled-back');
    const canary = outcome.deploy?.canary;
    assert.equal(canary?.status, 'rolled-back');
    assert.equal(canary.decidedBy, 'canary');
    assert.equal(canary.reason, 'step 2 (50%): error rate 40.0% (20 of 50 requests) is above 5.0%');
    const log = breaking.log.of(canaryWorkflowId(handle.workflowId));
    assert.deepEqual(log.canaryWeights, [10, 50], 'no step after the breach');
    assert.deepEqual(log.canaryOutcome, canary);
    assert.deepEqual(breaking.log.of(handle.workflowId).runs, ['running', 'waiting-approval', 'canary', 'rolled-back']);
  });

  test('a person aborts a canary by hand', { timeout: 60_000 }, async () => {
    // Outside result() the test server's clock runs at real speed: the first health check, an hour away, cannot come first.
    const handle = await deployWithCanary(healthyPool, '1h', '1h');
    const canaryHandle = env.client.workflow.getHandle(canaryWorkflowId(handle.workflowId));
    await waitFor('the canary', 30_000, async () => {
      try {
        return (await canaryHandle.query(canaryQuery)).weight === 10 ? true : undefined;
      } catch {
        return undefined; // not started yet
      }
    });
    await canaryHandle.signal(abortCanarySignal, { by: 'carol', comment: 'users complain' });
    const outcome: PipelineOutcome = await handle.result();
    assert.equal(outcome.status, 'rolled-back');
    const canary = outcome.deploy?.canary;
    assert.equal(canary?.status, 'rolled-back');
    assert.equal(canary.decidedBy, 'carol');
    assert.equal(canary.reason, 'aborted by hand: users complain');
    const log = healthy.log.of(canaryHandle.workflowId);
    assert.deepEqual(log.canaryWeights, [10], 'aborted at the first step');
    assert.deepEqual(log.canaryOutcome, canary);
    assert.deepEqual(healthy.log.of(handle.workflowId).runs, ['running', 'waiting-approval', 'canary', 'rolled-back']);
  });
});
