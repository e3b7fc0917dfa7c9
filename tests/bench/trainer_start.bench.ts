/**
 * Benchmark: what the pre-started trainer (activities/src/trainer-server.ts, tempered_trainer/prefork.py) saves.
 *
 * 1. Start of one job: from spawning it to its first event, for a plain `python -m tempered_trainer sft` and for
 *    the same job forked from the server. The config is empty on purpose: `sft` imports its libraries, then
 *    refuses the config with its first (and only) event, so the figure is exactly the time before a job's own
 *    code runs.
 * 2. The demo pipeline (examples/demo: ingest to the deployment gate, DPO included, stage cache off), run on
 *    this process's own worker twice per round, plain and forked, alternating: wall time from start to the gate.
 *
 * Run with `npm run bench` (the stack must be up; infra/bench.sh starts it), or BENCH_ROUNDS=1 for a quick look.
 * Writes results/trainer_start.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, TrainerSlots, TrainerServer } from '@tempered/activities';
import { childEnv } from '@tempered/config';
import type { PipelineInput } from '@tempered/contract';
import { generateDemoData } from '@tempered/examples';
import { CONTROL_TASK_QUEUE, taskQueueFor, WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, db, demoSpec, quietWorkerLogs, store, temporalClient, uniqueId, waitFor } from '../support';

const JOBS = Number(process.env.BENCH_JOBS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, digits = 3) => Number(x.toFixed(digits));

/** Seconds from spawn to the first line the job writes on stdout. */
function firstEventSeconds(args: string[], cwd: string): Promise<number> {
  const t0 = performance.now();
  const child = spawn(cfg.python, args, { cwd, env: childEnv(cfg), stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', () => resolve((performance.now() - t0) / 1000));
    child.once('exit', (code) => setTimeout(() => reject(new Error(`job exited ${code} without an event`)), 100));
  });
}

async function jobStart(server: TrainerServer): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tempered-bench-start-'));
  writeFileSync(path.join(dir, 'config.json'), '{}');
  const job = ['sft', '--config', 'config.json'];
  const plain: number[] = [];
  const forked: number[] = [];
  await server.ready(); // not timed: a worker pays it once
  const prefix = server.command();
  for (let i = 0; i < JOBS; i++) {
    plain.push(await firstEventSeconds(['-m', 'tempered_trainer', ...job], dir));
    forked.push(await firstEventSeconds([...prefix, ...job], dir));
  }
  const out = { jobs: JOBS, plainSeconds: round(median(plain)), forkedSeconds: round(median(forked)), plain: plain.map((x) => round(x)), forked: forked.map((x) => round(x)) };
  console.log(`job start (median of ${JOBS}): plain ${out.plainSeconds}s, forked ${out.forkedSeconds}s`);
  return out;
}

async function demoToGate(mode: 'plain' | 'forked', server: TrainerServer, dataDir: string): Promise<number> {
  const pool = uniqueId(`bench-${mode}`).toLowerCase();
  const database = db();
  const activities = createActivities({
    cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), stageCache: false, ...(mode === 'forked' ? { trainerServer: server } : {}),
  });
  const connection = await NativeConnection.connect({ address: cfg.temporal.address });
  const worker = await Worker.create({ connection, namespace: cfg.temporal.namespace, taskQueue: taskQueueFor(pool), activities });
  const running = worker.run();
  const { client, close } = await temporalClient();
  try {
    const spec = demoSpec();
    spec.data.sources = [{ uri: 'train.jsonl', encoding: 'utf-8' }];
    spec.rlhf.preferences = { uri: 'preferences.jsonl', encoding: 'utf-8' };
    spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
    const input: PipelineInput = { spec, specDir: dataDir, requestedBy: 'bench' };
    const runId = uniqueId(`bench-${mode}`);
    const t0 = performance.now();
    const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: CONTROL_TASK_QUEUE, workflowId: runId, args: [input] });
    await waitFor(`${runId} at its gate`, 20 * 60_000, async () => {
      const run = await database.selectFrom('runs').select(['status', 'error']).where('id', '=', runId).executeTakeFirst();
      if (run?.status === 'failed') throw new Error(`${runId} failed: ${run.error}`);
      return run?.status === 'waiting-approval' ? true : undefined;
    }, 250);
    const seconds = (performance.now() - t0) / 1000;
    await handle.terminate('benchmark done');
    console.log(`demo pipeline to the gate, ${mode}: ${seconds.toFixed(1)}s`);
    return seconds;
  } finally {
    await close();
    worker.shutdown();
    await running;
    await connection.close();
    await database.destroy();
  }
}

async function main(): Promise<void> {
  quietWorkerLogs();
  const server = new TrainerServer(cfg);
  try {
    const start = await jobStart(server);
    const dataDir = path.join(cfg.dataDir, 'uploads', 'bench-trainer-start');
    generateDemoData(dataDir);
    const pipeline: Record<'plain' | 'forked', number[]> = { plain: [], forked: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const mode of ['plain', 'forked'] as const) pipeline[mode].push(await demoToGate(mode, server, dataDir));
    }
    const out = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'}`,
      jobStart: start,
      demoPipelineToGate: {
        rounds: ROUNDS,
        plainSeconds: round(median(pipeline.plain), 1),
        forkedSeconds: round(median(pipeline.forked), 1),
        plain: pipeline.plain.map((x) => round(x, 1)),
        forked: pipeline.forked.map((x) => round(x, 1)),
      },
    };
    const dir = path.join(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'trainer_start.json'), `${JSON.stringify(out, null, 2)}\n`);
    console.log(JSON.stringify(out, null, 2));
  } finally {
    server.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
