/**
 * Rolling back by hand, without a canary: an approver sends all of a model's traffic to an earlier version
 * (`POST /api/deployments/:name/rollback`, with a reason that goes to the audit log). The button sits on that
 * version's row of the Deployments page; its server is started again if it was stopped, which takes a while.
 */
import { rollbackRequest, type DeploymentEntry, type RollbackResponse } from '@tempered/api-contract';
import { useMutation } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { asFailure, post } from '../api';
import { ErrorBox } from './common';
import { CommentInput } from './form';

/** The button and its form; `onDone` gets the API's answer (the row itself leaves the offer once its version serves). */
export function RollbackAction({ deployment: d, onDone }: { deployment: DeploymentEntry; onDone: (done: RollbackResponse) => void }) {
  const id = useId();
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState('');
  const [invalid, setInvalid] = useState<string>();
  const rollback = useMutation({
    mutationFn: (body: { to: string; reason: string }) => post<RollbackResponse>(`/api/deployments/${encodeURIComponent(d.model_name)}/rollback`, body),
    onSuccess: onDone,
  });
  const version = `${d.model_name} v${d.version}`;
  if (!open) {
    return (
      <button type="button" className="danger small" onClick={() => setOpen(true)} data-testid="rollback-open">
        Roll back to v{d.version}
      </button>
    );
  }
  const send = () => {
    const body = rollbackRequest.safeParse({ to: d.model_version_id, reason });
    if (!body.success) return setInvalid(body.error.issues.map((i) => i.message).join('; '));
    setInvalid(undefined);
    rollback.mutate(body.data as { to: string; reason: string });
  };
  const error = invalid !== undefined ? asFailure(invalid) : (rollback.error ?? undefined);
  return (
    <form className="decision" onSubmit={(e) => (e.preventDefault(), send())} aria-label={`Roll ${d.model_name} back to ${version}`}>
      <label htmlFor={`${id}-reason`}>Reason (required, recorded with your decision)</label>
      <CommentInput id={`${id}-reason`} value={reason} onChange={setReason} placeholder="Why the traffic goes back: a complaint, a metric" testId="rollback-reason" />
      <div className="buttons">
        <button type="submit" className="danger" disabled={rollback.isPending} data-testid="rollback-send">
          {rollback.isPending ? 'Starting its server…' : `Send all traffic to v${d.version}`}
        </button>
        <button type="button" disabled={rollback.isPending} onClick={() => setOpen(false)}>
          Cancel
        </button>
      </div>
      {error && <ErrorBox error={error} />}
    </form>
  );
}
