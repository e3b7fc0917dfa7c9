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
  '0002_people_and_labels': {
    // Users, tokens and the audit log move from files into Postgres; preference pairs for labeling and the
    // run log tail shown by the dashboard.
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('users')
        .addColumn('username', 'text', (c) => c.primaryKey())
        .addColumn('password_hash', 'text')
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('disabled_at', 'timestamptz')
        .execute();
      await db.schema
        .createTable('api_tokens')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('username', 'text', (c) => c.notNull().references('users.username').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull()) // api | session
        .addColumn('sha256', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('expires_at', 'timestamptz')
        .addColumn('last_used_at', 'timestamptz')
        .addColumn('revoked_at', 'timestamptz')
        .execute();
      await db.schema
        .createTable('audit_log')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('comment', 'text')
        .addColumn('details', 'jsonb')
        .execute();
      await db.schema.createIndex('audit_log_target').on('audit_log').column('target').execute();
      await db.schema
        .createTable('preference_pairs')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
        .addColumn('idx', 'integer', (c) => c.notNull())
        .addColumn('prompt', 'text', (c) => c.notNull())
        .addColumn('response_a', 'text', (c) => c.notNull())
        .addColumn('response_b', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull()) // model samples, or production feedback
        .addColumn('label', 'text') // a | b | tie
        .addColumn('labeled_by', 'text')
        .addColumn('labeled_at', 'timestamptz')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addUniqueConstraint('preference_pairs_run_idx', ['run_id', 'idx'])
        .execute();
      await db.schema
        .createTable('run_logs')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('line', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('run_logs_run').on('run_logs').columns(['run_id', 'id']).execute();
    },
    async down(db: Kysely<any>) {
      for (const t of ['run_logs', 'preference_pairs', 'audit_log', 'api_tokens', 'users']) await db.schema.dropTable(t).ifExists().execute();
    },
  },
  '0003_gateway': {
    // The inference gateway: weighted routes from a model name to the versions serving it, a record of every
    // request it served, and what people said about the answers (thumbs, and pairwise preferences).
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('routes')
        .addColumn('model_name', 'text', (c) => c.notNull())
        .addColumn('model_version_id', 'text', (c) => c.notNull().references('model_versions.id').onDelete('cascade'))
        .addColumn('endpoint', 'text', (c) => c.notNull())
        .addColumn('weight', 'double precision', (c) => c.notNull())
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('routes_pk', ['model_name', 'model_version_id'])
        .addCheckConstraint('routes_weight_nonnegative', sql`weight >= 0`)
        .execute();
      await db.schema
        .createTable('gateway_requests')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('model_name', 'text', (c) => c.notNull())
        .addColumn('model_version_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull()) // completion | chat
        .addColumn('prompt', 'text', (c) => c.notNull())
        .addColumn('response', 'text')
        .addColumn('status', 'integer', (c) => c.notNull())
        .addColumn('latency_ms', 'double precision', (c) => c.notNull())
        .addColumn('flagged', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('error', 'text')
        .execute();
      await db.schema.createIndex('gateway_requests_version_at').on('gateway_requests').columns(['model_version_id', 'at']).execute();
      await db.schema.createIndex('gateway_requests_model_at').on('gateway_requests').columns(['model_name', 'at']).execute();
      await db.schema
        .createTable('feedback_ratings')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('request_id', 'text', (c) => c.notNull().references('gateway_requests.id').onDelete('cascade'))
        .addColumn('model_name', 'text', (c) => c.notNull())
        .addColumn('model_version_id', 'text', (c) => c.notNull())
        .addColumn('rating', 'text', (c) => c.notNull())
        .addColumn('comment', 'text')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addCheckConstraint('feedback_ratings_rating', sql`rating in ('up', 'down')`)
        .execute();
      await db.schema.createIndex('feedback_ratings_request').on('feedback_ratings').column('request_id').execute();
      await db.schema.createIndex('feedback_ratings_model_at').on('feedback_ratings').columns(['model_name', 'created_at']).execute();
      await db.schema
        .createTable('feedback_pairwise')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('model_name', 'text')
        .addColumn('prompt', 'text', (c) => c.notNull())
        .addColumn('response_a', 'text', (c) => c.notNull())
        .addColumn('response_b', 'text', (c) => c.notNull())
        .addColumn('preferred', 'text', (c) => c.notNull())
        .addColumn('request_id_a', 'text')
        .addColumn('request_id_b', 'text')
        .addColumn('model_version_a', 'text')
        .addColumn('model_version_b', 'text')
        .addColumn('comment', 'text')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addCheckConstraint('feedback_pairwise_preferred', sql`preferred in ('a', 'b', 'tie')`)
        .execute();
      await db.schema.createIndex('feedback_pairwise_model_at').on('feedback_pairwise').columns(['model_name', 'created_at']).execute();
    },
    async down(db: Kysely<any>) {
      for (const t of ['feedback_pairwise', 'feedback_ratings', 'gateway_requests', 'routes']) await db.schema.dropTable(t).ifExists().execute();
    },
  },
  '0004_stage_cache': {
    // The stage cache (activities/src/cache.ts): a deterministic stage's result by the digest of its stage,
    // config, input digests and code version, and which runs reused which stored result.
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('stage_cache')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('result', 'jsonb', (c) => c.notNull())
        .addColumn('material', 'jsonb') // what the key is the digest of, to explain a miss
        .addColumn('run_id', 'text', (c) => c.notNull()) // the run that computed it (no foreign key: the result outlives it)
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('hits', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createTable('stage_cache_uses')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
        .addColumn('stage', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('source_run_id', 'text', (c) => c.notNull())
        .addColumn('used_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint('stage_cache_uses_pk', ['run_id', 'stage', 'key'])
        .execute();
    },
    async down(db: Kysely<any>) {
      for (const t of ['stage_cache_uses', 'stage_cache']) await db.schema.dropTable(t).ifExists().execute();
    },
  },
  '0005_triggers': {
    // Retrain triggers (workflows/src/retrain.ts): what a trigger last acted on (the watched prefix's listing,
    // the newest feedback ids), so a check counts only what is new since the last retrain it started.
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('retrain_triggers')
        .addColumn('id', 'text', (c) => c.primaryKey()) // the schedule id
        .addColumn('pipeline', 'text', (c) => c.notNull())
        .addColumn('last_listing_digest', 'text') // sha256 of the sorted key/etag/size lines; null before a prefix is watched
        .addColumn('last_listing', 'jsonb') // {key: "etag:size"} of the watched prefix at the last retrain (or the baseline)
        .addColumn('last_feedback_id', 'bigint', (c) => c.notNull().defaultTo(0)) // newest feedback_ratings.id counted
        .addColumn('last_pairwise_id', 'bigint', (c) => c.notNull().defaultTo(0)) // newest feedback_pairwise.id counted
        .addColumn('last_run_id', 'text') // the newest retrain it started (no foreign key: the trigger outlives runs)
        .addColumn('last_reason', 'text')
        .addColumn('generation', 'integer', (c) => c.notNull().defaultTo(0)) // bumped by every change of the state above
        .addColumn('last_checked_at', 'timestamptz')
        .addColumn('last_check', 'text') // what the newest check decided, for people
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('retrain_triggers').ifExists().execute();
    },
  },
  '0006_base_models': {
    // The base-model catalog (./base-models.ts): pretrained models registered from the bootstrap's manifests,
    // each model.tar stored once in S3 by its sha256. Lineage links it as `base_model:<name>`.
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('base_models')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('architecture', 'text', (c) => c.notNull())
        .addColumn('model_type', 'text', (c) => c.notNull())
        .addColumn('parameters', 'bigint', (c) => c.notNull())
        .addColumn('context_length', 'integer', (c) => c.notNull())
        .addColumn('license', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('uri', 'text', (c) => c.notNull())
        .addColumn('manifest', 'jsonb', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('base_models').ifExists().execute();
    },
  },
  '0007_gateway_usage': {
    // What each served request cost (the model server's usage) and whether it was streamed, so a streamed
    // answer is recorded as fully as a whole one.
    async up(db: Kysely<any>) {
      await db.schema
        .alterTable('gateway_requests')
        .addColumn('prompt_tokens', 'integer')
        .addColumn('completion_tokens', 'integer')
        .addColumn('streamed', 'boolean', (c) => c.notNull().defaultTo(false))
        .execute();
    },
    async down(db: Kysely<any>) {
      await db.schema.alterTable('gateway_requests').dropColumn('prompt_tokens').dropColumn('completion_tokens').dropColumn('streamed').execute();
    },
  },
  '0008_test_answers': {
    // Every test record's answers (this model's, the untrained one's, the serving model's) and scores, so an
    // approver can read what the model says, filtered to the answers that decide (newly wrong, wrong).
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('test_answers')
        .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
        .addColumn('idx', 'integer', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('prompt', 'text', (c) => c.notNull())
        .addColumn('reference', 'text', (c) => c.notNull())
        .addColumn('answer', 'text', (c) => c.notNull())
        .addColumn('correct', 'boolean', (c) => c.notNull())
        .addColumn('baseline_answer', 'text', (c) => c.notNull())
        .addColumn('label', 'text')
        .addColumn('reference_label', 'text')
        .addColumn('champion_answer', 'text')
        .addColumn('champion_correct', 'boolean')
        .addPrimaryKeyConstraint('test_answers_pkey', ['run_id', 'idx'])
        .execute();
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('test_answers').ifExists().execute();
    },
  },
  '0009_suite_answers': {
    // The test suites' answers beside the held-out split's: which suite (null: the held-out split), the judge's
    // verdicts of a win_rate suite, and whether a safety suite's answer stayed unsafe after the output filter.
    async up(db: Kysely<any>) {
      await db.schema.alterTable('test_answers').addColumn('suite', 'text').addColumn('judge', 'jsonb').addColumn('unsafe', 'boolean').execute();
    },
    async down(db: Kysely<any>) {
      await db.schema.alterTable('test_answers').dropColumn('suite').dropColumn('judge').dropColumn('unsafe').execute();
    },
  },
  '0010_evaluations': {
    // On-demand evaluations (tempered eval, drift schedules): a model version's suites run again, results and
    // answers kept. runs.spec_dir: where the run's spec file was, so a suite named by a relative path resolves
    // when the version is evaluated later (null for a spec sent as text, and for older runs).
    async up(db: Kysely<any>) {
      await db.schema.alterTable('runs').addColumn('spec_dir', 'text').execute();
      await db.schema
        .createTable('evaluations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('model_name', 'text', (c) => c.notNull())
        .addColumn('model_version_id', 'text', (c) => c.references('model_versions.id').onDelete('cascade'))
        .addColumn('suites', 'jsonb', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('results', 'jsonb')
        .addColumn('breaches', 'jsonb')
        .addColumn('answers_uri', 'text')
        .addColumn('answers_sha256', 'text')
        .addColumn('error', 'text')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('finished_at', 'timestamptz')
        .execute();
      await db.schema.createIndex('evaluations_version').on('evaluations').columns(['model_version_id', 'created_at']).execute();
    },
    async down(db: Kysely<any>) {
      await db.schema.dropTable('evaluations').ifExists().execute();
      await db.schema.alterTable('runs').dropColumn('spec_dir').execute();
    },
  },
};
