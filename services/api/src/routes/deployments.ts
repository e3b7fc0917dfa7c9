/**
 * Deployments: what serves each model, with its share of the gateway's traffic and, during a canary, the
 * canary's live state; a person's promote or abort of a running canary (a signal to its workflow); and a
 * rollback by hand, without a canary, of all of a model name's traffic to an earlier version.
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { canaryActionRequest, canarySentResponse, deploymentsResponse, modelNameParam, rollbackRequest, rollbackResponse } from '@tempered/api-contract';
import { sendAllTraffic, type Db } from '@tempered/db';
import { abortCanarySignal, canaryQuery, canaryWorkflowId, promoteCanarySignal } from '@tempered/workflows';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import type { FastifyInstance } from 'fastify';
import { badRequest, HttpError, idParam, route } from '../http';

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
  route(app, {
      method: 'POST', url: '/api/deployments/:name/rollback', action: 'approve',
      summary: "Send all of a model name's traffic back to an earlier version (default: the one deployed before the serving one), starting its server if stopped",
      params: modelNameParam, body: rollbackRequest, response: { 200: rollbackResponse },
      async handler({ params: { name }, who, body: { to, reason } }) {
        const deployments = await db
          .selectFrom('deployments')
          .innerJoin('model_versions', 'model_versions.id', 'deployments.model_version_id')
          .select(['deployments.id', 'deployments.model_version_id', 'deployments.run_id', 'deployments.endpoint', 'deployments.status', 'deployments.created_at', 'model_versions.version'])
          .where('model_versions.name', '=', name)
          .orderBy('deployments.created_at', 'desc')
          .execute();
        const known = deployments.length > 0 || (await db.selectFrom('model_versions').select('id').where('name', '=', name).executeTakeFirst());
        if (!known) throw new HttpError(404, `no model is named ${name}`);
        const canary = deployments.find((d) => d.status === 'canary');
        if (canary) throw new HttpError(409, `a canary of ${name} is running (run ${canary.run_id}): abort it instead (POST /api/runs/${canary.run_id}/canary)`);
        const current = deployments.find((d) => d.status === 'serving');

        const target = await rollbackTarget(db, name, to, deployments, current);
        if (target.id === current?.id) throw new HttpError(409, `${target.model_version_id} already serves ${name}`);

        // The worker's model-server supervisor starts the server of a deployment marked serving; the traffic moves
        // once it answers, so no request meets a server still loading.
        const t0 = Date.now();
        const wasStatus = target.status;
        // Its pid forgotten: whatever it was, that process is not this version's server now.
        if (target.status !== 'serving') await db.updateTable('deployments').set({ status: 'serving', pid: null }).where('id', '=', target.id).execute();
        const endpoint = await serverAnswering(db, target.id, target.model_version_id, ROLLBACK_START_LIMIT_MS);
        if (!endpoint) {
          await db.updateTable('deployments').set({ status: wasStatus }).where('id', '=', target.id).where('status', '=', 'serving').execute();
          throw new HttpError(
            503,
            `the model server of ${target.model_version_id} did not answer within ${ROLLBACK_START_LIMIT_MS / 1000}s (is the worker running? see logs/worker.log and logs/model-server-${target.id}.log); nothing changed`,
          );
        }
        const startedInMs = wasStatus === 'serving' ? 0 : Date.now() - t0;
        await sendAllTraffic(db, name, { deploymentId: target.id, modelVersionId: target.model_version_id, endpoint }, 'rolled-back');
        const from = current?.model_version_id ?? '';
        await audit(db, {
          actor: who.user,
          action: 'deployment.rollback',
          target: `model:${name}`,
          comment: reason,
          details: { from: current?.model_version_id ?? null, to: target.model_version_id, deployment: target.id, startedInMs },
        });
        return { modelName: name, from, to: target.model_version_id, deploymentId: target.id, endpoint, startedInMs };
      },
  });
}

/** How long a rollback waits for the earlier version's server: loading a model, on a busy CPU, takes a while. */
const ROLLBACK_START_LIMIT_MS = 150_000;

type DeploymentRow = { id: string; model_version_id: string; run_id: string; endpoint: string; status: string; created_at: Date; version: number };

/** The deployment a rollback sends traffic to: the version asked for (by number or id), else the one deployed before the serving one. */
async function rollbackTarget(db: Db, name: string, to: number | string | undefined, deployments: DeploymentRow[], current: DeploymentRow | undefined): Promise<DeploymentRow> {
  if (to === undefined) {
    if (!current) throw new HttpError(409, `nothing of ${name} serves now: say which version to send its traffic to (to)`);
    const earlier = deployments.find((d) => d.created_at < current.created_at && d.status !== 'failed');
    if (!earlier) throw new HttpError(409, `${current.model_version_id} is the first deployed version of ${name}: there is nothing earlier to roll back to`);
    return earlier;
  }
  const byNumber = typeof to === 'number' || /^\d+$/.test(to);
  const version = await db
    .selectFrom('model_versions')
    .select(['id', 'name'])
    .where(byNumber ? 'version' : 'id', '=', byNumber ? Number(to) : to)
    .$if(byNumber, (q) => q.where('name', '=', name))
    .executeTakeFirst();
  if (!version) throw new HttpError(404, byNumber ? `${name} has no version ${to}` : `no model version ${to}`);
  if (version.name !== name) throw badRequest([{ path: 'to', message: `${version.id} is a version of ${version.name}, not of ${name}` }]);
  const deployment = deployments.find((d) => d.model_version_id === version.id);
  if (!deployment) throw new HttpError(409, `${version.id} was never deployed: deploy it through its run's gate`);
  return deployment;
}

/** The deployment's endpoint once a server there answers as its version (its row may move it to another port), or undefined at the deadline. */
async function serverAnswering(db: Db, deploymentId: string, modelVersionId: string, limitMs: number): Promise<string | undefined> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    const row = await db.selectFrom('deployments').select(['endpoint', 'pid', 'status']).where('id', '=', deploymentId).executeTakeFirst();
    if (row?.status !== 'serving') return undefined;
    if (row.pid) {
      const models = (await fetch(`${row.endpoint}/v1/models`).then((r) => (r.ok ? r.json() : undefined)).catch(() => undefined)) as { data?: Array<{ id: string }> } | undefined;
      if (models?.data?.some((m) => m.id === modelVersionId)) return row.endpoint;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return undefined;
}
