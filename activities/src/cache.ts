/**
 * The stage cache: a deterministic stage whose inputs, configuration and code have not changed since some
 * earlier run computed it reuses that run's result instead of computing it again. A retrain whose data did
 * not change therefore skips ingest, clean, tokenize and split, and (with the same spec) training and
 * validation too.
 *
 *   key = sha256(canonical JSON of { stage, code version, the stage's config, the digests of its inputs })
 *
 * What goes into `config` and `inputs` is chosen per stage, next to the stage's code (ingest.ts, clean.ts, …):
 * everything that can change the stage's output, and nothing else. The code versions live here, in one place.
 *
 * A result is stored (`stage_cache`) only after the stage succeeded. A hit is used only if every artifact it
 * references is still in the store with its recorded size; otherwise the stage runs and its new result
 * replaces the entry. On a hit the stage still does its bookkeeping for the current run (artifacts, lineage
 * edges, dataset version; the source run's metric series are copied), a `stage_cache_uses` row says which run
 * the result came from, and the run's log says so too.
 *
 * Turned off (neither read nor written) for a run whose spec says `cache: false`, on a worker started with
 * TEMPERED_STAGE_CACHE=off (`cfg.stageCache`), or per process with `deps.stageCache = false`.
 */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { sha256File } from '@tempered/artifacts';
import { recordLogs, recordMetrics, sql } from '@tempered/db';
import type { ArtifactRef } from '@tempered/contract';
import { type Deps, log } from './context';

/**
 * Bump a stage's version whenever its logic changes in a way that changes its output (a new cleaning rule, a
 * different shard layout, another export format, …): every cached result of the stage is then recomputed.
 * Stages that run the Python trainer also key on a digest of the trainer's sources and requirements
 * (`trainerDigest`), so a change there invalidates them without a bump here.
 */
export const STAGE_CODE_VERSIONS = {
  ingest: 1,
  clean: 2,
  tokenize: 1,
  split: 1,
  train: 1,
  validate: 1,
} as const;

export type CachedStageName = keyof typeof STAGE_CODE_VERSIONS;

/** Stages whose output is computed by the Python trainer. */
const TRAINER_STAGES: ReadonlySet<CachedStageName> = new Set(['tokenize', 'train', 'validate']);

/** Bumped if the layout of the key material itself changes. */
const KEY_FORMAT = 1;

export interface StageCacheRequest {
  runId: string;
  stage: CachedStageName;
  /** The run's spec: `cache: false` in it turns the cache off for the run (once the spec schema has the field). */
  spec: object;
  /** The spec settings (and derived values) that influence the stage's output; see each stage. */
  config: unknown;
  /** sha256 digests of everything the stage reads: artifacts, staged sources, a base model. */
  inputs: Record<string, string | string[]>;
  /**
   * The metric series the stage writes (`lr=0.003` for a sweep candidate; none for plain names). On a hit the
   * source run's points of that series are copied to this run, so its loss curves are there as if computed.
   */
  metrics?: { series?: string };
}

export interface StageCacheHooks<T> {
  /** Every artifact the value references: all must still exist for a hit to count. */
  artifacts(value: T): ArtifactRef[];
  /** The stage's bookkeeping for the current run (artifacts, lineage, …), done on a miss and on a hit alike. */
  record(value: T): Promise<void>;
}

export interface CacheOutcome<T> {
  value: T;
  /** Undefined when the cache is turned off. */
  key?: string;
  /** The run whose result was reused; set on a hit from another run only. */
  cachedFrom?: string;
}

/** What a stage adds to its result on a hit, for the workflow's summary (the result types do not declare it yet). */
export interface CacheMark {
  cached: true;
  cachedFrom: string;
  cacheKey: string;
}

/** Off for a run whose spec says `cache: false`; else as the deps say; else as the config says (TEMPERED_STAGE_CACHE). */
export function stageCacheEnabled(deps: Pick<Deps, 'stageCache'> & { cfg: Pick<Deps['cfg'], 'stageCache'> }, spec?: object): boolean {
  if (spec && (spec as { cache?: unknown }).cache === false) return false;
  return deps.stageCache ?? deps.cfg.stageCache;
}

/** JSON with object keys sorted at every level and `undefined` members dropped: one text per value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error(`cannot key a non-finite number (${value})`);
    return JSON.stringify(value ?? null);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** The material a key is the digest of (stored beside the entry, so a miss can be explained). */
export async function keyMaterial(deps: Deps, req: Pick<StageCacheRequest, 'stage' | 'config' | 'inputs'>): Promise<Record<string, unknown>> {
  return {
    format: KEY_FORMAT,
    stage: req.stage,
    code: STAGE_CODE_VERSIONS[req.stage],
    ...(TRAINER_STAGES.has(req.stage) ? { trainer: await trainerDigest(deps) } : {}),
    config: req.config ?? null,
    inputs: req.inputs,
  };
}

export function keyOf(material: Record<string, unknown>): string {
  return createHash('sha256').update(canonicalJson(material)).digest('hex');
}

/**
 * Runs `compute` unless a cached result with the same key exists and all of its artifacts are still in the
 * store. `hooks.record` runs either way, so the current run gets its artifacts and lineage.
 */
export async function cachedStage<T>(deps: Deps, req: StageCacheRequest, compute: () => Promise<T>, hooks: StageCacheHooks<T>): Promise<CacheOutcome<T>> {
  if (!stageCacheEnabled(deps, req.spec)) {
    const value = await compute();
    await hooks.record(value);
    return { value };
  }
  const material = await keyMaterial(deps, req);
  const key = keyOf(material);
  const { runId, stage } = req;
  const label = req.metrics?.series ? `${stage} (${req.metrics.series})` : stage;

  const entry = await deps.db.selectFrom('stage_cache').selectAll().where('key', '=', key).executeTakeFirst();
  if (entry && entry.stage === stage) {
    const value = entry.result as T;
    const missing = await missingArtifacts(deps, hooks.artifacts(value));
    if (missing.length === 0) {
      if (entry.run_id === runId) {
        // A retry of the attempt that stored this entry: the stage did compute it, in this very run.
        await hooks.record(value);
        return { value, key };
      }
      // Metrics and the note of the reuse first: a reused validation that fails this run's gate (in `record`)
      // still shows its figures and where they came from.
      if (req.metrics) await copyMetrics(deps, entry.run_id, runId, stage, req.metrics.series);
      const used = await deps.db
        .insertInto('stage_cache_uses')
        .values({ run_id: runId, stage, key, source_run_id: entry.run_id })
        .onConflict((oc) => oc.columns(['run_id', 'stage', 'key']).doNothing())
        .returning('run_id')
        .executeTakeFirst();
      if (used) {
        // Counted once per run and key, however often a retried activity repeats the hit.
        await deps.db.updateTable('stage_cache').set({ hits: sql`hits + 1` }).where('key', '=', key).execute();
        await runLog(deps, runId, stage, `${label}: reused the result of run ${entry.run_id} (stage cache key ${key.slice(0, 12)}…)`);
      }
      await hooks.record(value);
      log('stage cache hit', { stage, key: key.slice(0, 12), from: entry.run_id });
      return { value, key, cachedFrom: entry.run_id };
    }
    log('stage cache entry is stale: artifacts are gone', { stage, key: key.slice(0, 12), missing });
    await runLog(
      deps,
      runId,
      stage,
      `${label}: the cached result of run ${entry.run_id} is unusable (${missing.length} artifact(s) gone from the store, e.g. ${missing[0]}); recomputing`,
    );
  }

  const value = await compute();
  await hooks.record(value);
  // Stored only now that the stage succeeded; a newer result for the same key replaces a stale one.
  await deps.db
    .insertInto('stage_cache')
    .values({ key, stage, result: JSON.stringify(value), material: JSON.stringify(material), run_id: runId, hits: 0 })
    .onConflict((oc) =>
      oc.column('key').doUpdateSet({
        stage,
        result: JSON.stringify(value),
        material: JSON.stringify(material),
        run_id: runId,
        hits: 0,
        created_at: sql`now()`,
      }),
    )
    .execute();
  return { value, key };
}

/** The stage result with the hit marked on it (a new object; the value itself is untouched). */
export function marked<R extends object>(result: R, outcome: CacheOutcome<unknown>): R {
  if (!outcome.cachedFrom || !outcome.key) return result;
  const mark: CacheMark = { cached: true, cachedFrom: outcome.cachedFrom, cacheKey: outcome.key };
  return { ...result, ...mark };
}

/** URIs of the artifacts that are not in the store (or not at their recorded size). */
async function missingArtifacts(deps: Deps, refs: ArtifactRef[]): Promise<string[]> {
  const checks = await Promise.all(
    refs.map(async (ref) => {
      try {
        return (await deps.store.headBytes(deps.store.keyOf(ref.uri))) === ref.bytes ? undefined : ref.uri;
      } catch {
        return ref.uri; // outside this store's bucket or prefix (the configuration changed): unusable here
      }
    }),
  );
  return checks.filter((u): u is string => u !== undefined);
}

/**
 * The source run's metric points of this stage and series, copied to the current run. `start_step` (where
 * each attempt resumed) describes the source run's attempts, not this run's, and stays behind.
 */
async function copyMetrics(deps: Deps, fromRun: string, toRun: string, stage: string, series?: string): Promise<void> {
  const rows = await deps.db.selectFrom('metrics').select(['name', 'step', 'value']).where('run_id', '=', fromRun).where('stage', '=', stage).execute();
  const prefix = series ? `${series}/` : undefined;
  const points = rows.filter((r) => {
    const base = prefix ? (r.name.startsWith(prefix) ? r.name.slice(prefix.length) : undefined) : r.name.includes('/') ? undefined : r.name;
    return base !== undefined && base !== 'start_step';
  });
  for (let i = 0; i < points.length; i += 5000) await recordMetrics(deps.db, toRun, stage, points.slice(i, i + 5000));
}

async function runLog(deps: Deps, runId: string, stage: string, line: string): Promise<void> {
  // The log is for people: failing to write it must not fail the stage.
  await recordLogs(deps.db, runId, stage, [line]).catch((err) => console.warn(`run log of ${runId}: ${(err as Error).message}`));
}

/**
 * sha256 of a staged file, or of a directory (every file below it by relative path and content), e.g. a base
 * model given as a directory.
 */
export async function digestPath(p: string): Promise<string> {
  const info = await stat(p);
  if (!info.isDirectory()) return (await sha256File(p)).sha256;
  const files = (await readdir(p, { recursive: true, withFileTypes: true }))
    .filter((d) => d.isFile())
    .map((d) => path.relative(p, path.join(d.parentPath, d.name)).split(path.sep).join('/'))
    .sort();
  const hash = createHash('sha256');
  for (const rel of files) hash.update(`${rel}\0${(await sha256File(path.join(p, rel))).sha256}\n`);
  return hash.digest('hex');
}

let trainerDigestMemo: Promise<string> | undefined;

/**
 * One digest of the Python trainer's code (every .py file of the package) and its pinned requirements, read
 * once per process: results of the stages it computes are reused only with the same trainer.
 */
export function trainerDigest(deps: Deps): Promise<string> {
  trainerDigestMemo ??= (async () => {
    const root = deps.cfg.trainerDir;
    const hash = createHash('sha256');
    const pkg = path.join(root, 'tempered_trainer');
    const files = (await readdir(pkg, { recursive: true }).catch(() => [] as string[]))
      .map((f) => String(f).split(path.sep).join('/'))
      .filter((f) => f.endsWith('.py') && !f.includes('__pycache__'))
      .sort();
    for (const f of files) hash.update(`tempered_trainer/${f}\0${(await sha256File(path.join(pkg, f))).sha256}\n`);
    const requirements = path.join(root, 'requirements.txt');
    const req = await sha256File(requirements).catch(() => undefined);
    if (req) hash.update(`requirements.txt\0${req.sha256}\n`);
    return hash.digest('hex').slice(0, 16);
  })();
  return trainerDigestMemo;
}
