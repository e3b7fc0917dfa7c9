/**
 * One run, live: the stage strip, the gate and its decision, loss curves, artifacts, the cleaning report, the
 * log tail and the audit trail. The run's event stream sends a snapshot and then changes, merged here; the
 * parts the stream does not carry (artifacts, dataset, model, deployment, audit) are fetched again when a
 * stage finishes or the run changes status, never on a timer.
 */
import type { AuditEntry, DatasetDetail, LogLine, MetricPoint, RunDetail, RunEvents } from '@tempered/api-contract';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { stringify } from 'yaml';
import { api, ApiFailure, post, useDebounced, useEventStream, useResource } from '../api';
import { ArtifactsTable } from '../components/Artifacts';
import { hasCanaryOutcome, RunCanaryPanel } from '../components/Canary';
import { CopyButton, ErrorBox, Loading, ProgressBar, RunStatusBadge, Section, isFinished } from '../components/common';
import { MetricsCompare } from '../components/Compare';
import { CleanReportView, DatasetCounts } from '../components/DataQuality';
import { DecisionForm, GateSummary } from '../components/Decision';
import { LogTail } from '../components/LogTail';
import { MetricsPanel } from '../components/Metrics';
import { Pipeline, StageDetail, stageViews } from '../components/Pipeline';
import { between, formatDate, formatDuration, useNow } from '../format';
import { datasetPath, Link, labelPath } from '../router';
import { useMe, whyNot } from '../session';

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

/** The gate's state; once the workflow is gone from Temporal, the recorded decision stands in for it. */
function gateOf(detail: RunDetail): RunDetail['gate'] {
  if (detail.gate) return detail.gate;
  const last = detail.approvals[detail.approvals.length - 1];
  if (!last) return undefined;
  if (last.decision === 'expired') return { status: 'expired', expiredAt: last.decided_at };
  return { status: last.decision === 'approve' ? 'approved' : 'rejected', approver: last.approver ?? '', comment: last.comment ?? '', decidedAt: last.decided_at };
}

export function RunPage({ id }: { id: string }) {
  const me = useMe();
  const [detail, setDetail] = useState<RunDetail>();
  const [error, setError] = useState<ApiFailure>();
  const [logs, setLogs] = useState<LogLine[]>([]);
  const [selected, setSelected] = useState<string>();
  const [logStage, setLogStage] = useState('');
  const detailRef = useRef<RunDetail | undefined>(undefined);
  detailRef.current = detail;
  const lastLogId = useRef(0);
  lastLogId.current = logs.length ? logs[logs.length - 1].id : 0;
  const base = `/api/runs/${encodeURIComponent(id)}`;

  const fetchDetail = useCallback(() => {
    api<RunDetail>(base)
      .then((d) => {
        setDetail(d);
        setError(undefined);
      })
      .catch((err: unknown) => setError(err instanceof ApiFailure ? err : new ApiFailure(0, String(err))));
  }, [base]);
  const fetchLogs = useCallback(() => {
    const after = lastLogId.current;
    api<{ lines: LogLine[] }>(`${base}/logs?limit=500${after ? `&after=${after}` : ''}`)
      .then((r) => setLogs((old) => mergeLogs(old, r.lines)))
      .catch(() => {});
  }, [base]);

  useEffect(() => {
    setDetail(undefined);
    setError(undefined);
    setLogs([]);
    setSelected(undefined);
    fetchDetail();
    fetchLogs();
  }, [fetchDetail, fetchLogs]);

  const audit = useResource<{ entries: AuditEntry[] }>(`/api/audit?target=${encodeURIComponent(`run:${id}`)}`);
  const refetchSoon = useDebounced(() => {
    fetchDetail();
    audit.reload();
  }, 300);

  // The stream opens once the run is known to exist (a missing run is the designed 404 state, not a stream).
  const known = detail !== undefined && detail.run.id === id;
  const stream = useEventStream(
    known ? `${base}/events` : null,
    {
      snapshot: (d: RunEvents['snapshot']) => {
        setDetail(d);
        setError(undefined);
      },
      run: (e: RunEvents['run']) => {
        const old = detailRef.current;
        if (!old) return fetchDetail();
        const before = new Map(stageViews(old).map((s) => [s.name, s.status]));
        const merged: RunDetail = { ...old, ...e };
        const changed = stageViews(merged).some((s) => before.get(s.name) !== s.status && s.status !== 'running') || old.run.status !== e.run.status;
        setDetail(merged);
        if (changed) refetchSoon();
      },
      metrics: (e: RunEvents['metrics']) => setDetail((old) => old && { ...old, metrics: mergePoints(old.metrics, e.points) }),
      logs: (e: RunEvents['logs']) => setLogs((old) => mergeLogs(old, e.lines)),
      labels: (e: RunEvents['labels']) => setDetail((old) => old && { ...old, labels: e }),
      approvals: (e: RunEvents['approvals']) => {
        setDetail((old) => old && { ...old, approvals: e.approvals });
        audit.reload();
      },
    },
    (reconnect) => {
      if (reconnect) fetchLogs();
    },
  );

  const stages = useMemo(() => (detail ? stageViews(detail) : []), [detail]);
  const running = detail ? !isFinished(detail.run.status) : false;
  const now = useNow(1000, running);

  if (error && !detail) return <main className="page"><ErrorBox error={error} retry={fetchDetail} /></main>;
  if (!detail) return <main className="page"><Loading what="the run" /></main>;

  const { run } = detail;
  const focus =
    selected ??
    stages.find((s) => s.status === 'failed')?.name ??
    stages.find((s) => s.status === 'running')?.name ??
    [...stages].reverse().find((s) => s.status !== 'pending')?.name ??
    stages[0]?.name;
  const focused = stages.find((s) => s.name === focus);
  const duration = between(run.created_at, isFinished(run.status) ? run.updated_at : null, now);
  const testSummary = stages.find((s) => s.name === 'test')?.summary;
  const deploySummary = stages.find((s) => s.name === 'deploy')?.summary;
  // A rolled-back canary's reason is the run's error too: the canary panel says it once.
  const showError = Boolean(run.error) && !(run.status === 'rolled-back' && hasCanaryOutcome(deploySummary));
  const decideWhyNot = whyNot(me, 'approve') ?? (run.requested_by === me.username ? 'You started this run, so another approver must decide its deployment.' : undefined);

  return (
    <main className="page run-page">
      <div className="page-head">
        <div className="title-block">
          <div className="crumbs">
            <Link to="/runs">Runs</Link> /
          </div>
          <h1>
            {run.name} <RunStatusBadge status={run.status} />
          </h1>
          <div className="muted small mono">
            {run.id} <CopyButton text={run.id} label="Copy run id" />
          </div>
        </div>
        <div className="head-actions">
          {(stream === 'reconnecting' || stream === 'closed') && (
            <span className="muted small" role="status" title={stream === 'closed' ? 'Reload the page to resume live updates' : 'The live connection is re-established automatically'}>
              {stream === 'closed' ? 'live updates stopped' : 'reconnecting…'}
            </span>
          )}
          {running && me.can.start && <CancelButton runId={run.id} />}
        </div>
      </div>
      <dl className="facts run-facts">
        <div>
          <dt>requested by</dt>
          <dd>{run.requested_by}</dd>
        </div>
        <div>
          <dt>created</dt>
          <dd>{formatDate(run.created_at)}</dd>
        </div>
        <div>
          <dt>{running ? 'running for' : 'took'}</dt>
          <dd>{duration !== undefined ? formatDuration(duration) : '—'}</dd>
        </div>
        {detail.modelVersion && (
          <div>
            <dt>model</dt>
            <dd>
              <Link to={`/models#${detail.modelVersion.id}`}>
                {detail.modelVersion.name} v{detail.modelVersion.version}
              </Link>
            </dd>
          </div>
        )}
        {detail.deployment && (
          <div>
            <dt>served at</dt>
            <dd className="mono">
              {detail.deployment.endpoint} <span className="muted">({detail.deployment.status})</span>
            </dd>
          </div>
        )}
      </dl>
      {(run.status === 'canary' || run.status === 'rolled-back' || hasCanaryOutcome(deploySummary)) && (
        <RunCanaryPanel runId={run.id} status={run.status} deploySummary={deploySummary} />
      )}
      {showError && (
        <div className={run.status === 'cancelled' ? 'callout info' : 'callout error'} role="alert">
          <strong>{run.status === 'failed' ? 'Failed' : run.status === 'cancelled' ? 'Cancelled' : 'Error'}</strong> <span>{run.error}</span>
        </div>
      )}
      {run.status === 'waiting-labels' && (
        <div className="callout attention" data-testid="labels-banner">
          <strong>This run waits for preference labels.</strong>
          {detail.labels && <ProgressBar value={detail.labels.labeled} max={detail.labels.required} label="Labels" />}
          {me.can.label ? (
            <Link to={labelPath(run.id)} className="button primary" data-testid="label-link">
              Label pairs
            </Link>
          ) : (
            <span className="muted">
              {whyNot(me, 'label')} <Link to={labelPath(run.id)}>See the pairs</Link>
            </span>
          )}
        </div>
      )}

      <Section title="Pipeline" id="pipeline">
        <Pipeline stages={stages} selected={focus} onSelect={(n) => { setSelected(n); setLogStage(n); }} now={now} />
        {focused && <StageDetail stage={focused} now={now} />}
      </Section>

      <div className="grid-2">
        <Section title="Deployment gate" id="gate" testId="gate">
          <GateSummary gate={gateOf(detail)} ended={!running} />
          {detail.gate?.status === 'waiting' &&
            (decideWhyNot ? (
              <p className="muted" data-testid="cannot-decide">
                {decideWhyNot}
              </p>
            ) : (
              <DecisionForm runId={run.id} onDecided={refetchSoon} />
            ))}
          {(detail.gate?.status === 'waiting' || testSummary) && (
            <>
              <h3>Test metrics</h3>
              <MetricsCompare candidate={testSummary} />
              {detail.gate?.status === 'waiting' && (
                <p className="small">
                  <Link to="/approvals">Compare with the serving model in the approvals inbox</Link>
                </p>
              )}
            </>
          )}
        </Section>
        <Section title="Dataset" id="dataset">
          {detail.datasetVersion ? <DatasetCard
              id={detail.datasetVersion.id}
              fallback={detail.datasetVersion}
              cleaned={detail.stages.some((st) => st.name === 'clean' && st.status === 'completed')}
            /> : <p className="muted">Ingest has not produced a dataset version yet.</p>}
        </Section>
      </div>

      <Section title="Metrics" id="metrics" testId="metrics">
        <MetricsPanel metrics={detail.metrics} />
      </Section>

      <Section
        title="Log"
        id="log"
        actions={
          <label className="field inline">
            <span>stage</span>
            <select value={logStage} onChange={(e) => setLogStage(e.target.value)}>
              <option value="">all</option>
              {stages.map((s) => (
                <option key={s.name} value={s.name}>
                  {s.name}
                </option>
              ))}
            </select>
          </label>
        }
      >
        <LogTail lines={logs} stage={logStage || undefined} />
      </Section>

      <Section title={`Artifacts (${detail.artifacts.length})`} id="artifacts">
        <ArtifactsTable artifacts={detail.artifacts} />
      </Section>

      <div className="grid-2">
        <Section title="Activity" id="audit">
          {audit.error ? (
            <ErrorBox error={audit.error} />
          ) : !audit.data ? (
            <Loading what="activity" />
          ) : audit.data.entries.length === 0 ? (
            <p className="muted">Nothing recorded yet.</p>
          ) : (
            <ol className="timeline">
              {audit.data.entries.map((e) => (
                <li key={e.id}>
                  <span className="muted small">{formatDate(e.at)}</span> <strong>{e.actor}</strong> {e.action}
                  {e.details && Object.keys(e.details).length > 0 && (
                    <span className="muted small">
                      {' '}
                      {Object.entries(e.details)
                        .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
                        .join(', ')}
                    </span>
                  )}
                  {e.comment && <blockquote className="comment">{e.comment}</blockquote>}
                </li>
              ))}
            </ol>
          )}
          {detail.approvals.length > 0 && (
            <>
              <h3>Decisions</h3>
              <ul className="plain">
                {detail.approvals.map((a) => (
                  <li key={a.id}>
                    <span className={`badge decision-${a.decision}`}>{a.decision}</span> {a.approver ?? 'timer'} · {formatDate(a.decided_at)}
                    {a.comment && <blockquote className="comment">{a.comment}</blockquote>}
                  </li>
                ))}
              </ul>
            </>
          )}
        </Section>
        <Section title="Spec" id="spec">
          <details>
            <summary>The validated spec this run received (defaults filled in)</summary>
            <pre className="code">{stringify(run.spec)}</pre>
          </details>
        </Section>
      </div>
    </main>
  );
}

function DatasetCard({ id, fallback, cleaned }: { id: string; fallback: RunDetail['datasetVersion'] & object; cleaned: boolean }) {
  const detail = useResource<DatasetDetail>(`/api/datasets/${encodeURIComponent(id)}`);
  // The dataset appears after ingest, its cleaning report only once clean completes: fetch again then.
  const { reload } = detail;
  useEffect(() => {
    if (cleaned) reload();
  }, [cleaned, reload]);
  const dataset = detail.data?.dataset ?? fallback;
  const removed = typeof detail.data?.dataset.clean?.removed === 'number' ? (detail.data.dataset.clean.removed as number) : undefined;
  return (
    <div data-testid="dataset-card">
      <p>
        <Link to={datasetPath(dataset.id)}>{dataset.name}</Link> <span className="muted small mono">{dataset.id}</span>
      </p>
      <DatasetCounts dataset={dataset} removedByClean={removed} />
      <h3>Cleaning report</h3>
      {detail.error ? <ErrorBox error={detail.error} /> : !detail.data ? <Loading what="the cleaning report" /> : <CleanReportView report={detail.data.cleanReport} />}
      {detail.data && detail.data.quarantine.length > 0 && (
        <p className="small">
          <Link to={datasetPath(dataset.id)}>See the {dataset.quarantined_count} quarantined records and why →</Link>
        </p>
      )}
    </div>
  );
}

function CancelButton({ runId }: { runId: string }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const cancel = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await post(`/api/runs/${encodeURIComponent(runId)}/cancel`);
      setConfirming(false);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  if (!confirming)
    return (
      <button type="button" className="danger" onClick={() => setConfirming(true)} data-testid="cancel-run">
        Cancel run
      </button>
    );
  return (
    <div className="confirm" role="group" aria-label="Confirm cancellation">
      <span>Cancel this run? Running work stops.</span>
      <button type="button" className="danger" onClick={cancel} disabled={busy} autoFocus>
        {busy ? 'Cancelling…' : 'Yes, cancel'}
      </button>
      <button type="button" onClick={() => setConfirming(false)} disabled={busy}>
        Keep running
      </button>
      {error && <span className="error-text">{error}</span>}
    </div>
  );
}

