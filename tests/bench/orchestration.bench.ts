/**
 * Benchmark: what Temporal orchestration costs per activity, read from the workflow's own history.
 *
 * The same stand-in activities (they return at once) run twice in one process: as the lifecyclePipeline workflow
 * on the real dev server, through the gate and its approval, and called directly in the order that workflow
 * called them (the baseline). Each workflow run's history is fetched, and from the server's event timestamps:
 *
 *   - per activity, scheduled → started (the task queue's dispatch) and started → completed;
 *   - wall time: WorkflowExecutionStarted → the gate's timer (the workflow is waiting for a person), plus the
 *     approval Update's arrival (its workflow task scheduled) → WorkflowExecutionCompleted. The wait at the gate
 *     is a person's (here the bench's) time, not orchestration, so it is left out;
 *   - overhead: wall time minus the union of the intervals in which at least one activity was running
 *     (started → completed), in ms, per activity and as a share of wall time.
 *
 * With stand-ins, started → completed is itself mostly the SDK's dispatch and the completion round trip, so
 * the history's overhead is a lower bound of what Temporal costs here; wall time minus the direct baseline,
 * also reported, is the upper bound. The bench waits for the gate without polling anything: the stand-in
 * `recordRun` tells it when the run records `waiting-approval`, and a history long-poll (which the server
 * answers without the worker) sees the gate's timer start. Nothing it does while waiting lies inside the figure.
 * The same figures are computed from the saved demo end-to-end history (real activities) when it is present.
 *
 * Run with `npm run bench` (the stack must be up; infra/bench.sh starts it). Writes results/orchestration.json.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Activities } from '@tempered/activities';
import type { PipelineInput } from '@tempered/contract';
import { approveDeploymentUpdate, taskQueueFor, WORKFLOW_TYPE } from '@tempered/workflows';
import { cfg, demoSpec, quietWorkerLogs, repoRoot, temporalClient, uniqueId } from '../support';
import { stubActivities } from '../workflows/stubs';

const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const GATE_TIMEOUT_MS = 60_000;

type History = ReturnType<typeof historyFromJSON>;
type HistoryEvent = NonNullable<History['events']>[number];

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const median = (xs: number[]) => quantile(xs, 0.5);
const round = (x: number, digits = 3) => Number(x.toFixed(digits));
const stats = (xs: number[]) => ({ median: round(median(xs)), p95: round(quantile(xs, 0.95)), min: round(Math.min(...xs)), max: round(Math.max(...xs)), n: xs.length });

function msOfEvent(e: HistoryEvent): number {
  const t = e.eventTime!;
  return Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6;
}

/** Total length of the union of [from, to] intervals. */
function unionMs(intervals: Array<[number, number]>): number {
  const sorted = intervals.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  let total = 0;
  let cur: [number, number] | undefined;
  for (const [a, b] of sorted) {
    if (!cur || a > cur[1]) {
      if (cur) total += cur[1] - cur[0];
      cur = [a, b];
    } else cur[1] = Math.max(cur[1], b);
  }
  return total + (cur ? cur[1] - cur[0] : 0);
}

const clip = (intervals: Array<[number, number]>, [lo, hi]: [number, number]) =>
  intervals.map(([a, b]) => [Math.max(a, lo), Math.min(b, hi)] as [number, number]).filter(([a, b]) => b > a);

interface RunFigures {
  activities: number;
  /** Activity types in the order they were scheduled. */
  sequence: string[];
  wallMs: number;
  gateWaitMs: number;
  activityRunningMs: number;
  overheadMs: number;
  overheadPercent: number;
  overheadPerActivityMs: number;
  /** Sums over the run, for where the overhead goes (they may overlap when activities run in parallel). */
  scheduledToStartedSumMs: number;
  workflowTasksSumMs: number;
  /** Per workflow task: scheduled → started (waiting for a worker) and started → completed (the worker's turn). */
  workflowTaskScheduledToStartedMs: number[];
  workflowTaskStartedToCompletedMs: number[];
  scheduledToStartedMs: number[];
  startedToCompletedMs: number[];
  byActivityType: Record<string, { scheduledToStartedMs: number[]; startedToCompletedMs: number[] }>;
}

/** Every figure of one run, from its history's event timestamps (the server's clock). */
function analyze(history: History): RunFigures {
  const events = history.events ?? [];
  const id = (e: HistoryEvent) => Number(e.eventId);
  const started = events.find((e) => e.workflowExecutionStartedEventAttributes);
  const closed = events.find((e) => e.workflowExecutionCompletedEventAttributes);
  if (!started || !closed) throw new Error('history has no start or no completion: the run did not complete');
  const t0 = msOfEvent(started);
  const tEnd = msOfEvent(closed);

  // The gate: its timer starts when the workflow begins waiting; the approval Update's workflow task is
  // scheduled when the Update arrives. The gap between the two is the approver's time.
  const timer = events.find((e) => e.timerStartedEventAttributes);
  const accepted = events.find((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
  let segments: Array<[number, number]> = [[t0, tEnd]];
  let gateWaitMs = 0;
  if (timer && accepted) {
    const updateTask = events.filter((e) => e.workflowTaskScheduledEventAttributes && id(e) < id(accepted)).at(-1)!;
    const gateFrom = msOfEvent(timer);
    const gateTo = Math.max(gateFrom, msOfEvent(updateTask));
    segments = [[t0, gateFrom], [gateTo, tEnd]];
    gateWaitMs = gateTo - gateFrom;
  }
  const wallMs = segments.reduce((s, [a, b]) => s + (b - a), 0);

  const byId = new Map(events.map((e) => [id(e), e]));
  const running: Array<[number, number]> = [];
  const scheduledToStartedMs: number[] = [];
  const startedToCompletedMs: number[] = [];
  const byActivityType: RunFigures['byActivityType'] = {};
  const sequence: string[] = [];
  for (const e of events) {
    if (e.activityTaskScheduledEventAttributes) sequence.push(e.activityTaskScheduledEventAttributes.activityType!.name!);
    const done = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? e.activityTaskCanceledEventAttributes;
    if (!done) continue;
    const scheduled = byId.get(Number(done.scheduledEventId))!;
    const start = byId.get(Number(done.startedEventId));
    if (!start) continue; // cancelled before it started
    const [ts, tr, tc] = [msOfEvent(scheduled), msOfEvent(start), msOfEvent(e)];
    running.push([tr, tc]);
    scheduledToStartedMs.push(tr - ts);
    startedToCompletedMs.push(tc - tr);
    const type = (byActivityType[scheduled.activityTaskScheduledEventAttributes!.activityType!.name!] ??= { scheduledToStartedMs: [], startedToCompletedMs: [] });
    type.scheduledToStartedMs.push(tr - ts);
    type.startedToCompletedMs.push(tc - tr);
  }
  const activityRunningMs = segments.reduce((s, seg) => s + unionMs(clip(running, seg)), 0);

  // Workflow tasks: scheduled → completed (the worker's queue, the workflow code, the commands' round trip).
  let workflowTasksSumMs = 0;
  const workflowTaskScheduledToStartedMs: number[] = [];
  const workflowTaskStartedToCompletedMs: number[] = [];
  for (const e of events) {
    const a = e.workflowTaskCompletedEventAttributes;
    if (!a) continue;
    const [ts, tr, tc] = [msOfEvent(byId.get(Number(a.scheduledEventId))!), msOfEvent(byId.get(Number(a.startedEventId))!), msOfEvent(e)];
    workflowTasksSumMs += tc - ts;
    workflowTaskScheduledToStartedMs.push(tr - ts);
    workflowTaskStartedToCompletedMs.push(tc - tr);
  }

  const overheadMs = wallMs - activityRunningMs;
  const activities = sequence.length;
  return {
    activities,
    sequence,
    wallMs,
    gateWaitMs,
    activityRunningMs,
    overheadMs,
    overheadPercent: (100 * overheadMs) / wallMs,
    overheadPerActivityMs: overheadMs / activities,
    scheduledToStartedSumMs: scheduledToStartedMs.reduce((s, x) => s + x, 0),
    workflowTasksSumMs,
    workflowTaskScheduledToStartedMs,
    workflowTaskStartedToCompletedMs,
    scheduledToStartedMs,
    startedToCompletedMs,
    byActivityType,
  };
}

/**
 * Waits, without polling, until the history shows an event that `done` accepts: a long-poll on new events,
 * which the server answers (from the history it already has) only when events are added.
 */
async function waitForEvent(client: Client, workflowId: string, done: (e: HistoryEvent) => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let nextPageToken: Uint8Array | undefined;
  while (Date.now() < deadline) {
    const res = await client.workflowService.getWorkflowExecutionHistory({
      namespace: cfg.temporal.namespace,
      execution: { workflowId },
      waitNewEvent: true,
      nextPageToken,
    });
    if ((res.history?.events ?? []).some(done)) return;
    // No token: the workflow has closed without the event.
    if (!res.nextPageToken?.length) throw new Error(`${workflowId} closed before reaching the gate`);
    nextPageToken = res.nextPageToken;
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${workflowId} to reach the gate`);
}

async function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000}s: ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** The figures of a set of runs: medians over runs, and each activity's latencies pooled over all runs. */
function summarize(runs: RunFigures[]) {
  const pooled = (pick: (r: RunFigures) => number[]) => runs.flatMap(pick);
  const types = [...new Set(runs.flatMap((r) => Object.keys(r.byActivityType)))];
  return {
    activitiesPerRun: runs[0].activities,
    wallMs: stats(runs.map((r) => r.wallMs)),
    gateWaitMs: stats(runs.map((r) => r.gateWaitMs)),
    activityRunningMs: stats(runs.map((r) => r.activityRunningMs)),
    overheadMs: stats(runs.map((r) => r.overheadMs)),
    overheadPercentOfWall: stats(runs.map((r) => r.overheadPercent)),
    overheadPerActivityMs: stats(runs.map((r) => r.overheadPerActivityMs)),
    scheduledToStartedMs: stats(pooled((r) => r.scheduledToStartedMs)),
    startedToCompletedMs: stats(pooled((r) => r.startedToCompletedMs)),
    overheadParts: {
      scheduledToStartedSumMs: stats(runs.map((r) => r.scheduledToStartedSumMs)),
      workflowTasksSumMs: stats(runs.map((r) => r.workflowTasksSumMs)),
      workflowTaskScheduledToStartedMs: stats(pooled((r) => r.workflowTaskScheduledToStartedMs)),
      workflowTaskStartedToCompletedMs: stats(pooled((r) => r.workflowTaskStartedToCompletedMs)),
    },
    byActivityType: Object.fromEntries(
      types.map((t) => {
        const s2s = runs.flatMap((r) => r.byActivityType[t]?.scheduledToStartedMs ?? []);
        const s2c = runs.flatMap((r) => r.byActivityType[t]?.startedToCompletedMs ?? []);
        return [t, { n: s2s.length, scheduledToStartedMedianMs: round(median(s2s)), startedToCompletedMedianMs: round(median(s2c)) }];
      }),
    ),
  };
}

async function main(): Promise<void> {
  quietWorkerLogs();
  const { activities: stubs } = stubActivities();
  const spec = demoSpec();

  // The stand-in recordRun says when a run has recorded that it waits for approval: no polling for the gate.
  const gateReached = new Map<string, () => void>();
  const activities: Activities = {
    ...stubs,
    async recordRun(i) {
      await stubs.recordRun(i);
      if (i.status === 'waiting-approval') gateReached.get(i.runId)?.();
    },
  };

  const pool = uniqueId('bench').toLowerCase();
  spec.pools = { data: pool, train: pool, rlhf: pool, eval: pool };
  const connection = await NativeConnection.connect({ address: cfg.temporal.address });
  const worker = await Worker.create({ connection, taskQueue: taskQueueFor(pool), workflowsPath: require.resolve('@tempered/workflows/workflows'), activities });
  const { client, close } = await temporalClient();
  const clientMs: number[] = [];
  const figures: RunFigures[] = [];
  await worker.runUntil(async () => {
    for (let i = 0; i < RUNS; i++) {
      const workflowId = uniqueId('bench');
      const atGate = new Promise<void>((resolve) => gateReached.set(workflowId, resolve));
      const t0 = performance.now();
      const input: PipelineInput = { spec, requestedBy: 'bench' };
      const handle = await client.workflow.start(WORKFLOW_TYPE, { taskQueue: taskQueueFor(pool), workflowId, args: [input] });
      await within(`${workflowId} recording waiting-approval`, GATE_TIMEOUT_MS, atGate);
      // The Update is sent once the workflow waits (its gate timer started), so every run has the same shape.
      await waitForEvent(client, workflowId, (e) => Boolean(e.timerStartedEventAttributes), GATE_TIMEOUT_MS);
      await handle.executeUpdate(approveDeploymentUpdate, { args: [{ decision: 'approve', approver: 'reviewer' }] });
      await handle.result();
      clientMs.push(performance.now() - t0);
      gateReached.delete(workflowId);
      figures.push(analyze(await client.workflow.getHandle(workflowId).fetchHistory()));
    }
  });
  await close();
  await connection.close();

  // Baseline: the calls the workflow made (from the first run's history, in its order), made directly.
  const sequence = figures[0].sequence;
  const direct: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    for (const name of sequence) {
      await (stubs as any)[name]({ runId: 'bench', spec, stage: 'ingest', status: 'running', decision: 'approve', model: { uri: 's3://stub/model/0' } });
    }
    direct.push(performance.now() - t0);
  }

  const bench = summarize(figures);
  const perActivityUpperMs = figures.map((r) => (r.wallMs - median(direct)) / r.activities);

  // The same figures from the saved history of the demo run end to end (real activities), when there is one.
  const demoFile = path.join(repoRoot, 'tests', 'histories', 'demo-e2e.json');
  let demoHistory: Record<string, unknown> | undefined;
  if (existsSync(demoFile)) {
    const history = historyFromJSON(JSON.parse(readFileSync(demoFile, 'utf8')));
    const d = summarize([analyze(history)]);
    demoHistory = {
      file: 'tests/histories/demo-e2e.json',
      ranAt: new Date(msOfEvent(history.events![0])).toISOString(),
      activities: d.activitiesPerRun,
      wallMs: d.wallMs.median,
      activityRunningMs: d.activityRunningMs.median,
      overheadMs: d.overheadMs.median,
      overheadPercentOfWall: d.overheadPercentOfWall.median,
      overheadPerActivityMs: d.overheadPerActivityMs.median,
      scheduledToStartedMs: d.scheduledToStartedMs,
      startedToCompletedMs: d.startedToCompletedMs,
      workflowTaskScheduledToStartedMs: d.overheadParts.workflowTaskScheduledToStartedMs,
      workflowTaskStartedToCompletedMs: d.overheadParts.workflowTaskStartedToCompletedMs,
    };
  }

  const result = {
    benchmark: 'orchestration overhead per activity, from the workflow history',
    machine: `${os.cpus().length} cores, node ${process.version}`,
    runs: RUNS,
    activitiesPerRun: bench.activitiesPerRun,
    baselineDirectMs: { median: round(median(direct), 4), perCallMs: round(median(direct) / sequence.length, 5), calls: sequence.length },
    temporalPipelineMs: {
      wall: bench.wallMs,
      activitiesRunning: bench.activityRunningMs,
      gateWaitExcluded: bench.gateWaitMs,
      clientStartToResult: stats(clientMs),
    },
    scheduledToStartedMs: bench.scheduledToStartedMs,
    startedToCompletedMs: bench.startedToCompletedMs,
    overheadMs: bench.overheadMs,
    overheadPercentOfWall: bench.overheadPercentOfWall,
    overheadPerActivityMs: bench.overheadPerActivityMs.median,
    overheadPerActivityMsAcrossRuns: bench.overheadPerActivityMs,
    overheadPerActivityUpperBoundMs: round(median(perActivityUpperMs)),
    overheadParts: bench.overheadParts,
    byActivityType: bench.byActivityType,
    ...(demoHistory ? { demoHistory } : {}),
    note:
      'from server event timestamps: wall = workflow start to the gate timer + the approval Update arriving to completion (the gate wait is left out); ' +
      'overhead = wall - union of activity started->completed intervals. The stand-ins return at once, so started->completed is mostly dispatch and ' +
      'completion round trip: overheadPerActivityMs is a lower bound, overheadPerActivityUpperBoundMs = (wall - direct baseline) / activities. ' +
      'The bench sends no query or poll while a run executes. demoHistory: the same computation on the saved demo end-to-end history ' +
      '(real activities, the stack\'s own worker). Shared cores: figures vary between runs.',
    at: new Date().toISOString(),
  };
  const out = path.join(__dirname, 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'orchestration.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
