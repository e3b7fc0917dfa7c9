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
import { type ApprovalReceipt, type GateState, type LabelProgress, ROLES, type SuiteResult, type TestAnswer, RUN_STATUSES, STAGE_STATUSES } from '@tempered/contract';
import { z } from 'zod';

// The contract's test vocabulary and its wording, for the dashboard (which depends on this package only).
export {
  type ChampionComparison, championShortfall, describeInterval, type Interval, metricLoss, type OptimizedForm, type OptimizedMetric, type OptimizeResult, type SuiteResult,
  type TestAnswer, type TestResult,
} from '@tempered/contract';

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
const username = z.string().regex(/^[a-z][a-z0-9._-]{1,31}$/, 'lowercase letters, digits, ".", "_" or "-", 2–32 characters, starting with a letter');
const password = z.string().min(10, 'at least 10 characters').max(256);
export const createUserRequest = z.object({ username, password, role: z.enum(ROLES) }).strict();
/** `/api/users/:username/...` */
export const usernameParam = z.object({ username: z.string().min(1).max(64) });
/** An admin changes a user's role or disables (or re-enables) them; at least one field. */
export const updateUserRequest = z
  .object({ role: z.enum(ROLES).optional(), disabled: z.boolean().optional(), comment: z.string().max(2000).optional() })
  .strict()
  .refine((b) => b.role !== undefined || b.disabled !== undefined, { message: 'give role or disabled', path: ['role'] });
/** A new password: one's own needs the current one; an admin setting another user's does not. */
export const changePasswordRequest = z.object({ password, currentPassword: z.string().min(1).max(256).optional() }).strict();

/**
 * How long API tokens live, in days. A token minted from a dashboard session lives at most
 * `fromSessionMaxDays`: a stolen 12-hour cookie must not become a credential for a year, while a month
 * still covers a person creating a token for a script they run by hand. From a token, up to `maxDays`.
 */
export const TOKEN_DAYS = { default: 90, maxDays: 365, fromSessionMaxDays: 30 } as const;
export const createTokenRequest = z
  .object({ name: z.string().min(1).max(64), expiresInDays: z.number().int().min(1).max(TOKEN_DAYS.maxDays).optional() })
  .strict();
export const tokenIdParam = z.object({ id: z.string().regex(/^\d{1,18}$/) });
export const tokensQuery = z.object({ user: z.string().max(64).optional() });
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

/**
 * Query parameters of the list routes. A query string is text: these read it as a whole number and refuse,
 * at the field, what the database cannot take (a negative LIMIT, an id past bigint) instead of failing with a
 * 500. `limit` is 1 to the route's maximum (absent: the route's default); a row id (`after`, `skip`) is a
 * non-negative safe integer.
 */
const wholeNumber = (message: string) => z.string().regex(/^\d{1,16}$/, message).transform(Number);
export const listLimit = (fallback: number, max: number) =>
  wholeNumber(`expected a whole number from 1 to ${max}`)
    .pipe(z.number().int().min(1, `expected a whole number from 1 to ${max}`).max(max, `at most ${max}`))
    .optional()
    .transform((n) => n ?? fallback);
export const rowIdQuery = wholeNumber('expected a row id (a whole number)').pipe(z.number().int().max(Number.MAX_SAFE_INTEGER, 'expected a row id (a whole number)')).optional();
/** `GET /api/runs`: `status` a comma-separated list of run statuses, `q` search text. */
export const runsQuery = z.object({ status: z.string().optional(), q: z.string().optional(), limit: listLimit(50, 500) });
/** `GET /api/runs/:id/logs`: the tail, or the lines after the row id `after`. */
export const logsQuery = z.object({ after: rowIdQuery, limit: listLimit(200, 2000) });
/**
 * Which of a run's test answers to list: of the held-out split, every one, the wrong ones, or the ones the serving
 * model got right and this model wrong; of the test suites, the answers a judge disagreed on (its two orders, or
 * it and the reference) and the answers still unsafe after the gateway's output filter.
 */
export const ANSWER_FILTERS = ['all', 'wrong', 'newly-wrong', 'judge-disagreed', 'unsafe'] as const;
/** `GET /api/runs/:id/answers`. */
export const answersQuery = z.object({
  filter: z.enum(ANSWER_FILTERS).default('all'),
  /** A test suite's answers instead of the held-out split's (the filters then apply to that suite). */
  suite: z.string().min(1).max(100).optional(),
  skip: rowIdQuery,
  limit: listLimit(50, 500),
});
/** `GET /api/audit`: `target` such as `run:<id>`. */
export const auditQuery = z.object({ target: z.string().optional(), limit: listLimit(100, 1000) });

export type LoginRequest = z.infer<typeof loginRequest>;
export type CreateUserRequest = z.infer<typeof createUserRequest>;
export type UpdateUserRequest = z.infer<typeof updateUserRequest>;
export type CreateTokenRequest = z.infer<typeof createTokenRequest>;
export type StartRunRequest = z.input<typeof startRunRequest>;
export type DecisionRequest = z.input<typeof decisionRequest>;
export type LabelRequest = z.infer<typeof labelRequest>;

// ---- responses ------------------------------------------------------------------------------------------
//
// Every response is a zod schema; the API serializes each reply through its route's schema (a reply that does
// not match is a logged 500, never a malformed body), and its OpenAPI description is generated from them.
// The exported types are the JSON on the wire (`z.input`): a timestamp is a string there, while a handler
// may hand the serializer a Date (see `timestamp`).

/** An ISO 8601 time on the wire; the API may give it a Date (a database column), which it encodes. */
export const timestamp = z.codec(z.string(), z.union([z.date(), z.string()]), {
  decode: (s) => s,
  encode: (v) => (v instanceof Date ? v.toISOString() : v),
});
const json = z.record(z.string(), z.unknown());
type Wire<S extends z.ZodType> = z.input<S>;

export const issue = z.object({ path: z.string(), message: z.string() });
/** Every 4xx/5xx body. `issues` name the offending fields of a request or spec (`train.steps`, `decision`). */
export const apiError = z.object({ error: z.string(), issues: z.array(issue).optional() }).meta({ id: 'ApiError' });
export type ApiError = Wire<typeof apiError>;

export const labelProgress = z.object({ required: z.number(), labeled: z.number(), pairs: z.number() });
export const stageState = z.object({
  status: z.enum(STAGE_STATUSES),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  error: z.string().optional(),
  summary: json.optional(),
});
export const gateState = z.discriminatedUnion('status', [
  z.object({ status: z.literal('not-reached') }),
  z.object({ status: z.literal('waiting'), deadline: z.string() }),
  z.object({ status: z.enum(['approved', 'rejected']), approver: z.string(), comment: z.string(), decidedAt: z.string(), override: z.boolean().optional() }),
  z.object({ status: z.literal('expired'), expiredAt: z.string() }),
]);
export const approvalReceipt = z.object({ decision: z.enum(['approve', 'reject']), approver: z.string(), decidedAt: z.string(), override: z.boolean().optional() });
// The contract's own types and these schemas must describe the same JSON.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _sameShapes: [Same<Wire<typeof labelProgress>, LabelProgress>, Same<Wire<typeof gateState>, GateState>, Same<Wire<typeof approvalReceipt>, ApprovalReceipt>] = [true, true, true];
void _sameShapes;

export const me = z.object({
  username: z.string(),
  role: z.enum(ROLES),
  can: z.object({ read: z.boolean(), start: z.boolean(), label: z.boolean(), approve: z.boolean(), use: z.boolean(), admin: z.boolean() }),
}).meta({ id: 'Me' });
export type Me = Wire<typeof me>;
export const loginResponse = z.object({ token: z.string(), expiresAt: timestamp, user: me });
export type LoginResponse = Wire<typeof loginResponse>;

export const runSummary = z.object({
  id: z.string(),
  name: z.string(),
  status: z.enum(RUN_STATUSES),
  requested_by: z.string(),
  created_at: timestamp,
  updated_at: timestamp,
  error: z.string().nullable(),
}).meta({ id: 'RunSummary' });
export type RunSummary = Wire<typeof runSummary>;
export const stageRow = z.object({
  run_id: z.string(),
  name: z.string(),
  status: z.enum(STAGE_STATUSES),
  attempts: z.number(),
  started_at: timestamp.nullable(),
  finished_at: timestamp.nullable(),
  error: z.string().nullable(),
  summary: json.nullable(),
});
export type StageRow = Wire<typeof stageRow>;
export const artifactInfo = z.object({
  id: z.number(),
  stage: z.string(),
  uri: z.string(),
  sha256: z.string(),
  bytes: z.number(),
  kind: z.string(),
  /** `GET` it (authenticated) to download the bytes. */
  download: z.string(),
});
export type ArtifactInfo = Wire<typeof artifactInfo>;
export const approvalRow = z.object({
  id: z.number(),
  run_id: z.string(),
  /** `override`: approved although the challenger did not beat the serving model. */
  decision: z.enum(['approve', 'reject', 'override', 'expired']),
  approver: z.string().nullable(),
  comment: z.string().nullable(),
  decided_at: timestamp,
});
export type ApprovalRow = Wire<typeof approvalRow>;
export const metricPoint = z.object({ stage: z.string(), name: z.string(), step: z.number(), value: z.number() });
export type MetricPoint = Wire<typeof metricPoint>;
export const logLine = z.object({ id: z.number(), stage: z.string(), at: timestamp, line: z.string() });
export type LogLine = Wire<typeof logLine>;
export const modelVersion = z.object({
  id: z.string(),
  name: z.string(),
  version: z.number(),
  run_id: z.string(),
  model_uri: z.string(),
  sha256: z.string(),
  metrics: json,
  created_at: timestamp,
});
export type ModelVersion = Wire<typeof modelVersion>;
export const deployment = z.object({
  id: z.string(),
  model_version_id: z.string(),
  run_id: z.string(),
  endpoint: z.string(),
  status: z.string(),
  created_at: timestamp,
});
export type Deployment = Wire<typeof deployment>;
export const datasetVersion = z.object({
  id: z.string(),
  name: z.string(),
  run_id: z.string(),
  snapshot_uri: z.string(),
  sha256: z.string(),
  input_count: z.number(),
  kept_count: z.number(),
  quarantined_count: z.number(),
  quarantine_uri: z.string(),
  created_at: timestamp,
});
export type DatasetVersion = Wire<typeof datasetVersion>;

/** The live part of a run: the `run` event of its stream. */
export const runLive = z.object({
  run: runSummary.extend({ spec: json }),
  stages: z.array(stageRow),
  gate: gateState.optional(),
  /** Live stage states from the workflow (summaries, waiting states); absent when the run is gone from Temporal. */
  progress: z.record(z.string(), stageState).optional(),
});
/** `GET /api/runs/:id`, and the `snapshot` event of its event stream. */
export const runDetail = runLive.extend({
  artifacts: z.array(artifactInfo),
  approvals: z.array(approvalRow),
  /** Series keyed `<stage>.<name>` (`train.loss`, `validate.val_loss`), points `[step, value]` by step. */
  metrics: z.record(z.string(), z.array(z.tuple([z.number(), z.number()]))),
  labels: labelProgress.optional(),
  datasetVersion: datasetVersion.optional(),
  modelVersion: modelVersion.optional(),
  deployment: deployment.optional(),
}).meta({ id: 'RunDetail' });
export type RunDetail = Wire<typeof runDetail>;

/**
 * Server-sent events of `GET /api/runs/:id/events`: first `snapshot` (a RunDetail), then as things change
 * `run` (run, stages, gate, progress), `metrics` (new points), `logs` (new lines), `labels`, `approvals`.
 * `GET /api/events` sends `runs` ({run: RunSummary}) whenever any run changes. Each event's data is
 * serialized through its schema here.
 */
export const runEvents = {
  snapshot: runDetail,
  run: runLive,
  metrics: z.object({ points: z.array(metricPoint) }),
  logs: z.object({ lines: z.array(logLine) }),
  labels: labelProgress,
  approvals: z.object({ approvals: z.array(approvalRow) }),
};
export type RunEvents = { [K in keyof typeof runEvents]: Wire<(typeof runEvents)[K]> };
export const globalEvents = { runs: z.object({ run: runSummary }) };

/** One test record as the test stage scored it (contract: `TestAnswer`). */
export const testAnswer = z.object({
  key: z.string(),
  prompt: z.string(),
  reference: z.string(),
  answer: z.string(),
  correct: z.boolean(),
  baselineAnswer: z.string(),
  label: z.string().nullable().optional(),
  referenceLabel: z.string().nullable().optional(),
  championAnswer: z.string().optional(),
  championCorrect: z.boolean().optional(),
  suite: z.string().optional(),
  judge: z
    .object({
      outcome: z.enum(['win', 'loss', 'tie', 'no-verdict']),
      verdictAB: z.string().nullable(),
      verdictBA: z.string().nullable(),
      replyAB: z.string().nullable().optional(),
      replyBA: z.string().nullable().optional(),
      otherAnswer: z.string(),
      disagreed: z.boolean(),
    })
    .optional(),
  unsafe: z.boolean().optional(),
});
export const answersResponse = z.object({
  /** How many answers each filter holds (newly wrong: 0 without a serving model to compare with). */
  counts: z.object({ all: z.number(), wrong: z.number(), 'newly-wrong': z.number(), 'judge-disagreed': z.number(), unsafe: z.number() }),
  answers: z.array(testAnswer),
});
export type AnswersResponse = Wire<typeof answersResponse>;
const _sameAnswer: Same<Wire<typeof testAnswer>, TestAnswer> = true;
void _sameAnswer;

export const pendingApproval = z.object({
  runId: z.string(),
  name: z.string(),
  requestedBy: z.string(),
  deadline: z.string().nullable(),
  test: json.nullable(),
  /** The serving version of the same model name, to compare with (null before its first deployment). */
  production: modelVersion.extend({ deploymentId: z.string() }).nullable(),
  /** A few answers to read before deciding: ones the serving model got right and this one wrong, else wrong ones. */
  sampleAnswers: z.object({ filter: z.enum(['wrong', 'newly-wrong']), answers: z.array(testAnswer) }),
  /** False when the caller may not decide it (wrong role, or they started the run); `reason` says why. */
  canDecide: z.boolean(),
  reason: z.string().optional(),
});
export type PendingApproval = Wire<typeof pendingApproval>;
export const approvalsResponse = z.object({ pending: z.array(pendingApproval), recent: z.array(approvalRow.extend({ name: z.string() })) });
export type ApprovalsResponse = Wire<typeof approvalsResponse>;

export const preferencePair = z.object({ id: z.number(), runId: z.string(), prompt: z.string(), responseA: z.string(), responseB: z.string() });
export type PreferencePair = Wire<typeof preferencePair>;
export const labelingQueue = z.object({ runs: z.array(labelProgress.extend({ runId: z.string(), name: z.string() })) });
export type LabelingQueue = Wire<typeof labelingQueue>;
export const nextPair = z.object({ pair: preferencePair.nullable(), progress: labelProgress });
export type NextPair = Wire<typeof nextPair>;

export const modelEntry = modelVersion.extend({
  datasetVersionId: z.string().nullable(),
  deployments: z.array(deployment),
  /** True for the version behind the newest serving deployment. */
  serving: z.boolean(),
});
export type ModelEntry = Wire<typeof modelEntry>;
export const modelsResponse = z.object({ models: z.array(modelEntry) });
export type ModelsResponse = Wire<typeof modelsResponse>;
/**
 * Edges between nodes named `<type>:<id>` (dataset_version:…, artifact:…, model_version:…, deployment:…,
 * base_model:<catalog name> for a version fine-tuned from a catalog base model).
 */
export const lineageResponse = z.object({ edges: z.array(z.object({ parent: z.string(), child: z.string(), relation: z.string() })) });
export type LineageResponse = Wire<typeof lineageResponse>;

/** A pretrained model of the catalog, which a spec names with `model.base: {name}`. */
export const baseModelEntry = z.object({
  name: z.string(),
  architecture: z.string(),
  model_type: z.string(),
  parameters: z.number(),
  context_length: z.number(),
  license: z.string(),
  /** Where it came from: the registry package and the upstream model. */
  source: z.string(),
  /** Of its model.tar, stored once in S3 at `uri`. */
  sha256: z.string(),
  bytes: z.number(),
  uri: z.string(),
  created_at: timestamp,
  /** Model versions fine-tuned from it (through any later stage, RLHF included), newest first. */
  fineTuned: z.array(modelVersion.pick({ id: true, name: true, version: true, run_id: true, created_at: true })),
});
export type BaseModelEntry = Wire<typeof baseModelEntry>;
/** `GET /api/base-models`. */
export const baseModelsResponse = z.object({ baseModels: z.array(baseModelEntry) });
export type BaseModelsResponse = Wire<typeof baseModelsResponse>;

export const datasetEntry = datasetVersion.extend({
  /** The clean stage's counts for the run that made this version, when it ran. */
  clean: json.nullable(),
});
export type DatasetEntry = Wire<typeof datasetEntry>;
export const datasetsResponse = z.object({ datasets: z.array(datasetEntry) });
export type DatasetsResponse = Wire<typeof datasetsResponse>;
export const datasetDetail = z.object({
  dataset: datasetEntry,
  /** The first quarantined records with their reasons. */
  quarantine: z.array(json),
  /** The clean stage's report (what each rule removed or changed). */
  cleanReport: json.nullable(),
  artifacts: z.array(artifactInfo),
});
export type DatasetDetail = Wire<typeof datasetDetail>;

export const auditEntry = z.object({
  id: z.number(),
  at: timestamp,
  actor: z.string(),
  action: z.string(),
  target: z.string(),
  comment: z.string().nullable(),
  details: json.nullable(),
});
export type AuditEntry = Wire<typeof auditEntry>;
export const exampleSpec = z.object({
  /** Path under examples/, the value of `example` in `POST /api/runs`. */
  path: z.string(),
  name: z.string(),
  yaml: z.string(),
});
export type ExampleSpec = Wire<typeof exampleSpec>;

/** Small bodies of single routes. */
export const examplesResponse = z.object({ examples: z.array(exampleSpec) });
export const runsResponse = z.object({ runs: z.array(runSummary) });
export const startRunResponse = z.object({ runId: z.string(), name: z.string(), requestedBy: z.string() });
export const logsResponse = z.object({ lines: z.array(logLine) });
export const cancelResponse = z.object({ cancelled: z.literal(true) });
export const labelResponse = z.object({ progress: labelProgress });
export const okResponse = z.object({ ok: z.literal(true) });
export const healthResponse = z.object({ status: z.literal('ok') });
export const usersResponse = z.object({
  users: z.array(z.object({ username: z.string(), role: z.enum(ROLES), created_at: timestamp, disabled_at: timestamp.nullable() })),
});
export const createUserResponse = z.object({ username: z.string(), role: z.enum(ROLES) });
export const createTokenResponse = z.object({ token: z.string(), id: z.string(), name: z.string(), expiresAt: timestamp });
export const userResponse = z.object({ username: z.string(), role: z.enum(ROLES), disabled_at: timestamp.nullable() });
export const passwordChangedResponse = z.object({ username: z.string(), sessionsRevoked: z.number().int() });
export const unlockedResponse = z.object({ username: z.string(), unlocked: z.number().int() });
export const tokenInfo = z.object({
  id: z.string(), username: z.string(), name: z.string(), kind: z.enum(['api', 'session']),
  created_at: timestamp, expires_at: timestamp.nullable(), last_used_at: timestamp.nullable(),
});
export const tokensResponse = z.object({ tokens: z.array(tokenInfo) });
export const revokedResponse = z.object({ id: z.string(), revoked: z.literal(true) });
export const auditResponse = z.object({ entries: z.array(auditEntry) });
export const canarySentResponse = z.object({ sent: z.enum(['promote', 'abort']) });

// ---- schedules and triggered retrains -----------------------------------------------------------------------

/**
 * Temporal's overlap policies: what happens when a schedule's time comes while its previous run is still in
 * progress. SKIP (the default) starts nothing; BUFFER_ONE / BUFFER_ALL start it after; CANCEL_OTHER /
 * TERMINATE_OTHER stop the old one; ALLOW_ALL runs both.
 */
export const SCHEDULE_OVERLAPS = ['SKIP', 'BUFFER_ONE', 'BUFFER_ALL', 'CANCEL_OTHER', 'TERMINATE_OTHER', 'ALLOW_ALL'] as const;
export type ScheduleOverlap = (typeof SCHEDULE_OVERLAPS)[number];
/**
 * run: every action starts a run of the pipeline; trigger: every action checks the spec's `retrain.watch` /
 * `retrain.feedback`; eval: every action runs the spec's `test.suites` on the version serving its name (drift).
 */
export const SCHEDULE_MODES = ['run', 'trigger', 'eval'] as const;
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
 * The API bounds the window and the runs it starts (`cfg.limits`: maxBackfillDays, maxBackfillActions).
 */
export const backfillScheduleRequest = z
  .object({
    from: z.iso.datetime({ offset: true }),
    to: z.iso.datetime({ offset: true }),
    overlap: z.enum(SCHEDULE_OVERLAPS).default('ALLOW_ALL'),
    comment: scheduleComment,
  })
  .strict()
  .refine((b) => !(Date.parse(b.from) >= Date.parse(b.to)), { message: 'from must be before to', path: ['to'] });

export type CreateScheduleRequest = z.input<typeof createScheduleRequest>;
export type BackfillScheduleRequest = z.input<typeof backfillScheduleRequest>;

/** One action a schedule took: the workflow it started (a run in run mode, a check in trigger mode). */
export const scheduleAction = z.object({ scheduledAt: z.string(), takenAt: z.string(), workflowId: z.string() });
export type ScheduleAction = Wire<typeof scheduleAction>;

/** `GET /api/schedules` (each) and the head of `GET /api/schedules/:id`. */
export const scheduleInfo = z.object({
  id: z.string(),
  /** The pipeline's name (the spec's `name`). */
  pipeline: z.string(),
  mode: z.enum(SCHEDULE_MODES),
  cron: z.string().nullable(),
  every: z.string().nullable(),
  overlap: z.enum(SCHEDULE_OVERLAPS),
  paused: z.boolean(),
  /** Why it is paused or resumed, and by whom; Temporal may write its own (pause on failure). */
  note: z.string().nullable(),
  createdBy: z.string().nullable(),
  comment: z.string().nullable(),
  nextActionTimes: z.array(z.string()),
  recentActions: z.array(scheduleAction),
});
export type ScheduleInfo = Wire<typeof scheduleInfo>;

/** What a trigger-mode schedule last saw and did (from `retrain_triggers`). */
export const triggerState = z.object({
  lastCheckedAt: z.string().nullable(),
  lastCheck: z.string().nullable(),
  lastRunId: z.string().nullable(),
  lastReason: z.string().nullable(),
  /** When the state it compares against was recorded (the baseline or the last retrain). */
  since: z.string(),
  watchedObjects: z.number().nullable(),
});
export type TriggerState = Wire<typeof triggerState>;

export const scheduleDetail = scheduleInfo.extend({
  /** The spec every action runs (or checks), as validated at creation. */
  spec: json,
  actionsTaken: z.number(),
  skippedOverlap: z.number(),
  missedCatchupWindow: z.number(),
  /** Workflows of this schedule running now. */
  running: z.array(z.string()),
  createdAt: z.string(),
  updatedAt: z.string().nullable(),
  trigger: triggerState.optional(),
}).meta({ id: 'ScheduleDetail' });
export type ScheduleDetail = Wire<typeof scheduleDetail>;
export const schedulesResponse = z.object({ schedules: z.array(scheduleInfo) });
export type SchedulesResponse = Wire<typeof schedulesResponse>;
export const triggeredResponse = z.object({ triggered: z.literal(true) });
export const backfilledResponse = z.object({ backfilled: z.literal(true), from: z.string(), to: z.string(), overlap: z.enum(SCHEDULE_OVERLAPS) });
export const deletedResponse = z.object({ deleted: z.literal(true) });

// ---- deployments and canaries ----------------------------------------------------------------------------

/** `POST /api/runs/:id/canary`: end a running canary by hand (an approver's decision, audited). */
export const canaryActionRequest = z
  .object({
    action: z.enum(['promote', 'abort']),
    comment: z.string().max(2000).default(''),
  })
  .strict();
export type CanaryActionRequest = z.input<typeof canaryActionRequest>;

/** A model name in a path (a pipeline spec's `name`). */
export const modelNameParam = z.object({ name: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'a model name: letters, digits, dot, dash, underscore') });

/**
 * `POST /api/deployments/:name/rollback`: all of a model name's traffic back to an earlier version, without a
 * canary (an approver's decision, audited). `to`: the version's number or id; absent, the version deployed
 * before the one serving now.
 */
export const rollbackRequest = z
  .object({
    to: z.union([z.number().int().positive(), z.string().regex(/^[A-Za-z0-9._-]{1,160}$/, 'a version number or id')]).optional(),
    reason: z.string().trim().min(1, 'say why: a rollback needs a reason').max(2000),
  })
  .strict();
export type RollbackRequest = z.input<typeof rollbackRequest>;
export const rollbackResponse = z.object({
  modelName: z.string(),
  /** The version that served before (it stays registered and downloadable), and the one serving now. */
  from: z.string(),
  to: z.string(),
  deploymentId: z.string(),
  endpoint: z.string(),
  /** How long the earlier version's server took to answer (0 when it was still running). */
  startedInMs: z.number(),
});
export type RollbackResponse = Wire<typeof rollbackResponse>;

export const deploymentEntry = deployment.extend({
  model_name: z.string(),
  version: z.number(),
  /** This version's share of its model's gateway traffic now, in percent (0 when it has no route). */
  weight: z.number(),
  /** Live canary state while the deployment is a canary. */
  canary: z
    .object({ status: z.string(), weight: z.number(), step: z.number(), stepStartedAt: z.string().optional(), health: json.optional(), reason: z.string().optional() })
    .optional(),
});
export type DeploymentEntry = Wire<typeof deploymentEntry>;
export const deploymentsResponse = z.object({ deployments: z.array(deploymentEntry) });
export type DeploymentsResponse = Wire<typeof deploymentsResponse>;

// ---- the playground: a person trying a serving model through the gateway, and rating what it said ----------

/** Bounds of one playground conversation (the gateway applies its own, such as the most tokens, on top). */
export const PLAYGROUND_LIMITS = { messages: 64, contentChars: 16_000 } as const;
const playgroundText = (what: string) => z.string().max(PLAYGROUND_LIMITS.contentChars, `${what} is over ${PLAYGROUND_LIMITS.contentChars} characters`);
/** A serving model's name (routed as the gateway routes it) or one version's id (pinned to it). */
const servedModel = z.string().regex(/^[A-Za-z0-9._:-]{1,200}$/, 'a serving model name or a model version id');
export const playgroundChatRequest = z
  .object({
    model: servedModel,
    messages: z
      .array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: playgroundText('a message') }).strict())
      .min(1, 'say something first')
      .max(PLAYGROUND_LIMITS.messages, `at most ${PLAYGROUND_LIMITS.messages} messages; start a new conversation`),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().gt(0).max(1).optional(),
    max_tokens: z.number().int().min(1).optional(),
    seed: z.number().int().optional(),
  })
  .strict();
export type PlaygroundChatRequest = z.input<typeof playgroundChatRequest>;
const gatewayRequestId = z.string().min(1).max(200);
export const playgroundRatingRequest = z
  .object({ requestId: gatewayRequestId, rating: z.enum(['up', 'down']), comment: z.string().max(2000).optional() })
  .strict();
export type PlaygroundRatingRequest = z.input<typeof playgroundRatingRequest>;
export const playgroundPreferenceRequest = z
  .object({
    prompt: playgroundText('the prompt').min(1),
    responseA: playgroundText('response A').min(1),
    responseB: playgroundText('response B').min(1),
    requestIds: z.tuple([gatewayRequestId, gatewayRequestId]),
    preferred: z.enum(['a', 'b', 'tie']),
    comment: z.string().max(2000).optional(),
  })
  .strict();
export type PlaygroundPreferenceRequest = z.input<typeof playgroundPreferenceRequest>;
/** A stored rating or preference: its row in the gateway's feedback tables, which the next RLHF run reads. */
export const playgroundFeedbackResponse = z.object({ id: z.string(), model: z.string().nullable(), modelVersion: z.string().nullable() });
export type PlaygroundFeedbackResponse = Wire<typeof playgroundFeedbackResponse>;

// ---- on-demand evaluations: a model version's test suites run again (tempered eval; drift schedules) ---------

/** The most suites one evaluation names (a spec holds at most as many). */
export const MAX_EVALUATION_SUITES = 20;
/** `POST /api/models/:id/evaluations`: which of the version's run's `test.suites` to run (all when absent). */
export const evaluationRequest = z
  .object({
    suites: z.array(z.string().min(1).max(100)).min(1, 'name a suite, or leave suites out to run all of them').max(MAX_EVALUATION_SUITES).optional(),
    comment: z.string().max(2000).optional(),
  })
  .strict();
export type EvaluationRequest = z.input<typeof evaluationRequest>;
export const evaluationDetail = z.object({
  id: z.string(),
  modelName: z.string(),
  /** Null while a drift evaluation has not yet found the serving version (or found none). */
  modelVersionId: z.string().nullable(),
  suites: z.array(z.string()),
  status: z.enum(['running', 'completed', 'failed']),
  requestedBy: z.string(),
  /** Each suite's figures (contract: SuiteResult), once completed. */
  results: z.array(json).nullable(),
  /** The suites' min / max bounds the figures cross, in the test gate's words. */
  breaches: z.array(z.string()).nullable(),
  error: z.string().nullable(),
  createdAt: timestamp,
  finishedAt: timestamp.nullable(),
});
export type EvaluationDetail = Omit<Wire<typeof evaluationDetail>, 'results'> & { results: SuiteResult[] | null };
export const evaluationsResponse = z.object({ evaluations: z.array(evaluationDetail) });
export type EvaluationsResponse = { evaluations: EvaluationDetail[] };
export const evaluationAnswersResponse = z.object({ answers: z.array(testAnswer) });
export type EvaluationAnswersResponse = Wire<typeof evaluationAnswersResponse>;
