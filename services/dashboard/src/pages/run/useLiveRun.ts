/**
 * One run, kept current: its detail, log and audit trail as queries, and its event stream (a snapshot, then
 * changes) merged into them. The parts the stream does not carry (artifacts, dataset, model, deployment,
 * audit) are fetched again when a stage finishes or the run changes status, never on a timer.
 */
import type { LogLine, MetricPoint, RunDetail, RunEvents } from '@tempered/api-contract';
import { queryOptions, useQuery, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { api, useEventStream } from '../../api';
import { stageViews } from '../../components/Pipeline';
import { invalidateSoon, queries } from '../../queries';

const MAX_LOG_LINES = 5000;

function mergePoints(metrics: RunDetail['metrics'], points: MetricPoint[]): RunDetail['metrics'] {
  const next = { ...metrics };
  for (const p of points) {
    const key = `${p.stage}.${p.name}`;
    const series = next[key] === metrics[key] ? [...(metrics[key] ?? [])] : next[key];
    const last = series[series.length - 1];
    if (!last || last[0] < p.step) series.push([p.step, p.value]);
    else {
      // Out of order or repeated (a retried attempt re-logging steps it had logged): keep one point per step.
      const i = series.findIndex((s) => s[0] >= p.step);
      if (series[i][0] === p.step) series[i] = [p.step, p.value];
      else series.splice(i, 0, [p.step, p.value]);
    }
    next[key] = series;
  }
  return next;
}

function mergeLogs(old: LogLine[], lines: LogLine[]): LogLine[] {
  if (lines.length === 0) return old;
  const seen = new Set(old.map((l) => l.id));
  const fresh = lines.filter((l) => !seen.has(l.id));
  if (fresh.length === 0) return old;
  const all = old.length > 0 && fresh[0].id > old[old.length - 1].id ? [...old, ...fresh] : [...old, ...fresh].sort((a, b) => a.id - b.id);
  return all.length > MAX_LOG_LINES ? all.slice(all.length - MAX_LOG_LINES) : all;
}

/**
 * The log's tail: each fetch asks only for the lines after the newest one held (the stream adds the rest),
 * so fetching it again after a reconnection fills the gap.
 */
function logsQuery(client: QueryClient, runId: string) {
  const base = `/api/runs/${encodeURIComponent(runId)}/logs`;
  const options = queryOptions({
    queryKey: [base],
    queryFn: async ({ signal }): Promise<LogLine[]> => {
      const held = client.getQueryData(options.queryKey) ?? [];
      const after = held.length ? held[held.length - 1].id : 0;
      const r = await api<{ lines: LogLine[] }>(`${base}?limit=500${after ? `&after=${after}` : ''}`, { signal });
      // Lines the stream brought meanwhile are kept.
      return mergeLogs(client.getQueryData(options.queryKey) ?? [], r.lines);
    },
    structuralSharing: false,
  });
  return options;
}

export function useLiveRun(id: string) {
  const client = useQueryClient();
  const detailQuery = queries.run(id);
  const auditQuery = queries.audit(`run:${id}`);
  const logs = logsQuery(client, id);
  const detail = useQuery(detailQuery);
  const audit = useQuery(auditQuery);
  const lines = useQuery(logs).data ?? [];

  const setDetail = (update: (old: RunDetail) => RunDetail) => client.setQueryData(detailQuery.queryKey, (old) => old && update(old));
  const refetchSoon = () => {
    invalidateSoon(client, detailQuery.queryKey);
    invalidateSoon(client, auditQuery.queryKey);
  };

  // The stream opens once the run is known to exist (a missing run is the designed 404 state, not a stream).
  const known = detail.data !== undefined && detail.data.run.id === id;
  const stream = useEventStream(
    known ? `/api/runs/${encodeURIComponent(id)}/events` : null,
    {
      snapshot: (d: RunEvents['snapshot']) => client.setQueryData(detailQuery.queryKey, d),
      run: (e: RunEvents['run']) => {
        const old = client.getQueryData(detailQuery.queryKey);
        if (!old) return void client.invalidateQueries({ queryKey: detailQuery.queryKey });
        const before = new Map(stageViews(old).map((s) => [s.name, s.status]));
        const merged: RunDetail = { ...old, ...e };
        const changed = stageViews(merged).some((s) => before.get(s.name) !== s.status && s.status !== 'running') || old.run.status !== e.run.status;
        client.setQueryData(detailQuery.queryKey, merged);
        if (changed) refetchSoon();
      },
      metrics: (e: RunEvents['metrics']) => setDetail((old) => ({ ...old, metrics: mergePoints(old.metrics, e.points) })),
      logs: (e: RunEvents['logs']) => client.setQueryData(logs.queryKey, (old) => mergeLogs(old ?? [], e.lines)),
      labels: (e: RunEvents['labels']) => setDetail((old) => ({ ...old, labels: e })),
      approvals: (e: RunEvents['approvals']) => {
        setDetail((old) => ({ ...old, approvals: e.approvals }));
        void client.invalidateQueries({ queryKey: auditQuery.queryKey });
      },
    },
    (reconnect) => {
      if (reconnect) void client.invalidateQueries({ queryKey: logs.queryKey });
    },
  );

  return { detail, audit, logs: lines, stream, refetchSoon };
}
