/**
 * The canary's activities: set the gateway's weights between the previous and the new version, judge the
 * new version's health in the current step from the gateway's request log and feedback, and finish
 * (promote: the new version takes all traffic and the previous server stops; roll back: the previous
 * version takes all traffic back and the new server stops), recording the outcome and its reason.
 */
import type { CanarySpec } from '@tempered/spec';
import type { CanaryHealth, CanaryInput, CanaryOutcome, ServingVersion } from '@tempered/contract';
import { notifyChange, recordLogs, sendAllTraffic, setRoutes, sql } from '@tempered/db';
import type { Deps } from './context';
import { stopServer } from './model-server';

export async function setCanaryWeight(
  deps: Deps,
  input: { modelName: string; candidate: ServingVersion; previous: ServingVersion; weight: number },
): Promise<void> {
  await setRoutes(deps.db, input.modelName, [
    { modelVersionId: input.previous.modelVersionId, endpoint: input.previous.endpoint, weight: 100 - input.weight },
    { modelVersionId: input.candidate.modelVersionId, endpoint: input.candidate.endpoint, weight: input.weight },
  ]);
}

export async function canaryHealth(deps: Deps, input: { modelVersionId: string; since: string; canary: CanarySpec }): Promise<CanaryHealth> {
  const { canary } = input;
  const since = new Date(input.since);
  // Errors are the model's: 5xx (a model server down, failing or too slow, a stream it broke off). A client's
  // mistake (400: a refused parameter, whether the gateway or the model server refused it) or a client that
  // left its stream (499) counts as a request served, never as an error: it cannot roll a healthy version back.
  const requests = await deps.db
    .selectFrom('gateway_requests')
    .select([
      sql<number>`count(*)::int`.as('requests'),
      sql<number>`count(*) filter (where status >= 500)::int`.as('errors'),
      sql<number | null>`percentile_cont(0.95) within group (order by latency_ms)`.as('p95'),
    ])
    .where('model_version_id', '=', input.modelVersionId)
    .where('at', '>=', since)
    .executeTakeFirstOrThrow();
  const ratings = await deps.db
    .selectFrom('feedback_ratings')
    .select([sql<number>`count(*)::int`.as('rated'), sql<number>`count(*) filter (where rating = 'down')::int`.as('negative')])
    .where('model_version_id', '=', input.modelVersionId)
    .where('created_at', '>=', since)
    .executeTakeFirstOrThrow();
  const errorRate = requests.requests ? requests.errors / requests.requests : 0;
  const negativeRate = ratings.rated ? ratings.negative / ratings.rated : 0;
  const health: CanaryHealth = {
    requests: requests.requests,
    errors: requests.errors,
    errorRate,
    p95LatencyMs: Number(requests.p95 ?? 0),
    rated: ratings.rated,
    negative: ratings.negative,
    negativeRate,
  };
  // Rates mean little on a handful of requests; errors beyond the allowance fail the step at once, though.
  const allowedErrors = Math.floor(canary.maxErrorRate * canary.minRequests);
  if (health.errors > allowedErrors && (requests.requests < canary.minRequests || errorRate > canary.maxErrorRate)) {
    health.breach = `error rate ${(errorRate * 100).toFixed(1)}% (${health.errors} of ${health.requests} requests) is above ${(canary.maxErrorRate * 100).toFixed(1)}%`;
  } else if (requests.requests >= canary.minRequests && health.p95LatencyMs > canary.maxP95LatencyMs) {
    health.breach = `p95 latency ${health.p95LatencyMs.toFixed(0)} ms is above ${canary.maxP95LatencyMs} ms`;
  } else if (ratings.rated >= canary.minRequests && negativeRate > canary.maxNegativeFeedbackRate) {
    health.breach = `${(negativeRate * 100).toFixed(0)}% of ${ratings.rated} rated answers got thumbs down (limit ${(canary.maxNegativeFeedbackRate * 100).toFixed(0)}%)`;
  }
  return health;
}

export async function finishCanary(deps: Deps, input: CanaryInput & { outcome: CanaryOutcome }): Promise<void> {
  const { db } = deps;
  const { candidate, previous, outcome } = input;
  const winner = outcome.status === 'promoted' ? candidate : previous;
  const losers = await sendAllTraffic(db, input.modelName, winner, outcome.status === 'promoted' ? 'stopped' : 'rolled-back');
  for (const l of losers) await stopServer(deps, l.id);
  await db
    .insertInto('audit_log')
    .values({
      actor: outcome.decidedBy,
      action: outcome.status === 'promoted' ? 'deployment.promote' : 'deployment.rollback',
      target: `run:${input.runId}`,
      comment: outcome.reason,
      details: JSON.stringify({ candidate: candidate.modelVersionId, previous: previous.modelVersionId }),
    })
    .execute();
  await recordLogs(db, input.runId, 'deploy', [`canary ${outcome.status}: ${outcome.reason}`]);
  await notifyChange(db, input.runId, 'run');
}
