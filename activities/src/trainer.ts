/**
 * Runs the Python trainer (services/trainer, see its CONTRACT.md) as a subprocess and turns its JSON-lines
 * events into callbacks. The activity stays responsive: events are handled in order, one at a time, while
 * the trainer keeps running. The trainer gets this worker's GPU slot (CUDA_VISIBLE_DEVICES); a Temporal
 * cancellation kills its whole process group, and so does a watchdog when it stops emitting events for
 * longer than the activity's heartbeat timeout (a hung or stopped trainer), so the retry that Temporal
 * schedules never races a zombie for the same GPU. Until its first event a trainer is starting (imports, model
 * load), which on a loaded machine can take longer than a short heartbeat timeout: while its process runs and
 * is not stopped, the activity heartbeats for it, for up to STARTUP_LIMIT_MS. With a pre-started trainer (./trainer-server.ts) the process
 * is its client, which stands for the forked job in all of this: same events, exit code and process-group kill.
 *
 * Every job holds a trainer slot of its worker (./slots.ts) while its process runs: on a busy worker it waits for
 * one first, heartbeating meanwhile (with the details its attempt began with) so the wait is not taken for a dead
 * worker, and leaving the queue when cancelled.
 *
 * A distributed job (`processes` > 1, from `train.gpus`) holds that many GPU slots (on a GPU-less worker that many
 * CPU slots, at most all of them: it runs as CPU processes) and runs under torch's own launcher,
 * `python -m torch.distributed.run --standalone`, as a plain process, never forked from the pre-started trainer
 * (torchrun starts its ranks itself). torchrun starts each rank in a session of its own, so killing its process
 * group kills the ranks only because each rank asks Linux to be killed with its launcher
 * (tempered_trainer/distributed.py); when one rank dies, torchrun stops the others and fails, and the retry resumes
 * from the last checkpoint that rank 0 wrote.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { childEnv } from '@tempered/config';
import type { Deps } from './context';
import { RunLog } from './run-log';

export type TrainerEvent = { event: string; time?: number } & Record<string, any>;

export interface TrainerOptions {
  /** Processes of one data-parallel job (`train.gpus`); 1, the default, is a plain trainer process. */
  processes?: number;
}

export interface TrainerRun {
  /** The `finished` event. */
  finished: TrainerEvent;
}

/** Kept to explain a failure: the last lines the trainer wrote to stderr. */
const STDERR_TAIL = 30;

/** How long a running trainer may take to emit its first event before silence counts against it. */
export const STARTUP_LIMIT_MS = 10 * 60_000;

/**
 * Whether a process is running: alive and neither stopped (SIGSTOP, a debugger) nor a zombie. Reads
 * /proc/<pid>/stat's state field; without /proc, alive is all it can tell.
 */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !'TtZX'.includes(stat[stat.lastIndexOf(')') + 2]); // the state follows the parenthesised name
  } catch {
    try {
      return process.kill(pid, 0);
    } catch {
      return false;
    }
  }
}

export async function runTrainer(
  deps: Deps,
  command: string,
  config: Record<string, unknown>,
  scratch: string,
  onEvent: (e: TrainerEvent) => Promise<void> | void = () => {},
  options: TrainerOptions = {},
): Promise<TrainerRun> {
  const processes = options.processes ?? 1;
  if (processes > 1 && deps.slots.kind === 'gpu' && processes > deps.slots.size) {
    // Every attempt on this worker would fail the same way: say so instead of burning retries on it.
    throw ApplicationFailure.create({
      message: `field 'train.gpus' asks for ${processes} GPUs, but this worker has ${deps.slots.size} (--gpus ${deps.slots.gpuIds.join(',')}); lower it or give the pool a bigger worker`,
      type: 'BadInput',
      nonRetryable: true,
    });
  }
  const configPath = path.join(scratch, `${command}-config.json`);
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const ctx = Context.current();
  const launch =
    processes > 1
      ? ['-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', String(processes), '-m', 'tempered_trainer']
      : (deps.trainerServer?.command() ?? ['-m', 'tempered_trainer']);
  // Waiting for a slot: heartbeat as the start-up watchdog does, so the wait is not taken for a dead worker.
  const heartbeatMs = ctx.info.heartbeatTimeoutMs || 0;
  const waiting = heartbeatMs ? setInterval(() => ctx.heartbeat(ctx.info.heartbeatDetails), Math.min(1000, heartbeatMs / 4)) : undefined;
  try {
    return await deps.slots.withSeveral(
      processes,
      (gpus) => {
        clearInterval(waiting);
        return spawnTrainer(deps, [...launch, command, '--config', configPath], command, scratch, gpus.length ? gpus.join(',') : undefined, onEvent, ctx);
      },
      ctx.cancellationSignal,
    );
  } finally {
    clearInterval(waiting);
  }
}

async function spawnTrainer(
  deps: Deps,
  args: string[],
  command: string,
  scratch: string,
  gpu: string | undefined,
  onEvent: (e: TrainerEvent) => Promise<void> | void,
  ctx: Context,
): Promise<TrainerRun> {
  const plain = args[1] === 'tempered_trainer';
  const child = spawn(deps.cfg.python, args, {
    cwd: scratch,
    detached: true, // its own process group, so cancellation also ends anything it started
    stdio: ['ignore', 'pipe', 'pipe'],
    // No GPU slot: hide any GPU so a CPU pool never competes with a GPU worker for one.
    env: childEnv(deps.cfg, { CUDA_VISIBLE_DEVICES: gpu ?? '' }),
  });
  const kill = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      /* already gone */
    }
  };
  const onCancel = () => kill('SIGKILL');
  ctx.cancellationSignal.addEventListener('abort', onCancel);

  // Watchdog: Temporal times the attempt out when heartbeats stop, but only this process can end the
  // trainer. Silence for as long as the heartbeat timeout means it is hung (or stopped); kill it.
  const silenceLimitMs = ctx.info.heartbeatTimeoutMs || 0;
  const spawnedAt = Date.now();
  let lastEventAt = spawnedAt;
  let started = false;
  let hung = false;
  const watchdog = silenceLimitMs
    ? setInterval(() => {
        const now = Date.now();
        if (!started && now - spawnedAt < STARTUP_LIMIT_MS && running(child.pid!)) {
          // Still starting, not hung. The details are the ones this attempt began with (an earlier attempt's
          // checkpoints), so a crash now still resumes from them.
          ctx.heartbeat(ctx.info.heartbeatDetails);
          lastEventAt = now;
        } else if (now - lastEventAt > silenceLimitMs) {
          hung = true;
          kill('SIGKILL');
        }
      }, Math.min(1000, silenceLimitMs / 4))
    : undefined;

  const runId = ctx.info.workflowExecution?.workflowId;
  const log = runId ? new RunLog(deps.db, runId, ctx.info.activityType, command) : undefined;
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    log?.line(line);
    stderr.push(line);
    if (stderr.length > STDERR_TAIL) stderr.shift();
  });

  let finished: TrainerEvent | undefined;
  let failure: TrainerEvent | undefined;
  // A trainer that cannot start at all (no Python at the configured path) is this attempt's failure, not an
  // unhandled 'error' event that would take the whole worker down with it.
  let spawnError: Error | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (err) => {
      spawnError = err;
      resolve(null);
    });
    child.on('close', (code) => resolve(code));
  });
  try {
    for await (const line of createInterface({ input: child.stdout! })) {
      lastEventAt = Date.now();
      started = true;
      if (!line.trim()) continue;
      let event: TrainerEvent;
      try {
        event = JSON.parse(line);
      } catch {
        stderr.push(`(stdout) ${line}`);
        continue;
      }
      // A plain job has done its imports: now the worker's pre-started trainer can start without competing with
      // it. Not for tokenize, which imports no ML library: a worker that only tokenizes never needs the server.
      if (plain && command !== 'tokenize' && event.event === 'started') void deps.trainerServer?.ready();
      if (event.event === 'finished') finished = event;
      else if (event.event === 'error') failure = event;
      log?.event(event);
      await onEvent(event);
    }
    const code = await exited;
    if (spawnError) {
      throw ApplicationFailure.create({
        message: `could not start the trainer (${deps.cfg.python}): ${spawnError.message}; run \`bash infra/bootstrap.sh\` to build its environment, then restart the worker`,
        type: 'TrainerError',
      });
    }
    if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new Error('cancelled');
    if (hung) {
      throw ApplicationFailure.create({
        message: `trainer ${command} emitted no event for ${silenceLimitMs / 1000}s and was killed (hung or stopped); the retry resumes from the last checkpoint`,
        type: 'TrainerHung',
      });
    }
    if (code === 0 && finished) return { finished };
    // torchrun's summary names the rank that failed first (its exit code or signal); rank 0's own reason is then
    // often only that torchrun stopped it.
    const rootAt = stderr.findIndex((l) => l.includes('Root Cause (first observed failure)'));
    const rootCause =
      rootAt < 0
        ? undefined
        : stderr
            .slice(rootAt)
            .filter((l) => /^\s*(rank|exitcode)\s*:/.test(l))
            .slice(0, 2)
            .map((l) => l.trim().replace(/\s+/g, ' ').replace(' :', ':'))
            .join(', ');
    const reason = (failure?.reason ?? `trainer exited with code ${code}\n${stderr.join('\n')}`) + (failure && rootCause ? ` (first failure: ${rootCause})` : '');
    const retryable = failure ? failure.retryable !== false && code !== 2 : code !== 2;
    throw ApplicationFailure.create({
      message: `trainer ${command}: ${reason}`,
      type: retryable ? 'TrainerError' : 'BadInput',
      nonRetryable: !retryable,
      details: [{ stderr: stderr.slice(-10) }],
    });
  } finally {
    await log?.flush();
    if (watchdog) clearInterval(watchdog);
    ctx.cancellationSignal.removeEventListener('abort', onCancel);
    if (child.exitCode === null) kill('SIGKILL');
  }
}
