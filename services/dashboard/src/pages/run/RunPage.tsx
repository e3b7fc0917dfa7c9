/**
 * One run, live (useLiveRun keeps it current): the stage strip, the gate and its decision, loss curves,
 * artifacts, the cleaning report, the log tail and the audit trail.
 */
import type { RunDetail } from '@tempered/api-contract';
import { useMemo, useState } from 'react';
import { stringify } from 'yaml';
import { EvaluationPanel } from '../../components/Answers';
import { ArtifactsTable } from '../../components/Artifacts';
import { hasCanaryOutcome, RunCanaryPanel } from '../../components/Canary';
import { CopyButton, DetailHead, ErrorBox, Fact, Loading, ProgressBar, RunStatusBadge, Section, isFinished } from '../../components/common';
import { MetricsCompare } from '../../components/Compare';
import { DecisionForm, GateSummary } from '../../components/Decision';
import { LogTail } from '../../components/LogTail';
import { MetricsPanel } from '../../components/Metrics';
import { Pipeline, StageDetail, stageViews } from '../../components/Pipeline';
import { between, formatDate, formatDuration, useNow } from '../../format';
import { Link, labelPath } from '../../router';
import { useMe, whyNot } from '../../session';
import { CancelButton } from './CancelButton';
import { DatasetCard } from './DatasetCard';
import { RunActivity } from './RunActivity';
import { useLiveRun } from './useLiveRun';

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
  const live = useLiveRun(id);
  const detail = live.detail.data;
  const [selected, setSelected] = useState<string>();
  const [logStage, setLogStage] = useState('');
  const { stream } = live;
  const stages = useMemo(() => (detail ? stageViews(detail) : []), [detail]);
  const running = detail ? !isFinished(detail.run.status) : false;
  const now = useNow(1000, running);

  if (live.detail.error && !detail)
    return (
      <main className="page">
        <ErrorBox error={live.detail.error} retry={() => void live.detail.refetch()} />
      </main>
    );
  if (!detail)
    return (
      <main className="page">
        <Loading what="the run" />
      </main>
    );

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
      <DetailHead
        parent={{ to: '/runs', label: 'Runs' }}
        title={
          <>
            {run.name} <RunStatusBadge status={run.status} />
          </>
        }
        sub={
          <>
            {run.id} <CopyButton text={run.id} label="Copy run id" />
          </>
        }
        subClassName="muted small mono"
        actions={
          <div className="head-actions">
            {(stream === 'reconnecting' || stream === 'closed') && (
              <span className="muted small" role="status" title={stream === 'closed' ? 'Reload the page to resume live updates' : 'The live connection is re-established automatically'}>
                {stream === 'closed' ? 'live updates stopped' : 'reconnecting…'}
              </span>
            )}
            {running && me.can.start && <CancelButton runId={run.id} />}
          </div>
        }
      />
      <dl className="facts run-facts">
        <Fact term="requested by">{run.requested_by}</Fact>
        <Fact term="created">{formatDate(run.created_at)}</Fact>
        <Fact term={running ? 'running for' : 'took'}>{duration !== undefined ? formatDuration(duration) : '—'}</Fact>
        {detail.modelVersion && (
          <Fact term="model">
            <Link to={`/models#${detail.modelVersion.id}`}>
              {detail.modelVersion.name} v{detail.modelVersion.version}
            </Link>
          </Fact>
        )}
        {detail.deployment && (
          <Fact term="served at" className="mono">
            {detail.deployment.endpoint} <span className="muted">({detail.deployment.status})</span>
          </Fact>
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
        <Pipeline
          stages={stages}
          selected={focus}
          onSelect={(n) => {
            setSelected(n);
            setLogStage(n);
          }}
          now={now}
        />
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
              <DecisionForm runId={run.id} onDecided={live.refetchSoon} />
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
          {detail.datasetVersion ? (
            <DatasetCard id={detail.datasetVersion.id} fallback={detail.datasetVersion} cleaned={detail.stages.some((st) => st.name === 'clean' && st.status === 'completed')} />
          ) : (
            <p className="muted">Ingest has not produced a dataset version yet.</p>
          )}
        </Section>
      </div>

      {testSummary && (
        <Section title="Evaluation" id="evaluation">
          <EvaluationPanel runId={run.id} test={testSummary} />
        </Section>
      )}

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
        <LogTail lines={live.logs} stage={logStage || undefined} />
      </Section>

      <Section title={`Artifacts (${detail.artifacts.length})`} id="artifacts">
        <ArtifactsTable artifacts={detail.artifacts} />
      </Section>

      <div className="grid-2">
        <Section title="Activity" id="audit">
          <RunActivity audit={live.audit} approvals={detail.approvals} />
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
