/**
 * The Temporal worker: one binary for every pool.
 *
 *   tsx services/worker/src/main.ts [--pool cpu,gpu] [--gpus 0,1]
 *
 * `--pool cpu` polls the control queue (the workflows themselves) and the CPU queue (data stages and
 * bookkeeping); `--pool gpu` polls the GPU queue (train, RLHF, evaluation), one activity per GPU at a time.
 * Without flags a worker serves both, with every GPU it finds (none: the GPU stages run on CPU), so the
 * whole pipeline runs on one machine; on a cluster, start `--pool cpu` and `--pool gpu --gpus …` workers.
 *
 * A worker of the CPU pool (where deploy runs, and so where model servers start) also runs the model-server
 * supervisor: at start it brings back every serving deployment's server that is not running (after `npm stop`
 * and `npm start`, or a crash), then checks every 2 s, restarting with backoff and logging each step here.
 */
import { readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { NativeConnection, Worker } from '@temporalio/worker';
import { ArtifactStore } from '@tempered/artifacts';
import { createActivities, GpuSlots, ModelServerSupervisor, TrainerServer } from '@tempered/activities';
import { describe, loadConfig } from '@tempered/config';
import { createDb, migrateToLatest } from '@tempered/db';
import { CONTROL_TASK_QUEUE, taskQueueFor } from '@tempered/workflows';

const HELP = `Usage: worker [--pool POOLS] [--gpus IDS]

  --pool POOLS   comma-separated pools to serve: cpu, gpu or gpu:NAME (default: cpu,gpu)
  --gpus IDS     GPU ids this worker owns, e.g. 0,1: at most one activity per GPU, handed to the trainer
                 as CUDA_VISIBLE_DEVICES (default: every /dev/nvidiaN found; none means CPU)
  --help         this text

Configuration comes from the environment (see packages/config): TEMPORAL_ADDRESS, DATABASE_URL,
S3_ENDPOINT, S3_BUCKET, TEMPERED_DATA_DIR, TEMPERED_PYTHON, ...`;

/** GPU ids visible on this machine, from the device files the NVIDIA driver creates. */
function detectGpus(): string[] {
  try {
    return readdirSync('/dev').filter((f) => /^nvidia\d+$/.test(f)).map((f) => f.slice('nvidia'.length)).sort((a, b) => Number(a) - Number(b));
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pool: { type: 'string' }, gpus: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) return void console.log(HELP);
  const pools = (values.pool ?? 'cpu,gpu').split(',').map((p) => p.trim()).filter(Boolean);
  const gpus = values.gpus !== undefined ? values.gpus.split(',').filter(Boolean) : pools.some((p) => p.startsWith('gpu')) ? detectGpus() : [];

  const cfg = loadConfig();
  const db = createDb(cfg.databaseUrl);
  await migrateToLatest(db);
  const store = new ArtifactStore(cfg.s3);
  await store.ensureBucket();
  // GPU pools hand their GPUs to the trainer; CPU pools (data stages) never take one.
  // One pre-started trainer per worker process, shared by its pools: jobs fork from it instead of importing torch.
  const trainerServer = cfg.trainer.prefork ? new TrainerServer(cfg) : undefined;
  // Started now where trainer jobs run (GPU pools: train, RLHF, evaluation), so it is up before their first job.
  if (pools.some((p) => p.startsWith('gpu'))) void trainerServer?.ready();
  const gpuActivities = createActivities({ cfg, db, store, gpus: new GpuSlots(gpus), trainerServer });
  const cpuActivities = createActivities({ cfg, db, store, gpus: new GpuSlots([]), trainerServer });
  const connection = await NativeConnection.connect({ address: cfg.temporal.address });

  const workers: Worker[] = [];
  if (pools.includes('cpu')) {
    workers.push(
      await Worker.create({
        connection,
        namespace: cfg.temporal.namespace,
        taskQueue: CONTROL_TASK_QUEUE,
        workflowsPath: require.resolve('@tempered/workflows/workflows'),
      }),
    );
  }
  for (const pool of pools) {
    const gpuPool = pool.startsWith('gpu');
    workers.push(
      await Worker.create({
        connection,
        namespace: cfg.temporal.namespace,
        taskQueue: taskQueueFor(pool),
        activities: gpuPool ? gpuActivities : cpuActivities,
        // A GPU runs one training job at a time; CPU stages share the cores.
        maxConcurrentActivityTaskExecutions: gpuPool ? Math.max(1, gpus.length) : 4,
        // Heartbeats carry the newest checkpoint: send them within seconds, not the SDK's default of up to
        // a minute, so a killed worker loses at most one checkpoint interval of training.
        maxHeartbeatThrottleInterval: '2s',
        defaultHeartbeatThrottleInterval: '2s',
      }),
    );
  }
  // After the workers exist (a deploy may already be waiting), so start-up is not held up by model servers loading.
  const supervisor = pools.includes('cpu') ? new ModelServerSupervisor({ cfg, db, store }).start() : undefined;
  console.log(`worker ready: pools ${pools.join(', ')}${gpus.length ? ` (GPUs ${gpus.join(',')})` : ''}; ${JSON.stringify(describe(cfg))}`);
  try {
    await Promise.all(workers.map((w) => w.run()));
  } finally {
    await supervisor?.close();
    trainerServer?.close();
    await connection.close();
    await db.destroy();
  }
}

main().catch((err) => {
  console.error(`worker failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
