/**
 * Everything the dashboard reads, as TanStack Query options: each GET is keyed by its API path, so every page
 * that shows the same thing shares one cached answer and one request. Nothing here polls: the dashboard's
 * event stream (live.tsx) and a run's own stream (pages/run) patch or invalidate these queries when something
 * changed; only a running canary, whose health no event reports, is asked again on an interval.
 */
import type {
  ANSWER_FILTERS,
  AnswersResponse,
  ApprovalsResponse,
  AuditEntry,
  BaseModelsResponse,
  DatasetDetail,
  DatasetsResponse,
  DeploymentsResponse,
  EvaluationsResponse,
  ExampleSpec,
  LabelingQueue,
  LineageResponse,
  Me,
  ModelsResponse,
  RunDetail,
  RunSummary,
  SchedulesResponse,
} from '@tempered/api-contract';
import { QueryClient, queryOptions, type QueryKey } from '@tanstack/react-query';
import { api, ApiFailure } from './api';

declare module '@tanstack/react-query' {
  interface Register {
    /** `api` fails with an ApiFailure (status, message, issues) and nothing else. */
    defaultError: ApiFailure;
  }
}

/**
 * The app's one cache. A failed request is shown at once with its "Try again" (no silent retries), and
 * nothing is fetched again just because the window got focus: live updates come from the event streams.
 */
export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: { retry: false, refetchOnWindowFocus: false },
      mutations: { retry: false },
    },
  });
}

/** GET `path`, keyed by the path itself. */
export function getQuery<T>(path: string) {
  // A query's answer may not be undefined; an empty body (no JSON) is null.
  return queryOptions({ queryKey: [path], queryFn: async ({ signal }) => ((await api<T>(path, { signal })) ?? null) as T });
}

const enc = encodeURIComponent;

/** The Evaluation view lists at most this many answers per filter. */
export const ANSWERS_LIMIT = 100;

/** The runs list shows at most this many, newest first. */
export const RUNS_LIMIT = 100;
export interface RunsFilter {
  status: string;
  q: string;
}
const RUNS_PREFIX = '/api/runs?';

function runsPath({ status, q }: RunsFilter): string {
  const params = new URLSearchParams({ limit: String(RUNS_LIMIT) });
  if (status) params.set('status', status);
  if (q) params.set('q', q);
  return `${RUNS_PREFIX}${params}`;
}

export const queries = {
  /** Who is signed in; null when nobody is (401 here is the signed-out state, not a failure). */
  me: queryOptions({
    queryKey: ['/api/me'],
    queryFn: async ({ signal }): Promise<Me | null> => {
      try {
        return await api<Me>('/api/me', { signal, quiet401: true });
      } catch (err) {
        if (err instanceof ApiFailure && err.status === 401) return null;
        throw err;
      }
    },
  }),
  runs: (filter: RunsFilter) => getQuery<{ runs: RunSummary[] }>(runsPath(filter)),
  run: (id: string) => getQuery<RunDetail>(`/api/runs/${enc(id)}`),
  audit: (target: string) => getQuery<{ entries: AuditEntry[] }>(`/api/audit?target=${enc(target)}`),
  approvals: getQuery<ApprovalsResponse>('/api/approvals'),
  labeling: getQuery<LabelingQueue>('/api/labeling'),
  schedules: getQuery<SchedulesResponse>('/api/schedules'),
  deployments: getQuery<DeploymentsResponse>('/api/deployments'),
  examples: getQuery<{ examples: ExampleSpec[] }>('/api/examples'),
  datasets: getQuery<DatasetsResponse>('/api/datasets'),
  dataset: (id: string) => getQuery<DatasetDetail>(`/api/datasets/${enc(id)}`),
  models: getQuery<ModelsResponse>('/api/models'),
  baseModels: getQuery<BaseModelsResponse>('/api/base-models'),
  /** A run's test answers a filter keeps (the first ANSWERS_LIMIT), with every filter's count. */
  answers: (runId: string, filter: (typeof ANSWER_FILTERS)[number]) =>
    getQuery<AnswersResponse>(`/api/runs/${enc(runId)}/answers?filter=${filter}&limit=${ANSWERS_LIMIT}`),
  lineage: (modelId: string) => getQuery<LineageResponse>(`/api/models/${enc(modelId)}/lineage`),
  /** A model version's on-demand and drift evaluations (tempered eval), newest first. */
  evaluations: (modelId: string) => getQuery<EvaluationsResponse>(`/api/models/${enc(modelId)}/evaluations`),
};

function matchesFilter(run: RunSummary, { status, q }: RunsFilter): boolean {
  if (status && run.status !== status) return false;
  if (!q) return true;
  const needle = q.toLowerCase();
  return [run.id, run.name, run.requested_by].some((s) => s.toLowerCase().includes(needle));
}

/**
 * A changed run into every cached runs list (each filtered its own way): it moves in, out or up without a
 * refetch.
 */
export function patchRunLists(client: QueryClient, run: RunSummary): void {
  const lists = client.getQueriesData<{ runs: RunSummary[] }>({ predicate: (q) => String(q.queryKey[0]).startsWith(RUNS_PREFIX) });
  for (const [key, old] of lists) {
    if (!old) continue;
    const params = new URLSearchParams(String(key[0]).slice(RUNS_PREFIX.length));
    const others = old.runs.filter((r) => r.id !== run.id);
    const list = matchesFilter(run, { status: params.get('status') ?? '', q: params.get('q') ?? '' }) ? [run, ...others] : others;
    list.sort((a, b) => b.created_at.localeCompare(a.created_at));
    client.setQueryData(key, { runs: list.slice(0, RUNS_LIMIT) });
  }
}

/** Every cached runs list fetched again (after the event stream reconnected). */
export const invalidateRunLists = (client: QueryClient) =>
  client.invalidateQueries({ predicate: (q) => String(q.queryKey[0]).startsWith(RUNS_PREFIX) });

const timers = new Map<string, ReturnType<typeof setTimeout>>();
/**
 * Invalidates `queryKey` `ms` after the last call for it: a burst of events (a run's stages finishing one
 * after another) makes one refetch, not one each.
 */
export function invalidateSoon(client: QueryClient, queryKey: QueryKey, ms = 300): void {
  const id = JSON.stringify(queryKey);
  clearTimeout(timers.get(id));
  timers.set(
    id,
    setTimeout(() => {
      timers.delete(id);
      void client.invalidateQueries({ queryKey });
    }, ms),
  );
}
