/**
 * Benchmark: what the train activity adds around the trainer. The same SFT job runs twice in one process on
 * the same inputs: the trainer CLI alone (the baseline), then through the `train` activity (staging inputs
 * from S3, events to heartbeats and metric rows, every checkpoint uploaded and recorded). The difference is
 * the activity's overhead. Needs the bench stack's S3 and PostgreSQL (infra/bench.sh starts them).
 *
 * Writes results/activity_overhead.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, TrainerSlots } from '@tempered/activities';
import { generateDemoData } from '@tempered/examples';
import type { TrainResult } from '@tempered/contract';
import { cfg, db, demoSpec, store, uniqueId } from '../support';

const REPEATS = Number(process.env.BENCH_RUNS ?? 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function trainer(command: string, config: Record<string, unknown>, dir: string): void {
  const file = path.join(dir, `${command}-${Date.now()}.json`);
  writeFileSync(file, JSON.stringify(config));
  const r = spawnSync(cfg.python, ['-m', 'tempered_trainer', command, '--config', file], {
    env: { ...process.env, PYTHONPATH: cfg.trainerDir, HF_HUB_OFFLINE: '1', CUDA_VISIBLE_DEVICES: '' },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${command} failed: ${r.stdout.slice(-500)} ${r.stderr.slice(-500)}`);
}

async function run(): Promise<void> {
  const work = path.join(cfg.dataDir, 'uploads', 'bench-overhead');
  mkdirSync(work, { recursive: true });
  generateDemoData(work, { records: 2000 });
  const records = path.join(work, 'records.jsonl');
  // The trainer's tokenize reads {key, prompt, response}; the demo file has ids and planted bad lines.
  const lines = (await import('node:fs')).readFileSync(path.join(work, 'train.jsonl'), 'utf8').split('\n');
  const good = lines.flatMap((l) => {
    try {
      const r = JSON.parse(l);
      return typeof r?.prompt === 'string' && typeof r?.response === 'string' ? [JSON.stringify({ key: String(r.id), prompt: r.prompt, response: r.response })] : [];
    } catch {
      return [];
    }
  });
  writeFileSync(records, `${good.join('\n')}\n`);
  trainer('tokenize', { input: records, output_dir: path.join(work, 'tok') }, work);

  const spec = demoSpec();
  const sft = {
    train_shard: path.join(work, 'tok', 'encoded.shard'),
    tokenizer: path.join(work, 'tok', 'tokenizer.json'),
    model: { n_layer: spec.model.nLayer, n_head: spec.model.nHead, n_embd: spec.model.nEmbd, context_length: spec.model.contextLength },
    steps: spec.train.steps,
    batch_size: spec.train.batchSize,
    learning_rate: spec.train.learningRate,
    warmup_steps: spec.train.warmupSteps,
    weight_decay: spec.train.weightDecay,
    checkpoint_every: spec.train.checkpointEvery,
    seed: spec.train.seed,
    device: 'cpu',
  };

  const artifacts = store();
  const database = db();
  const [trainShard, tokenizer] = await Promise.all([
    artifacts.putFile(sft.train_shard, 'shard', 'train.shard'),
    artifacts.putFile(sft.tokenizer, 'tokenizer', 'tokenizer.json'),
  ]);
  // Without the stage cache: every repeat must train, or the second would reuse the first's result.
  const activities = createActivities({ cfg, db: database, store: artifacts, slots: TrainerSlots.unlimited(), stageCache: false });

  const bare: number[] = [];
  const activity: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    let t0 = performance.now();
    trainer('sft', { ...sft, output_dir: path.join(work, `bare-${i}`) }, work);
    bare.push(performance.now() - t0);

    const runId = uniqueId('bench-overhead');
    await database.insertInto('runs').values({ id: runId, name: 'bench', spec: '{}', status: 'running', requested_by: 'bench' }).execute();
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 120_000 });
    t0 = performance.now();
    const result: TrainResult = await env.run(activities.train, { runId, spec, trainShard, tokenizer });
    activity.push(performance.now() - t0);
    if (result.steps !== spec.train.steps) throw new Error(`activity trained ${result.steps} steps`);
  }
  await database.destroy();

  const out = {
    benchmark: 'train activity overhead around the trainer (demo sft job)',
    machine: `${require('node:os').cpus().length} cores, node ${process.version}`,
    job: { steps: spec.train.steps, batchSize: spec.train.batchSize, checkpoints: Math.floor(spec.train.steps / spec.train.checkpointEvery) + 1 },
    repeats: REPEATS,
    trainerAloneSeconds: { median: median(bare) / 1000, all: bare.map((ms) => ms / 1000) },
    throughActivitySeconds: { median: median(activity) / 1000, all: activity.map((ms) => ms / 1000) },
    overheadSeconds: (median(activity) - median(bare)) / 1000,
    overheadRatio: median(activity) / median(bare),
    note: 'the activity also stages inputs from S3, uploads and records every checkpoint, and writes metric rows',
    at: new Date().toISOString(),
  };
  const dir = path.join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'activity_overhead.json'), `${JSON.stringify(out, null, 2)}\n`);
  console.log(JSON.stringify(out, null, 2));
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
