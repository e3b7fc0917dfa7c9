/**
 * The bounds an admin of a deployment sets on what one request may ask of its machines: the spec's
 * (`SpecLimits` of @tempered/spec: training steps, batch size, model size, the gate's timeout) and the
 * schedules' (how often runs may pile up, how much a backfill may start). They come from the environment
 * (TEMPERED_MAX_*, TEMPERED_MIN_*), like every other setting of the host, because they protect the host:
 * whoever runs the workers decides them, and no API caller, admin role or not, can lift them at run time.
 */
import { DEFAULT_SPEC_LIMITS, durationMs, type SpecLimits } from '@tempered/spec';

export interface Limits extends SpecLimits {
  /**
   * The shortest interval of a schedule whose overlap policy lets runs pile up (ALLOW_ALL starts every
   * one at once, BUFFER_ALL queues every one): shorter than a run takes, it starts runs faster than they end.
   * The other policies keep at most one run going (and one queued), whatever the interval.
   */
  minStackingIntervalMs: number;
  /** The widest backfill window, in days. */
  maxBackfillDays: number;
  /** The most runs one backfill of an interval schedule may start (its window divided by its interval). */
  maxBackfillActions: number;
}

/** Every bound, the environment variable that sets it, and how its value is written. */
const VARIABLES: Array<[keyof Limits, string, 'count' | 'duration']> = [
  ['trainSteps', 'TEMPERED_MAX_TRAIN_STEPS', 'count'],
  ['batchSize', 'TEMPERED_MAX_BATCH_SIZE', 'count'],
  ['modelParameters', 'TEMPERED_MAX_MODEL_PARAMETERS', 'count'],
  ['approvalTimeoutMs', 'TEMPERED_MAX_APPROVAL_TIMEOUT', 'duration'],
  ['minStackingIntervalMs', 'TEMPERED_MIN_STACKING_INTERVAL', 'duration'],
  ['maxBackfillDays', 'TEMPERED_MAX_BACKFILL_DAYS', 'count'],
  ['maxBackfillActions', 'TEMPERED_MAX_BACKFILL_ACTIONS', 'count'],
];

/** One schedule fire an hour may pile up; a month of a daily schedule may be backfilled, 100 runs at most. */
export const DEFAULT_LIMITS: Limits = {
  ...DEFAULT_SPEC_LIMITS,
  minStackingIntervalMs: 3_600_000,
  maxBackfillDays: 31,
  maxBackfillActions: 100,
};

export function limitsFrom(env: Record<string, string | undefined>): Limits {
  const limits = { ...DEFAULT_LIMITS };
  for (const [key, name, kind] of VARIABLES) {
    const raw = env[name]?.trim();
    if (!raw) continue;
    const value = kind === 'duration' ? durationMs(raw) : /^\d+$/.test(raw) ? Number(raw) : undefined;
    if (value === undefined || !Number.isSafeInteger(value) || (kind === 'count' && value < 1)) {
      throw new Error(`${name}=${raw} is not ${kind === 'duration' ? 'a duration such as "90s", "10m", "24h" or "2d"' : 'a positive whole number'}; unset it or give one`);
    }
    limits[key] = value;
  }
  return limits;
}
