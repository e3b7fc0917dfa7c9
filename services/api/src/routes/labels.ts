/**
 * Preference labeling: the runs waiting for labels, the next unlabeled pair of a run, and a label. Each
 * label tells the run's workflow how many labels exist (a signal), so a run that waits for N labels
 * continues once there are N; the count is re-read from the table every time, so a lost signal is made
 * good by the next.
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { labelRequest, type NextPair } from '@tempered/api-contract';
import { notifyChange, sql } from '@tempered/db';
import { labelsChangedSignal } from '@tempered/workflows';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import { bodyOf, HttpError, ID, ok, type Route } from '../http';
import { labelProgress } from '../views';

export function labelRoutes({ db, temporal }: ApiDeps): Route[] {
  return [
    {
      method: 'GET', path: /^\/api\/labeling$/, action: 'read', summary: 'Runs waiting for preference labels, with progress', response: 'LabelingQueue',
      async handler() {
        const runs = await db.selectFrom('runs').select(['id', 'name']).where('status', '=', 'waiting-labels').orderBy('created_at').execute();
        const out = [];
        for (const r of runs) {
          const progress = await labelProgress(db, r.id);
          if (progress) out.push({ runId: r.id, name: r.name, ...progress });
        }
        return ok({ runs: out });
      },
    },
    {
      method: 'GET', path: new RegExp(`^/api/runs/${ID}/pairs/next$`), action: 'read', summary: 'The next unlabeled pair of a run (?skip=<pair id> to pass one over)', response: 'NextPair',
      async handler({ params, url }) {
        const progress = await labelProgress(db, params[0]);
        if (!progress) throw new HttpError(404, `run ${params[0]} does not take labels (its spec's rlhf.source is not "labels")`);
        const skip = Number(url.searchParams.get('skip') ?? 0) || 0;
        const row = await db
          .selectFrom('preference_pairs')
          .select(['id', 'run_id', 'prompt', 'response_a', 'response_b'])
          .where('run_id', '=', params[0])
          .where('label', 'is', null)
          .where('id', '!=', skip)
          .orderBy('idx')
          .executeTakeFirst();
        const body: NextPair = {
          pair: row ? { id: row.id, runId: row.run_id, prompt: row.prompt, responseA: row.response_a, responseB: row.response_b } : null,
          progress,
        };
        return ok(body);
      },
    },
    {
      method: 'POST', path: /^\/api\/pairs\/(\d{1,18})\/label$/, action: 'label', summary: 'Label a pair: a, b or tie', request: labelRequest, response: '{progress: LabelProgress}',
      async handler({ req, params, who }) {
        const { label } = await bodyOf(req, labelRequest);
        const pair = await db.selectFrom('preference_pairs').select(['run_id', 'label']).where('id', '=', Number(params[0])).executeTakeFirst();
        if (!pair) throw new HttpError(404, `no pair ${params[0]}`);
        const updated = await db
          .updateTable('preference_pairs')
          .set({ label, labeled_by: who.user, labeled_at: sql`now()` })
          .where('id', '=', Number(params[0]))
          .where('label', 'is', null)
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) throw new HttpError(409, `pair ${params[0]} is already labeled; take the next one`);
        await audit(db, { actor: who.user, action: 'label', target: `run:${pair.run_id}`, details: { pair: Number(params[0]), label } });
        const progress = (await labelProgress(db, pair.run_id))!;
        try {
          await temporal.workflow.getHandle(pair.run_id).signal(labelsChangedSignal, { labeled: progress.labeled });
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err; // a finished run keeps its labels; nothing waits
        }
        await notifyChange(db, pair.run_id, 'labels');
        return ok({ progress });
      },
    },
  ];
}
