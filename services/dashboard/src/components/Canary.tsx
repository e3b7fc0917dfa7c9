/**
 * Canary rollouts: the new version's health in the current step, an approver's promote or abort, and the
 * short panel a run's page shows while its canary runs and after it ended.
 */
import { canaryActionRequest, type DeploymentEntry, type DeploymentsResponse, type RunStatus } from '@tempered/api-contract';
import { useMutation, useQuery } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { asFailure, post } from '../api';
import { formatAgo, formatDate, formatNumber, useNow } from '../format';
import { queries } from '../queries';
import { Link } from '../router';
import { ErrorBox, Fact, ShareBar } from './common';
import { CommentInput } from './form';

/** How often a page asks again while a canary runs (see `DeploymentsPage` for why it must ask at all). */
export const CANARY_POLL_MS = 2000;

/**
 * `GET /api/deployments`, asked again every CANARY_POLL_MS while `polling` says so of the latest answer (a
 * request never overlaps the one before); nothing at all while `enabled` is false.
 */
export function useDeployments(polling: (data: DeploymentsResponse | undefined) => boolean, enabled = true) {
  return useQuery({ ...queries.deployments, enabled, refetchInterval: (q) => (polling(q.state.data) ? CANARY_POLL_MS : false) });
}

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const percent = (v: number | undefined) => (v === undefined ? '—' : v.toLocaleString(undefined, { style: 'percent', maximumFractionDigits: 1 }));

/** The canary's figures for the current step (requests, errors, p95 latency, thumbs-down) and a breach, if any. */
export function CanaryHealthView({ health }: { health: Record<string, unknown> | undefined }) {
  if (!health) return <p className="muted small">No health reading yet: the first comes with the step's first check.</p>;
  const rated = num(health.rated);
  const breach = typeof health.breach === 'string' ? health.breach : undefined;
  return (
    <>
      <dl className="facts health" data-testid="canary-health">
        <Fact term="requests">{formatNumber(num(health.requests))}</Fact>
        <Fact term="errors">
          {formatNumber(num(health.errors))} <span className="muted">({percent(num(health.errorRate))})</span>
        </Fact>
        <Fact term="p95 latency">{num(health.p95LatencyMs) !== undefined ? `${formatNumber(Math.round(num(health.p95LatencyMs)!))} ms` : '—'}</Fact>
        <Fact term="thumbs down">
          {rated ? (
            <>
              {percent(num(health.negativeRate))} <span className="muted">of {formatNumber(rated)} rated</span>
            </>
          ) : (
            <span className="muted">none rated</span>
          )}
        </Fact>
      </dl>
      {breach && (
        <p className="error-text small" data-testid="canary-breach">
          Breach: {breach}
        </p>
      )}
    </>
  );
}

/** Promote or abort a running canary, with a comment; the request is a signal to the canary's workflow. */
export function CanaryActions({ runId, version, onSent }: { runId: string; version: string; onSent: () => void }) {
  const id = useId();
  const [comment, setComment] = useState('');
  const [invalid, setInvalid] = useState<string>();
  const end = useMutation({
    mutationFn: (body: { action: 'promote' | 'abort' }) => post(`/api/runs/${encodeURIComponent(runId)}/canary`, body),
    onSuccess: onSent,
  });
  const busy = end.isPending ? end.variables.action : undefined;
  const sent = end.isSuccess ? end.variables.action : undefined;
  const error = invalid !== undefined ? asFailure(invalid) : (end.error ?? undefined);

  const send = (action: 'promote' | 'abort') => {
    const body = canaryActionRequest.safeParse({ action, comment: comment.trim() });
    if (!body.success) return setInvalid(body.error.issues.map((i) => i.message).join('; '));
    setInvalid(undefined);
    end.mutate(body.data);
  };

  if (sent) {
    return (
      <p className="callout ok" role="status" data-testid="canary-sent">
        {sent === 'promote' ? `Promote sent: all traffic moves to ${version} in a moment.` : `Abort sent: traffic goes back to the previous version in a moment.`}
      </p>
    );
  }
  return (
    <form className="decision" onSubmit={(e) => e.preventDefault()} aria-label={`End the canary of ${version}`}>
      <label htmlFor={`${id}-comment`}>Comment (recorded with your decision)</label>
      <CommentInput id={`${id}-comment`} value={comment} onChange={setComment} placeholder="What you saw: the error rate, a complaint, a dashboard" testId="canary-comment" />
      <div className="buttons">
        <button type="button" className="primary approve" disabled={busy !== undefined} onClick={() => send('promote')} data-testid="canary-promote">
          {busy === 'promote' ? 'Promoting…' : 'Promote now'}
        </button>
        <button type="button" className="danger" disabled={busy !== undefined} onClick={() => send('abort')} data-testid="canary-abort">
          {busy === 'abort' ? 'Aborting…' : 'Abort and roll back'}
        </button>
      </div>
      {error && <ErrorBox error={error} />}
    </form>
  );
}

/** The step, the share of traffic and when the step began. */
export function CanaryStep({ canary, now }: { canary: NonNullable<DeploymentEntry['canary']>; now: number }) {
  return (
    <dl className="facts">
      <Fact term="step" testId="canary-step">
        {canary.step || '—'}
      </Fact>
      <Fact term="traffic">
        <ShareBar percent={canary.weight} label="share of traffic" testId="canary-weight" />
      </Fact>
      <Fact term="step started" title={formatDate(canary.stepStartedAt)}>
        {canary.stepStartedAt ? formatAgo(canary.stepStartedAt, now) : '—'}
      </Fact>
    </dl>
  );
}

interface CanaryOutcome {
  status: string;
  reason?: string;
  decidedBy?: string;
  steps?: Array<{ weight: number }>;
}

/** The deploy stage's summary names the canary's outcome once it ended (`canary: 'running'` while it runs). */
function outcomeOf(summary: Record<string, unknown> | null | undefined): CanaryOutcome | undefined {
  const c = summary?.canary;
  return c && typeof c === 'object' && typeof (c as CanaryOutcome).status === 'string' ? (c as CanaryOutcome) : undefined;
}
export const hasCanaryOutcome = (summary: Record<string, unknown> | null | undefined) => outcomeOf(summary) !== undefined;

/**
 * A run's canary, kept small: while it runs, its step, weight and health from `GET /api/deployments`
 * (asked again every 2 s, as on the Deployments page); once it ended, its outcome from the deploy stage.
 */
export function RunCanaryPanel({ runId, status, deploySummary }: { runId: string; status: RunStatus; deploySummary: Record<string, unknown> | null | undefined }) {
  const live = status === 'canary';
  // While the run is a canary, whatever the list says yet (its deployment may not be listed the first moment).
  const deployments = useDeployments(() => live, live);
  const now = useNow(5000, live);
  const outcome = outcomeOf(deploySummary);

  if (!live) {
    if (!outcome) return null;
    const promoted = outcome.status === 'promoted';
    return (
      <div className={`callout ${promoted ? 'ok' : 'error'}`} data-testid="canary-panel" data-outcome={outcome.status}>
        <strong>Canary {promoted ? 'promoted' : 'rolled back'}</strong>
        {outcome.reason && <span>{outcome.reason}</span>}
        {outcome.decidedBy && <span className="small">decided by {outcome.decidedBy === 'canary' ? 'its health checks' : outcome.decidedBy}</span>}
        {outcome.steps && outcome.steps.length > 0 && <span className="small">steps {outcome.steps.map((s) => `${s.weight}%`).join(' → ')}</span>}
      </div>
    );
  }
  const d = deployments.data?.deployments.find((x) => x.run_id === runId && x.status === 'canary');
  return (
    <div className="callout info canary-panel" data-testid="canary-panel" data-outcome="running">
      <strong>Canary rollout</strong>
      {d?.canary ? (
        <>
          <CanaryStep canary={d.canary} now={now} />
          <CanaryHealthView health={d.canary.health} />
        </>
      ) : deployments.error ? (
        <span className="small">Its live state is unavailable: {deployments.error.message}</span>
      ) : (
        <span className="small">{deployments.data ? 'Starting…' : 'Loading its state…'}</span>
      )}
      <Link to="/deployments" className="small">
        Promote or abort on Deployments →
      </Link>
    </div>
  );
}
