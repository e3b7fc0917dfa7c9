/**
 * Preference labeling: the runs waiting for labels, the next unlabeled pair of a run, and a label. Each
 * label tells the run's workflow how many labels exist (a signal), so a run that waits for N labels
 * continues once there are N; the count is re-read from the table every time, so a lost signal is made
 * good by the next.
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { labelingQueue, labelRequest, labelResponse, nextPair, rowIdQuery } from '@tempered/api-contract';
import { notifyChange, sql } from '@tempered/db';
import { labelsChangedSignal } from '@tempered/workflows';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import { HttpError, idParam, numberParam, route } from '../http';
import { labelProgress } from '../views';

export function labelRoutes(app: FastifyInstance, { db, temporal }: ApiDeps): void {
  route(app, {
    method: 'GET', url: '/api/labeling', action: 'read', summary: 'Runs waiting for preference labels, with progress', response: { 200: labelingQueue },
    async handler() {
      const runs = await db.selectFrom('runs').select(['id', 'name']).where('status', '=', 'waiting-labels').orderBy('created_at').execute();
      const out = [];
      for (const r of runs) {
        const progress = await labelProgress(db, r.id);
        if (progress) out.push({ runId: r.id, name: r.name, ...progress });
      }
      return { runs: out };
    },
  });
  route(app, {
    method: 'GET', url: '/api/runs/:id/pairs/next', action: 'read', summary: 'The next unlabeled pair of a run (?skip=<pair id> to pass one over)',
    params: idParam, querystring: z.object({ skip: rowIdQuery }), response: { 200: nextPair },
    async handler({ params, query }) {
      const progress = await labelProgress(db, params.id);
      if (!progress) throw new HttpError(404, `run ${params.id} does not take labels (its spec's rlhf.source is not "labels")`);
      const skip = query.skip ?? 0;
      const row = await db
        .selectFrom('preference_pairs')
        .select(['id', 'run_id', 'prompt', 'response_a', 'response_b'])
        .where('run_id', '=', params.id)
        .where('label', 'is', null)
        .where('id', '!=', skip)
        .orderBy('idx')
        .executeTakeFirst();
      return {
        pair: row ? { id: row.id, runId: row.run_id, prompt: row.prompt, responseA: row.response_a, responseB: row.response_b } : null,
        progress,
      };
    },
  });
  route(app, {
    method: 'POST', url: '/api/pairs/:id/label', action: 'label', summary: 'Label a pair: a, b or tie',
    params: numberParam, body: labelRequest, response: { 200: labelResponse },
    async handler({ params, who, body: { label } }) {
      const id = Number(params.id);
      const pair = await db.selectFrom('preference_pairs').select(['run_id', 'label']).where('id', '=', id).executeTakeFirst();
      if (!pair) throw new HttpError(404, `no pair ${id}`);
      const updated = await db
        .updateTable('preference_pairs')
        .set({ label, labeled_by: who.user, labeled_at: sql`now()` })
        .where('id', '=', id)
        .where('label', 'is', null)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) throw new HttpError(409, `pair ${id} is already labeled; take the next one`);
      await audit(db, { actor: who.user, action: 'label', target: `run:${pair.run_id}`, details: { pair: id, label } });
      const progress = (await labelProgress(db, pair.run_id))!;
      try {
        await temporal.workflow.getHandle(pair.run_id).signal(labelsChangedSignal, { labeled: progress.labeled });
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err; // a finished run keeps its labels; nothing waits
      }
      await notifyChange(db, pair.run_id, 'labels');
      return { progress };
    },
  });
}
