/**
 * Benchmark: many pipelines at once on one worker (issue 13). Trainer jobs take the worker's trainer slots
 * (activities/src/slots.ts), so N runs started together should take no longer than the same N one after another:
 * the goal is together / in a row ≤ 1.1.
 *
 * The pipeline is the digit demo (examples/demo) with 100 training steps, no RLHF and the stage cache off, timed
 * from its start to its deployment gate (`waiting-approval`), then terminated. It runs on a worker process of its
 * own (services/worker, as `npm start` runs it, with its default trainer slots or BENCH_TRAINER_SLOTS) serving two
 * pools named for this bench, a data pool and a GPU pool, so nothing else on the stack shares its queues; the
 * stack's worker runs the workflows themselves. In one run of the bench, all measured:
 *
 *   1. one pipeline alone (it also warms the worker: its pre-started trainer, the base-model catalog);
 *   2. N pipelines one after another (BENCH_N, default 4): the sum of their times;
 *   3. N pipelines started at once: from the first start until the last reaches its gate;
 *
 * 2 and 3 in BENCH_ROUNDS rounds (default 2) that alternate which goes first, and the ratio together / in a row of
 * their sums. The most trainer jobs of the bench's runs seen running at once (from /proc) shows the slots at work.
 * Per stage, the time from its start (as the workflow records it: waiting for a worker or a slot included) to
 * its end, summed over the runs (from the stages table), so that where a together run waits can be read off. The machine's load
 * average before and after says whether other work shared it. BENCH_MANY=50 also starts that many at once and
 * checks that all reach their gates (its time is compared with BENCH_MANY × the single run's, an estimate).
 *
 * Run with `npm run bench` (the stack must be up; infra/bench.sh starts it). Writes results/many_runs.json.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { PipelineInput } from '@tempered/contract';
import type { PipelineSpec } from '@tempered/spec';
import { generateDemoData } from '@tempered/examples';
import { CONTROL_TASK_QUEUE, WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, db, demoSpec, repoRoot, temporalClient, uniqueId, waitFor } from '../support';

const N = Number(process.env.BENCH_N ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const MANY = Number(process.env.BENCH_MANY ?? 0);
const SLOTS = process.env.BENCH_TRAINER_SLOTS;
const GOAL = 1.1;
const STEPS = 100;

const round = (x: number, digits = 1) => Number(x.toFixed(digits));
const load = () => os.loadavg().map((x) => round(x, 2));

/** The bench's worker: a process of services/worker serving the bench's two pools; resolves with its ready line. */
async function startWorker(pools: { data: string; gpu: string }, logFile: string): Promise<{ child: ChildProcess; ready: string }> {
  const args = [path.join(repoRoot, 'services', 'worker', 'src', 'main.ts'), '--pool', `${pools.data},${pools.gpu}`, ...(SLOTS ? ['--trainer-slots', SLOTS] : [])];
  const child = spawn(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), args, { cwd: repoRoot, env: process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(logFile);
  let output = '';
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.on('data', (d) => {
      output += d;
      log.write(d);
    });
  }
  const ready = await waitFor('the bench worker', 120_000, async () => {
    if (child.exitCode !== null) throw new Error(`worker exited: ${output}`);
    return output.split('\n').find((l) => l.startsWith('worker ready'));
  });
  return { child, ready: ready.replace(/; \{.*$/, '') };
}

/**
 * Trainer jobs of this bench's runs running now: processes whose command line names a config in one of their
 * scratch directories (`<workDir>/bench-many-…`), a plain job or a pre-started trainer's client alike.
 */
function trainerJobsNow(): number {
  const marker = `--config\0${path.join(cfg.workDir, 'bench-many-')}`;
  let count = 0;
  for (const pid of readdirSync('/proc').filter((f) => /^\d+$/.test(f))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) count++;
    } catch {
      /* gone */
    }
  }
  return count;
}

interface Batch {
  /** Seconds from the batch's first start to each run's gate. */
  perRunSeconds: number[];
  /** From the first start to the last gate. */
  seconds: number;
  /** Per stage: seconds from start to end, summed over the runs. */
  stageSeconds: Record<string, number>;
  /** The most trainer jobs of these runs seen running at once (sampled every 100 ms). */
  mostTrainerJobsAtOnce: number;
}

/** Starts `count` runs of `spec` at once and waits until every one is at its gate (then terminates them). */
async function batch(client: Client, database: ReturnType<typeof db>, spec: PipelineSpec, dataDir: string, count: number, label: string): Promise<Batch> {
  const input: PipelineInput = { spec, specDir: dataDir, requestedBy: 'bench' };
  const ids = Array.from({ length: count }, (_, i) => uniqueId(`bench-many-${label}-${i}`));
  const t0 = performance.now();
  const handles = await Promise.all(ids.map((workflowId) => client.workflow.start(WORKFLOW_TYPE, { taskQueue: CONTROL_TASK_QUEUE, workflowId, args: [input] })));
  const reached = new Map<string, number>();
  let mostTrainerJobsAtOnce = 0;
  const sampler = setInterval(() => (mostTrainerJobsAtOnce = Math.max(mostTrainerJobsAtOnce, trainerJobsNow())), 100);
  // Generous: a run waits its turn for the trainer behind every other one.
  await waitFor(`${count} runs at their gates`, (count * 3 + 10) * 60_000, async () => {
    const runs = await database.selectFrom('runs').select(['id', 'status', 'error']).where('id', 'in', ids).execute();
    for (const run of runs) {
      if (run.status === 'failed') throw new Error(`${run.id} failed: ${run.error}`);
      if (run.status === 'waiting-approval' && !reached.has(run.id)) reached.set(run.id, (performance.now() - t0) / 1000);
    }
    return reached.size === count ? true : undefined;
  }, 250).finally(() => clearInterval(sampler));
  await Promise.all(handles.map((h) => h.terminate('benchmark done')));
  const stages = await database.selectFrom('stages').select(['name', 'started_at', 'finished_at']).where('run_id', 'in', ids).execute();
  const stageSeconds: Record<string, number> = {};
  for (const s of stages) {
    if (s.started_at && s.finished_at) stageSeconds[s.name] = round((stageSeconds[s.name] ?? 0) + (s.finished_at.getTime() - s.started_at.getTime()) / 1000);
  }
  const perRunSeconds = ids.map((id) => round(reached.get(id)!));
  return { perRunSeconds, seconds: round(Math.max(...reached.values())), stageSeconds, mostTrainerJobsAtOnce };
}

/** `count` runs one after another: each batch of one, times and stage times summed. */
async function inARow(client: Client, database: ReturnType<typeof db>, spec: PipelineSpec, dataDir: string, count: number): Promise<Batch> {
  const runs: Batch[] = [];
  for (let i = 0; i < count; i++) runs.push(await batch(client, database, spec, dataDir, 1, `row${i}`));
  const stageSeconds: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.stageSeconds)) stageSeconds[k] = round((stageSeconds[k] ?? 0) + v);
  const perRunSeconds = runs.map((r) => r.seconds);
  return { perRunSeconds, seconds: round(perRunSeconds.reduce((a, b) => a + b, 0)), stageSeconds, mostTrainerJobsAtOnce: Math.max(...runs.map((r) => r.mostTrainerJobsAtOnce)) };
}

async function main(): Promise<void> {
  const id = uniqueId('bench').toLowerCase();
  const pools = { data: id, gpu: `gpu:${id}` };
  const dataDir = path.join(cfg.dataDir, 'uploads', 'bench-many-runs');
  generateDemoData(dataDir);
  const spec = demoSpec();
  spec.cache = false;
  spec.train.steps = STEPS;
  spec.rlhf.method = 'none';
  spec.data.sources = [{ uri: 'train.jsonl', encoding: 'utf-8' }];
  spec.pools = { data: pools.data, train: pools.gpu, rlhf: pools.gpu, eval: pools.gpu };

  const logDir = path.join(cfg.dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const worker = await startWorker(pools, path.join(logDir, 'bench-many-runs-worker.log'));
  console.log(worker.ready);
  const { client, close } = await temporalClient();
  const database = db();
  try {
    const loadBefore = load();
    const single = await batch(client, database, spec, dataDir, 1, 'single');
    console.log(`one run alone: ${single.seconds}s`);
    // Other work on a shared machine comes and goes: rounds alternate which of the two goes first, so a change of
    // load during the bench weighs on both alike.
    const rounds: Array<{ loadAverage1m: number; order: string; inARow: Batch; together: Batch; ratio: number }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      const loadAverage1m = load()[0]!;
      let row: Batch | undefined;
      let together: Batch | undefined;
      for (const mode of r % 2 === 0 ? ['row', 'together'] : ['together', 'row']) {
        if (mode === 'row') row = await inARow(client, database, spec, dataDir, N);
        else together = await batch(client, database, spec, dataDir, N, `together${r}`);
      }
      const ratio = round(together!.seconds / row!.seconds, 3);
      rounds.push({ loadAverage1m, order: r % 2 === 0 ? 'in a row first' : 'together first', inARow: row!, together: together!, ratio });
      console.log(`round ${r + 1}: ${N} one after another ${row!.seconds}s (${row!.perRunSeconds.join(', ')}); at once ${together!.seconds}s; ratio ${ratio}`);
    }
    const inARowSeconds = round(rounds.reduce((a, x) => a + x.inARow.seconds, 0));
    const togetherSeconds = round(rounds.reduce((a, x) => a + x.together.seconds, 0));
    const ratio = round(togetherSeconds / inARowSeconds, 3);
    console.log(`${N} runs, ${ROUNDS} rounds: together ${togetherSeconds}s / in a row ${inARowSeconds}s = ${ratio} (goal ≤ ${GOAL})`);
    let many: Record<string, unknown> | undefined;
    if (MANY > 0) {
      const m = await batch(client, database, spec, dataDir, MANY, 'many');
      const estimate = round(MANY * single.seconds);
      many = {
        runs: MANY,
        allReachedGate: m.perRunSeconds.length === MANY,
        seconds: m.seconds,
        inARowEstimateSeconds: estimate,
        inARowEstimate: `${MANY} × the single run of this bench`,
        ratioToEstimate: round(m.seconds / estimate, 3),
        mostTrainerJobsAtOnce: m.mostTrainerJobsAtOnce,
        stageSeconds: m.stageSeconds,
      };
      console.log(`${MANY} runs at once: all at their gates after ${m.seconds}s (${MANY} × the single run: ${estimate}s)`);
    }
    const out = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'}`,
      worker: worker.ready,
      pipeline: `examples/demo/pipeline.yaml, train.steps ${STEPS}, rlhf.method none, cache off; start to the deployment gate`,
      loadAverageBefore: loadBefore,
      loadAverageAfter: load(),
      n: N,
      rounds: ROUNDS,
      singleSeconds: single.seconds,
      inARowMeasured: 'measured: N runs one after another on the same worker, their times summed (not N × the single run)',
      inARowSeconds,
      togetherSeconds,
      ratioTogetherToInARow: ratio,
      goal: GOAL,
      goalMet: ratio <= GOAL,
      perRound: rounds,
      ...(many ? { many } : {}),
    };
    const dir = path.join(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'many_runs.json'), `${JSON.stringify(out, null, 2)}\n`);
    console.log(JSON.stringify(out, null, 2));
  } finally {
    await close();
    await database.destroy();
    try {
      process.kill(-worker.child.pid!, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
