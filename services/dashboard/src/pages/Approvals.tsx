/**
 * The approvals inbox: every run waiting at its deployment gate, its test figures beside the serving model's,
 * the time left before the gate expires, and the decision; recent decisions below. It is fetched again when
 * the event stream says a run entered or left the gate.
 */
import type { ApprovalsResponse, PendingApproval } from '@tempered/api-contract';
import { useResource, useDebounced } from '../api';
import { ErrorBox, Loading, Section } from '../components/common';
import { MetricsCompare } from '../components/Compare';
import { championOf, Countdown, DecisionForm } from '../components/Decision';
import { formatDate } from '../format';
import { useRunChanges } from '../live';
import { Link, runPath } from '../router';

export function ApprovalsPage() {
  const inbox = useResource<ApprovalsResponse>('/api/approvals');
  const reloadSoon = useDebounced(inbox.reload, 300);
  useRunChanges((e) => {
    if (e.type === 'resync') return reloadSoon();
    const listed = inbox.data?.pending.some((p) => p.runId === e.run.id) ?? false;
    if (listed || e.run.status === 'waiting-approval') reloadSoon();
  });

  return (
    <main className="page">
      <div className="page-head">
        <h1>Approvals</h1>
        <span className="muted small">Deployment gates waiting for a person. Nobody may approve a run they started.</span>
      </div>
      {inbox.error ? (
        <ErrorBox error={inbox.error} retry={inbox.reload} />
      ) : !inbox.data ? (
        <Loading what="the approvals inbox" />
      ) : (
        <>
          <Section title={`Waiting for a decision (${inbox.data.pending.length})`} id="pending">
            {inbox.data.pending.length === 0 ? (
              <p className="muted" data-testid="inbox-empty">
                Nothing waits for a decision. Runs appear here when they pass their tests.
              </p>
            ) : (
              <ul className="inbox">
                {inbox.data.pending.map((p) => (
                  <PendingCard key={p.runId} item={p} onDecided={reloadSoon} />
                ))}
              </ul>
            )}
          </Section>
          <Section title="Recent decisions" id="recent">
            {inbox.data.recent.length === 0 ? (
              <p className="muted">No decisions yet.</p>
            ) : (
              <div className="table-wrap">
                <table className="table" data-testid="recent-decisions">
                  <thead>
                    <tr>
                      <th scope="col">decision</th>
                      <th scope="col">run</th>
                      <th scope="col">by</th>
                      <th scope="col" className="hide-narrow">
                        comment
                      </th>
                      <th scope="col">when</th>
                    </tr>
                  </thead>
                  <tbody>
                    {inbox.data.recent.map((a) => (
                      <tr key={a.id}>
                        <td>
                          <span className={`badge decision-${a.decision}`}>{a.decision}</span>
                        </td>
                        <td>
                          <Link to={runPath(a.run_id)}>{a.name}</Link>
                        </td>
                        <td>{a.approver ?? '—'}</td>
                        <td className="hide-narrow comment-cell">{a.comment || <span className="muted">—</span>}</td>
                        <td className="nowrap">{formatDate(a.decided_at)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </Section>
        </>
      )}
    </main>
  );
}

function PendingCard({ item, onDecided }: { item: PendingApproval; onDecided: () => void }) {
  const prod = item.production;
  return (
    <li className="inbox-item" data-testid="pending-approval" data-run-id={item.runId}>
      <div className="inbox-head">
        <div>
          <Link to={runPath(item.runId)} className="run-name">
            {item.name}
          </Link>
          <div className="muted small mono">{item.runId}</div>
        </div>
        <div className="inbox-meta">
          <span className="small">requested by {item.requestedBy}</span>
          {item.deadline ? <Countdown deadline={item.deadline} /> : <span className="muted small">no deadline</span>}
        </div>
      </div>
      <MetricsCompare
        candidate={item.test}
        production={prod ? prod.metrics : null}
        productionLabel={prod ? `serving: ${prod.name} v${prod.version}` : 'serving'}
      />
      {!prod && <p className="muted small">No version of this model is serving yet: this would be its first deployment.</p>}
      {item.canDecide ? (
        <DecisionForm runId={item.runId} champion={championOf(item.test)} onDecided={onDecided} />
      ) : (
        <p className="muted" data-testid="cannot-decide">
          {item.reason ?? 'You may not decide this gate.'}
        </p>
      )}
    </li>
  );
}
