/**
 * Deployments: what serves each model, with its share of the gateway's traffic and, during a canary, the
 * canary's live state; and a person's promote or abort of a running canary (a signal to its workflow).
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { canaryActionRequest, type DeploymentEntry } from '@tempered/api-contract';
import { abortCanarySignal, canaryQuery, canaryWorkflowId, promoteCanarySignal } from '@tempered/workflows';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import { bodyOf, HttpError, ID, ok, type Route } from '../http';

export function deploymentRoutes({ db, temporal }: ApiDeps): Route[] {
  return [
    {
      method: 'GET', path: /^\/api\/deployments$/, action: 'read', summary: 'Deployments with their traffic share and live canary state', response: 'DeploymentsResponse',
      async handler() {
        const [rows, routes] = await Promise.all([
          db
            .selectFrom('deployments')
            .innerJoin('model_versions', 'model_versions.id', 'deployments.model_version_id')
            .select(['deployments.id', 'deployments.model_version_id', 'deployments.run_id', 'deployments.endpoint', 'deployments.status', 'deployments.created_at', 'model_versions.name as model_name', 'model_versions.version'])
            .orderBy('deployments.created_at', 'desc')
            .limit(100)
            .execute(),
          db.selectFrom('routes').select(['model_name', 'model_version_id', 'weight']).execute(),
        ]);
        const deployments: DeploymentEntry[] = [];
        for (const r of rows) {
          const route = routes.find((x) => x.model_name === r.model_name && x.model_version_id === r.model_version_id);
          const total = routes.filter((x) => x.model_name === r.model_name).reduce((a, x) => a + x.weight, 0);
          const canary =
            r.status === 'canary' ? await temporal.workflow.getHandle(canaryWorkflowId(r.run_id)).query(canaryQuery).catch(() => undefined) : undefined;
          deployments.push({
            ...(JSON.parse(JSON.stringify(r)) as DeploymentEntry),
            weight: route && total > 0 && r.status !== 'stopped' && r.status !== 'rolled-back' ? Math.round((100 * route.weight) / total) : 0,
            ...(canary ? { canary: JSON.parse(JSON.stringify(canary)) } : {}),
          });
        }
        return ok({ deployments });
      },
    },
    {
      method: 'POST', path: new RegExp(`^/api/runs/${ID}/canary$`), action: 'approve',
      summary: "Promote or abort a run's running canary by hand", request: canaryActionRequest, response: '{sent: "promote"|"abort"}',
      async handler({ req, params, who }) {
        const { action, comment } = await bodyOf(req, canaryActionRequest);
        const handle = temporal.workflow.getHandle(canaryWorkflowId(params[0]));
        try {
          const state = await handle.query(canaryQuery);
          if (state.status !== 'running') throw new HttpError(409, `the canary of ${params[0]} is already ${state.status}`);
          await handle.signal(action === 'promote' ? promoteCanarySignal : abortCanarySignal, { by: who.user, comment });
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) throw new HttpError(404, `run ${params[0]} has no canary`);
          throw err;
        }
        await audit(db, { actor: who.user, action: `canary.${action}`, target: `run:${params[0]}`, comment });
        return ok({ sent: action });
      },
    },
  ];
}
