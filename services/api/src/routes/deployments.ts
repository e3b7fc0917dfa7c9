/**
 * Deployments: what serves each model, with its share of the gateway's traffic and, during a canary, the
 * canary's live state; and a person's promote or abort of a running canary (a signal to its workflow).
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { canaryActionRequest, canarySentResponse, deploymentsResponse } from '@tempered/api-contract';
import { abortCanarySignal, canaryQuery, canaryWorkflowId, promoteCanarySignal } from '@tempered/workflows';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import type { FastifyInstance } from 'fastify';
import { HttpError, idParam, route } from '../http';

export function deploymentRoutes(app: FastifyInstance, { db, temporal }: ApiDeps): void {
  route(app, {
      method: 'GET', url: '/api/deployments', action: 'read', summary: 'Deployments with their traffic share and live canary state', response: { 200: deploymentsResponse },
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
        const deployments = [];
        for (const r of rows) {
          const route = routes.find((x) => x.model_name === r.model_name && x.model_version_id === r.model_version_id);
          const total = routes.filter((x) => x.model_name === r.model_name).reduce((a, x) => a + x.weight, 0);
          const canary =
            r.status === 'canary' ? await temporal.workflow.getHandle(canaryWorkflowId(r.run_id)).query(canaryQuery).catch(() => undefined) : undefined;
          deployments.push({
            ...r,
            weight: route && total > 0 && r.status !== 'stopped' && r.status !== 'rolled-back' ? Math.round((100 * route.weight) / total) : 0,
            ...(canary ? { canary } : {}),
          });
        }
        return { deployments };
      },
  });
  route(app, {
      method: 'POST', url: '/api/runs/:id/canary', action: 'approve',
      summary: "Promote or abort a run's running canary by hand", params: idParam, body: canaryActionRequest, response: { 200: canarySentResponse },
      async handler({ params: { id }, who, body: { action, comment } }) {
        const handle = temporal.workflow.getHandle(canaryWorkflowId(id));
        try {
          const state = await handle.query(canaryQuery);
          if (state.status !== 'running') throw new HttpError(409, `the canary of ${id} is already ${state.status}`);
          await handle.signal(action === 'promote' ? promoteCanarySignal : abortCanarySignal, { by: who.user, comment });
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) throw new HttpError(404, `run ${id} has no canary`);
          throw err;
        }
        await audit(db, { actor: who.user, action: `canary.${action}`, target: `run:${id}`, comment });
        return { sent: action };
      },
  });
}
