/**
 * The metadata schema as kysely types: runs and their stages, artifacts with lineage, dataset versions,
 * metric series, approvals, model versions and deployments. Migrations (./migrations.ts) create exactly this.
 */
import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

type CreatedAt = ColumnType<Date, Date | string | undefined, never>;
type Json = ColumnType<unknown, string, string>;

export interface RunsTable {
  id: string; // the workflow id
  name: string;
  spec: Json;
  status: string; // running | waiting-approval | deployed | rejected | expired | failed | cancelled
  requested_by: string;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
  error: string | null;
  /** Where the spec file was (relative data paths resolve against it); null for a spec sent as text. */
  spec_dir: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface StagesTable {
  run_id: string;
  name: string;
  status: string;
  attempts: number;
  started_at: Date | null;
  finished_at: Date | null;
  error: string | null;
  summary: Json | null;
}

export interface ArtifactsTable {
  id: Generated<number>;
  run_id: string;
  stage: string;
  uri: string;
  sha256: string;
  bytes: number;
  kind: string;
  created_at: CreatedAt;
}

/** A directed edge between two lineage nodes, each named `<type>:<id>` (artifact:<sha256>, model_version:<id>, …). */
export interface LineageEdgesTable {
  parent: string;
  child: string;
  relation: string;
  run_id: string;
  created_at: CreatedAt;
}

export interface DatasetVersionsTable {
  id: string;
  name: string;
  run_id: string;
  snapshot_uri: string;
  sha256: string;
  input_count: number;
  kept_count: number;
  quarantined_count: number;
  quarantine_uri: string;
  created_at: CreatedAt;
}

export interface MetricsTable {
  run_id: string;
  stage: string;
  name: string;
  step: number;
  value: number;
  recorded_at: CreatedAt;
}

export interface ApprovalsTable {
  id: Generated<number>;
  run_id: string;
  decision: string; // approve | reject | expired
  approver: string | null;
  comment: string | null;
  decided_at: CreatedAt;
}

export interface ModelVersionsTable {
  id: string;
  name: string;
  version: number;
  run_id: string;
  model_uri: string;
  sha256: string;
  metrics: Json;
  created_at: CreatedAt;
}

export interface DeploymentsTable {
  id: string;
  model_version_id: string;
  run_id: string;
  endpoint: string;
  status: string; // serving | stopped | failed
  pid: number | null;
  created_at: CreatedAt;
}

export interface UsersTable {
  username: string;
  /** scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>; null for a user who signs in with tokens only. */
  password_hash: string | null;
  role: string; // viewer | operator | approver | admin
  created_at: CreatedAt;
  disabled_at: Date | null;
}

export interface ApiTokensTable {
  id: Generated<number>;
  username: string;
  name: string;
  kind: string; // api (long-lived, for scripts) | session (a dashboard sign-in, expires)
  sha256: string; // only the digest is stored
  created_at: CreatedAt;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

/** Every decision and privileged change: who, when, on what, and why. */
export interface AuditLogTable {
  id: Generated<number>;
  at: CreatedAt;
  actor: string;
  action: string; // run.start | gate.approve | gate.reject | label | user.create | token.create | …
  target: string; // run:<id>, user:<name>, …
  comment: string | null;
  details: Json | null;
}

/** A prompt with two responses for a person to compare; the label says which one is better. */
export interface PreferencePairsTable {
  id: Generated<number>;
  run_id: string;
  idx: number;
  prompt: string;
  response_a: string;
  response_b: string;
  source: string; // model-samples | feedback
  label: string | null; // a | b | tie
  labeled_by: string | null;
  labeled_at: Date | null;
  created_at: CreatedAt;
}

/** The tail of what a run's processes printed (the trainer's log), for the dashboard. */
export interface RunLogsTable {
  id: Generated<number>;
  run_id: string;
  stage: string;
  at: CreatedAt;
  line: string;
}

/** Where the gateway sends a model name's traffic: one row per version, split by weight (weights need not sum to 100). */
export interface RoutesTable {
  model_name: string;
  model_version_id: string;
  /** Base URL of an OpenAI-compatible server that serves the version under its id as the model name. */
  endpoint: string;
  weight: number;
  updated_at: CreatedAt;
}

/** One request the gateway sent to a model server: what was asked (normalized), what came back, how it went. */
export interface GatewayRequestsTable {
  id: string; // the request id the client got (x-request-id, body `id`)
  at: CreatedAt;
  model_name: string;
  model_version_id: string;
  kind: string; // completion | chat
  prompt: string;
  /** The text the client received (after the blocklist); null when the request failed. */
  response: string | null;
  status: number;
  latency_ms: number;
  flagged: boolean; // the blocklist replaced something in the response
  error: string | null;
  /** The model server's token counts (usage); null when it gave none (a refusal, a failure). */
  prompt_tokens: number | null;
  completion_tokens: number | null;
  /** Whether the answer was streamed (server-sent events); its response is the whole text the client got. */
  streamed: Generated<boolean>;
}

/** Thumbs up or down on one served response. */
export interface FeedbackRatingsTable {
  id: Generated<number>;
  request_id: string;
  model_name: string;
  model_version_id: string;
  rating: string; // up | down
  comment: string | null;
  created_at: CreatedAt;
}

/** A person's choice between two responses to one prompt (from the gateway's clients, e.g. a side-by-side UI). */
export interface FeedbackPairwiseTable {
  id: Generated<number>;
  model_name: string | null;
  prompt: string;
  response_a: string;
  response_b: string;
  preferred: string; // a | b | tie
  request_id_a: string | null;
  request_id_b: string | null;
  model_version_a: string | null;
  model_version_b: string | null;
  comment: string | null;
  created_at: CreatedAt;
}

/** A deterministic stage's stored result, by the digest of its stage, config, input digests and code version. */
export interface StageCacheTable {
  key: string;
  stage: string;
  result: Json;
  /** What the key is the digest of (stage, code version, config, input digests). */
  material: Json | null;
  /** The run that computed the result. */
  run_id: string;
  /** When the result was stored; a recomputed result that replaces a stale one sets it anew. */
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  hits: number;
}

/** A run's stage that reused a stored result instead of computing it. */
export interface StageCacheUsesTable {
  run_id: string;
  stage: string;
  key: string;
  /** The run that computed the reused result. */
  source_run_id: string;
  used_at: CreatedAt;
}

/**
 * A retrain trigger's memory: what it last acted on, so each check counts only the objects and feedback that
 * are new since the last retrain it started (or since it was set up: the first check records a baseline).
 */
export interface RetrainTriggersTable {
  id: string; // the schedule id
  pipeline: string;
  last_listing_digest: string | null;
  /** `{key: "etag:size"}` of the watched prefix at the last retrain or baseline. */
  last_listing: Json | null;
  last_feedback_id: ColumnType<number, number | undefined, number>;
  last_pairwise_id: ColumnType<number, number | undefined, number>;
  last_run_id: string | null;
  last_reason: string | null;
  generation: ColumnType<number, number | undefined, number>;
  last_checked_at: Date | null;
  last_check: string | null;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

/**
 * The base-model catalog: a pretrained model the bootstrap converted into `cfg.baseModelsDir`, registered from
 * its manifest.json (./base-models.ts), its model.tar stored once in S3 under its sha256. A spec names it by
 * `model.base: {name}`.
 */
export interface BaseModelsTable {
  name: string; // unique: what `model.base.name` refers to
  architecture: string; // LlamaForCausalLM, …
  model_type: string; // llama, …
  parameters: number;
  context_length: number;
  license: string;
  source: string; // where it came from (the registry package and the upstream model)
  sha256: string; // of model.tar
  bytes: number;
  uri: string; // s3:// URI of the model.tar artifact
  /** The manifest as the bootstrap wrote it (vocab_size, eos_token, tied_embeddings, the smoke check, …). */
  manifest: Json;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

/** The test stage's answers to each test record (contract: `TestAnswer`), in test-shard order (`idx`). */
export interface TestAnswersTable {
  run_id: string;
  idx: number;
  key: string;
  prompt: string;
  reference: string;
  answer: string;
  correct: boolean;
  baseline_answer: string;
  label: string | null;
  reference_label: string | null;
  champion_answer: string | null;
  champion_correct: boolean | null;
  /** The test suite of the record; null: the held-out split. */
  suite: string | null;
  /** A win_rate suite's verdicts (the contract's JudgeVerdict), as JSON. */
  judge: ColumnType<unknown, string | null, string | null>;
  unsafe: boolean | null;
}

/** An on-demand evaluation of a model version's test suites (contract: EvaluationInput / EvaluationOutcome). */
export interface EvaluationsTable {
  id: string; // the workflow id
  model_name: string;
  /** Null until a drift evaluation has found the serving version. */
  model_version_id: string | null;
  /** The suite names asked for (all of the spec's when none were named). */
  suites: Json;
  status: string; // running | completed | failed
  requested_by: string;
  results: ColumnType<unknown, string | null | undefined, string | null>;
  breaches: ColumnType<unknown, string | null | undefined, string | null>;
  answers_uri: string | null;
  answers_sha256: string | null;
  error: string | null;
  created_at: CreatedAt;
  finished_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface Database {
  runs: RunsTable;
  stages: StagesTable;
  artifacts: ArtifactsTable;
  lineage_edges: LineageEdgesTable;
  dataset_versions: DatasetVersionsTable;
  metrics: MetricsTable;
  approvals: ApprovalsTable;
  model_versions: ModelVersionsTable;
  deployments: DeploymentsTable;
  users: UsersTable;
  api_tokens: ApiTokensTable;
  audit_log: AuditLogTable;
  preference_pairs: PreferencePairsTable;
  run_logs: RunLogsTable;
  routes: RoutesTable;
  gateway_requests: GatewayRequestsTable;
  test_answers: TestAnswersTable;
  evaluations: EvaluationsTable;
  feedback_ratings: FeedbackRatingsTable;
  feedback_pairwise: FeedbackPairwiseTable;
  stage_cache: StageCacheTable;
  stage_cache_uses: StageCacheUsesTable;
  retrain_triggers: RetrainTriggersTable;
  base_models: BaseModelsTable;
}

export type Run = Selectable<RunsTable>;
export type Stage = Selectable<StagesTable>;
export type ArtifactRow = Selectable<ArtifactsTable>;
export type NewMetric = Insertable<MetricsTable>;
export type BaseModelRow = Selectable<BaseModelsTable>;
