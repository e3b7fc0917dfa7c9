/**
 * The metadata database: a kysely instance over `pg`, migrations, and the few writes every stage shares
 * (stage status, artifacts, lineage edges, metric points). Writes are idempotent so retried activities can
 * repeat them safely.
 */
import { Kysely, Migrator, PostgresDialect, sql, type MigrationProvider } from 'kysely';
import pg from 'pg';
import type { ArtifactRef } from '@tempered/contract';
import type { Database } from './schema';
import { migrations } from './migrations';
import { PgSafeTextPlugin } from './sanitize';

export * from './schema';
export * from './gateway';
export * from './base-models';
export * from './gguf';
export { pgSafe, pgSafeText } from './sanitize';
export { sql };

// bigint columns (artifact sizes) fit in a JS number for any artifact we will ever store.
pg.types.setTypeParser(20, (v) => Number(v));

export type Db = Kysely<Database>;

export function createDb(databaseUrl: string, max = 5): Db {
  const pool = new pg.Pool({ connectionString: databaseUrl, max });
  // An idle connection can end under the pool (PostgreSQL restarted, or the backend terminated); pg then emits
  // 'error' on the pool, which without a listener crashes the process. The pool drops that client and the next
  // query connects anew, so a warning is all it takes.
  pool.on('error', (err) => console.warn(`postgres: an idle connection ended (${err.message}); the next query reconnects`));
  return new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    // Every bound string made storable here (sanitize.ts), so that no writer's NUL can fail its INSERT.
    plugins: [new PgSafeTextPlugin()],
  });
}

export async function migrateToLatest(db: Db): Promise<string[]> {
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * Lineage node names: `artifact:<sha256>`, `dataset_version:<id>`, `model_version:<id>`, `deployment:<id>`,
 * `base_model:<name>` (a catalog entry, parent of its model.tar's artifact).
 */
export const node = {
  artifact: (ref: Pick<ArtifactRef, 'sha256'>) => `artifact:${ref.sha256}`,
  baseModel: (name: string) => `base_model:${name}`,
  datasetVersion: (id: string) => `dataset_version:${id}`,
  modelVersion: (id: string) => `model_version:${id}`,
  deployment: (id: string) => `deployment:${id}`,
};

export async function recordArtifacts(db: Db, runId: string, stage: string, refs: ArtifactRef[]): Promise<void> {
  if (refs.length === 0) return;
  await db
    .insertInto('artifacts')
    .values(refs.map((r) => ({ run_id: runId, stage, uri: r.uri, sha256: r.sha256, bytes: r.bytes, kind: r.kind })))
    .onConflict((oc) => oc.columns(['run_id', 'stage', 'uri']).doNothing())
    .execute();
}

export async function recordLineage(
  db: Db,
  runId: string,
  edges: Array<{ parent: string; child: string; relation: string }>,
): Promise<void> {
  if (edges.length === 0) return;
  await db
    .insertInto('lineage_edges')
    .values(edges.map((e) => ({ ...e, run_id: runId })))
    .onConflict((oc) => oc.columns(['parent', 'child', 'relation']).doNothing())
    .execute();
}

export async function recordMetrics(
  db: Db,
  runId: string,
  stage: string,
  points: Array<{ name: string; step: number; value: number }>,
): Promise<void> {
  const finite = points.filter((p) => Number.isFinite(p.value));
  if (finite.length === 0) return;
  await db
    .insertInto('metrics')
    .values(finite.map((p) => ({ run_id: runId, stage, ...p })))
    .onConflict((oc) => oc.columns(['run_id', 'stage', 'name', 'step']).doUpdateSet((eb) => ({ value: eb.ref('excluded.value') })))
    .execute();
  await notifyChange(db, runId, 'metrics');
}

/** The Postgres channel on which writers announce changes to a run; the API turns them into server-sent events. */
export const CHANGES_CHANNEL = 'tempered_changes';
export type ChangeKind = 'run' | 'stage' | 'metrics' | 'logs' | 'labels' | 'approval';

/** Tells listeners (the API's live views) that something of a run changed; they read what from the tables. */
export async function notifyChange(db: Db, runId: string, kind: ChangeKind): Promise<void> {
  await sql`select pg_notify(${CHANGES_CHANNEL}, ${JSON.stringify({ runId, kind })})`.execute(db);
}

/** Appends lines to a run's log (trainer output, shown as the dashboard's log tail). */
export async function recordLogs(db: Db, runId: string, stage: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await db.insertInto('run_logs').values(lines.map((line) => ({ run_id: runId, stage, line: line.slice(0, 2000) }))).execute();
  await notifyChange(db, runId, 'logs');
}

/** All ancestors of a lineage node, nearest first (a recursive walk up the edges). */
export async function ancestors(db: Db, child: string): Promise<Array<{ parent: string; child: string; relation: string }>> {
  const { rows } = await sql<{ parent: string; child: string; relation: string }>`
    with recursive up(parent, child, relation, depth) as (
      select parent, child, relation, 1 from lineage_edges where child = ${child}
      union
      select e.parent, e.child, e.relation, up.depth + 1 from lineage_edges e join up on e.child = up.parent
      where up.depth < 32
    )
    select parent, child, relation from up order by depth`.execute(db);
  return rows;
}

/** Every node below the given ones, each once (a recursive walk down the edges; `union` ends it on a cycle). */
export async function descendants(db: Db, parents: string[]): Promise<string[]> {
  if (parents.length === 0) return [];
  const { rows } = await sql<{ child: string }>`
    with recursive down(child) as (
      select child from lineage_edges where parent in (${sql.join(parents)})
      union
      select e.child from lineage_edges e join down on e.parent = down.child
    )
    select child from down`.execute(db);
  return rows.map((r) => r.child);
}
