/**
 * The evaluateModel workflow (on-demand and drift evaluations) on the real Temporal server: the suites it is
 * asked for reach the evaluating activity on the spec's eval pool and its outcome is the workflow's; when the
 * activity fails for good, the workflow records the evaluation as failed with the activity's own message, in the
 * real `evaluations` table (real bookkeeping, stand-in evaluation), creating the row a drift evaluation lacks.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, TrainerSlots } from '@tempered/activities';
import type { EvaluationInput, EvaluationOutcome } from '@tempered/contract';
import { type PipelineSpec, validateSpec } from '@tempered/spec';
import { EVALUATE_WORKFLOW_TYPE, taskQueueFor } from '@tempered/workflows';
import { cfg, db, demoSpec, quietWorkerLogs, store, temporalClient, uniqueId } from '../support';
import { stubActivities, type StubLog } from './stubs';

describe('evaluateModel workflow (real server, stand-in evaluation, real bookkeeping)', () => {
  const database = db();
  const pools = { ok: uniqueId('evl').toLowerCase(), failing: uniqueId('evf').toLowerCase() };
  const FAILURE = 'no version of the model is serving: a drift evaluation evaluates the serving version';
  let client: Client;
  let closeClient: () => Promise<void>;
  let connection: NativeConnection;
  const workers: Worker[] = [];
  const running: Array<Promise<void>> = [];
  const logs: Record<keyof typeof pools, StubLog> = {} as never;
  const ids: string[] = [];

  before(async () => {
    quietWorkerLogs();
    ({ client, close: closeClient } = await temporalClient());
    connection = await NativeConnection.connect({ address: cfg.temporal.address });
    const real = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited() });
    for (const kind of ['ok', 'failing'] as const) {
      const stub = stubActivities(kind === 'failing' ? { failEvaluate: FAILURE } : {});
      logs[kind] = stub.log;
      const worker = await Worker.create({
        connection,
        taskQueue: taskQueueFor(pools[kind]),
        workflowsPath: require.resolve('@tempered/workflows/workflows'),
        activities: { ...stub.activities, ...(kind === 'failing' ? { recordEvaluation: real.recordEvaluation } : {}) },
      });
      workers.push(worker);
      running.push(worker.run());
    }
  });

  after(async () => {
    await database.deleteFrom('evaluations').where('id', 'in', ids.length ? ids : ['none']).execute();
    for (const w of workers) w.shutdown();
    await Promise.all(running);
    await connection.close();
    await closeClient();
    await database.destroy();
  });

  function spec(pool: string): PipelineSpec {
    const s = demoSpec();
    return validateSpec({
      ...s,
      name: uniqueId('ev').toLowerCase().slice(0, 40),
      pools: { data: pool, train: pool, rlhf: pool, eval: pool },
      test: {
        ...s.test,
        suites: ['digits', 'safety', 'long'].map((name) => ({ name, source: { uri: '/dev/null' }, metrics: ['exact_match'] })),
      },
    });
  }

  function start(pool: string, input: Omit<EvaluationInput, 'spec'>) {
    const id = uniqueId('eval');
    ids.push(id);
    return { id, handle: client.workflow.start(EVALUATE_WORKFLOW_TYPE, { taskQueue: taskQueueFor(pool), workflowId: id, args: [{ spec: spec(pool), ...input }] }) };
  }

  test('the suites asked for are evaluated on the eval pool and the outcome is returned', async () => {
    const { id, handle } = start(pools.ok, { modelVersionId: 'mv-7', suites: ['safety', 'digits'], requestedBy: 'alice' });
    const outcome: EvaluationOutcome = await (await handle).result();
    assert.equal(outcome.modelVersionId, 'mv-7');
    assert.deepEqual(outcome.suites.map((s) => s.name), ['digits', 'safety'], "in the spec's order, only those asked for");
    assert.deepEqual(logs.ok.of(id).calls, ['evaluateSuites']);
    assert.deepEqual(logs.ok.of(id).evaluations, [], 'a success is recorded by the evaluating activity itself');
  });

  test('an evaluation that fails for good is recorded failed with the reason, its row created when it had none', async () => {
    const { id, handle } = start(pools.failing, { requestedBy: 'eval-schedule:drift' });
    await assert.rejects((await handle).result(), (err: unknown) => err instanceof WorkflowFailedError);
    const row = await database.selectFrom('evaluations').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    assert.equal(row.status, 'failed');
    assert.equal(row.error, FAILURE);
    assert.deepEqual(row.suites, ['digits', 'safety', 'long'], 'a drift evaluation runs every suite of the spec');
    assert.equal(row.requested_by, 'eval-schedule:drift');
    assert.equal(row.model_version_id, null);
    assert.ok(row.finished_at instanceof Date);
  });
});
