/** Output formatting shared by the commands: --json or lines for people, stage icons and summaries, log lines. */
import type { LogLine, StageStatus } from '@tempered/api-contract';
import type { Flags } from './args';

/** With --json, `value` as the API returned it; otherwise the lines `human` prints. */
export function out(flags: Flags, value: unknown, human: () => void): void {
  if (flags.json) console.log(JSON.stringify(value, null, 2));
  else human();
}

export const ICON: Record<StageStatus, string> = { pending: '·', running: '▶', completed: '✔', failed: '✘', skipped: '–', cancelled: '✘' };

/** A stage as the CLI prints it: from a stage row or from the workflow's live progress. */
export interface StageLine {
  status: StageStatus;
  error?: string | null;
  summary?: Record<string, unknown> | null;
}

/** `input 2305 · kept 2300 · loss 0.0172`: a stage summary for people; numbers to four significant digits. */
export function formatSummary(summary: Record<string, unknown> | null | undefined): string {
  if (!summary) return '';
  const parts = Object.entries(summary).map(([k, v]) => {
    const value = typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v;
    return `${k} ${typeof value === 'object' ? JSON.stringify(value) : value}`;
  });
  return ` ${parts.join(' · ')}`;
}

/** `✔ train     completed loss 0.0172` (`extra` goes after the status, e.g. the attempt count). */
export function stageLine(name: string, s: StageLine, extra = ''): string {
  return `  ${ICON[s.status] ?? '?'} ${name.padEnd(9)} ${s.status}${extra}${s.error ? `: ${s.error}` : formatSummary(s.summary)}`;
}

export function bar(fraction: number, width = 24): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

export function printLogLine(l: LogLine): void {
  console.log(`${String(l.at).slice(11, 19)} ${String(l.stage).padEnd(8)} ${l.line}`);
}

/** The parts of a run's spec (RunDetail.run.spec, validated with defaults filled in) the CLI reads. */
export interface SpecView {
  train: { steps: number };
  deploy?: { smokePrompt?: string };
}
