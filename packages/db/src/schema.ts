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
}

export type Run = Selectable<RunsTable>;
export type Stage = Selectable<StagesTable>;
export type ArtifactRow = Selectable<ArtifactsTable>;
export type NewMetric = Insertable<MetricsTable>;
