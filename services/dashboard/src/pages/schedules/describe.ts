/** How a schedule is put in words: its overlap policy, its timing, and the timing a spec's retrain section gives. */
import type { ScheduleAction, ScheduleInfo, ScheduleMode, ScheduleOverlap } from '@tempered/api-contract';
import type { PipelineSpec } from '@tempered/spec';

export const OVERLAP_TEXT: Record<ScheduleOverlap, string> = {
  SKIP: 'skip the new action',
  BUFFER_ONE: 'start it once the running one ends (one waits at most)',
  BUFFER_ALL: 'start each once the one before ends',
  CANCEL_OTHER: 'cancel the running one, then start',
  TERMINATE_OTHER: 'terminate the running one, then start',
  ALLOW_ALL: 'run both at once',
};

export const MODE_TEXT: Record<ScheduleMode, string> = {
  run: 'run: every action starts a run',
  trigger: 'trigger: every action checks, and may start a run',
  eval: "eval: every action runs the spec's test suites on the serving version (drift)",
};

const timing = ({ cron, every }: { cron?: string | null; every?: string | null }) => (cron ? `cron ${cron}` : every ? `every ${every}` : undefined);

export const timingOf = (s: Pick<ScheduleInfo, 'cron' | 'every'>) => timing(s) ?? '—';

export const newestFirst = (actions: ScheduleAction[]) => [...actions].sort((a, b) => b.takenAt.localeCompare(a.takenAt));

/** The mode a schedule of `spec` gets when none is chosen: trigger when the spec watches data or feedback. */
export const automaticMode = (spec: PipelineSpec | undefined): ScheduleMode => (spec?.retrain?.watch || spec?.retrain?.feedback ? 'trigger' : 'run');

/** The timing the spec's own retrain section gives a schedule in `mode`, for the "from the spec" choice. */
export function specTiming(spec: PipelineSpec | undefined, mode: ScheduleMode): string | undefined {
  const retrain = spec?.retrain;
  if (mode === 'run') return retrain?.schedule ? timing(retrain.schedule) : undefined;
  if (mode === 'eval') return undefined;
  return retrain?.checkEvery ? `every ${retrain.checkEvery}` : undefined;
}
