/**
 * A pipeline run's vocabulary: its stages, the statuses of runs and stages, the artifact references stages
 * exchange (big data never travels through Temporal: stages pass `ArtifactRef`s to objects in S3), each
 * stage's result, the gate, the canary, and the workflow's input and outcome.
 *
 * Types and constants only, with no Node API and no Temporal: workflow code, activities, the API, the CLI and
 * the dashboard all import it.
 */
import type { CanarySpec, PipelineSpec } from '@tempered/spec';

export const STAGES = ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate', 'rlhf', 'test', 'optimize', 'deploy'] as const;
export type StageName = (typeof STAGES)[number];
export const STAGE_STATUSES = ['pending', 'running', 'completed', 'failed', 'skipped', 'cancelled'] as const;
export type StageStatus = (typeof STAGE_STATUSES)[number];

/** A run's status, as the runs table and the API show it, in the order a run meets them. */
export const RUN_STATUSES = [
  'queued', 'running', 'waiting-labels', 'waiting-approval', 'canary', 'deployed', 'rolled-back', 'rejected', 'expired', 'failed', 'cancelled',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
/** Statuses a run never leaves: whoever waits for a run (the CLI, the dashboard, a retrain trigger) stops at these. */
export const TERMINAL_RUN_STATUSES = ['deployed', 'rolled-back', 'rejected', 'expired', 'failed', 'cancelled'] as const satisfies readonly RunStatus[];
export type TerminalRunStatus = (typeof TERMINAL_RUN_STATUSES)[number];
export function isTerminalRunStatus(status: string): status is TerminalRunStatus {
  return (TERMINAL_RUN_STATUSES as readonly string[]).includes(status);
}
/** Statuses of a run still in progress (a retrain trigger does not start another beside it). */
export const ACTIVE_RUN_STATUSES = RUN_STATUSES.filter((s) => !isTerminalRunStatus(s));

export type ArtifactKind =
  | 'dataset'
  | 'quarantine'
  | 'cleaned'
  | 'clean-report'
  /**
   * Intermediate parts of a data stage run on shards (clean's candidates and sidecars, encoded shards), merged into
   * the stage's own artifacts, then deleted: scratch objects under `parts/<workflow id>/`, never content-addressed.
   */
  | 'data-part'
  | 'tokenizer'
  | 'shard'
  | 'checkpoint'
  | 'model'
  | 'preferences'
  | 'reward-model'
  | 'adapter'
  | 'report'
  /** The test stage's answers, one JSON line per test record (`TestAnswer`). */
  | 'answers'
  /** A catalog base model's model.tar (the base_models table), stored once whatever runs fine-tune it. */
  | 'base-model';

/** A reference to an immutable, content-addressed object in the artifact store. */
export interface ArtifactRef {
  uri: string;
  sha256: string;
  bytes: number;
  kind: ArtifactKind;
}

export interface IngestResult {
  datasetVersionId: string;
  dataset: ArtifactRef;
  quarantine: ArtifactRef;
  counts: { input: number; kept: number; quarantined: number };
}
export interface CleanResult {
  cleaned: ArtifactRef;
  report: ArtifactRef;
  counts: { input: number; kept: number; removed: number; changed: number };
}
/**
 * A byte range [start, end) of a JSONL artifact: its shard is the lines that begin inside it, so consecutive
 * ranges cover every line exactly once whatever their size.
 */
export interface ByteRange {
  start: number;
  end: number;
}
/** Consecutive ranges of `size` bytes (the last one shorter) over `bytes` bytes. */
export function shardRanges(bytes: number, size: number): ByteRange[] {
  const ranges: ByteRange[] = [];
  for (let start = 0; start < bytes; start += size) ranges.push({ start, end: Math.min(bytes, start + size) });
  return ranges;
}
/** What a data stage that ran on shards of its input is given by its workflow. */
export interface ShardPlan {
  ranges: ByteRange[];
  /** How many shard activities run at once. */
  parallel: number;
}
/** One shard through clean's first pass: its candidates, their dedupe sidecar, and its part of the report. */
export interface CleanShardResult {
  candidates: ArtifactRef;
  sidecar: ArtifactRef;
  /** The shard's part of the cleaning report (clean-core's CleanReport: counts and the first samples). */
  report: Record<string, unknown>;
  counts: { input: number; candidates: number };
}
/** One shard of the cleaned records, encoded (no artifact when no record begins in its range). */
export interface EncodedShardResult {
  encoded?: ArtifactRef;
  counts: { records: number; tokens: number };
}
export interface TokenizeResult {
  tokenizer: ArtifactRef;
  encoded: ArtifactRef;
  counts: { records: number; tokens: number };
}
export interface SplitResult {
  train: ArtifactRef;
  validation: ArtifactRef;
  test: ArtifactRef;
  counts: { train: number; validation: number; test: number };
}
export interface TrainResult {
  model: ArtifactRef;
  checkpoints: ArtifactRef[];
  steps: number;
  initialLoss: number;
  finalLoss: number;
}
export interface ValidateResult {
  best: ArtifactRef;
  bestStep: number;
  valLoss: number;
  perplexity: number;
  initialValLoss: number;
}
export interface RlhfResult {
  model: ArtifactRef;
  method: 'dpo' | 'rl';
  steps: number;
  /** Share of preference pairs ranked right: by DPO's implicit reward, or by the reward model before RL. */
  rewardAccuracy?: number;
}
export interface RewardModelResult {
  rewardModel: ArtifactRef;
  preferences: ArtifactRef;
  rewardAccuracy: number;
  initialRewardAccuracy: number;
}
/** A figure measured on n examples, with its bootstrap 95% interval (the trainer's stats.py). */
export interface Interval {
  value: number;
  low: number;
  high: number;
  n: number;
}

/**
 * What the paired interval of (challenger − champion) says about the margin: `better` when all of it is at or
 * above the margin, `worse` when all of it is below, `unsure` when it straddles the margin (the test records
 * cannot tell, so noise decides neither way).
 */
export type ChampionVerdict = 'better' | 'worse' | 'unsure';

/** The challenger (this run's model) against the serving model of the same name, on the same test records. */
export interface ChampionComparison {
  modelVersionId: string;
  version: number;
  championExactMatch: number;
  challengerExactMatch: number;
  /** Wins / (wins + losses) of the challenger, prompt by prompt. */
  winRate: number;
  margin: number;
  examples: number;
  /**
   * Not `worse`: deploying needs an approver's override only when the test records show, at 95%, that the
   * challenger falls short of the margin. (Runs tested before intervals: challenger − champion ≥ margin.)
   */
  challengerWins: boolean;
  /** challenger − champion exact match on the same records, paired bootstrap 95% interval (absent in older runs). */
  difference?: Interval;
  verdict?: ChampionVerdict;
  /** Exact McNemar test of the records exactly one of the two answered right: how likely so uneven a split is by chance. */
  pValue?: number;
  /** Records the serving model answers right and the challenger wrong. */
  regressions?: number;
}

/** A test suite (`test.suites`) as the test stage measured it: its records' fate, and each metric with its interval. */
export interface SuiteResult {
  name: string;
  /** Records read from the suite's file; quarantined by ingest (bad rows) or removed by cleaning (empty); answered. */
  input: number;
  quarantined: number;
  removed: number;
  examples: number;
  /** Each answer metric the suite asks for (`exact_match`, `accuracy`, `macro_f1`, `rouge_l`, `chrf`), mean over answers. */
  metrics: Record<string, Interval>;
  /** When asked: exp of the token-weighted mean loss over the suite's response tokens (one figure, no interval). */
  perplexity?: { value: number; n: number };
  /** With win_rate: how the pairs were judged (the rate itself is `metrics.win_rate`). */
  judged?: SuiteJudgement;
  /** With unsafe_rate: the same answers' unsafe rate before the gateway's output filter (after it: `metrics.unsafe_rate`). */
  unsafeBeforeFilter?: Interval;
  /** Wall time the suite added to its stage: reading, answering, judging and scoring (absent in older runs). */
  seconds?: number;
}

/**
 * A judged pairwise comparison: each pair (this model's answer, the other's) judged in both orders; the win rate
 * counts a tie and a "no verdict" (a reply the judge's parser could not read) as half a win, so no pair is dropped.
 */
export interface SuiteJudgement {
  /** The spec's `judge`: "reward" or "catalog:<name>". */
  judge: string;
  /** Who this model was judged against: the serving model of the same name, or the untrained / base model. */
  against: { kind: 'serving'; modelVersionId: string; version: number } | { kind: 'untrained' };
  pairs: number;
  wins: number;
  losses: number;
  ties: number;
  noVerdict: number;
  /** Pairs whose two orders disagreed, or whose outcome the reference rule (an answer equal to the reference wins) contradicts. */
  disagreed: number;
  /** Of the pairs the reference rule decides (exactly one answer equals the reference) and the judge gave a verdict on, how many agree. */
  agreement: { decided: number; agreed: number };
}

/** A suite answer's verdicts from the judge (TestAnswer.judge): A is this model's answer, B the other's. */
export interface JudgeVerdict {
  outcome: 'win' | 'loss' | 'tie' | 'no-verdict';
  /** The judge's pick with this model's answer shown first, and with it shown second (null: no verdict). */
  verdictAB: string | null;
  verdictBA: string | null;
  /**
   * What the judge said in each order, as it said it: an LM judge's reply (what "no verdict" could not read), or a
   * reward model's two scores ("0.8123 vs 0.1234", this answer's first). Absent in older runs.
   */
  replyAB?: string | null;
  replyBA?: string | null;
  otherAnswer: string;
  disagreed: boolean;
}

/** One test record as the test stage scored it: the `answers` artifact's lines and the test_answers rows. */
export interface TestAnswer {
  key: string;
  prompt: string;
  reference: string;
  answer: string;
  correct: boolean;
  /** The untrained model's answer (a base model zero-shot). */
  baselineAnswer: string;
  /** With test.choices: the label read from the answer and from the reference (null: names no choice). */
  label?: string | null;
  referenceLabel?: string | null;
  /** When a model of the same name was serving and answered this record too. */
  championAnswer?: string;
  championCorrect?: boolean;
  /** The test suite this record is from (absent: the held-out split). */
  suite?: string;
  /** With a suite's win_rate: the judge's verdicts on this answer against the other model's. */
  judge?: JudgeVerdict;
  /** With a suite's unsafe_rate: whether the answer still holds unsafe content after the gateway's output filter. */
  unsafe?: boolean;
}

const pct = (x: number) => x.toFixed(3);
/** "0.712 (95% interval 0.650 to 0.770, n = 238 records)" */
export function describeInterval(i: Interval, of = 'records'): string {
  return `${pct(i.value)} (95% interval ${pct(i.low)} to ${pct(i.high)}, n = ${i.n} ${of})`;
}

/** Why deploying a challenger that lost to the serving model needs an override: the gate's and the inbox's words. */
export function championShortfall(c: ChampionComparison): string {
  const sure = c.difference
    ? `: the difference is ${describeInterval(c.difference, 'paired records')}, all of it below the margin${c.pValue !== undefined ? `, McNemar p = ${c.pValue.toPrecision(2)}` : ''}`
    : '';
  return `the challenger's exact match ${pct(c.challengerExactMatch)} does not beat the serving model's ${pct(c.championExactMatch)} by test.championMargin ${c.margin}${sure}`;
}

export interface TestResult {
  loss: number;
  perplexity: number;
  exactMatch: number;
  /** The untrained model (step 0: a base model zero-shot, or a tiny model's random start). */
  baselineExactMatch: number;
  examples: number;
  /** The candidate's figures with their bootstrap 95% intervals (absent in older runs). */
  intervals?: { exactMatch: Interval; accuracy?: Interval; macroF1?: Interval };
  /** Every test record's answers and scores (`TestAnswer` lines; absent in older runs). */
  answers?: ArtifactRef;
  /** The spec's test suites, in order. */
  suites?: SuiteResult[];
  /** With `test.choices`: the label extracted from each answer, scored against the reference's. */
  classification?: {
    choices: string[];
    /** Test records answered (plain-text records have no question). */
    examples: number;
    accuracy: number;
    macroF1: number;
    /** Answers naming none of the choices (counted wrong). */
    noLabel: number;
    baselineAccuracy: number;
    /** The fine-tuned model before RLHF, when RLHF ran. */
    sftAccuracy?: number;
  };
  champion?: ChampionComparison;
}
/**
 * The optimize stage (`optimize` in the spec): the model exported to GGUF by llama.cpp, each type scored on the
 * held-out split and the suites as the test stage scored the model itself, and every figure's change.
 */
export interface OptimizeResult {
  tolerance: number;
  forms: OptimizedForm[];
  /** With deploy.engine llamacpp: the type that deploys (it stayed within the tolerance, or the stage failed). */
  deploys?: string;
  /** Suite metrics not rescored on GGUF, with why. */
  skipped?: Array<{ scope: string; metric: string; reason: string }>;
}

export interface OptimizedForm {
  /** A GGUF type: f16, q8_0, q4_k_m. */
  type: string;
  bytes: number;
  /** The stored file (a `model` artifact; also downloadable from the Models page once a version is registered). */
  file: ArtifactRef;
  /** Answer tokens per second while answering the held-out split, one prompt at a time on llama.cpp. */
  tokensPerSec: number | null;
  metrics: OptimizedMetric[];
  /** Every metric loses at most the tolerance. */
  withinTolerance: boolean;
}

/** One figure of a GGUF type beside the same figure of the model it was exported from. */
export interface OptimizedMetric {
  /** `test` (the held-out split) or a suite's name. */
  scope: string;
  /** exact_match, accuracy, macro_f1, rouge_l, chrf, unsafe_rate or perplexity. */
  metric: string;
  value: number;
  /** The GGUF type's interval (absent for perplexity). */
  interval?: Interval;
  /** The model's own figure, from the test stage. */
  reference: number;
  /** value − reference. */
  change: number;
  /**
   * For exact_match and accuracy: the paired bootstrap 95% interval of the change, record by record (the same
   * records answered by both), so a change of a few answers reads as the noise it may be.
   */
  changeInterval?: Interval;
  /** How much worse: a drop of a score, a rise of unsafe_rate, the relative rise of perplexity (≤ 0: no loss). */
  loss: number;
  within: boolean;
}

/** How much worse `value` is than `reference` for a metric: see OptimizedMetric.loss. */
export function metricLoss(metric: string, value: number, reference: number): number {
  if (metric === 'perplexity') return reference > 0 ? value / reference - 1 : 0;
  if (metric === 'unsafe_rate') return value - reference;
  return reference - value;
}

export interface DeployResult {
  modelVersionId: string;
  deploymentId: string;
  endpoint: string;
  /** Set when the spec asks for a canary and another version of the model is serving: it keeps serving for now. */
  previous?: ServingVersion;
  /** How the canary ended, when there was one. */
  canary?: CanaryOutcome;
}

/** A deployed version behind the gateway. */
export interface ServingVersion {
  deploymentId: string;
  modelVersionId: string;
  endpoint: string;
}

/** The new version's behaviour in the current canary step, from the gateway's request log and feedback. */
export interface CanaryHealth {
  requests: number;
  errors: number;
  errorRate: number;
  p95LatencyMs: number;
  rated: number;
  negative: number;
  negativeRate: number;
  /** Why the step fails, when it does. */
  breach?: string;
}

export interface CanaryState {
  status: 'running' | 'promoted' | 'rolled-back';
  /** The new version's share of traffic now, in percent. */
  weight: number;
  step: number;
  stepStartedAt?: string;
  health?: CanaryHealth;
  reason?: string;
  decidedBy?: string;
}

export interface CanaryInput {
  runId: string;
  /** The pool whose workers run the canary's bookkeeping activities (the spec's data pool). */
  pool: string;
  modelName: string;
  canary: CanarySpec;
  candidate: ServingVersion;
  previous: ServingVersion;
}

export interface CanaryOutcome {
  status: 'promoted' | 'rolled-back';
  reason: string;
  decidedBy: string;
  steps: Array<{ weight: number; health?: CanaryHealth }>;
}

/** Stage outputs kept by the workflow and exposed by the `progress` query. */
export interface StageState {
  status: StageStatus;
  startedAt?: string;
  finishedAt?: string;
  error?: string;
  summary?: Record<string, unknown>;
}

export type GateState =
  | { status: 'not-reached' }
  | { status: 'waiting'; deadline: string }
  | { status: 'approved' | 'rejected'; approver: string; comment: string; decidedAt: string; override?: boolean }
  | { status: 'expired'; expiredAt: string };

/** Preference labels a run with `rlhf.source: labels` waits for. */
export interface LabelProgress {
  required: number;
  labeled: number;
  pairs: number;
}

export interface PipelineProgress {
  stages: Record<StageName, StageState>;
  gate: GateState;
  labels?: LabelProgress;
}

export interface ApprovalDecision {
  decision: 'approve' | 'reject';
  approver: string;
  comment?: string;
  /** Deploy although the challenger does not beat the serving model by the spec's margin (recorded as such). */
  override?: boolean;
  /**
   * When the API signed the decision (ISO 8601) and its HMAC-SHA256 (hex) over run id, decision, approver,
   * override, comment and this time, with the key only the API and the workers hold: the workflow counts a
   * decision only once an activity has checked it, so a caller who reaches Temporal directly cannot decide
   * a gate in someone else's name.
   */
  signedAt?: string;
  signature?: string;
}
export interface ApprovalReceipt {
  decision: 'approve' | 'reject';
  approver: string;
  decidedAt: string;
  override?: boolean;
}

export interface PipelineInput {
  /** The validated spec with defaults filled in (see @tempered/spec). */
  spec: PipelineSpec;
  /** Directory of the spec file, against which relative local data paths resolve. */
  specDir?: string;
  /** Who started the run (a person, or `schedule:<id>` / `trigger:<id>`); they cannot approve its deployment. */
  requestedBy: string;
  /**
   * The person behind the run: the caller who started it, or who created the schedule or trigger that did.
   * They cannot approve its deployment either. Absent in runs started before it was recorded.
   */
  responsible?: string;
}

export interface PipelineOutcome {
  status: Extract<TerminalRunStatus, 'deployed' | 'rolled-back' | 'rejected' | 'expired'>;
  deploy?: DeployResult;
  test: TestResult;
  /** When the spec has `optimize`. */
  optimize?: OptimizeResult;
}
