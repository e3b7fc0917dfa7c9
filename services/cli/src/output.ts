/** Output formatting shared by the commands: --json or lines for people, stage icons and summaries, log lines. */
import type { LogLine, OptimizedMetric, OptimizeResult, StageStatus } from '@tempered/api-contract';
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

/** `input 2305 · kept 2300 · loss 0.0172`: a stage summary for people (the optimize stage's: formatOptimize). */
export function formatSummary(summary: Record<string, unknown> | null | undefined, stage?: string): string {
  if (!summary) return '';
  if (stage === 'optimize' && Array.isArray(summary.forms)) return ` ${formatOptimize(summary as unknown as OptimizeResult)}`;
  return ` ${Object.entries(summary).map(([k, v]) => `${k} ${formatValue(v)}`).join(' · ')}`;
}

/**
 * A summary's value for people: numbers to four significant digits, an interval as `0.6 [0.5083–0.6833] n 120`, an
 * artifact as its uri, lists and objects inline.
 */
export function formatValue(v: unknown): string {
  if (typeof v === 'number') return String(Number.isInteger(v) ? v : Number(v.toPrecision(4)));
  if (Array.isArray(v)) return `[${v.map(formatValue).join(', ')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.value === 'number' && typeof o.low === 'number' && typeof o.high === 'number') {
      return `${formatValue(o.value)} [${formatValue(o.low)}–${formatValue(o.high)}]${typeof o.n === 'number' ? ` n ${o.n}` : ''}`;
    }
    if (typeof o.uri === 'string' && typeof o.sha256 === 'string') return o.uri;
    return `{${Object.entries(o).map(([k, x]) => `${k} ${formatValue(x)}`).join(', ')}}`;
  }
  return String(v);
}

/** `f16 258.1 MB 8.3 tokens/s, worst test.perplexity +0.1% (within 0.02) · …`: each GGUF type and its worst loss. */
export function formatOptimize(r: OptimizeResult): string {
  const forms = r.forms.map((f) => {
    const worst = f.metrics.reduce<OptimizedMetric | undefined>((a, b) => (!a || b.loss > a.loss ? b : a), undefined);
    const speed = f.tokensPerSec !== null ? ` ${formatValue(f.tokensPerSec)} tokens/s` : '';
    const lost = worst && (worst.metric === 'perplexity' ? `${worst.loss >= 0 ? '+' : ''}${(worst.loss * 100).toFixed(1)}%` : `${worst.loss >= 0 ? '−' : '+'}${Math.abs(worst.loss).toFixed(3)}`);
    const verdict = f.withinTolerance ? `within ${r.tolerance}` : `beyond ${r.tolerance}`;
    const sure = worst?.changeInterval ? ` [${formatValue(worst.changeInterval.low)}–${formatValue(worst.changeInterval.high)}]` : '';
    return `${f.type} ${(f.bytes / 1e6).toFixed(1)} MB${speed}${worst ? `, worst ${worst.scope}.${worst.metric} ${lost}${sure} (${verdict})` : ''}`;
  });
  return [...forms, ...(r.deploys ? [`deploys ${r.deploys}`] : [])].join(' · ');
}

/** `✔ train     completed loss 0.0172` (`extra` goes after the status, e.g. the attempt count). */
export function stageLine(name: string, s: StageLine, extra = ''): string {
  return `  ${ICON[s.status] ?? '?'} ${name.padEnd(9)} ${s.status}${extra}${s.error ? `: ${s.error}` : formatSummary(s.summary, name)}`;
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
