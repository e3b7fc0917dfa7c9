/**
 * Faults during training, on the real stack: a worker killed with SIGKILL, a trainer killed with SIGKILL,
 * a trainer that hangs (SIGSTOP), a run cancelled mid-training, one rank of a two-process (DDP) train killed, and
 * routing of a stage to a pool nobody serves yet. Train runs on a pool of its own, served by worker processes this test starts and kills; the
 * stack's worker runs the workflow and the data stages.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { generateDemoData } from '@tempered/examples';
import type { PipelineInput } from '@tempered/contract';
import { CONTROL_TASK_QUEUE, WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, db, demoSpec, startWorkerProcess, temporalClient, uniqueId, waitFor } from '../support';

// The train workers this test starts run without the stage cache: the three runs train the same spec on the
// same data, and each must really train (and be killed) rather than reuse the first one's result.
process.env.TEMPERED_STAGE_CACHE = 'off';

const STEPS = 600;
const EVERY = 60;
const database = db();
let client: Client;
let closeClient: () => Promise<void>;
const dataDir = path.join(cfg.dataDir, 'uploads', 'faults');
const workers: ChildProcess[] = [];

/** A worker process serving one pool; resolves once it polls. */
async function startWorker(pool: string): Promise<ChildProcess> {
  // Plain trainer processes: these faults are about the activity, its heartbeats and checkpoints (the pre-started
  // trainer's own kill and crash behaviour is services/trainer/tests/test_prefork.py's and tests/unit's).
  const child = await startWorkerProcess([pool], { env: { ...process.env, TEMPERED_TRAINER_PREFORK: 'off' } });
  workers.push(child);
  return child;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    /* gone */
  }
}

/** PIDs of this run's trainer processes (their command line holds the run's scratch path), optionally of one attempt. */
function trainerPids(runId: string, attempt?: number): number[] {
  const pattern = `tempered_trainer sft --config .*${runId}/w[0-9]+/train-[^ ]*${attempt ? `-a${attempt}/` : ''}`;
  try {
    return execFileSync('pgrep', ['-f', pattern], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** The rank torchrun gave a process (RANK in its environment), or undefined for torchrun itself. */
function rankOf(pid: number): number | undefined {
  try {
    const rank = /(?:^|\0)RANK=(\d+)\0/.exec(readFileSync(`/proc/${pid}/environ`, 'latin1'))?.[1];
    return rank === undefined ? undefined : Number(rank);
  } catch {
    return undefined;
  }
}

function processState(pid: number): string | undefined {
  try {
    return execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

async function start(pool: string, train: Partial<PipelineInput['spec']['train']> = {}): Promise<WorkflowHandle> {
  const spec = demoSpec();
  spec.data.sources = [{ uri: 'train.jsonl', encoding: 'utf-8' }];
  spec.rlhf = { ...spec.rlhf, method: 'none' };
  spec.train = { ...spec.train, steps: STEPS, checkpointEvery: EVERY, heartbeatTimeout: '10s', ...train };
  spec.pools = { data: 'cpu', train: pool, rlhf: pool, eval: pool };
  const input: PipelineInput = { spec, specDir: dataDir, requestedBy: 'faults' };
  return client.workflow.start(WORKFLOW_TYPE, { taskQueue: CONTROL_TASK_QUEUE, workflowId: uniqueId('faults'), args: [input] });
}

/** Steps of the checkpoints uploaded so far, from their artifact names (step-00000150.pt). */
async function checkpointSteps(runId: string): Promise<number[]> {
  const rows = await database.selectFrom('artifacts').select('uri').where('run_id', '=', runId).where('kind', '=', 'checkpoint').execute();
  return rows.map((r) => Number(/step-(\d+)\.pt$/.exec(r.uri)![1])).sort((a, b) => a - b);
}

async function startSteps(runId: string): Promise<Map<number, number>> {
  const rows = await database.selectFrom('metrics').select(['step', 'value']).where('run_id', '=', runId).where('name', '=', 'start_step').execute();
  return new Map(rows.map((r) => [r.step, r.value])); // attempt -> first step
}

async function stageRow(runId: string, name: string) {
  return database.selectFrom('stages').selectAll().where('run_id', '=', runId).where('name', '=', name).executeTakeFirst();
}

async function trainCompleted(runId: string, timeoutMs = 8 * 60_000) {
  return waitFor('training to complete', timeoutMs, async () => {
    const s = await stageRow(runId, 'train');
    if (s?.status === 'failed') throw new Error(`train failed: ${s.error}`);
    return s?.status === 'completed' ? s : undefined;
  }, 1000);
}

/** No checkpoint step was written twice with different bytes: resumed training repeats the same run. */
async function assertNoDuplicateCheckpoints(runId: string): Promise<void> {
  const steps = await checkpointSteps(runId);
  assert.equal(new Set(steps).size, steps.length, `checkpoint steps ${steps.join(',')}`);
}

before(async () => {
  generateDemoData(dataDir, { records: 2000 });
  ({ client, close: closeClient } = await temporalClient());
});

after(async () => {
  for (const w of workers) killGroup(w);
  await closeClient();
  await database.destroy();
});

describe('training survives faults', { timeout: 25 * 60_000 }, () => {
  test('a stage waits for its pool; a killed worker is replaced and training resumes from a checkpoint', async () => {
    const pool = uniqueId('ft-route').toLowerCase();
    const handle = await start(pool);
    const runId = handle.workflowId;

    // Routing: nobody serves the pool, so the stage is scheduled and not run.
    await waitFor('train to be scheduled', 120_000, async () => ((await stageRow(runId, 'train'))?.status === 'running' ? true : undefined), 500);
    await new Promise((r) => setTimeout(r, 5000));
    const pending = (await handle.describe()).raw.pendingActivities ?? [];
    assert.equal(pending.length, 1);
    assert.equal(String(pending[0].state), '1', 'SCHEDULED, not STARTED'); // PENDING_ACTIVITY_STATE_SCHEDULED
    assert.deepEqual(await checkpointSteps(runId), [], 'no training happened without a worker for the pool');

    const first = await startWorker(pool);
    await waitFor('two checkpoints', 300_000, async () => ((await checkpointSteps(runId)).length >= 3 ? true : undefined), 250);
    killGroup(first);
    const atKill = Math.max(...(await checkpointSteps(runId)));

    // The orphaned trainer dies on its next write to the dead worker's pipe.
    await waitFor('the first attempt’s trainer to go', 20_000, async () => (trainerPids(runId, 1).length === 0 ? true : undefined));

    await startWorker(pool);
    const train = await trainCompleted(runId);
    const resumedAt = (await startSteps(runId)).get(2);
    assert.ok(resumedAt !== undefined && resumedAt > 0, `attempt 2 resumed at step ${resumedAt}`);
    assert.ok(resumedAt >= atKill - EVERY, `resumed at ${resumedAt}, last checkpoint at kill ${atKill}: at most one interval lost`);
    assert.equal((train.summary as { steps: number }).steps, STEPS);
    await assertNoDuplicateCheckpoints(runId);
    console.log(`worker kill: last checkpoint at kill ${atKill}, resumed at ${resumedAt}`);
    await handle.cancel();
  });

  test('a killed trainer and a hung trainer are both retried from their last checkpoint', async () => {
    const pool = uniqueId('ft-trainer').toLowerCase();
    await startWorker(pool);
    const handle = await start(pool);
    const runId = handle.workflowId;

    await waitFor('two checkpoints', 300_000, async () => ((await checkpointSteps(runId)).length >= 3 ? true : undefined), 250);
    const [pid1] = await waitFor('the first attempt’s trainer', 10_000, async () => (trainerPids(runId, 1).length ? trainerPids(runId, 1) : undefined), 200).catch(() => []);
    assert.ok(pid1, 'the first attempt’s trainer runs');
    process.kill(pid1, 'SIGKILL');

    const resumedAt = await waitFor('attempt 2', 120_000, async () => (await startSteps(runId)).get(2), 500);
    assert.ok(resumedAt > 0, `attempt 2 resumed at step ${resumedAt}`);

    // Hang: stop the second trainer; the watchdog (heartbeat timeout, 10 s) kills it and attempt 3 resumes.
    const before = (await checkpointSteps(runId)).length;
    await waitFor('a checkpoint of attempt 2', 300_000, async () => ((await checkpointSteps(runId)).length > before ? true : undefined), 250);
    const [pid2] = await waitFor('the second attempt’s trainer', 10_000, async () => (trainerPids(runId, 2).length ? trainerPids(runId, 2) : undefined), 200).catch(() => []);
    assert.ok(pid2, 'the second attempt’s trainer runs');
    process.kill(pid2, 'SIGSTOP');
    assert.match(processState(pid2) ?? '', /T/, 'stopped');
    const resumedAgain = await waitFor('attempt 3', 120_000, async () => (await startSteps(runId)).get(3), 500);
    assert.ok(resumedAgain >= resumedAt, `attempt 3 resumed at ${resumedAgain}`);
    assert.equal(processState(pid2), undefined, 'the hung trainer was killed, not left behind');

    const train = await trainCompleted(runId);
    assert.equal((train.summary as { steps: number }).steps, STEPS);
    assert.ok(train.attempts >= 3, `attempts ${train.attempts}`);
    await assertNoDuplicateCheckpoints(runId);
    console.log(`trainer kill: resumed at ${resumedAt}; hang: resumed at ${resumedAgain}`);
    await handle.cancel();
  });

  test('one rank of a two-process train killed: the whole job fails, and the retry resumes from its checkpoint', async () => {
    const pool = uniqueId('ft-ddp').toLowerCase();
    await startWorker(pool);
    const handle = await start(pool, { gpus: 2 });
    const runId = handle.workflowId;

    await waitFor('two checkpoints', 300_000, async () => ((await checkpointSteps(runId)).length >= 2 ? true : undefined), 250);
    // torchrun and its two ranks all carry the job's command line; the ranks have RANK in their environment.
    const pids = await waitFor('the ranks', 10_000, async () => (trainerPids(runId, 1).filter((p) => rankOf(p) !== undefined).length === 2 ? trainerPids(runId, 1) : undefined), 200);
    const rank1 = pids.find((p) => rankOf(p) === 1)!;
    process.kill(rank1, 'SIGKILL');
    const atKill = Math.max(...(await checkpointSteps(runId)));

    const resumedAt = await waitFor('attempt 2', 120_000, async () => (await startSteps(runId)).get(2), 500);
    assert.ok(resumedAt >= atKill && resumedAt > 0, `attempt 2 resumed at step ${resumedAt}, last checkpoint at the kill ${atKill}`);
    assert.deepEqual(pids.filter((p) => processState(p) !== undefined), [], 'torchrun and rank 0 of the failed attempt are gone');
    const train = await trainCompleted(runId);
    assert.equal((train.summary as { steps: number }).steps, STEPS);
    assert.equal(train.attempts, 2);
    await assertNoDuplicateCheckpoints(runId);
    console.log(`rank kill: last checkpoint at kill ${atKill}, resumed at ${resumedAt}`);
    await handle.cancel();
  });

  test('cancelling the run during training leaves no trainer process within 10 seconds', async () => {
    const pool = uniqueId('ft-cancel').toLowerCase();
    await startWorker(pool);
    const handle = await start(pool);
    const runId = handle.workflowId;
    await waitFor('training', 300_000, async () => ((await checkpointSteps(runId)).length >= 2 ? true : undefined), 250);
    assert.ok(trainerPids(runId).length > 0);
    const t0 = Date.now();
    await handle.cancel();
    await waitFor('no trainer', 10_000, async () => (trainerPids(runId).length === 0 ? true : undefined), 200);
    console.log(`cancellation: trainer gone ${Date.now() - t0} ms after the cancel request`);
    await waitFor('the stage recorded as cancelled', 20_000, async () => ((await stageRow(runId, 'train'))?.status === 'cancelled' ? true : undefined));
  });
});
