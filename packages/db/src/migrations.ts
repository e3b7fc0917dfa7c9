/**
 * Schema migrations, applied in order by kysely's Migrator at every start (`migrateToLatest`). Add a new
 * entry for each change; never edit one that has shipped.
 */
import { type Kysely, type Migration, sql } from 'kysely';

export const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('spec', 'jsonb', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('error', 'text')
        .execute();
      await db.schema
        .createTable('stages')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('started_at', 'timestamptz')
        .addColumn('finished_at', 'timestamptz')
        .addColumn('error', 'text')
        .addColumn('summary', 'jsonb')
        .addPrimaryKeyConstraint('stages_pk', ['run_id', 'name'])
        .execute();
      await db.schema
        .createTable('artifacts')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('uri', 'text', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addUniqueConstraint('artifacts_run_stage_uri', ['run_id', 'stage', 'uri'])
        .execute();
      await db.schema
        .createTable('lineage_edges')
        .addColumn('parent', 'text', (c) => c.notNull())
        .addColumn('child', 'text', (c) => c.notNull())
        .addColumn('relation', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('lineage_edges_pk', ['parent', 'child', 'relation'])
        .execute();
      await db.schema.createIndex('lineage_edges_child').on('lineage_edges').column('child').execute();
      await db.schema
        .createTable('dataset_versions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('snapshot_uri', 'text', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('input_count', 'integer', (c) => c.notNull())
        .addColumn('kept_count', 'integer', (c) => c.notNull())
        .addColumn('quarantined_count', 'integer', (c) => c.notNull())
        .addColumn('quarantine_uri', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createTable('metrics')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('step', 'integer', (c) => c.notNull())
        .addColumn('value', 'double precision', (c) => c.notNull())
        .addColumn('recorded_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('metrics_pk', ['run_id', 'stage', 'name', 'step'])
        .execute();
      await db.schema
        .createTable('approvals')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
        .addColumn('decision', 'text', (c) => c.notNull())
        .addColumn('approver', 'text')
        .addColumn('comment', 'text')
        .addColumn('decided_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createTable('model_versions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull().unique())
        .addColumn('model_uri', 'text', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('metrics', 'jsonb', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addUniqueConstraint('model_versions_name_version', ['name', 'version'])
        .execute();
      await db.schema
        .createTable('deployments')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('model_version_id', 'text', (c) => c.notNull().references('model_versions.id'))
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('endpoint', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('pid', 'integer')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
    },
    async down(db: Kysely<any>) {
      for (const t of ['deployments', 'model_versions', 'approvals', 'metrics', 'dataset_versions', 'lineage_edges', 'artifacts', 'stages', 'runs']) {
        await db.schema.dropTable(t).ifExists().execute();
      }
    },
  },
};
