/**
 * The trainer watchdog (activities/src/trainer.ts) with a stand-in trainer, a shell script that plays one
 * scenario per command: a trainer that is slow to start on a loaded machine is kept alive by heartbeats and
 * finishes; one that goes silent after its first event is killed as hung; one stopped (SIGSTOP) while starting
 * is killed too; one that cannot start at all fails its attempt. The heartbeat timeout is 1 s, so each scenario takes seconds. A real trainer under a real
 * worker, killed and hung, is the fault suite's.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { type Deps, TrainerSlots, runTrainer } from '@tempered/activities';
import { cfg } from '../support';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tempered-watchdog-'));
const fakePython = path.join(dir, 'python');
// Called as `python -m tempered_trainer <scenario> --config <path>`; writes its pid beside the config.
writeFileSync(
  fakePython,
  `#!/bin/sh
echo $$ > "$(dirname "$5")/pid"
case "$3" in
  slow-start) sleep 3; echo '{"event":"started","step":0}'; echo '{"event":"finished"}' ;;
  silent) echo '{"event":"started","step":0}'; sleep 30 ;;
  starting) sleep 30 ;;
esac
`,
);
chmodSync(fakePython, 0o755);

const deps = { cfg: { ...cfg, python: fakePython }, slots: TrainerSlots.unlimited() } as unknown as Deps;

/** An activity context with a 1 s heartbeat timeout and no run id (so no run log), counting heartbeats. */
function environment(details?: unknown) {
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 1000, heartbeatDetails: details, workflowExecution: { workflowId: '', runId: '' } });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  return { env, heartbeats };
}

function scratch(): string {
  return mkdtempSync(path.join(dir, 'job-'));
}

test('a trainer that takes longer than the heartbeat timeout to start is kept alive and finishes', async () => {
  const earlier = { checkpoints: [{ step: 100 }] };
  const { env, heartbeats } = environment(earlier);
  const run = (await env.run(() => runTrainer(deps, 'slow-start', {}, scratch()))) as Awaited<ReturnType<typeof runTrainer>>;
  assert.equal(run.finished.event, 'finished');
  assert.ok(heartbeats.length >= 2, `${heartbeats.length} heartbeats while it started`);
  assert.ok(heartbeats.every((d) => d === earlier), "the heartbeats carry the earlier attempt's progress");
});

test('a trainer silent for the heartbeat timeout after its first event is killed as hung', async () => {
  const { env } = environment();
  const t0 = Date.now();
  await assert.rejects(env.run(() => runTrainer(deps, 'silent', {}, scratch())), (err: any) => err.type === 'TrainerHung');
  assert.ok(Date.now() - t0 < 10_000, `killed after ${Date.now() - t0} ms`);
});

test('a trainer stopped while it starts is not kept alive: it is killed as hung', async () => {
  const { env, heartbeats } = environment();
  const job = scratch();
  const run = env.run(() => runTrainer(deps, 'starting', {}, job));
  const pidFile = path.join(job, 'pid');
  while (!existsSync(pidFile) || !readFileSync(pidFile, 'utf8').trim()) await new Promise((r) => setTimeout(r, 50));
  process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGSTOP');
  const stoppedAt = Date.now();
  const before = heartbeats.length;
  await assert.rejects(run, (err: any) => err.type === 'TrainerHung');
  assert.ok(Date.now() - stoppedAt < 10_000, `killed ${Date.now() - stoppedAt} ms after it stopped`);
  assert.ok(heartbeats.length - before <= 1, 'no heartbeat for a stopped trainer (one may have been on its way)');
});

test('a trainer that cannot start fails its attempt with what to do, and the worker lives on', async () => {
  const { env } = environment();
  const missing = { ...deps, cfg: { ...deps.cfg, python: path.join(dir, 'no-such-python') } } as Deps;
  await assert.rejects(
    env.run(() => runTrainer(missing, 'slow-start', {}, scratch())),
    (err: any) => err.type === 'TrainerError' && /could not start the trainer .*ENOENT; run `bash infra\/bootstrap\.sh`/.test(err.message),
  );
});
