/**
 * The check behind triggered retrains (workflows/src/retrain.ts): is there enough new data under the watched
 * S3 prefix, or enough new feedback on the served model, since the last retrain this trigger started?
 *
 * What a trigger last acted on lives in `retrain_triggers`: the prefix's listing (key → etag and size) and the
 * newest feedback ids. The first check records them as a baseline and starts nothing; later checks count the
 * objects that are new or changed and the feedback rows that are newer, and when a threshold of the spec
 * passes, claim the change in one transaction: the new state, the run's row (requested by `trigger:<id>`),
 * its first log line with the reason, and an audit row. The workflow then starts the run.
 */
import { createHash } from 'node:crypto';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { type Db, recordLogs, sql } from '@tempered/db';
import { type PipelineSpec, validateSpec } from '@tempered/spec';
import { isTerminalRunStatus, type RetrainCheckInput, type RetrainCheckResult } from '@tempered/contract';
import { badInput, type Deps } from './context';

/** More objects than this under one watched prefix is a prefix too wide to compare object by object. */
const MAX_OBJECTS = 10_000;
/** Data files appended to a retrain's sources at most. */
const MAX_SOURCES = 1_000;
/** What a retrain takes for data: JSONL and CSV (gzip or zstd too) and Parquet; never .txt, as often notes as data. */
const DATA_FILE = /\.((jsonl|csv)(\.(gz|zst))?|parquet)$/i;

type Listing = Record<string, string>;

/**
 * The key prefix of a watched `s3://` prefix, refused unless it lies under the artifact prefix and outside
 * the content-addressed `artifacts/` area (which every run writes to: watching it would retrain forever).
 */
export function watchedKeyPrefix(deps: Pick<Deps, 'store'>, uri: string): string {
  let key: string;
  try {
    key = deps.store.keyOf(uri);
  } catch (err) {
    throw badInput(`retrain.watch.prefix: ${(err as Error).message}`);
  }
  if (uri.endsWith('/') && !key.endsWith('/')) key += '/';
  const own = `${deps.store.prefix}artifacts/`;
  if (own.startsWith(key) || key.startsWith(own)) {
    throw badInput(`retrain.watch.prefix: ${uri} covers the platform's own artifacts (${deps.store.uriOf(own)}), which every run writes; watch a folder of inputs instead`);
  }
  return key;
}

async function listPrefix(deps: Deps, uri: string): Promise<Listing> {
  const prefix = watchedKeyPrefix(deps, uri);
  const listing: Listing = {};
  let token: string | undefined;
  let count = 0;
  do {
    const page = await deps.store.client.send(new ListObjectsV2Command({ Bucket: deps.store.bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) {
      if (!o.Key || o.Key.endsWith('/')) continue; // folder markers
      if (++count > MAX_OBJECTS) throw badInput(`retrain.watch.prefix: more than ${MAX_OBJECTS} objects under ${uri}; watch a narrower prefix`);
      listing[o.Key] = `${(o.ETag ?? '').replace(/"/g, '')}:${o.Size ?? 0}`;
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return listing;
}

function digestOf(listing: Listing): string {
  const lines = Object.keys(listing).sort().map((k) => `${k}\t${listing[k]}`);
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

/** Keys that are new, or whose etag or size changed, since `before`. */
function changedKeys(before: Listing, now: Listing): string[] {
  return Object.keys(now).filter((k) => before[k] !== now[k]).sort();
}

/** The gateway's feedback tables come with its migration; without them there is simply no feedback. */
async function feedbackTablesExist(db: Db): Promise<boolean> {
  const { rows } = await sql<{ ok: boolean }>`
    select to_regclass('feedback_ratings') is not null and to_regclass('feedback_pairwise') is not null as ok`.execute(db);
  return rows[0]?.ok === true;
}

/** Feedback on `model` newer than the given ids, and the newest ids of both tables (of any model). */
async function feedbackSince(db: Db, model: string, ratingsAfter: number, pairwiseAfter: number) {
  const { rows } = await sql<{ ratings: number; pairwise: number; max_rating: number; max_pairwise: number }>`
    select
      (select count(*) from feedback_ratings where model_name = ${model} and id > ${ratingsAfter})::int as ratings,
      (select count(*) from feedback_pairwise where model_name = ${model} and id > ${pairwiseAfter})::int as pairwise,
      (select coalesce(max(id), 0) from feedback_ratings)::bigint as max_rating,
      (select coalesce(max(id), 0) from feedback_pairwise)::bigint as max_pairwise`.execute(db);
  const r = rows[0];
  return { count: r.ratings + r.pairwise, maxRating: Number(r.max_rating), maxPairwise: Number(r.max_pairwise) };
}

/** The retrain's spec: the pipeline's, with the watched prefix's data files after its own sources. */
function runSpec(deps: Deps, spec: PipelineSpec, listing: Listing | undefined): PipelineSpec {
  if (!listing || spec.retrain?.watch?.sources !== 'append') return spec;
  const own = new Set(spec.data.sources.map((s) => s.uri));
  const added = Object.keys(listing)
    .filter((k) => DATA_FILE.test(k))
    .sort()
    .map((k) => deps.store.uriOf(k))
    .filter((uri) => !own.has(uri));
  if (added.length > MAX_SOURCES) throw badInput(`retrain.watch: ${added.length} data files under ${spec.retrain.watch.prefix}, more than ${MAX_SOURCES} sources; set sources: none and combine them`);
  try {
    return validateSpec({ ...spec, data: { ...spec.data, sources: [...spec.data.sources, ...added.map((uri) => ({ uri, encoding: 'utf-8' }))] } });
  } catch (err) {
    throw badInput(`retrain.watch: the retrain's spec with the new sources is invalid: ${(err as Error).message}`);
  }
}

export async function retrainCheck(deps: Deps, input: RetrainCheckInput): Promise<RetrainCheckResult> {
  const { db } = deps;
  const { triggerId, runId, spec } = input;
  const watch = spec.retrain?.watch;
  const feedback = spec.retrain?.feedback;
  if (!watch && !feedback) throw badInput('retrain: a trigger needs retrain.watch or retrain.feedback in the spec');

  // A retried attempt whose predecessor already claimed the change for this run answers the same again.
  const prior = await db.selectFrom('retrain_triggers').select(['last_run_id', 'last_reason']).where('id', '=', triggerId).executeTakeFirst();
  if (prior?.last_run_id === runId) {
    const run = await db.selectFrom('runs').select('spec').where('id', '=', runId).executeTakeFirstOrThrow();
    return { decision: 'start', reason: prior.last_reason ?? '', runId, spec: run.spec as PipelineSpec };
  }

  const listing = watch ? await listPrefix(deps, watch.prefix) : undefined;
  const model = feedback?.model ?? spec.name;
  const haveFeedback = feedback ? await feedbackTablesExist(db) : false;

  return db.transaction().execute(async (trx) => {
    // One check at a time per trigger: the row lock orders a manual trigger against the scheduled one.
    const state = await trx.selectFrom('retrain_triggers').selectAll().where('id', '=', triggerId).forUpdate().executeTakeFirst();
    const fb = haveFeedback ? await feedbackSince(trx, model, state?.last_feedback_id ?? 0, state?.last_pairwise_id ?? 0) : undefined;
    const now = new Date();

    if (!state) {
      const reason =
        `first check: recorded ${listing ? `${Object.keys(listing).length} object(s) under ${watch!.prefix}` : 'no watched prefix'}` +
        `${feedback ? (fb ? ` and feedback up to rating #${fb.maxRating} and preference #${fb.maxPairwise}` : ' (no feedback tables yet)') : ''} as the baseline; later checks count what is new`;
      await trx
        .insertInto('retrain_triggers')
        .values({
          id: triggerId,
          pipeline: spec.name,
          last_listing_digest: listing ? digestOf(listing) : null,
          last_listing: listing ? JSON.stringify(listing) : null,
          last_feedback_id: fb?.maxRating ?? 0,
          last_pairwise_id: fb?.maxPairwise ?? 0,
          last_checked_at: now,
          last_check: reason,
        })
        .execute();
      return { decision: 'baseline' as const, reason };
    }

    const changed = listing ? changedKeys((state.last_listing as Listing | null) ?? {}, listing) : [];
    const newFeedback = fb?.count ?? 0;
    const parts: string[] = [];
    if (watch) parts.push(`${changed.length} new or changed object(s) under ${watch.prefix} (threshold ${watch.minNewObjects})`);
    if (feedback) parts.push(fb ? `${newFeedback} new feedback on ${model} (threshold ${feedback.minNew})` : `no feedback tables yet (threshold ${feedback.minNew})`);
    const passed = (watch !== undefined && changed.length >= watch.minNewObjects) || (feedback !== undefined && newFeedback >= feedback.minNew);
    const noted = async (decision: 'unchanged' | 'below-threshold' | 'busy', reason: string) => {
      await trx.updateTable('retrain_triggers').set({ last_checked_at: now, last_check: reason }).where('id', '=', triggerId).execute();
      return { decision, reason };
    };
    if (!passed) return noted(changed.length === 0 && newFeedback === 0 ? 'unchanged' : 'below-threshold', parts.join('; '));

    if (input.overlap === 'SKIP' && state.last_run_id) {
      const last = await trx.selectFrom('runs').select('status').where('id', '=', state.last_run_id).executeTakeFirst();
      // Every status but the terminal ones (a canary still rolling out included): overlap SKIP waits for them.
      if (last && !isTerminalRunStatus(last.status)) {
        return noted('busy', `${parts.join('; ')}; waiting: the previous retrain ${state.last_run_id} is still ${last.status} (overlap SKIP)`);
      }
    }

    const reason = `retrain triggered by ${triggerId}: ${parts.join('; ')}${changed.length ? `; new: ${changed.slice(0, 5).map((k) => deps.store.uriOf(k)).join(', ')}${changed.length > 5 ? ', …' : ''}` : ''}`;
    const retrainSpec = runSpec(deps, spec, listing);
    await trx
      .updateTable('retrain_triggers')
      .set({
        ...(listing ? { last_listing_digest: digestOf(listing), last_listing: JSON.stringify(listing) } : {}),
        ...(fb ? { last_feedback_id: fb.maxRating, last_pairwise_id: fb.maxPairwise } : {}),
        last_run_id: runId,
        last_reason: reason,
        generation: sql`generation + 1`,
        last_checked_at: now,
        last_check: reason,
        updated_at: now,
      })
      .where('id', '=', triggerId)
      .execute();
    // The run's row now, not at the workflow's first bookkeeping call, so the reason is its first log line.
    await trx
      .insertInto('runs')
      .values({ id: runId, name: retrainSpec.name, spec: JSON.stringify(retrainSpec), status: 'queued', requested_by: input.requestedBy })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    await recordLogs(trx, runId, 'trigger', [reason]);
    await trx
      .insertInto('audit_log')
      .values({
        actor: input.requestedBy,
        action: 'retrain.trigger',
        target: `run:${runId}`,
        comment: reason,
        details: JSON.stringify({ trigger: triggerId, newObjects: changed.length, newFeedback, listingDigest: listing ? digestOf(listing) : null }),
      })
      .execute();
    return { decision: 'start' as const, reason, runId, spec: retrainSpec };
  });
}
