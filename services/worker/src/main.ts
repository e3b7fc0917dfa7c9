/**
 * The Temporal worker: one binary for every pool.
 *
 *   tsx services/worker/src/main.ts [--pool cpu,gpu] [--gpus 0,1] [--trainer-slots N]
 *
 * `--pool cpu` polls the control queue (the workflows themselves) and the CPU queue (data stages and
 * bookkeeping); `--pool gpu` polls the GPU queue (train, RLHF, evaluation), one activity per GPU at a time.
 * Without flags a worker serves both, with every GPU it finds (none: the GPU stages run on CPU), so the
 * whole pipeline runs on one machine; on a cluster, start `--pool cpu` and `--pool gpu --gpus …` workers.
 *
 * Trainer jobs take trainer slots (activities/src/slots.ts): one per GPU, and `--trainer-slots` for jobs on CPU
 * (tokenize, and every GPU stage of a worker without GPUs), one per two cores by default. A GPU pool starts no
 * more activities than it has slots, so the rest of the runs' trainer stages wait scheduled in Temporal.
 *
 * A worker of the CPU pool (where deploy runs, and so where model servers start) also runs the model-server
 * supervisor: at start it brings back every serving deployment's server that is not running (after `npm stop`
 * and `npm start`, or a crash), then checks every 2 s, restarting with backoff and logging each step here.
 */
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { NativeConnection, Worker } from '@temporalio/worker';
import { ArtifactStore } from '@tempered/artifacts';
import { createActivities, defaultCpuSlots, ModelServerSupervisor, TrainerServer, TrainerSlots } from '@tempered/activities';
import { describe, loadConfig } from '@tempered/config';
import { createDb, migrateToLatest } from '@tempered/db';
import { CONTROL_TASK_QUEUE, taskQueueFor } from '@tempered/workflows';

const CORES = availableParallelism();

const HELP = `Usage: worker [--pool POOLS] [--gpus IDS] [--trainer-slots N]

  --pool POOLS         comma-separated pools to serve: cpu, gpu or gpu:NAME (default: cpu,gpu)
  --gpus IDS           GPU ids this worker owns, e.g. 0,1: at most one trainer job per GPU, handed to the
                       trainer as CUDA_VISIBLE_DEVICES (default: every /dev/nvidiaN found; none means CPU)
  --trainer-slots N    trainer jobs run at once on CPU: tokenize, and every GPU stage when there are no GPUs;
                       the rest wait their turn, first come first served (default: TEMPERED_TRAINER_SLOTS, or
                       one per two cores: ${defaultCpuSlots(CORES)} on this machine's ${CORES})
  --help               this text

Configuration comes from the environment (see packages/config): TEMPORAL_ADDRESS, DATABASE_URL,
S3_ENDPOINT, S3_BUCKET, TEMPERED_DATA_DIR, TEMPERED_PYTHON, TEMPERED_TRAINER_SLOTS, ...`;

/** `--trainer-slots`: a whole number of at least 1, or the worker stops at start naming the flag. */
function slotsFlag(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--trainer-slots ${raw}: give a whole number of at least 1`);
  return n;
}

/** GPU ids visible on this machine, from the device files the NVIDIA driver creates. */
function detectGpus(): string[] {
  try {
    return readdirSync('/dev').filter((f) => /^nvidia\d+$/.test(f)).map((f) => f.slice('nvidia'.length)).sort((a, b) => Number(a) - Number(b));
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pool: { type: 'string' }, gpus: { type: 'string' }, 'trainer-slots': { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) return void console.log(HELP);
  const pools = (values.pool ?? 'cpu,gpu').split(',').map((p) => p.trim()).filter(Boolean);
  const gpus = values.gpus !== undefined ? values.gpus.split(',').filter(Boolean) : pools.some((p) => p.startsWith('gpu')) ? detectGpus() : [];

  const cpuSlotCount = slotsFlag(values['trainer-slots']);

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
  // One set of CPU slots for every trainer job of this process that runs on CPU, whichever pool starts it.
  const cpuSlots = TrainerSlots.cpu(cpuSlotCount ?? cfg.trainer.slots ?? defaultCpuSlots(CORES));
  const gpuSlots = gpus.length ? TrainerSlots.gpus(gpus) : cpuSlots;
  const gpuActivities = createActivities({ cfg, db, store, slots: gpuSlots, trainerServer });
  const cpuActivities = createActivities({ cfg, db, store, slots: cpuSlots, trainerServer });
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
        // Every GPU-pool activity runs trainer jobs: no more of them start than there are slots, so the others
        // wait scheduled in Temporal instead of started here (their timeouts running). CPU stages share the cores;
        // the few of them that run the trainer (tokenize) wait for a CPU slot, heartbeating.
        maxConcurrentActivityTaskExecutions: gpuPool ? gpuSlots.size : 4,
        // Heartbeats carry the newest checkpoint: send them within seconds, not the SDK's default of up to
        // a minute, so a killed worker loses at most one checkpoint interval of training.
        maxHeartbeatThrottleInterval: '2s',
        defaultHeartbeatThrottleInterval: '2s',
      }),
    );
  }
  // After the workers exist (a deploy may already be waiting), so start-up is not held up by model servers loading.
  const supervisor = pools.includes('cpu') ? new ModelServerSupervisor({ cfg, db, store }).start() : undefined;
  const slotsLine = gpus.length ? `trainer slots ${gpuSlots.describe()} + ${cpuSlots.describe()}` : `trainer slots ${cpuSlots.describe()} (${CORES} cores)`;
  console.log(`worker ready: pools ${pools.join(', ')}${gpus.length ? ` (GPUs ${gpus.join(',')})` : ''}; ${slotsLine}; ${JSON.stringify(describe(cfg))}`);
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
