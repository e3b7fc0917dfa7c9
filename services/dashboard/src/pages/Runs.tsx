/**
 * Every run, newest first, with live status: the list is fetched once per filter and then kept current by
 * the dashboard's event stream (live.tsx: a run that changes moves in, out or up without a refetch).
 */
import type { RunStatus } from '@tempered/api-contract';
import { useQuery } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { Loaded, RUN_STATUSES, RunStatusBadge, isFinished, runStatusText } from '../components/common';
import { Table } from '../components/Table';
import { between, formatAgo, formatDate, formatDuration, useNow } from '../format';
import { queries, RUNS_LIMIT } from '../queries';
import { Link, navigate, runPath, setSearch, useLocation } from '../router';
import { useMe, whyNot } from '../session';

export function RunsPage() {
  const me = useMe();
  const { search } = useLocation();
  const status = search.get('status') ?? '';
  const q = search.get('q') ?? '';
  const [draft, setDraft] = useState(q);
  const searchBox = useRef<HTMLInputElement>(null);

  // Typing updates the URL (and so the query) after a pause.
  useEffect(() => {
    if (draft === q) return;
    const t = setTimeout(() => setSearch({ q: draft.trim() || undefined }), 250);
    return () => clearTimeout(t);
  }, [draft, q]);
  useEffect(() => setDraft(q), [q]);

  // "/" focuses the search box, as in most list views.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target as HTMLElement;
      if (t.closest('input, textarea, select, [contenteditable]')) return;
      e.preventDefault();
      searchBox.current?.focus();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  const runs = useQuery(queries.runs({ status, q }));

  const active = runs.data?.runs.some((r) => !isFinished(r.status)) ?? false;
  const now = useNow(active ? 1000 : 30_000);
  const cannotStart = whyNot(me, 'start');

  return (
    <main className="page">
      <div className="page-head">
        <h1>Runs</h1>
        {cannotStart ? (
          <span className="muted small" title={cannotStart}>
            {cannotStart}
          </span>
        ) : (
          <Link to="/runs/new" className="button primary" data-testid="start-run">
            Start run
          </Link>
        )}
      </div>
      <form className="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label className="field">
          <span>Status</span>
          <select value={status} onChange={(e) => setSearch({ status: e.target.value || undefined })} data-testid="status-filter">
            <option value="">all</option>
            {RUN_STATUSES.map((s) => (
              <option key={s} value={s}>
                {runStatusText(s as RunStatus)}
              </option>
            ))}
          </select>
        </label>
        <label className="field grow">
          <span>Search</span>
          <input
            ref={searchBox}
            type="search"
            placeholder="name, id or requester  ( / )"
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            data-testid="run-search"
          />
        </label>
      </form>
      <Loaded query={runs} what="runs">
        {({ runs: list }) =>
          list.length === 0 ? (
            <div className="empty">
              {status || q ? (
                <p>No run matches these filters.</p>
              ) : (
                <p>
                  No runs yet.{' '}
                  {!cannotStart && (
                    <>
                      <Link to="/runs/new">Start one</Link> from an example spec.
                    </>
                  )}
                </p>
              )}
            </div>
          ) : (
            <div className="table-wrap">
              <Table columns={['status', 'name', ['requested by', 'hide-narrow'], 'created', ['duration', 'num hide-narrow']]} className="runs" testId="runs-table" wrap={false}>
                {list.map((r) => {
                  const ms = between(r.created_at, isFinished(r.status) ? r.updated_at : null, now);
                  return (
                    <tr key={r.id} data-run-id={r.id} className="clickable" onClick={(e) => !(e.target as HTMLElement).closest('a') && navigate(runPath(r.id))}>
                      <td>
                        <RunStatusBadge status={r.status} />
                      </td>
                      <td>
                        <Link to={runPath(r.id)} className="run-name">
                          {r.name}
                        </Link>
                        <div className="muted small mono ellipsis" title={r.id}>
                          {r.id}
                        </div>
                        {r.error && (
                          <div className="error-text small ellipsis" title={r.error}>
                            {r.error}
                          </div>
                        )}
                      </td>
                      <td className="hide-narrow">{r.requested_by}</td>
                      <td title={formatDate(r.created_at)} className="nowrap">
                        {formatAgo(r.created_at, now)}
                      </td>
                      <td className="num hide-narrow nowrap">{ms !== undefined ? formatDuration(ms) : '—'}</td>
                    </tr>
                  );
                })}
              </Table>
              {list.length === RUNS_LIMIT && <p className="muted small">Showing the newest {RUNS_LIMIT} runs; narrow the list with the filters.</p>}
            </div>
          )
        }
      </Loaded>
    </main>
  );
}
