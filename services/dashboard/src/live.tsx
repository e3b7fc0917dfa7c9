/**
 * The dashboard-wide stream `GET /api/events`: every change of any run as a `runs` event. One connection keeps
 * the cached queries current instead of pages polling: the changed run goes straight into every runs list,
 * and the lists a run's change can alter (approvals inbox, labeling queue, deployments, schedules) are
 * fetched again, once per burst. After a reconnection all of them are fetched again, for what was missed.
 * The header's pending count is the approvals inbox's length.
 */
import type { ApprovalsResponse, DeploymentsResponse, LabelingQueue, RunEvents, RunSummary } from '@tempered/api-contract';
import { useQuery, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { createContext, useContext, useMemo, type ReactNode } from 'react';
import { useEventStream, type StreamState } from './api';
import { invalidateRunLists, invalidateSoon, patchRunLists, queries } from './queries';

interface Live {
  /** Runs waiting at their deployment gate. */
  pending: number;
  state: StreamState;
}

const LiveContext = createContext<Live>({ pending: 0, state: 'connecting' });

/** What one run's change means for the cached lists. */
function applyRunChange(client: QueryClient, run: RunSummary): void {
  patchRunLists(client, run);
  const inbox = client.getQueryData<ApprovalsResponse>(queries.approvals.queryKey);
  if (run.status === 'waiting-approval' || inbox?.pending.some((p) => p.runId === run.id)) invalidateSoon(client, queries.approvals.queryKey);
  const queue = client.getQueryData<LabelingQueue>(queries.labeling.queryKey);
  if (run.status === 'waiting-labels' || queue?.runs.some((r) => r.runId === run.id)) invalidateSoon(client, queries.labeling.queryKey);
  // A deploy adds a serving deployment and stops the one before; a canary's end (promoted, rolled back)
  // changes its deployments' rows.
  const deployments = client.getQueryData<DeploymentsResponse>(queries.deployments.queryKey);
  const hadCanary = deployments?.deployments.some((d) => d.run_id === run.id && d.status === 'canary') ?? false;
  if (hadCanary || run.status === 'canary' || run.status === 'deployed' || run.status === 'rolled-back') invalidateSoon(client, queries.deployments.queryKey);
  // Schedules send no events of their own: a run one started is the sign that its recent actions changed.
  if (/^(schedule|trigger):/.test(run.requested_by)) invalidateSoon(client, queries.schedules.queryKey, 500);
}

function resync(client: QueryClient): void {
  void invalidateRunLists(client);
  for (const q of [queries.approvals, queries.labeling, queries.deployments, queries.schedules]) invalidateSoon(client, q.queryKey);
}

export function LiveProvider({ children }: { children: ReactNode }) {
  const client = useQueryClient();
  const inbox = useQuery(queries.approvals);
  const state = useEventStream(
    '/api/events',
    { runs: ({ run }: { run: RunEvents['run']['run'] }) => applyRunChange(client, run) },
    (reconnect) => {
      if (reconnect) resync(client);
    },
  );
  const pending = inbox.data?.pending.length ?? 0;
  const value = useMemo(() => ({ pending, state }), [pending, state]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): Live {
  return useContext(LiveContext);
}
