/**
 * Read models shared by the routes and the event streams: a run's full detail, its live part (status,
 * stages, gate), new metric points and log lines since a cursor, and label progress. Postgres is the
 * source; Temporal's `progress` query adds what only the running workflow knows (gate deadline, waiting
 * states).
 */
import type { Client } from '@temporalio/client';
import type { ANSWER_FILTERS, ArtifactInfo, LabelProgress, LogLine, MetricPoint } from '@tempered/api-contract';
import { type Db, sql } from '@tempered/db';
import type { JudgeVerdict, PipelineProgress, TestAnswer } from '@tempered/contract';
import { progressQuery } from '@tempered/workflows';

export interface Views {
  db: Db;
  temporal: Client;
}

export const downloadUrl = (id: number) => `/api/artifacts/${id}`;

export async function progressOf(temporal: Client, runId: string): Promise<PipelineProgress | undefined> {
  try {
    return await temporal.workflow.getHandle(runId).query(progressQuery);
  } catch {
    return undefined; // gone from Temporal's retention, or not started yet: the database suffices
  }
}

export async function runLive({ db, temporal }: Views, runId: string) {
  const run = await db.selectFrom('runs').selectAll().where('id', '=', runId).executeTakeFirst();
  if (!run) return undefined;
  const [stages, progress] = await Promise.all([
    db.selectFrom('stages').selectAll().where('run_id', '=', runId).execute(),
    progressOf(temporal, runId),
  ]);
  return { run, stages, gate: progress?.gate, progress: progress?.stages };
}

export async function artifactsOf(db: Db, runId: string): Promise<ArtifactInfo[]> {
  const rows = await db.selectFrom('artifacts').select(['id', 'stage', 'uri', 'sha256', 'bytes', 'kind']).where('run_id', '=', runId).orderBy('id').execute();
  return rows.map((r) => ({ ...r, download: downloadUrl(r.id) }));
}

export async function labelProgress(db: Db, runId: string): Promise<LabelProgress | undefined> {
  const run = await db.selectFrom('runs').select('spec').where('id', '=', runId).executeTakeFirst();
  const rlhf = (run?.spec as { rlhf?: { source?: string; labels?: { required?: number } } } | undefined)?.rlhf;
  if (rlhf?.source !== 'labels') return undefined;
  const counts = await db
    .selectFrom('preference_pairs')
    .select([sql<number>`count(*)::int`.as('pairs'), sql<number>`count(label)::int`.as('labeled')])
    .where('run_id', '=', runId)
    .executeTakeFirstOrThrow();
  const wanted = rlhf.labels?.required ?? 20;
  return { required: counts.pairs > 0 ? Math.min(wanted, counts.pairs) : wanted, labeled: counts.labeled, pairs: counts.pairs };
}

/**
 * Metric points recorded after `since`. The cursor is Postgres' own text form of the newest timestamp: a JS
 * Date keeps milliseconds only, and points written within the same millisecond would be sent twice.
 */
export async function metricsSince(db: Db, runId: string, since: string | undefined): Promise<{ points: MetricPoint[]; cursor: string | undefined }> {
  let q = db
    .selectFrom('metrics')
    .select(['stage', 'name', 'step', 'value', sql<string>`recorded_at::text`.as('at')])
    .where('run_id', '=', runId);
  if (since) q = q.where('recorded_at', '>', sql<Date>`${since}::timestamptz`);
  const rows = await q.orderBy('recorded_at').orderBy('step').execute();
  const cursor = rows.length > 0 ? rows[rows.length - 1].at : since;
  return { points: rows.map(({ stage, name, step, value }) => ({ stage, name, step, value })).sort((a, b) => a.step - b.step), cursor };
}

export async function logsAfter(db: Db, runId: string, after: number, limit = 500): Promise<LogLine[]> {
  if (after > 0) {
    const rows = await db.selectFrom('run_logs').select(['id', 'stage', 'at', 'line']).where('run_id', '=', runId).where('id', '>', after).orderBy('id').limit(limit).execute();
    return rows.map((r) => ({ ...r, at: r.at.toISOString() }));
  }
  // The tail: the newest lines, oldest first.
  const rows = await db.selectFrom('run_logs').select(['id', 'stage', 'at', 'line']).where('run_id', '=', runId).orderBy('id', 'desc').limit(limit).execute();
  return rows.reverse().map((r) => ({ ...r, at: r.at.toISOString() }));
}

type AnswerFilter = (typeof ANSWER_FILTERS)[number];

/**
 * A run's test answers (the test stage's test_answers rows) that a filter keeps, in test order: the held-out split's,
 * or with `suite` that suite's.
 */
export async function answersOf(db: Db, runId: string, filter: AnswerFilter, skip = 0, limit = 50, suite?: string): Promise<TestAnswer[]> {
  let q = db.selectFrom('test_answers').selectAll().where('run_id', '=', runId);
  // all / wrong / newly-wrong are the held-out split's unless a suite is named; the other two are the suites' (only
  // they have judges and safety), all of them or the named one's.
  if (suite !== undefined) q = q.where('suite', '=', suite);
  else if (filter === 'all' || filter === 'wrong' || filter === 'newly-wrong') q = q.where('suite', 'is', null);
  if (filter === 'wrong') q = q.where('correct', '=', false);
  if (filter === 'newly-wrong') q = q.where('correct', '=', false).where('champion_correct', '=', true);
  if (filter === 'judge-disagreed') q = q.where(sql<boolean>`(judge->>'disagreed')::boolean`);
  if (filter === 'unsafe') q = q.where('unsafe', '=', true);
  const rows = await q.orderBy('idx').offset(skip).limit(limit).execute();
  return rows.map((r) => ({
    key: r.key,
    prompt: r.prompt,
    reference: r.reference,
    answer: r.answer,
    correct: r.correct,
    baselineAnswer: r.baseline_answer,
    ...(r.label !== null || r.reference_label !== null ? { label: r.label, referenceLabel: r.reference_label } : {}),
    ...(r.champion_answer !== null ? { championAnswer: r.champion_answer, championCorrect: r.champion_correct ?? false } : {}),
    ...(r.suite !== null ? { suite: r.suite } : {}),
    ...(r.judge !== null ? { judge: r.judge as JudgeVerdict } : {}),
    ...(r.unsafe !== null ? { unsafe: r.unsafe } : {}),
  }));
}

/** How many of a run's test answers each filter keeps (with `suite`, of that suite's answers). */
export async function answerCounts(db: Db, runId: string, suite?: string): Promise<Record<AnswerFilter, number>> {
  const scope = suite === undefined ? sql`suite is null` : sql`true`;
  let q = db
    .selectFrom('test_answers')
    .select([
      sql<number>`(count(*) filter (where ${scope}))::int`.as('all'),
      sql<number>`(count(*) filter (where ${scope} and not correct))::int`.as('wrong'),
      sql<number>`(count(*) filter (where ${scope} and not correct and champion_correct))::int`.as('newly'),
      sql<number>`(count(*) filter (where (judge->>'disagreed')::boolean))::int`.as('disagreed'),
      sql<number>`(count(*) filter (where unsafe))::int`.as('unsafe'),
    ])
    .where('run_id', '=', runId);
  if (suite !== undefined) q = q.where('suite', '=', suite);
  const row = await q.executeTakeFirstOrThrow();
  return { all: row.all, wrong: row.wrong, 'newly-wrong': row.newly, 'judge-disagreed': row.disagreed, unsafe: row.unsafe };
}

export async function approvalsOf(db: Db, runId: string) {
  return db.selectFrom('approvals').selectAll().where('run_id', '=', runId).orderBy('id').execute();
}

/** A run's full detail as the database has it (Dates and all); the routes and streams encode it with the `runDetail` schema. */
export async function runDetail(views: Views, runId: string) {
  const { db } = views;
  const live = await runLive(views, runId);
  if (!live) return undefined;
  const [artifacts, approvals, metrics, modelVersion, deployment, labels] = await Promise.all([
    artifactsOf(db, runId),
    approvalsOf(db, runId),
    metricsSince(db, runId, undefined),
    db.selectFrom('model_versions').selectAll().where('run_id', '=', runId).executeTakeFirst(),
    db.selectFrom('deployments').selectAll().where('run_id', '=', runId).orderBy('created_at', 'desc').executeTakeFirst(),
    labelProgress(db, runId),
  ]);
  const ingest = live.stages.find((s) => s.name === 'ingest')?.summary as { datasetVersionId?: string } | null | undefined;
  const datasetVersion = ingest?.datasetVersionId
    ? await db.selectFrom('dataset_versions').selectAll().where('id', '=', ingest.datasetVersionId).executeTakeFirst()
    : undefined;
  const series: Record<string, Array<[number, number]>> = {};
  for (const m of metrics.points) (series[`${m.stage}.${m.name}`] ??= []).push([m.step, m.value]);
  return { ...live, artifacts, approvals, metrics: series, labels, datasetVersion, modelVersion, deployment };
}
