/**
 * The HTTP API's contract, shared by the API (which validates requests with these schemas and publishes them
 * in its OpenAPI description), the dashboard and the CLI (which use the response types). No Node APIs here:
 * the dashboard bundles this module.
 *
 * Authentication: `Authorization: Bearer <token>` (API tokens, for scripts and the CLI) or the `tempered_session`
 * cookie set by `POST /api/login` (the dashboard; a cookie-authenticated POST must also send `x-tempered: 1`).
 * Roles: viewer (reads), operator (starts runs, labels), approver (decides gates), admin (all, and users).
 * Nobody approves the deployment of a run they started.
 */
import { type Action, type GateState, type LabelProgress, ROLES, type Role, type RunStatus, type StageState, type StageStatus } from '@tempered/contract';
import { z } from 'zod';

// The platform's vocabulary (stages, statuses, roles and their policy) is @tempered/contract's; the dashboard and
// the CLI get it from here with the HTTP contract.
export {
  ACTIONS, ACTIVE_RUN_STATUSES, can, isTerminalRunStatus, ROLES, RUN_STATUSES, STAGE_STATUSES, STAGES, TERMINAL_RUN_STATUSES, whoMay,
  type Action, type ApprovalReceipt, type GateState, type LabelProgress, type Role, type RunStatus, type StageName, type StageState, type StageStatus,
  type TerminalRunStatus,
} from '@tempered/contract';

export const SESSION_COOKIE = 'tempered_session';
/** Header a cookie-authenticated request that changes something must carry (a cross-site form cannot send it). */
export const CSRF_HEADER = 'x-tempered';

// ---- requests -------------------------------------------------------------------------------------------

export const loginRequest = z.object({ username: z.string().min(1).max(64), password: z.string().min(1).max(256) }).strict();
export const createUserRequest = z
  .object({
    username: z.string().regex(/^[a-z][a-z0-9._-]{1,31}$/, 'lowercase letters, digits, ".", "_" or "-", 2–32 characters, starting with a letter'),
    password: z.string().min(10, 'at least 10 characters').max(256),
    role: z.enum(ROLES),
  })
  .strict();
export const createTokenRequest = z.object({ name: z.string().min(1).max(64) }).strict();
/** `POST /api/runs` with JSON: a spec (YAML text or an object), or the path of an example under examples/. */
export const startRunRequest = z
  .object({
    spec: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
    example: z.string().regex(/^[A-Za-z0-9._/-]+\.ya?ml$/, 'a .yaml file under examples/').optional(),
    specDir: z.string().optional(),
  })
  .strict()
  .refine((b) => (b.spec === undefined) !== (b.example === undefined), { message: 'give exactly one of spec and example', path: ['spec'] });
export const decisionRequest = z
  .object({
    decision: z.enum(['approve', 'reject']),
    comment: z.string().max(2000).default(''),
    /** Approve although the challenger does not beat the serving model by the spec's margin. */
    override: z.boolean().default(false),
  })
  .strict();
export const labelRequest = z.object({ label: z.enum(['a', 'b', 'tie']) }).strict();

export type LoginRequest = z.infer<typeof loginRequest>;
export type CreateUserRequest = z.infer<typeof createUserRequest>;
export type StartRunRequest = z.input<typeof startRunRequest>;
export type DecisionRequest = z.input<typeof decisionRequest>;
export type LabelRequest = z.infer<typeof labelRequest>;

// ---- responses ------------------------------------------------------------------------------------------

/** Every 4xx/5xx body. `issues` name the offending fields of a request or spec (`train.steps`, `decision`). */
export interface ApiError {
  error: string;
  issues?: Array<{ path: string; message: string }>;
}

export interface Me {
  username: string;
  role: Role;
  can: Record<Action, boolean>;
}
export interface LoginResponse {
  token: string;
  expiresAt: string;
  user: Me;
}


export interface RunSummary {
  id: string;
  name: string;
  status: RunStatus;
  requested_by: string;
  created_at: string;
  updated_at: string;
  error: string | null;
}
export interface StageRow {
  run_id: string;
  name: string;
  status: StageStatus;
  attempts: number;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
  summary: Record<string, unknown> | null;
}
export interface ArtifactInfo {
  id: number;
  stage: string;
  uri: string;
  sha256: string;
  bytes: number;
  kind: string;
  /** `GET` it (authenticated) to download the bytes. */
  download: string;
}
export interface ApprovalRow {
  id: number;
  run_id: string;
  /** `override`: approved although the challenger did not beat the serving model. */
  decision: 'approve' | 'reject' | 'override' | 'expired';
  approver: string | null;
  comment: string | null;
  decided_at: string;
}
export interface MetricPoint {
  stage: string;
  name: string;
  step: number;
  value: number;
}
export interface LogLine {
  id: number;
  stage: string;
  at: string;
  line: string;
}
export interface ModelVersion {
  id: string;
  name: string;
  version: number;
  run_id: string;
  model_uri: string;
  sha256: string;
  metrics: Record<string, unknown>;
  created_at: string;
}
export interface Deployment {
  id: string;
  model_version_id: string;
  run_id: string;
  endpoint: string;
  status: string;
  created_at: string;
}
export interface DatasetVersion {
  id: string;
  name: string;
  run_id: string;
  snapshot_uri: string;
  sha256: string;
  input_count: number;
  kept_count: number;
  quarantined_count: number;
  quarantine_uri: string;
  created_at: string;
}

/** `GET /api/runs/:id`, and the `snapshot` event of its event stream. */
export interface RunDetail {
  run: RunSummary & { spec: Record<string, unknown> };
  stages: StageRow[];
  gate?: GateState;
  /** Live stage states from the workflow (summaries, waiting states); absent when the run is gone from Temporal. */
  progress?: Record<string, StageState>;
  artifacts: ArtifactInfo[];
  approvals: ApprovalRow[];
  /** Series keyed `<stage>.<name>` (`train.loss`, `validate.val_loss`), points `[step, value]` by step. */
  metrics: Record<string, Array<[number, number]>>;
  labels?: LabelProgress;
  datasetVersion?: DatasetVersion;
  modelVersion?: ModelVersion;
  deployment?: Deployment;
}

/**
 * Server-sent events of `GET /api/runs/:id/events`: first `snapshot` (a RunDetail), then as things change
 * `run` (run, stages, gate, progress), `metrics` (new points), `logs` (new lines), `labels`, `approvals`.
 * `GET /api/events` sends `runs` ({run: RunSummary}) whenever any run changes.
 */
export interface RunEvents {
  snapshot: RunDetail;
  run: Pick<RunDetail, 'run' | 'stages' | 'gate' | 'progress'>;
  metrics: { points: MetricPoint[] };
  logs: { lines: LogLine[] };
  labels: LabelProgress;
  approvals: { approvals: ApprovalRow[] };
}

export interface PendingApproval {
  runId: string;
  name: string;
  requestedBy: string;
  deadline: string | null;
  test: Record<string, unknown> | null;
  /** The serving version of the same model name, to compare with (null before its first deployment). */
  production: (ModelVersion & { deploymentId: string }) | null;
  /** False when the caller may not decide it (wrong role, or they started the run); `reason` says why. */
  canDecide: boolean;
  reason?: string;
}
export interface ApprovalsResponse {
  pending: PendingApproval[];
  recent: Array<ApprovalRow & { name: string }>;
}

export interface PreferencePair {
  id: number;
  runId: string;
  prompt: string;
  responseA: string;
  responseB: string;
}
export interface LabelingQueue {
  runs: Array<{ runId: string; name: string } & LabelProgress>;
}
export interface NextPair {
  pair: PreferencePair | null;
  progress: LabelProgress;
}

export interface ModelEntry extends ModelVersion {
  datasetVersionId: string | null;
  deployments: Deployment[];
  /** True for the version behind the newest serving deployment. */
  serving: boolean;
}
export interface ModelsResponse {
  models: ModelEntry[];
}
export interface LineageResponse {
  /**
   * Edges between nodes named `<type>:<id>` (dataset_version:…, artifact:…, model_version:…, deployment:…,
   * base_model:<catalog name> for a version fine-tuned from a catalog base model).
   */
  edges: Array<{ parent: string; child: string; relation: string }>;
}

/** A pretrained model of the catalog, which a spec names with `model.base: {name}`. */
export interface BaseModelEntry {
  name: string;
  architecture: string;
  model_type: string;
  parameters: number;
  context_length: number;
  license: string;
  /** Where it came from: the registry package and the upstream model. */
  source: string;
  /** Of its model.tar, stored once in S3 at `uri`. */
  sha256: string;
  bytes: number;
  uri: string;
  created_at: string;
  /** Model versions fine-tuned from it (through any later stage, RLHF included), newest first. */
  fineTuned: Array<Pick<ModelVersion, 'id' | 'name' | 'version' | 'run_id' | 'created_at'>>;
}
/** `GET /api/base-models`. */
export interface BaseModelsResponse {
  baseModels: BaseModelEntry[];
}

export interface DatasetEntry extends DatasetVersion {
  /** The clean stage's counts for the run that made this version, when it ran. */
  clean: Record<string, unknown> | null;
}
export interface DatasetsResponse {
  datasets: DatasetEntry[];
}
export interface DatasetDetail {
  dataset: DatasetEntry;
  /** The first quarantined records with their reasons. */
  quarantine: Array<Record<string, unknown>>;
  /** The clean stage's report (what each rule removed or changed). */
  cleanReport: Record<string, unknown> | null;
  artifacts: ArtifactInfo[];
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  comment: string | null;
  details: Record<string, unknown> | null;
}
export interface ExampleSpec {
  /** Path under examples/, the value of `example` in `POST /api/runs`. */
  path: string;
  name: string;
  yaml: string;
}

// ---- schedules and triggered retrains -----------------------------------------------------------------------

/**
 * Temporal's overlap policies: what happens when a schedule's time comes while its previous run is still in
 * progress. SKIP (the default) starts nothing; BUFFER_ONE / BUFFER_ALL start it after; CANCEL_OTHER /
 * TERMINATE_OTHER stop the old one; ALLOW_ALL runs both.
 */
export const SCHEDULE_OVERLAPS = ['SKIP', 'BUFFER_ONE', 'BUFFER_ALL', 'CANCEL_OTHER', 'TERMINATE_OTHER', 'ALLOW_ALL'] as const;
export type ScheduleOverlap = (typeof SCHEDULE_OVERLAPS)[number];
/** run: every action starts a run of the pipeline; trigger: every action checks the spec's `retrain.watch` / `retrain.feedback`. */
export const SCHEDULE_MODES = ['run', 'trigger'] as const;
export type ScheduleMode = (typeof SCHEDULE_MODES)[number];

/** The same rules as `retrain.schedule` in the spec (@tempered/spec); Temporal checks a cron expression in full. */
const scheduleEvery = z.string().regex(/^[1-9]\d*(s|m|h|d)$/, 'expected an interval such as "30s", "15m", "6h" or "1d"');
const scheduleCron = z
  .string()
  .max(200)
  .regex(
    /^((CRON_)?TZ=\S+\s+)?(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4,6}\S+)(\s*#.*)?$/,
    'expected a cron expression such as "0 3 * * *" (minute hour day-of-month month day-of-week) or "@daily"',
  );
const scheduleComment = z.string().max(2000).optional();

/**
 * `POST /api/schedules`: a pipeline (a spec, or an example under examples/) on a clock. Without `cron` or
 * `every` the spec's `retrain` section gives the timing: `retrain.schedule` in run mode, `retrain.checkEvery`
 * in trigger mode. `mode` defaults to trigger when the spec has `retrain.watch` or `retrain.feedback`.
 */
export const createScheduleRequest = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and dashes, at most 63 characters'),
    spec: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
    example: z.string().regex(/^[A-Za-z0-9._/-]+\.ya?ml$/, 'a .yaml file under examples/').optional(),
    specDir: z.string().optional(),
    mode: z.enum(SCHEDULE_MODES).optional(),
    cron: scheduleCron.optional(),
    every: scheduleEvery.optional(),
    overlap: z.enum(SCHEDULE_OVERLAPS).default('SKIP'),
    paused: z.boolean().default(false),
    comment: scheduleComment,
  })
  .strict()
  .refine((b) => (b.spec === undefined) !== (b.example === undefined), { message: 'give exactly one of spec and example', path: ['spec'] })
  .refine((b) => b.cron === undefined || b.every === undefined, { message: 'give cron or every, not both', path: ['every'] });
/** `POST /api/schedules/:id/pause` and `/resume`. */
export const scheduleCommentRequest = z.object({ comment: scheduleComment }).strict();
/** `POST /api/schedules/:id/trigger`: one action now; by default even if one is running (ALLOW_ALL). */
export const triggerScheduleRequest = z.object({ comment: scheduleComment, overlap: z.enum(SCHEDULE_OVERLAPS).default('ALLOW_ALL') }).strict();
/**
 * `POST /api/schedules/:id/backfill`: take the actions the schedule would have taken between `from` and `to`
 * (ISO 8601), now. By default every one of them starts at once (ALLOW_ALL); SKIP would start only the first.
 */
export const backfillScheduleRequest = z
  .object({
    from: z.iso.datetime({ offset: true }),
    to: z.iso.datetime({ offset: true }),
    overlap: z.enum(SCHEDULE_OVERLAPS).default('ALLOW_ALL'),
    comment: scheduleComment,
  })
  .strict()
  .refine((b) => !(Date.parse(b.from) >= Date.parse(b.to)), { message: 'from must be before to', path: ['to'] })
  .refine((b) => !(Date.parse(b.to) - Date.parse(b.from) > 366 * 86_400_000), { message: 'a backfill covers at most 366 days', path: ['to'] });

export type CreateScheduleRequest = z.input<typeof createScheduleRequest>;
export type BackfillScheduleRequest = z.input<typeof backfillScheduleRequest>;

/** One action a schedule took: the workflow it started (a run in run mode, a check in trigger mode). */
export interface ScheduleAction {
  scheduledAt: string;
  takenAt: string;
  workflowId: string;
}

/** `GET /api/schedules` (each) and the head of `GET /api/schedules/:id`. */
export interface ScheduleInfo {
  id: string;
  /** The pipeline's name (the spec's `name`). */
  pipeline: string;
  mode: ScheduleMode;
  cron: string | null;
  every: string | null;
  overlap: ScheduleOverlap;
  paused: boolean;
  /** Why it is paused or resumed, and by whom; Temporal may write its own (pause on failure). */
  note: string | null;
  createdBy: string | null;
  comment: string | null;
  nextActionTimes: string[];
  recentActions: ScheduleAction[];
}

/** What a trigger-mode schedule last saw and did (from `retrain_triggers`). */
export interface TriggerState {
  lastCheckedAt: string | null;
  lastCheck: string | null;
  lastRunId: string | null;
  lastReason: string | null;
  /** When the state it compares against was recorded (the baseline or the last retrain). */
  since: string;
  watchedObjects: number | null;
}

export interface ScheduleDetail extends ScheduleInfo {
  /** The spec every action runs (or checks), as validated at creation. */
  spec: Record<string, unknown>;
  actionsTaken: number;
  skippedOverlap: number;
  missedCatchupWindow: number;
  /** Workflows of this schedule running now. */
  running: string[];
  createdAt: string;
  updatedAt: string | null;
  trigger?: TriggerState;
}

export interface SchedulesResponse {
  schedules: ScheduleInfo[];
}

// ---- deployments and canaries ----------------------------------------------------------------------------

/** `POST /api/runs/:id/canary`: end a running canary by hand (an approver's decision, audited). */
export const canaryActionRequest = z
  .object({
    action: z.enum(['promote', 'abort']),
    comment: z.string().max(2000).default(''),
  })
  .strict();
export type CanaryActionRequest = z.input<typeof canaryActionRequest>;

export interface DeploymentEntry extends Deployment {
  model_name: string;
  version: number;
  /** This version's share of its model's gateway traffic now, in percent (0 when it has no route). */
  weight: number;
  /** Live canary state while the deployment is a canary. */
  canary?: { status: string; weight: number; step: number; stepStartedAt?: string; health?: Record<string, unknown>; reason?: string };
}
export interface DeploymentsResponse {
  deployments: DeploymentEntry[];
}
