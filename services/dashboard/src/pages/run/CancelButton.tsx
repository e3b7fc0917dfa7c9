/** Cancelling a running run, after a confirmation. */
import { useMutation } from '@tanstack/react-query';
import { useState } from 'react';
import { post } from '../../api';

export function CancelButton({ runId }: { runId: string }) {
  const [confirming, setConfirming] = useState(false);
  const cancel = useMutation({
    mutationFn: () => post(`/api/runs/${encodeURIComponent(runId)}/cancel`),
    onSuccess: () => setConfirming(false),
  });
  if (!confirming)
    return (
      <button type="button" className="danger" onClick={() => setConfirming(true)} data-testid="cancel-run">
        Cancel run
      </button>
    );
  return (
    <div className="confirm" role="group" aria-label="Confirm cancellation">
      <span>Cancel this run? Running work stops.</span>
      <button type="button" className="danger" onClick={() => cancel.mutate()} disabled={cancel.isPending} autoFocus>
        {cancel.isPending ? 'Cancelling…' : 'Yes, cancel'}
      </button>
      <button type="button" onClick={() => setConfirming(false)} disabled={cancel.isPending}>
        Keep running
      </button>
      {cancel.error && <span className="error-text">{cancel.error.message}</span>}
    </div>
  );
}
