/**
 * On-demand evaluations (`tempered eval VERSION --suite NAME`): a model version's test suites, as its run's spec
 * defines them, run again by the `evaluateModel` workflow (workflows/src/evaluate.ts) on the spec's eval pool.
 * Operators start them; everyone reads the results and the answers. A schedule in eval mode (./schedules.ts)
 * starts the same workflow on whatever version serves (drift); its evaluations are listed here too.
 */
import { randomBytes } from 'node:crypto';
import {
  type EvaluationDetail,
  evaluationAnswersResponse,
  evaluationDetail,
  evaluationRequest,
  evaluationsResponse,
  type TestAnswer,
} from '@tempered/api-contract';
import type { EvaluationInput, SuiteResult } from '@tempered/contract';
import type { Db } from '@tempered/db';
import { type PipelineSpec, validateSpec } from '@tempered/spec';
import { CONTROL_TASK_QUEUE, EVALUATE_WORKFLOW_TYPE } from '@tempered/workflows';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import { badField, HttpError, idParam, route } from '../http';

/** The most answers one request returns. */
const MAX_ANSWERS = 1000;

export const newEvaluationId = (versionId: string) => `eval-${versionId}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

type Row = Awaited<ReturnType<typeof evaluationRows>>[number];
function evaluationRows(db: Db) {
  return db.selectFrom('evaluations').selectAll().orderBy('created_at', 'desc').limit(100).execute();
}

const detailOf = (r: Row): EvaluationDetail => ({
  id: r.id,
  modelName: r.model_name,
  modelVersionId: r.model_version_id,
  suites: r.suites as string[],
  status: r.status as EvaluationDetail['status'],
  requestedBy: r.requested_by,
  results: (r.results as SuiteResult[] | null) ?? null,
  breaches: (r.breaches as string[] | null) ?? null,
  error: r.error,
  createdAt: r.created_at.toISOString(),
  finishedAt: r.finished_at?.toISOString() ?? null,
});

/** The spec a version's suites come from: its run's, read with today's defaults. */
function specOf(versionId: string, stored: unknown): PipelineSpec {
  try {
    return validateSpec(stored);
  } catch (err) {
    throw new HttpError(409, `the spec of ${versionId}'s run no longer validates (${(err as Error).message.slice(0, 500)}); evaluate it with a schedule in eval mode and a current spec instead`);
  }
}

export function evaluationRoutes(app: FastifyInstance, { db, temporal, store }: ApiDeps): void {
  route(app, {
      method: 'POST', url: '/api/models/:id/evaluations', action: 'start',
      summary: "Evaluate a model version: run its run's test suites again ({suites?: names (all when absent), comment?}); 202 with the evaluation to follow",
      params: idParam, body: evaluationRequest, response: { 202: evaluationDetail },
      async handler({ params: { id }, body, who, reply }) {
        const version = await db
          .selectFrom('model_versions')
          .innerJoin('runs', 'runs.id', 'model_versions.run_id')
          .select(['model_versions.id', 'model_versions.name', 'runs.spec', 'runs.spec_dir'])
          .where('model_versions.id', '=', id)
          .executeTakeFirst();
        if (!version) throw new HttpError(404, `no model version ${id}; GET /api/models lists them`);
        const spec = specOf(id, version.spec);
        const names = (spec.test.suites ?? []).map((s) => s.name);
        if (names.length === 0) throw badField('suites', `the run of ${id} has no test.suites to run again; add suites to the spec of the next run`);
        for (const [i, name] of (body.suites ?? []).entries()) {
          if (!names.includes(name)) throw badField(`suites.${i}`, `no suite ${name} in the spec of ${id}'s run; its suites are ${names.join(', ')}`);
        }
        const suites = body.suites ? [...new Set(body.suites)] : names;
        const evaluationId = newEvaluationId(id);
        const input: EvaluationInput = { spec, ...(version.spec_dir ? { specDir: version.spec_dir } : {}), modelVersionId: id, suites, requestedBy: who.user };
        // The row first, so the evaluation is listed (running) from the moment it is accepted.
        await db
          .insertInto('evaluations')
          .values({ id: evaluationId, model_name: version.name, model_version_id: id, suites: JSON.stringify(suites), status: 'running', requested_by: who.user })
          .execute();
        await temporal.workflow.start(EVALUATE_WORKFLOW_TYPE, { taskQueue: CONTROL_TASK_QUEUE, workflowId: evaluationId, args: [input] });
        await audit(db, { actor: who.user, action: 'evaluation.start', target: `model:${id}`, comment: body.comment, details: { evaluationId, suites } });
        reply.code(202);
        return detailOf(await db.selectFrom('evaluations').selectAll().where('id', '=', evaluationId).executeTakeFirstOrThrow());
      },
  });
  route(app, {
      method: 'GET', url: '/api/models/:id/evaluations', action: 'read', summary: "A model version's evaluations, newest first",
      params: idParam, response: { 200: evaluationsResponse },
      async handler({ params: { id } }) {
        const rows = await db.selectFrom('evaluations').selectAll().where('model_version_id', '=', id).orderBy('created_at', 'desc').limit(100).execute();
        return { evaluations: rows.map(detailOf) };
      },
  });
  route(app, {
      method: 'GET', url: '/api/evaluations', action: 'read', summary: 'Recent evaluations of every model (drift schedules included), newest first',
      response: { 200: evaluationsResponse },
      handler: async () => ({ evaluations: (await evaluationRows(db)).map(detailOf) }),
  });
  route(app, {
      method: 'GET', url: '/api/evaluations/:id', action: 'read', summary: "An evaluation: its status, each suite's figures with their intervals, the bounds crossed",
      params: idParam, response: { 200: evaluationDetail },
      async handler({ params: { id } }) {
        const row = await db.selectFrom('evaluations').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row) throw new HttpError(404, `no evaluation ${id}; GET /api/evaluations lists them`);
        return detailOf(row);
      },
  });
  route(app, {
      method: 'GET', url: '/api/evaluations/:id/answers', action: 'read', summary: "An evaluation's answers, each with its suite and scores (?suite=, ?limit= up to 1000)",
      params: idParam, querystring: z.object({ suite: z.string().max(100).optional(), limit: z.coerce.number().int().min(1).max(MAX_ANSWERS).default(200) }),
      response: { 200: evaluationAnswersResponse },
      async handler({ params: { id }, query }) {
        const row = await db.selectFrom('evaluations').select(['status', 'answers_uri']).where('id', '=', id).executeTakeFirst();
        if (!row) throw new HttpError(404, `no evaluation ${id}; GET /api/evaluations lists them`);
        if (!row.answers_uri) throw new HttpError(409, `evaluation ${id} is ${row.status}: it has no answers${row.status === 'running' ? ' yet' : ''}`);
        const text = (await store.getBytes(row.answers_uri)).toString('utf8');
        const all = text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as TestAnswer);
        return { answers: all.filter((a) => query.suite === undefined || a.suite === query.suite).slice(0, query.limit) };
      },
  });
}
