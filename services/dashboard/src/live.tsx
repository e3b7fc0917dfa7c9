/**
 * The dashboard-wide stream `GET /api/events`: every change of any run as a `runs` event. One connection
 * feeds the runs list, the approvals inbox and the header's pending count; pages subscribe to it instead of
 * polling. After a reconnection subscribers hear `resync` so they can fetch what they missed.
 */
import type { ApprovalsResponse, RunEvents, RunSummary } from '@tempered/api-contract';
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { api, useEventStream, type StreamState } from './api';

type Listener = (event: { type: 'run'; run: RunSummary } | { type: 'resync' }) => void;

interface Live {
  subscribe: (listener: Listener) => () => void;
  /** Runs waiting at their deployment gate. */
  pending: number;
  state: StreamState;
}

const LiveContext = createContext<Live>({ subscribe: () => () => {}, pending: 0, state: 'connecting' });

export function LiveProvider({ children }: { children: ReactNode }) {
  const listeners = useRef(new Set<Listener>());
  const [waiting, setWaiting] = useState<ReadonlySet<string>>(new Set());

  const resyncPending = useCallback(() => {
    api<ApprovalsResponse>('/api/approvals')
      .then((r) => setWaiting(new Set(r.pending.map((p) => p.runId))))
      .catch(() => {});
  }, []);
  useEffect(resyncPending, [resyncPending]);

  const state = useEventStream(
    '/api/events',
    {
      runs: ({ run }: { run: RunEvents['run']['run'] }) => {
        setWaiting((old) => {
          const isWaiting = run.status === 'waiting-approval';
          if (isWaiting === old.has(run.id)) return old;
          const next = new Set(old);
          if (isWaiting) next.add(run.id);
          else next.delete(run.id);
          return next;
        });
        for (const l of listeners.current) l({ type: 'run', run });
      },
    },
    (reconnect) => {
      if (!reconnect) return;
      resyncPending();
      for (const l of listeners.current) l({ type: 'resync' });
    },
  );

  const subscribe = useCallback((listener: Listener) => {
    listeners.current.add(listener);
    return () => void listeners.current.delete(listener);
  }, []);
  const value = useMemo(() => ({ subscribe, pending: waiting.size, state }), [subscribe, waiting, state]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): Live {
  return useContext(LiveContext);
}

/** Calls `listener` for every run change (and `resync`) while mounted. */
export function useRunChanges(listener: Listener): void {
  const { subscribe } = useLive();
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => subscribe((e) => latest.current(e)), [subscribe]);
}
