/**
 * The retrainTrigger workflow on the real Temporal server with its real check (real S3 and PostgreSQL of the
 * test stack): the first check records a baseline, an unchanged prefix starts nothing, a new object under the
 * watched prefix starts one lifecyclePipeline run (requested by `trigger:<id>`, with the reason as its first
 * log line and in the audit log), thresholds of objects and of feedback, overlap SKIP while the previous
 * retrain is in progress, and prefixes outside the artifact prefix refused.
 *
 * The runs' stages are stand-ins (tests/workflows/stubs.ts) on a pool of this test; their bookkeeping is real,
 * so the runs appear in Postgres as the API lists them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, TrainerSlots } from '@tempered/activities';
import { type PipelineSpec, validateSpec } from '@tempered/spec';
import type { RetrainTriggerInput, RetrainTriggerOutcome } from '@tempered/contract';
import { RETRAIN_WORKFLOW_TYPE, taskQueueFor } from '@tempered/workflows';
import { cfg, db, demoSpec, quietWorkerLogs, store, temporalClient, uniqueId, waitFor } from '../support';
import { stubActivities } from './stubs';

describe('retrainTrigger workflow (real server, real check, stand-in stages)', () => {
  const pool = uniqueId('rtr').toLowerCase();
  const taskQueue = taskQueueFor(pool);
  const database = db();
  const artifacts = store();
  const scratch = mkdtempSync(path.join(tmpdir(), 'retrain-test-'));
  const triggerIds: string[] = [];
  let client: Client;
  let closeClient: () => Promise<void>;
  let connection: NativeConnection;
  let worker: Worker;
  let running: Promise<void>;

  before(async () => {
    quietWorkerLogs();
    ({ client, close: closeClient } = await temporalClient());
    connection = await NativeConnection.connect({ address: cfg.temporal.address });
    const real = createActivities({ cfg, db: database, store: artifacts, slots: TrainerSlots.unlimited() });
    const stub = stubActivities();
    worker = await Worker.create({
      connection,
      taskQueue,
      // The check runs here on its own queue; the runs it starts go to the control queue (the stack's worker).
      workflowsPath: require.resolve('@tempered/workflows/workflows'),
      activities: { ...stub.activities, recordRun: real.recordRun, recordStage: real.recordStage, recordApproval: real.recordApproval, retrainCheck: real.retrainCheck },
    });
    running = worker.run();
  });

  after(async () => {
    await database.deleteFrom('retrain_triggers').where('id', 'in', triggerIds).execute();
    worker.shutdown();
    await running;
    await connection.close();
    await closeClient();
    await database.destroy();
  });

  /** A pipeline whose stages run on this test's pool, watching its own prefix (or with the given retrain section). */
  function pipeline(retrain: Record<string, unknown>, approvalTimeout = '1s'): PipelineSpec {
    const spec = demoSpec();
    return validateSpec({
      ...spec,
      name: uniqueId('rt').toLowerCase().slice(0, 40),
      pools: { data: pool, train: pool, rlhf: pool, eval: pool },
      deploy: { ...spec.deploy, approvalTimeout },
      retrain,
    });
  }

  function trigger(spec: PipelineSpec, overlap = 'SKIP') {
    const triggerId = uniqueId('trig').toLowerCase();
    triggerIds.push(triggerId);
    const input: RetrainTriggerInput = { triggerId, spec, requestedBy: `trigger:${triggerId}`, overlap };
    return {
      triggerId,
      check: (): Promise<RetrainTriggerOutcome> =>
        client.workflow.execute(RETRAIN_WORKFLOW_TYPE, { taskQueue, workflowId: uniqueId(`${triggerId}-check`), args: [input] }),
    };
  }

  const folder = () => `inputs/${uniqueId('watch')}/`;
  const watchUri = (relative: string) => artifacts.uriOf(`${artifacts.prefix}${relative}`);
  async function drop(relative: string, content = '{"prompt":"reverse 1 2","response":"2 1"}\n'): Promise<string> {
    const file = path.join(scratch, path.basename(relative));
    writeFileSync(file, content);
    return artifacts.putNamed(relative, file);
  }
  const runsOf = (triggerId: string) => database.selectFrom('runs').selectAll().where('requested_by', '=', `trigger:${triggerId}`).execute();

  test('the first check records a baseline; nothing new starts nothing', async () => {
    const dir = folder();
    await drop(`${dir}a.jsonl`);
    const t = trigger(pipeline({ watch: { prefix: watchUri(dir) } }));
    const first = await t.check();
    assert.equal(first.decision, 'baseline');
    assert.match(first.reason, /recorded 1 object/);
    const second = await t.check();
    assert.equal(second.decision, 'unchanged', second.reason);
    assert.equal(second.runId, undefined);
    assert.equal((await runsOf(t.triggerId)).length, 0);
    const state = await database.selectFrom('retrain_triggers').selectAll().where('id', '=', t.triggerId).executeTakeFirstOrThrow();
    assert.match(state.last_listing_digest ?? '', /^[0-9a-f]{64}$/);
    assert.equal(state.last_run_id, null);
  });

  test('a new object under the watched prefix starts one retrain, recorded with its reason', async () => {
    const dir = folder();
    const a = await drop(`${dir}a.jsonl`);
    const t = trigger(pipeline({ watch: { prefix: watchUri(dir) } }));
    assert.equal((await t.check()).decision, 'baseline');
    const b = await drop(`${dir}b.jsonl`);
    await drop(`${dir}notes.txt`, 'not data'); // counted as new, but not a data source

    const started = await t.check();
    assert.equal(started.decision, 'start', started.reason);
    assert.ok(started.runId);
    assert.match(started.reason, /2 new or changed object\(s\)/);

    const runs = await runsOf(t.triggerId);
    assert.deepEqual(runs.map((r) => r.id), [started.runId]);
    const sources = (runs[0].spec as PipelineSpec).data.sources.map((s) => s.uri);
    assert.deepEqual(sources.slice(-2), [a, b], 'the watched data files are appended to the sources, in key order');
    assert.ok(!sources.some((s) => s.endsWith('notes.txt')));

    const firstLog = await database.selectFrom('run_logs').selectAll().where('run_id', '=', started.runId!).orderBy('id').executeTakeFirstOrThrow();
    assert.equal(firstLog.stage, 'trigger');
    assert.match(firstLog.line, new RegExp(`retrain triggered by ${t.triggerId}: .*b\\.jsonl`));
    const auditRow = await database.selectFrom('audit_log').selectAll().where('target', '=', `run:${started.runId}`).executeTakeFirstOrThrow();
    assert.equal(auditRow.actor, `trigger:${t.triggerId}`);
    assert.equal(auditRow.action, 'retrain.trigger');
    assert.equal(auditRow.comment, started.reason);

    // The run itself went through the pipeline (stand-in stages, real bookkeeping) to its gate and expired.
    const ended = await waitFor('the retrain to end', 60_000, async () => {
      const r = await database.selectFrom('runs').select(['status', 'requested_by']).where('id', '=', started.runId!).executeTakeFirst();
      return r && ['expired', 'failed'].includes(r.status) ? r : undefined;
    });
    assert.equal(ended.status, 'expired');
    assert.equal(ended.requested_by, `trigger:${t.triggerId}`);
    const stages = await database.selectFrom('stages').select(['name', 'status']).where('run_id', '=', started.runId!).execute();
    assert.equal(stages.find((s) => s.name === 'train')?.status, 'completed');

    const again = await t.check();
    assert.equal(again.decision, 'unchanged', 'the change was consumed by the retrain');
    assert.equal((await runsOf(t.triggerId)).length, 1);
  });

  test('minNewObjects: 2 waits for the second new object', async () => {
    const dir = folder();
    const t = trigger(pipeline({ watch: { prefix: watchUri(dir), minNewObjects: 2, sources: 'none' } }));
    assert.equal((await t.check()).decision, 'baseline');
    await drop(`${dir}c.jsonl`);
    const one = await t.check();
    assert.equal(one.decision, 'below-threshold');
    assert.match(one.reason, /1 new or changed object\(s\) .* \(threshold 2\)/);
    await drop(`${dir}c.jsonl`, '{"prompt":"reverse 3 4","response":"4 3"}\n'); // changed: still one object
    assert.equal((await t.check()).decision, 'below-threshold');
    await drop(`${dir}d.jsonl`);
    const two = await t.check();
    assert.equal(two.decision, 'start', two.reason);
    const [run] = await runsOf(t.triggerId);
    assert.deepEqual((run.spec as PipelineSpec).data.sources, demoSpec().data.sources, 'sources: none keeps the spec\'s sources');
  });

  test('new feedback on the served model past the threshold starts a retrain; other models\' does not count', async () => {
    const spec = pipeline({ feedback: { minNew: 2 } });
    const t = trigger(spec);
    assert.equal((await t.check()).decision, 'baseline');
    async function rate(model: string) {
      const id = uniqueId('req');
      await database.insertInto('gateway_requests').values({ id, model_name: model, model_version_id: `${model}-v1`, kind: 'completion', prompt: 'p', response: 'r', status: 200, latency_ms: 1, flagged: false, error: null }).execute();
      await database.insertInto('feedback_ratings').values({ request_id: id, model_name: model, model_version_id: `${model}-v1`, rating: 'down' }).execute();
    }
    await rate('some-other-model');
    await rate(spec.name);
    const below = await t.check();
    assert.equal(below.decision, 'below-threshold');
    assert.match(below.reason, new RegExp(`1 new feedback on ${spec.name} \\(threshold 2\\)`));
    await database.insertInto('feedback_pairwise').values({ model_name: spec.name, prompt: 'p', response_a: 'a', response_b: 'b', preferred: 'a' }).execute();
    const started = await t.check();
    assert.equal(started.decision, 'start', started.reason);
    assert.match(started.reason, /2 new feedback/);
    assert.equal((await t.check()).decision, 'unchanged');
  });

  test('overlap SKIP: no second retrain while the first is in progress; the change starts one after it ends', async () => {
    const dir = folder();
    const t = trigger(pipeline({ watch: { prefix: watchUri(dir) } }, '10m'));
    assert.equal((await t.check()).decision, 'baseline');
    await drop(`${dir}e.jsonl`);
    const first = await t.check();
    assert.equal(first.decision, 'start');
    await waitFor('the first retrain at its gate', 60_000, async () => {
      const r = await database.selectFrom('runs').select('status').where('id', '=', first.runId!).executeTakeFirst();
      return r?.status === 'waiting-approval' ? true : undefined;
    });
    await drop(`${dir}f.jsonl`);
    const busy = await t.check();
    assert.equal(busy.decision, 'busy');
    assert.match(busy.reason, new RegExp(`${first.runId} is still waiting-approval`));
    await client.workflow.getHandle(first.runId!).cancel();
    await waitFor('the first retrain cancelled', 30_000, async () => {
      const r = await database.selectFrom('runs').select('status').where('id', '=', first.runId!).executeTakeFirst();
      return r?.status === 'cancelled' ? true : undefined;
    });
    const second = await t.check();
    assert.equal(second.decision, 'start', second.reason);
    assert.match(second.reason, /f\.jsonl/);
    await client.workflow.getHandle(second.runId!).cancel();
  });

  test('a watched prefix outside the artifact prefix, or over its artifacts, is refused without retries', async () => {
    for (const prefix of [`s3://not-${artifacts.bucket}/data/`, watchUri('artifacts/'), `s3://${artifacts.bucket}/elsewhere/`]) {
      const t = trigger(pipeline({ watch: { prefix } }));
      await assert.rejects(t.check(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        const cause = (err.cause as { cause?: { type?: string; message?: string } })?.cause;
        assert.equal(cause?.type, 'BadInput', prefix);
        assert.match(cause?.message ?? '', /retrain\.watch\.prefix/);
        return true;
      });
    }
  });
});
