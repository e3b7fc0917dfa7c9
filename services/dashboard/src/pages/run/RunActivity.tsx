/** A run's audit trail, oldest first, and the decisions at its deployment gate. */
import type { AuditEntry, RunDetail } from '@tempered/api-contract';
import type { UseQueryResult } from '@tanstack/react-query';
import type { ApiFailure } from '../../api';
import { Loaded } from '../../components/common';
import { formatDate } from '../../format';

const detailsText = (details: Record<string, unknown>) =>
  Object.entries(details)
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');

export function RunActivity({ audit, approvals }: { audit: UseQueryResult<{ entries: AuditEntry[] }, ApiFailure>; approvals: RunDetail['approvals'] }) {
  return (
    <>
      <Loaded query={audit} what="activity" retry={false}>
        {({ entries }) =>
          entries.length === 0 ? (
            <p className="muted">Nothing recorded yet.</p>
          ) : (
            <ol className="timeline">
              {entries.map((e) => (
                <li key={e.id}>
                  <span className="muted small">{formatDate(e.at)}</span> <strong>{e.actor}</strong> {e.action}
                  {e.details && Object.keys(e.details).length > 0 && <span className="muted small"> {detailsText(e.details)}</span>}
                  {e.comment && <blockquote className="comment">{e.comment}</blockquote>}
                </li>
              ))}
            </ol>
          )
        }
      </Loaded>
      {approvals.length > 0 && (
        <>
          <h3>Decisions</h3>
          <ul className="plain">
            {approvals.map((a) => (
              <li key={a.id}>
                <span className={`badge decision-${a.decision}`}>{a.decision}</span> {a.approver ?? 'timer'} · {formatDate(a.decided_at)}
                {a.comment && <blockquote className="comment">{a.comment}</blockquote>}
              </li>
            ))}
          </ul>
        </>
      )}
    </>
  );
}
