/**
 * Schedules: a pipeline on a clock, as a Temporal Schedule per pipeline. In run mode every action starts a
 * `lifecyclePipeline` run (requested by `schedule:<id>`, with its creator as the person responsible, who may
 * not approve it; the run's row appears with its first bookkeeping
 * call); in trigger mode every action starts a `retrainTrigger` check, which starts a run only when the spec's
 * `retrain.watch` or `retrain.feedback` threshold passes (requested by `trigger:<id>`); in eval mode every action
 * starts an `evaluateModel` of the spec's test suites on the version serving its name (drift; requested by
 * `eval-schedule:<id>`, listed by GET /api/evaluations).
 *
 * Temporal holds the schedules (timing, paused state, recent and next actions); the memo keeps what Temporal
 * does not echo back as written (the cron text, the interval, who created it and why). Operators and admins
 * manage them; everyone reads. Every change goes to the audit log with the caller's comment.
 */
import {
  type Client,
  ScheduleAlreadyRunning,
  type ScheduleDescription,
  type ScheduleExecutionResult,
  ScheduleNotFoundError,
  type ScheduleOptions,
} from '@temporalio/client';
import {
  backfilledResponse,
  backfillScheduleRequest,
  createScheduleRequest,
  deletedResponse,
  type ScheduleDetail,
  scheduleDetail,
  type ScheduleInfo,
  type ScheduleMode,
  type ScheduleOverlap,
  scheduleCommentRequest,
  schedulesResponse,
  triggeredResponse,
  type TriggerState,
  triggerScheduleRequest,
} from '@tempered/api-contract';
import type { ArtifactStore } from '@tempered/artifacts';
import type { Limits } from '@tempered/config';
import type { Db } from '@tempered/db';
import type { EvaluationInput, PipelineInput, RetrainTriggerInput } from '@tempered/contract';
import { durationMs, durationText } from '@tempered/spec';
import { CONTROL_TASK_QUEUE, EVALUATE_WORKFLOW_TYPE, RETRAIN_WORKFLOW_TYPE, WORKFLOW_TYPE } from '@tempered/workflows';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import { badField, HttpError, idParam, route } from '../http';
import { takeSpec } from '../intake';

/** What Tempered keeps in a schedule's memo; its presence marks a schedule as one of ours. */
interface ScheduleMemo {
  pipeline: string;
  mode: ScheduleMode;
  cron: string | null;
  every: string | null;
  overlap: ScheduleOverlap;
  createdBy: string;
  comment: string | null;
}

const badRequest = badField;

/** The same rule as the trigger's activity: under the artifact prefix, outside the platform's own artifacts/. */
function checkWatchedPrefix(store: ArtifactStore, uri: string): void {
  let key: string;
  try {
    key = store.keyOf(uri);
  } catch (err) {
    throw badRequest('retrain.watch.prefix', (err as Error).message);
  }
  if (uri.endsWith('/') && !key.endsWith('/')) key += '/';
  const own = `${store.prefix}artifacts/`;
  if (own.startsWith(key) || key.startsWith(own)) {
    throw badRequest('retrain.watch.prefix', `covers the platform's own artifacts (${store.uriOf(own)}), which every run writes; watch a folder of inputs instead`);
  }
}

const iso = (d: Date | undefined | null) => (d ? d.toISOString() : null);

function actionOf(a: ScheduleExecutionResult) {
  return { scheduledAt: a.scheduledAt.toISOString(), takenAt: a.takenAt.toISOString(), workflowId: a.action.workflow.workflowId };
}

function memoOf(d: { memo?: Record<string, unknown> }): ScheduleMemo | undefined {
  const m = d.memo?.tempered as ScheduleMemo | undefined;
  return m && typeof m === 'object' && typeof m.pipeline === 'string' ? m : undefined;
}

function infoOf(id: string, d: ScheduleDescription, memo: ScheduleMemo): ScheduleInfo {
  return {
    id,
    pipeline: memo.pipeline,
    mode: memo.mode,
    cron: memo.cron,
    every: memo.every,
    overlap: memo.overlap,
    paused: d.state.paused,
    note: d.state.note || null,
    createdBy: memo.createdBy,
    comment: memo.comment,
    nextActionTimes: d.info.nextActionTimes.map((t) => t.toISOString()),
    recentActions: d.info.recentActions.map(actionOf),
  };
}

async function triggerState(db: Db, id: string): Promise<TriggerState | undefined> {
  const row = await db.selectFrom('retrain_triggers').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) return undefined;
  return {
    lastCheckedAt: iso(row.last_checked_at),
    lastCheck: row.last_check,
    lastRunId: row.last_run_id,
    lastReason: row.last_reason,
    since: row.updated_at.toISOString(),
    watchedObjects: row.last_listing ? Object.keys(row.last_listing as object).length : null,
  };
}

/** One of our schedules, described; 404 for an unknown id or a schedule Tempered did not create. */
async function describeOurs(temporal: Client, id: string): Promise<{ d: ScheduleDescription; memo: ScheduleMemo }> {
  let d: ScheduleDescription;
  try {
    d = await temporal.schedule.getHandle(id).describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new HttpError(404, `no schedule ${id}; GET /api/schedules lists them`);
    throw err;
  }
  const memo = memoOf(d);
  if (!memo) throw new HttpError(404, `no schedule ${id}; GET /api/schedules lists them`);
  return { d, memo };
}

async function detailOf(deps: { temporal: Client; db: Db }, id: string): Promise<ScheduleDetail> {
  const { d, memo } = await describeOurs(deps.temporal, id);
  const args = (d.action.args ?? []) as Array<{ spec?: Record<string, unknown> }>;
  const trigger = memo.mode === 'trigger' ? await triggerState(deps.db, id) : undefined;
  return {
    ...infoOf(id, d, memo),
    spec: args[0]?.spec ?? {},
    actionsTaken: d.info.numActionsTaken,
    skippedOverlap: d.info.numActionsSkippedOverlap,
    missedCatchupWindow: d.info.numActionsMissedCatchupWindow,
    running: d.info.runningActions.map((a) => a.workflow.workflowId),
    createdAt: d.info.createdAt.toISOString(),
    updatedAt: iso(d.info.lastUpdatedAt),
    ...(trigger ? { trigger } : {}),
  };
}

/**
 * Temporal refuses what it cannot schedule (a cron field out of range) with INVALID_ARGUMENT, which the SDK
 * turns into a TypeError for a bad schedule spec and a ServiceError with the gRPC cause otherwise.
 */
function temporalRefusal(err: unknown, field: string): never {
  if (err instanceof TypeError) throw badRequest(field, err.message);
  const e = err as { message?: string; cause?: { code?: number; details?: string } };
  if (e?.cause?.code === 3) throw badRequest(field, e.cause.details ?? e.message ?? 'refused by Temporal');
  throw err;
}

/** Overlap policies under which a schedule's runs pile up: ALLOW_ALL starts each at once, BUFFER_ALL queues each. */
const STACKING: readonly ScheduleOverlap[] = ['ALLOW_ALL', 'BUFFER_ALL'];

/**
 * The shortest time between two actions of a schedule: its interval, or for a cron schedule the shortest
 * gap between the next action times Temporal computed (its own reading of the expression, so no second
 * cron parser can disagree with it); undefined when Temporal lists fewer than two.
 */
function shortestGapMs(d: ScheduleDescription, every: string | null): number | undefined {
  if (every) return durationMs(every);
  const times = d.info.nextActionTimes.map((t) => t.getTime());
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  return gaps.length > 0 ? Math.min(...gaps) : undefined;
}

/** A 400 for timing that would start runs faster than `limits` let them pile up; undefined when it is within them. */
function stackingRefusal(gapMs: number | undefined, overlap: ScheduleOverlap, field: string, limits: Limits): HttpError | undefined {
  if (!STACKING.includes(overlap) || gapMs === undefined || gapMs >= limits.minStackingIntervalMs) return undefined;
  return badRequest(field, `with overlap ${overlap} at least ${durationText(limits.minStackingIntervalMs)} between runs (this starts one every ${durationText(gapMs)}, faster than runs end); give a longer interval, or overlap SKIP or BUFFER_ONE`);
}

const withComment = (what: string, who: string, comment: string | undefined) => `${what} by ${who}${comment ? `: ${comment}` : ''}`;

const commentQuery = z.object({ comment: z.string().optional() });

export function scheduleRoutes(app: FastifyInstance, { cfg, db, temporal, store }: ApiDeps): void {
  const handleOf = (id: string) => temporal.schedule.getHandle(id);

  route(app, {
      method: 'GET', url: '/api/schedules', action: 'read', summary: 'List schedules (timing, paused state, next and recent actions)', response: { 200: schedulesResponse },
      async handler() {
        // Temporal lists schedules from its visibility store (eventually consistent); describing each gives
        // the current paused state and actions.
        const ids: string[] = [];
        for await (const s of temporal.schedule.list()) if (memoOf(s)) ids.push(s.scheduleId);
        const described = await Promise.all(
          ids.map((id) => describeOurs(temporal, id).then(({ d, memo }) => infoOf(id, d, memo), () => undefined)),
        );
        const schedules = described.filter((s): s is ScheduleInfo => s !== undefined).sort((a, b) => a.id.localeCompare(b.id));
        return { schedules };
      },
  });
  route(app, {
      method: 'POST', url: '/api/schedules', action: 'start',
      summary: 'Create a schedule ({id, spec | example, mode?, cron? | every?, overlap? (SKIP), paused?, comment?})',
      body: createScheduleRequest, response: { 201: scheduleDetail },
      async handler({ reply, who, body }) {
        const { spec, specDir, example } = await takeSpec(body, cfg);
        const retrain = spec.retrain;
        const mode: ScheduleMode = body.mode ?? (retrain?.watch || retrain?.feedback ? 'trigger' : 'run');
        if (mode === 'trigger') {
          if (!retrain?.watch && !retrain?.feedback) throw badRequest('mode', 'trigger mode needs retrain.watch or retrain.feedback in the spec');
          if (retrain.watch) checkWatchedPrefix(store, retrain.watch.prefix);
        }
        if (mode === 'eval' && !spec.test.suites?.length) throw badRequest('mode', 'eval mode runs the spec\'s test.suites on the serving version, and this spec has none');
        const fromSpec =
          mode === 'run' ? { cron: retrain?.schedule?.cron, every: retrain?.schedule?.every } : mode === 'trigger' ? { cron: undefined, every: retrain?.checkEvery } : { cron: undefined, every: undefined };
        const fromBody = body.cron !== undefined || body.every !== undefined;
        const timing = fromBody ? { cron: body.cron, every: body.every } : fromSpec;
        if (timing.cron === undefined && timing.every === undefined) {
          throw badRequest('every', mode === 'eval' ? 'give cron or every: how often to evaluate the serving version' : 'give cron or every (or retrain.schedule in the spec)');
        }
        const timingField = fromBody
          ? timing.cron !== undefined ? 'cron' : 'every'
          : mode === 'trigger' ? 'retrain.checkEvery' : timing.cron !== undefined ? 'retrain.schedule.cron' : 'retrain.schedule.every';
        const tooOften = timing.every !== undefined ? stackingRefusal(durationMs(timing.every), body.overlap, timingField, cfg.limits) : undefined;
        if (tooOften) throw tooOften;
        // A cron schedule's shortest gap is Temporal's to compute: create it paused, look, then let it go.
        const vetCron = timing.cron !== undefined && STACKING.includes(body.overlap);

        const requestedBy = `${{ run: 'schedule', trigger: 'trigger', eval: 'eval-schedule' }[mode]}:${body.id}`;
        const memo: ScheduleMemo = {
          pipeline: spec.name, mode, cron: timing.cron ?? null, every: timing.every ?? null, overlap: body.overlap, createdBy: who.user, comment: body.comment ?? null,
        };
        const scheduleSpec = timing.cron !== undefined ? { cronExpressions: [timing.cron] } : { intervals: [{ every: timing.every! }] };
        const action: ScheduleOptions['action'] =
          mode === 'run'
            ? {
                type: 'startWorkflow',
                workflowType: WORKFLOW_TYPE,
                taskQueue: CONTROL_TASK_QUEUE,
                // Temporal appends the action's time: <id>-2030-01-01T03:00:00Z.
                workflowId: body.id,
                // The schedule's creator stands behind its runs: the four-eyes rule applies to them.
                args: [{ spec, specDir, requestedBy, responsible: who.user } satisfies PipelineInput],
              }
            : mode === 'eval'
              ? {
                  type: 'startWorkflow',
                  workflowType: EVALUATE_WORKFLOW_TYPE,
                  taskQueue: CONTROL_TASK_QUEUE,
                  workflowId: `${body.id}-eval`,
                  args: [{ spec, specDir, requestedBy } satisfies EvaluationInput],
                  // An evaluation whose eval pool is unserved must not hold the schedule (overlap SKIP) for ever.
                  workflowExecutionTimeout: '12h',
                }
              : {
                type: 'startWorkflow',
                workflowType: RETRAIN_WORKFLOW_TYPE,
                taskQueue: CONTROL_TASK_QUEUE,
                workflowId: `${body.id}-check`,
                args: [{ triggerId: body.id, spec, specDir, requestedBy, responsible: who.user, overlap: body.overlap } satisfies RetrainTriggerInput],
                // A check takes seconds; one stuck (its pool unserved) must not block the schedule for ever.
                workflowExecutionTimeout: '1h',
              };
        try {
          await temporal.schedule.create({
            scheduleId: body.id,
            spec: scheduleSpec,
            action,
            // Checks never overlap (the trigger applies the overlap policy to the runs it starts).
            policies: { overlap: mode === 'run' ? body.overlap : 'SKIP', catchupWindow: '1d' },
            memo: { tempered: memo },
            state: {
              paused: body.paused || vetCron,
              note: withComment(body.paused ? 'created paused' : 'created', who.user, body.comment),
              // A trigger records its baseline at once, so data arriving before its first tick counts as new.
              triggerImmediately: mode === 'trigger' && !body.paused,
            },
          });
        } catch (err) {
          if (err instanceof ScheduleAlreadyRunning) throw new HttpError(409, `schedule ${body.id} exists; delete it first or choose another id`, { issues: [{ path: 'id', message: 'already exists' }] });
          temporalRefusal(err, timing.cron !== undefined ? 'cron' : 'every');
        }
        if (vetCron) {
          const refusal = stackingRefusal(shortestGapMs(await handleOf(body.id).describe(), null), body.overlap, timingField, cfg.limits);
          if (refusal) {
            await handleOf(body.id).delete();
            throw refusal;
          }
          if (!body.paused) await handleOf(body.id).unpause(withComment('created', who.user, body.comment));
        }
        await audit(db, {
          actor: who.user, action: 'schedule.create', target: `schedule:${body.id}`, comment: body.comment,
          details: { pipeline: spec.name, mode, cron: memo.cron, every: memo.every, overlap: body.overlap, paused: body.paused, ...(example ? { example } : {}) },
        });
        reply.code(201);
        return detailOf({ temporal, db }, body.id);
      },
  });
  route(app, {
      method: 'GET', url: '/api/schedules/:id', action: 'read',
      summary: 'Describe a schedule (timing, paused state and note, next and recent actions, trigger state)', params: idParam, response: { 200: scheduleDetail },
      handler: async ({ params: { id } }) => detailOf({ temporal, db }, id),
  });
  route(app, {
      method: 'POST', url: '/api/schedules/:id/pause', action: 'start', summary: 'Pause a schedule (no actions until resumed)',
      params: idParam, body: scheduleCommentRequest, response: { 200: scheduleDetail },
      async handler({ params: { id }, who, body }) {
        await describeOurs(temporal, id);
        await handleOf(id).pause(withComment('paused', who.user, body.comment));
        await audit(db, { actor: who.user, action: 'schedule.pause', target: `schedule:${id}`, comment: body.comment });
        return await detailOf({ temporal, db }, id);
      },
  });
  route(app, {
      method: 'POST', url: '/api/schedules/:id/resume', action: 'start', summary: 'Resume a schedule (missed times are not taken: backfill them)',
      params: idParam, body: scheduleCommentRequest, response: { 200: scheduleDetail },
      async handler({ params: { id }, who, body }) {
        await describeOurs(temporal, id);
        await handleOf(id).unpause(withComment('resumed', who.user, body.comment));
        await audit(db, { actor: who.user, action: 'schedule.resume', target: `schedule:${id}`, comment: body.comment });
        return await detailOf({ temporal, db }, id);
      },
  });
  route(app, {
      method: 'POST', url: '/api/schedules/:id/trigger', action: 'start',
      summary: 'Trigger a schedule now, paused or not ({comment?, overlap? (ALLOW_ALL)})', params: idParam, body: triggerScheduleRequest, response: { 200: triggeredResponse },
      async handler({ params: { id }, who, body }) {
        await describeOurs(temporal, id);
        await handleOf(id).trigger(body.overlap);
        await audit(db, { actor: who.user, action: 'schedule.trigger', target: `schedule:${id}`, comment: body.comment, details: { overlap: body.overlap } });
        return { triggered: true };
      },
  });
  route(app, {
      method: 'POST', url: '/api/schedules/:id/backfill', action: 'start',
      summary: 'Backfill a schedule: take now the actions of a past window ({from, to (ISO 8601), overlap? (ALLOW_ALL), comment?})', params: idParam, body: backfillScheduleRequest, response: { 200: backfilledResponse },
      async handler({ params: { id }, who, body }) {
        const { d, memo } = await describeOurs(temporal, id);
        const window = { start: new Date(body.from), end: new Date(body.to), overlap: body.overlap };
        const spanMs = window.end.getTime() - window.start.getTime();
        if (spanMs > cfg.limits.maxBackfillDays * 86_400_000) throw badRequest('to', `a backfill covers at most ${cfg.limits.maxBackfillDays} days`);
        // Under SKIP or BUFFER_ONE a backfill starts one run (and queues one); otherwise one per action in the window.
        const gap = STACKING.includes(body.overlap) ? shortestGapMs(d, memo.every) : undefined;
        const actions = gap ? Math.floor(spanMs / gap) : 0;
        if (actions > cfg.limits.maxBackfillActions) {
          throw badRequest('from', `this window holds about ${actions} actions of the schedule; a backfill with overlap ${body.overlap} starts at most ${cfg.limits.maxBackfillActions}: shorten the window, or use overlap SKIP or BUFFER_ONE`);
        }
        try {
          await handleOf(id).backfill(window);
        } catch (err) {
          temporalRefusal(err, 'from');
        }
        await audit(db, {
          actor: who.user, action: 'schedule.backfill', target: `schedule:${id}`, comment: body.comment,
          details: { from: window.start.toISOString(), to: window.end.toISOString(), overlap: body.overlap },
        });
        return { backfilled: true, from: window.start.toISOString(), to: window.end.toISOString(), overlap: body.overlap };
      },
  });
  route(app, {
      method: 'DELETE', url: '/api/schedules/:id', action: 'start', summary: 'Delete a schedule (runs it started go on; a trigger forgets its state); ?comment=',
      params: idParam, querystring: commentQuery, response: { 200: deletedResponse },
      async handler({ params: { id }, query, who }) {
        await describeOurs(temporal, id);
        await handleOf(id).delete();
        await db.deleteFrom('retrain_triggers').where('id', '=', id).execute();
        const comment = query.comment?.slice(0, 2000) || undefined;
        await audit(db, { actor: who.user, action: 'schedule.delete', target: `schedule:${id}`, comment });
        return { deleted: true };
      },
  });
}
