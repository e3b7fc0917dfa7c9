/**
 * Deciding a deployment gate: the comment and the two buttons, for a person who may decide; otherwise the
 * reason they may not. Also the live countdown to a gate's expiry.
 */
import { type ChampionComparison, championShortfall, decisionRequest, type GateState } from '@tempered/api-contract';
import { useMutation } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { post } from '../api';
import { formatDate, formatDuration, useNow } from '../format';
import { CommentInput } from './form';

export function Countdown({ deadline }: { deadline: string }) {
  const now = useNow(1000);
  const left = Date.parse(deadline) - now;
  const urgent = left < 60 * 60 * 1000;
  return (
    <span className={`countdown${urgent ? ' urgent' : ''}`} data-testid="countdown" title={`expires ${formatDate(deadline)}`}>
      {left > 0 ? `${formatDuration(left)} left` : 'expiring now'}
    </span>
  );
}

/** The test stage's comparison with the serving model of the same name (its summary's `champion`), when there was one. */
export const championOf = (test: Record<string, unknown> | null | undefined) => (test?.champion as ChampionComparison | undefined) ?? undefined;

export function DecisionForm({
  runId,
  champion,
  onDecided,
}: {
  runId: string;
  champion?: ChampionComparison;
  onDecided?: (decision: 'approve' | 'reject') => void;
}) {
  const [comment, setComment] = useState('');
  // A challenger that lost to the serving model deploys only by an explicit, recorded override.
  const needsOverride = champion !== undefined && !champion.challengerWins;
  const [override, setOverride] = useState(false);
  const [invalid, setInvalid] = useState<string>();
  const id = useId();
  const send = useMutation({
    mutationFn: (body: { decision: 'approve' | 'reject' }) => post(`/api/runs/${encodeURIComponent(runId)}/approval`, body),
    onSuccess: (_, body) => onDecided?.(body.decision),
  });
  const busy = send.isPending ? send.variables.decision : null;
  const done = send.isSuccess ? send.variables.decision : undefined;
  const error = invalid ?? send.error?.message;

  const decide = (decision: 'approve' | 'reject') => {
    const body = decisionRequest.safeParse({ decision, comment: comment.trim(), override: decision === 'approve' && needsOverride && override });
    if (!body.success) {
      setInvalid(body.error.issues.map((i) => i.message).join('; '));
      return;
    }
    setInvalid(undefined);
    send.mutate(body.data);
  };

  if (done) {
    return (
      <p className="callout ok" role="status" data-testid="decision-done">
        {done === 'approve' ? 'Approved: the model is being deployed.' : 'Rejected: the run stops here.'}
      </p>
    );
  }
  return (
    <form className="decision" onSubmit={(e) => e.preventDefault()} aria-label={`Decide the deployment of ${runId}`}>
      <label htmlFor={`${id}-comment`}>Comment (recorded with your decision)</label>
      <CommentInput id={`${id}-comment`} value={comment} onChange={setComment} placeholder="What you checked, or why you reject it" testId="decision-comment" />
      {needsOverride && (
        <div className="callout warn" data-testid="override-needed">
          <p>
            {championShortfall(champion)} (serving version v{champion.version}). Approving deploys it anyway, recorded as an override.
          </p>
          <label>
            <input type="checkbox" data-testid="override" checked={override} onChange={(e) => setOverride(e.target.checked)} /> Override: deploy it although it
            loses
          </label>
        </div>
      )}
      <div className="buttons">
        <button
          type="button"
          className="primary approve"
          data-testid="approve"
          disabled={busy !== null || (needsOverride && !override)}
          onClick={() => decide('approve')}
        >
          {busy === 'approve' ? 'Approving…' : needsOverride ? 'Approve by override' : 'Approve deployment'}
        </button>
        <button type="button" className="danger" data-testid="reject" disabled={busy !== null} onClick={() => decide('reject')}>
          {busy === 'reject' ? 'Rejecting…' : 'Reject'}
        </button>
      </div>
      {error && (
        <p className="callout error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

export function GateSummary({ gate, ended = false }: { gate: GateState | undefined; ended?: boolean }) {
  if (!gate || gate.status === 'not-reached')
    return <p className="muted">{ended ? 'The run ended before its deployment gate.' : 'The deployment gate opens once the test stage has passed.'}</p>;
  if (gate.status === 'waiting')
    return (
      <p>
        <span className="badge run-waiting-approval">waiting for a decision</span> <Countdown deadline={gate.deadline} />
      </p>
    );
  if (gate.status === 'expired')
    return (
      <p>
        <span className="badge run-expired">expired</span> Nobody decided before {formatDate(gate.expiredAt)}; the model was not deployed.
      </p>
    );
  return (
    <div data-testid="gate-decision">
      <p>
        <span className={`badge ${gate.status === 'approved' ? 'run-deployed' : 'run-rejected'}`}>{gate.status}</span>
        {gate.status === 'approved' && gate.override ? ' by override' : ''} by <strong>{gate.approver}</strong>,{' '}
        {formatDate(gate.decidedAt)}
      </p>
      {gate.comment && <blockquote className="comment">{gate.comment}</blockquote>}
    </div>
  );
}
