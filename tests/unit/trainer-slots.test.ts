/**
 * Trainer slots (activities/src/slots.ts): a worker runs at most as many trainer jobs as it has slots, the rest
 * waiting their turn in order. Through `runTrainer` with a stand-in trainer (a shell script that logs when it
 * starts and ends), so the limit is the one every activity's trainer job really goes through; then GPU slots,
 * one GPU per job, handed over in turn.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { type Deps, defaultCpuSlots, runTrainer, TrainerSlots } from '@tempered/activities';
import { cfg } from '../support';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tempered-slots-'));
const jobLog = path.join(dir, 'jobs.log');
const fakePython = path.join(dir, 'python');
// Called as `python -m tempered_trainer <job name> --config <path>`: logs its start and end around a short sleep.
writeFileSync(
  fakePython,
  `#!/bin/sh
echo "start $3" >> "${jobLog}"
echo '{"event":"started","step":0}'
sleep 0.5
echo "end $3" >> "${jobLog}"
echo '{"event":"finished"}'
`,
);
chmodSync(fakePython, 0o755);

const tick = () => new Promise((r) => setTimeout(r, 5));

/** Starts `names.length` trainer jobs, each once the one before it runs or waits; returns the log of starts and ends. */
async function runJobs(slots: TrainerSlots, names: string[], heartbeats: unknown[] = []): Promise<string[]> {
  writeFileSync(jobLog, '');
  const deps = { cfg: { ...cfg, python: fakePython }, slots } as unknown as Deps;
  const runs: Promise<unknown>[] = [];
  for (const name of names) {
    const before = slots.held + slots.queued;
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 1000, heartbeatDetails: { step: 7 }, workflowExecution: { workflowId: '', runId: '' } });
    env.on('heartbeat', (d: unknown) => heartbeats.push(d));
    runs.push(env.run(() => runTrainer(deps, name, {}, mkdtempSync(path.join(dir, `${name}-`)))));
    // In line (running or waiting) before the next one asks, so that the order they ask in is this loop's.
    const until = Date.now() + 2000;
    while (slots.held + slots.queued === before && !readFileSync(jobLog, 'utf8').includes(`start ${name}`) && Date.now() < until) await tick();
  }
  await Promise.all(runs);
  return readFileSync(jobLog, 'utf8').trim().split('\n');
}

/** The most jobs running at once, from the log's order of starts and ends. */
function mostAtOnce(log: string[]): number {
  let running = 0;
  let most = 0;
  for (const line of log) most = Math.max(most, (running += line.startsWith('start') ? 1 : -1));
  return most;
}

test('no more trainer jobs run at once than the worker has slots, and waiting ones start in the order they asked', async () => {
  const names = ['j0', 'j1', 'j2', 'j3', 'j4', 'j5'];
  const slots = TrainerSlots.cpu(2);
  const heartbeats: unknown[] = [];
  const log = await runJobs(slots, names, heartbeats);
  assert.equal(mostAtOnce(log), 2, log.join(', '));
  assert.deepEqual(log.filter((l) => l.startsWith('start')), names.map((n) => `start ${n}`), 'first come, first served');
  assert.equal(slots.held + slots.queued, 0, 'every slot given back');
  // The last jobs waited about a second with a 1 s heartbeat timeout: they heartbeat meanwhile, with the attempt's own details.
  assert.ok(heartbeats.length >= 4, `${heartbeats.length} heartbeats while waiting`);
  assert.ok(heartbeats.every((d) => JSON.stringify(d) === '{"step":7}'));
});

test('the same jobs without a limit all run at once (what the slots prevent)', async () => {
  assert.equal(mostAtOnce(await runJobs(TrainerSlots.unlimited(), ['u0', 'u1', 'u2', 'u3'])), 4);
});

test('a job cancelled while it waits leaves the queue and the next one takes its turn', async () => {
  const slots = TrainerSlots.cpu(1);
  let release!: () => void;
  const a = slots.with(() => new Promise<void>((r) => (release = r)));
  const cancel = new AbortController();
  const b = slots.with(async () => 'b ran', cancel.signal);
  const c = slots.with(async () => 'c ran');
  assert.equal(slots.queued, 2);
  cancel.abort(new Error('run cancelled'));
  await assert.rejects(b, /run cancelled/);
  assert.equal(slots.queued, 1);
  release();
  await a;
  assert.equal(await c, 'c ran');
});

test('CPU slots default to one per two cores, at least one; a count below one is refused', () => {
  assert.deepEqual([1, 2, 3, 16].map(defaultCpuSlots), [1, 1, 1, 8]);
  assert.throws(() => TrainerSlots.cpu(0), /at least 1/);
});

test('a job of more CPU processes than the worker has slots takes all of them, and no GPU', async () => {
  const slots = TrainerSlots.cpu(2);
  assert.deepEqual(await slots.withSeveral(4, async (g) => (assert.equal(slots.held, 2), g)), []);
});

test('each GPU job gets its own GPU, and a waiting one gets the first GPU released', async () => {
  const slots = TrainerSlots.gpus(['0', '1']);
  const got: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const a = slots.with(async (g) => (got.push(`a:${g}`), held));
  const b = slots.with(async (g) => (got.push(`b:${g}`), held));
  const c = slots.with(async (g) => void got.push(`c:${g}`));
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ['a:0', 'b:1'], 'the third waits while both GPUs are held');
  release();
  await Promise.all([a, b, c]);
  assert.equal(got[2], 'c:0');
});

test('CPU slots hand out no GPU', async () => {
  assert.equal(await TrainerSlots.cpu(1).with(async (g) => g), undefined);
  assert.equal(await TrainerSlots.unlimited().with(async (g) => g), undefined);
});

test('a failing holder still gives its GPU back', async () => {
  const slots = TrainerSlots.gpus(['3']);
  await assert.rejects(slots.with(async () => { throw new Error('trainer crashed'); }));
  assert.equal(await slots.with(async (g) => g), '3');
});

test('a distributed job takes its GPUs all at once, in turn: a later small job does not overtake it', async () => {
  const slots = TrainerSlots.gpus(['0', '1', '2']);
  const got: string[] = [];
  let releaseA!: () => void;
  const a = slots.with(async (g) => (got.push(`a:${g}`), new Promise<void>((r) => (releaseA = r))));
  // b needs all three: it waits for a, holding none meanwhile (holding two would starve a job needing two more).
  const b = slots.withSeveral(3, async (g) => void got.push(`b:${g.join(',')}`));
  const c = slots.with(async (g) => void got.push(`c:${g}`));
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ['a:0'], 'b waits for all three, and c waits behind b though two GPUs are free');
  releaseA();
  await Promise.all([a, b, c]);
  assert.deepEqual(got, ['a:0', 'b:1,2,0', 'c:1']);
});

test('more GPUs than the worker has is refused at once; a worker without GPUs hands a job of several none', async () => {
  await assert.rejects(TrainerSlots.gpus(['0', '1']).withSeveral(3, async () => 'ran'), /3 GPUs asked of a worker with 2/);
  assert.deepEqual(await TrainerSlots.unlimited().withSeveral(4, async (g) => g), []);
});
