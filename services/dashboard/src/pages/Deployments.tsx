/**
 * Deployments: what serves each model and with what share of the gateway's traffic, newest first; canary
 * rollouts in progress on top with their step, weight and health, where approvers promote or abort them;
 * and, on the row of an earlier version of a model that serves, an approver's rollback to it.
 */
import type { DeploymentEntry, RollbackResponse } from '@tempered/api-contract';
import { useState } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { CanaryActions, CanaryHealthView, CanaryStep, useDeployments } from '../components/Canary';
import { RollbackAction } from '../components/Rollback';
import { DeploymentStatusBadge, Loaded, ShareBar } from '../components/common';
import { Table, unnamed } from '../components/Table';
import { formatAgo, formatDate, useNow } from '../format';
import { invalidateSoon, queries } from '../queries';
import { Link, runPath } from '../router';
import { useMe, whyNot } from '../session';

const someCanary = (deployments: DeploymentEntry[] | undefined) => deployments?.some((d) => d.status === 'canary') ?? false;

/**
 * Whether a row offers a rollback to its version: it served once and does not now, another version of its
 * model serves, and no canary of that model runs (that one is aborted on its card instead).
 */
const canRollBackTo = (d: DeploymentEntry, all: DeploymentEntry[]) =>
  (d.status === 'stopped' || d.status === 'rolled-back') &&
  all.some((x) => x.model_name === d.model_name && x.status === 'serving') &&
  !all.some((x) => x.model_name === d.model_name && x.status === 'canary') &&
  // The newest row of its version only: a version deployed twice is offered once.
  all.find((x) => x.model_version_id === d.model_version_id) === d;

export function DeploymentsPage() {
  const me = useMe();
  const client = useQueryClient();
  // A canary's health (requests, errors, p95 latency, thumbs-down) and its steps change inside its workflow,
  // which reads the gateway's request log: the run stays `canary` throughout, so no run event says so. While
  // some canary runs, and only then, the list is asked again every 2 s; the run events (live.tsx) cover a
  // canary's start and end, and every other change of a deployment.
  const list = useDeployments((data) => someCanary(data?.deployments));
  const reloadSoon = () => invalidateSoon(client, queries.deployments.queryKey);
  const canarying = someCanary(list.data?.deployments);
  const now = useNow(canarying ? 5000 : 30_000);
  const cannot = whyNot(me, 'approve', 'promote or abort a canary');
  const mayRollBack = me.can.approve;
  const [rolledBack, setRolledBack] = useState<RollbackResponse>();
  const onRolledBack = (done: RollbackResponse) => (setRolledBack(done), reloadSoon());

  return (
    <main className="page">
      <div className="page-head">
        <h1>Deployments</h1>
        <span className="muted small">What serves each model, its share of the gateway's traffic, and canary rollouts in progress.</span>
      </div>
      <Loaded query={list} what="deployments" stale="Could not refresh">
        {({ deployments }) => (
          <>
            {deployments
              .filter((d) => d.status === 'canary')
              .map((d) => (
                <CanaryCard key={d.id} deployment={d} now={now} cannot={cannot} onSent={reloadSoon} />
              ))}
            {rolledBack && (
              <p className="callout ok" role="status" data-testid="rollback-done">
                All of {rolledBack.modelName}'s traffic goes to {rolledBack.to}
                {rolledBack.from ? `; ${rolledBack.from} is rolled back, still registered and downloadable` : ''}.
              </p>
            )}
            {deployments.length === 0 ? (
              <div className="empty" data-testid="deployments-empty">
                <p>No deployments yet: a run deploys its model once an approver approves its gate.</p>
              </div>
            ) : (
              <Table columns={['model', 'status', 'traffic', ['endpoint', 'hide-narrow'], 'run', ['since', 'hide-narrow'], unnamed('actions')]} className="deployments" testId="deployments-table">
                {deployments.map((d) => (
                  <tr key={d.id} data-deployment-id={d.id} data-run-id={d.run_id} data-status={d.status}>
                    <td>
                      <Link to={`/models#${d.model_version_id}`} className="run-name">
                        {d.model_name}
                      </Link>{' '}
                      <span className="version">v{d.version}</span>
                    </td>
                    <td>
                      <DeploymentStatusBadge status={d.status} />
                    </td>
                    <td className="share-cell">
                      <ShareBar percent={d.weight} label={`${d.model_name} v${d.version}'s share of traffic`} testId="traffic" />
                    </td>
                    <td className="hide-narrow mono small ellipsis" title={d.endpoint}>
                      {d.endpoint}
                    </td>
                    <td>
                      <Link to={runPath(d.run_id)} className="mono small ellipsis-link" title={d.run_id}>
                        {d.run_id}
                      </Link>
                    </td>
                    <td className="hide-narrow nowrap" title={formatDate(d.created_at)}>
                      {formatAgo(d.created_at, now)}
                    </td>
                    <td>{mayRollBack && canRollBackTo(d, deployments) && <RollbackAction deployment={d} onDone={onRolledBack} />}</td>
                  </tr>
                ))}
              </Table>
            )}
          </>
        )}
      </Loaded>
    </main>
  );
}

function CanaryCard({ deployment: d, now, cannot, onSent }: { deployment: DeploymentEntry; now: number; cannot: string | undefined; onSent: () => void }) {
  const version = `${d.model_name} v${d.version}`;
  const c = d.canary;
  return (
    <section className="card canary-card" aria-labelledby={`canary-${d.id}`} data-testid="canary" data-run-id={d.run_id}>
      <header className="card-head">
        <h2 id={`canary-${d.id}`}>
          Canary: {d.model_name} <span className="version">v{d.version}</span> <DeploymentStatusBadge status={d.status} />
        </h2>
        <Link to={runPath(d.run_id)} className="small">
          run {d.run_id}
        </Link>
      </header>
      {!c ? (
        <p className="muted">Its live state is unavailable: the canary's workflow did not answer. The page asks again in a moment.</p>
      ) : (
        <>
          <CanaryStep canary={c} now={now} />
          <h3>Health in this step</h3>
          <CanaryHealthView health={c.health} />
          {c.status !== 'running' ? (
            <p className="muted" role="status">
              Ending: {c.status}
              {c.reason ? ` (${c.reason})` : ''}.
            </p>
          ) : cannot ? (
            <p className="muted small" data-testid="cannot-decide-canary">
              {cannot}
            </p>
          ) : (
            <CanaryActions runId={d.run_id} version={version} onSent={onSent} />
          )}
        </>
      )}
    </section>
  );
}
