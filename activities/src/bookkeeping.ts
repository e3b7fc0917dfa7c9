/**
 * Bookkeeping activities called by the workflow around each stage: run and stage status, approvals. Small,
 * idempotent writes, so a retried call changes nothing twice.
 */
import type { PipelineSpec } from '@tempered/spec';
import type { StageName, StageStatus } from '@tempered/contract';
import { notifyChange, sql } from '@tempered/db';
import type { Deps } from './context';

export async function recordRun(
  deps: Deps,
  input: { runId: string; status: string; spec?: PipelineSpec; specDir?: string; requestedBy?: string; error?: string },
): Promise<void> {
  const { db } = deps;
  if (input.spec) {
    await db
      .insertInto('runs')
      .values({
        id: input.runId,
        name: input.spec.name,
        spec: JSON.stringify(input.spec),
        status: input.status,
        requested_by: input.requestedBy ?? 'unknown',
        spec_dir: input.specDir ?? null,
      })
      .onConflict((oc) => oc.column('id').doUpdateSet({ status: input.status, updated_at: sql`now()` }))
      .execute();
  } else {
    await db
      .updateTable('runs')
      .set({ status: input.status, updated_at: sql`now()`, ...(input.error !== undefined ? { error: input.error } : {}) })
      .where('id', '=', input.runId)
      .execute();
  }
  await notifyChange(db, input.runId, 'run');
}

export async function recordStage(
  deps: Deps,
  input: { runId: string; stage: StageName; status: StageStatus; error?: string; summary?: Record<string, unknown> },
): Promise<void> {
  const running = input.status === 'running';
  const summary = input.summary ? JSON.stringify(input.summary) : null;
  await deps.db
    .insertInto('stages')
    .values({
      run_id: input.runId,
      name: input.stage,
      status: input.status,
      attempts: 0, // set by the stage's activity from its attempt number (noteAttempt)
      started_at: running ? new Date() : null,
      finished_at: running ? null : new Date(),
      error: input.error ?? null,
      summary,
    })
    .onConflict((oc) =>
      oc.columns(['run_id', 'name']).doUpdateSet({
        status: input.status,
        error: input.error ?? null,
        summary,
        ...(running
          ? { started_at: sql`coalesce(stages.started_at, now())` }
          : { finished_at: new Date() }),
      }),
    )
    .execute();
  await notifyChange(deps.db, input.runId, 'stage');
}

export async function recordApproval(
  deps: Deps,
  input: { runId: string; decision: 'approve' | 'reject' | 'override' | 'expired'; approver?: string; comment?: string },
): Promise<void> {
  await deps.db
    .insertInto('approvals')
    .values({ run_id: input.runId, decision: input.decision, approver: input.approver ?? null, comment: input.comment ?? null })
    .execute();
  await notifyChange(deps.db, input.runId, 'approval');
}
