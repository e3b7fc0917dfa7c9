/**
 * The approvals inbox: every run waiting at its deployment gate, its test figures beside the serving model's,
 * the time left before the gate expires, and the decision; recent decisions below. It is fetched again when
 * the event stream says a run entered or left the gate (live.tsx).
 */
import type { PendingApproval } from '@tempered/api-contract';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Loaded, Section } from '../components/common';
import { AnswerList, ChampionSummary } from '../components/Answers';
import { MetricsCompare } from '../components/Compare';
import { championOf, Countdown, DecisionForm } from '../components/Decision';
import { Table } from '../components/Table';
import { formatDate } from '../format';
import { invalidateSoon, queries } from '../queries';
import { Link, runPath } from '../router';

export function ApprovalsPage() {
  const client = useQueryClient();
  const inbox = useQuery(queries.approvals);
  // The decided card says so for a moment before the inbox drops it.
  const reloadSoon = () => invalidateSoon(client, queries.approvals.queryKey);

  return (
    <main className="page">
      <div className="page-head">
        <h1>Approvals</h1>
        <span className="muted small">Deployment gates waiting for a person. Nobody may approve a run they started.</span>
      </div>
      <Loaded query={inbox} what="the approvals inbox">
        {({ pending, recent }) => (
          <>
            <Section title={`Waiting for a decision (${pending.length})`} id="pending">
              {pending.length === 0 ? (
                <p className="muted" data-testid="inbox-empty">
                  Nothing waits for a decision. Runs appear here when they pass their tests.
                </p>
              ) : (
                <ul className="inbox">
                  {pending.map((p) => (
                    <PendingCard key={p.runId} item={p} onDecided={reloadSoon} />
                  ))}
                </ul>
              )}
            </Section>
            <Section title="Recent decisions" id="recent">
              {recent.length === 0 ? (
                <p className="muted">No decisions yet.</p>
              ) : (
                <Table columns={['decision', 'run', 'by', ['comment', 'hide-narrow'], 'when']} testId="recent-decisions">
                  {recent.map((a) => (
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
                </Table>
              )}
            </Section>
          </>
        )}
      </Loaded>
    </main>
  );
}

function PendingCard({ item, onDecided }: { item: PendingApproval; onDecided: () => void }) {
  const prod = item.production;
  const champion = championOf(item.test);
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
      {champion && <ChampionSummary champion={champion} />}
      {item.sampleAnswers.answers.length > 0 && (
        <details className="sample-answers" open={item.sampleAnswers.filter === 'newly-wrong'}>
          <summary>
            {item.sampleAnswers.filter === 'newly-wrong' ? 'Answers the serving model gets right and this model does not' : 'Some answers this model gets wrong'}
          </summary>
          <AnswerList answers={item.sampleAnswers.answers} testId="sample-answers" />
          <Link to={runPath(item.runId)}>Every answer in the run's Evaluation view</Link>
        </details>
      )}
      {item.canDecide ? (
        <DecisionForm runId={item.runId} champion={champion} onDecided={onDecided} />
      ) : (
        <p className="muted" data-testid="cannot-decide">
          {item.reason ?? 'You may not decide this gate.'}
        </p>
      )}
    </li>
  );
}
