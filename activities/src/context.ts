/**
 * What every activity needs, created once per worker process and injected through `createActivities`:
 * the configuration, the metadata database and the artifact store. Also the per-attempt scratch directory
 * where inputs are staged and trainer output is written.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { ArtifactStore } from '@tempered/artifacts';
import type { Config } from '@tempered/config';
import type { StageName } from '@tempered/contract';
import type { TrainerSlots } from './slots';
import type { TrainerServer } from './trainer-server';
import { type Db, sql } from '@tempered/db';

export interface Deps {
  cfg: Config;
  db: Db;
  store: ArtifactStore;
  /**
   * The trainer slots the jobs of these activities take (./slots.ts): this worker's GPUs for a GPU pool, its
   * CPU slots for the CPU pool and for a GPU pool without GPUs.
   */
  slots: TrainerSlots;
  /**
   * Whether deterministic stages reuse cached results (./cache.ts). Unset: on, unless the environment says
   * TEMPERED_STAGE_CACHE=off.
   */
  stageCache?: boolean;
  /** The pre-started trainer jobs fork from (./trainer-server.ts); unset: each job is a plain process. */
  trainerServer?: TrainerServer;
}

/**
 * A fresh directory for this activity attempt, removed afterwards unless `keep` is set. Attempt-scoped so a
 * retry never reads a half-written file of the attempt that crashed.
 */
export async function withScratch<T>(deps: Deps, fn: (dir: string) => Promise<T>, stage?: StageName): Promise<T> {
  const info = Context.current().info;
  await noteAttempt(deps, stage);
  // Process-scoped too: activities run outside a workflow (tests' mock environments) share one workflow and
  // activity id, and two such processes would otherwise remove each other's scratch.
  const dir = path.join(deps.cfg.workDir, info.workflowExecution?.workflowId ?? 'standalone', `w${process.pid}`, `${info.activityType}-${info.activityId}-a${info.attempt}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Records this activity's attempt number on its stage row (stage activities are named after their stage,
 * unless `stage` says otherwise), so retries are visible in the run's history without reading Temporal's.
 */
export async function noteAttempt(deps: Deps, stage?: StageName): Promise<void> {
  const info = Context.current().info;
  const runId = info.workflowExecution?.workflowId;
  if (!runId) return;
  await deps.db
    .updateTable('stages')
    .set({ attempts: sql`greatest(attempts, ${info.attempt})` })
    .where('run_id', '=', runId)
    .where('name', '=', stage ?? info.activityType)
    .execute();
}

/** Bad input that no retry can fix: fails the stage at once with a message that says what to change. */
export function badInput(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: 'BadInput', nonRetryable: true });
}

/** A quality gate from the spec that the model did not pass: names the figure and the threshold. */
export function gateFailed(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: 'GateFailed', nonRetryable: true });
}

export function log(message: string, attrs: Record<string, unknown> = {}): void {
  Context.current().log.info(message, attrs);
}

/**
 * Runs `fn` while heartbeating every quarter of the activity's heartbeat timeout (with its last details), so
 * long work that streams data (clean on a large dataset) is not taken for a dead worker. Inside an activity only.
 */
export async function heartbeating<T>(fn: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const every = ctx.info.heartbeatTimeoutMs ? Math.max(250, ctx.info.heartbeatTimeoutMs / 4) : 0;
  const timer = every ? setInterval(() => ctx.heartbeat(ctx.info.heartbeatDetails), every) : undefined;
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}
