/**
 * Waiting for a run: `run --follow`, `follow`/`status` (until the gate) and `approve` (until it ends) read the
 * run's event stream (`GET /api/runs/:id/events`) until the run waits at the deployment gate or reaches a
 * final status, printing its progress as it goes.
 */
import { isTerminalRunStatus, type RunDetail, type RunEvents, type RunStatus, STAGES } from '@tempered/api-contract';
import { api, streamEvents } from './client';
import { bar, type SpecView, type StageLine, stageLine } from './output';

/** `gate`: stop when the run waits at the deployment gate, or ends; `end`: stop only when it ends. */
export type WaitUntil = 'gate' | 'end';

/** Whether a run in `status` is done being waited for. */
export function reached(status: RunStatus, until: WaitUntil): boolean {
  return isTerminalRunStatus(status) || (until === 'gate' && status === 'waiting-approval');
}

const RECONNECT_MS = 1000;

/**
 * Follows the run's events until `reached`, calling `onChange` with the run as it is after each change, and
 * returns the run's full detail then. If the stream ends first (the API restarted) it reconnects: the new
 * stream's snapshot catches up.
 */
export async function waitForRun(runId: string, auth: string, until: WaitUntil, onChange: (detail: RunDetail) => void = progressPrinter()): Promise<RunDetail> {
  for (;;) {
    let detail: RunDetail | undefined;
    for await (const event of streamEvents<RunEvents>(`/api/runs/${runId}/events`, auth)) {
      if (event.type === 'snapshot') detail = event.data;
      else if (!detail) continue;
      else if (event.type === 'run') Object.assign(detail, event.data);
      else if (event.type === 'metrics') for (const p of event.data.points) (detail.metrics[`${p.stage}.${p.name}`] ??= []).push([p.step, p.value]);
      else continue;
      onChange(detail);
      // The events carry no model version or deployment: the caller gets the whole run, as `show` does.
      if (reached(detail.run.status, until)) return api<RunDetail>('GET', `/api/runs/${runId}`, auth);
    }
    await new Promise((r) => setTimeout(r, RECONNECT_MS));
  }
}

/** Prints a line per stage change and a live training bar (without a terminal, one line per tenth of training). */
export function progressPrinter(): (detail: RunDetail) => void {
  const tty = process.stdout.isTTY;
  const seen = new Map<string, string>();
  let lastBar = '';
  let lastTenth = -1;
  return (detail) => {
    const stages: Partial<Record<string, StageLine>> = detail.progress ?? Object.fromEntries(detail.stages.map((s) => [s.name, s]));
    for (const name of STAGES) {
      const s = stages[name];
      if (!s || seen.get(name) === s.status) continue;
      seen.set(name, s.status);
      if (s.status === 'pending') continue;
      if (lastBar && tty) process.stdout.write('\n');
      lastBar = '';
      console.log(stageLine(name, s));
    }
    const steps = detail.metrics['train.loss'];
    if (stages.train?.status === 'running' && steps?.length) {
      const [step, loss] = steps[steps.length - 1];
      const total = (detail.run.spec as unknown as SpecView).train.steps;
      const line = `    train ${bar(step / total)} step ${step}/${total} loss ${loss.toFixed(4)}`;
      if (line !== lastBar) {
        const tenth = Math.floor((10 * step) / total);
        if (tty) process.stdout.write(`\r${line}`);
        else if (tenth > lastTenth) console.log(line);
        lastTenth = tenth;
        lastBar = line;
      }
    }
  };
}
