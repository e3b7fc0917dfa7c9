/**
 * Runs: start one (YAML, JSON, or an example under examples/), list and search, show, follow live, read
 * the log, cancel, and decide the deployment gate.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import {
  answersQuery, answersResponse, approvalReceipt, cancelResponse, decisionRequest, type ExampleSpec, examplesResponse, logsQuery, logsResponse, runDetail as runDetailSchema, runsQuery,
  runsResponse, startRunRequest, startRunResponse,
} from '@tempered/api-contract';
import { approvalKey, approvalSignature } from '@tempered/config';
import { notifyChange } from '@tempered/db';
import { parseSpec } from '@tempered/spec';
import { type PipelineInput, RUN_STATUSES } from '@tempered/contract';
import { approveDeploymentUpdate, CONTROL_TASK_QUEUE, WORKFLOW_TYPE } from '@tempered/workflows';
import type { FastifyInstance } from 'fastify';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import { SSE_HEADERS } from '../events';
import { HttpError, idParam, route } from '../http';
import { examplesRoot, takeSpec } from '../intake';
import { answerCounts, answersOf, logsAfter, runDetail } from '../views';

export function newRunId(name: string): string {
  return `${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** Spec files under examples/ (data folders skipped), for the dashboard's "start run" picker. */
async function listExamples(): Promise<ExampleSpec[]> {
  const out: ExampleSpec[] = [];
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory() && !['node_modules', 'data', 'src'].includes(entry.name)) await walk(full);
      else if (entry.isFile() && /\.ya?ml$/.test(entry.name)) {
        const yaml = await readFile(full, 'utf8');
        let name = entry.name;
        try {
          name = parseSpec(yaml).name;
        } catch {
          continue; // not a pipeline spec
        }
        out.push({ path: path.relative(examplesRoot, full), name, yaml });
      }
    }
  }
  await walk(examplesRoot);
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

export function runRoutes(app: FastifyInstance, { cfg, db, temporal, hub }: ApiDeps): void {
  const views = { db, temporal };

  route(app, {
    method: 'GET', url: '/api/examples', action: 'read', summary: 'Example pipeline specs under examples/',
    response: { 200: examplesResponse },
    handler: async () => ({ examples: await listExamples() }),
  });
  route(app, {
    method: 'GET', url: '/api/runs', action: 'read', summary: 'Runs, newest first; ?status=a,b &q=search &limit=',
    querystring: runsQuery, response: { 200: runsResponse },
    async handler({ query }) {
      const statuses = (query.status ?? '').split(',').filter(Boolean);
      const bad = statuses.find((s) => !(RUN_STATUSES as readonly string[]).includes(s));
      if (bad) throw new HttpError(400, `status: unknown status "${bad}"; one of ${RUN_STATUSES.join(', ')}`, { issues: [{ path: 'status', message: `unknown status "${bad}"` }] });
      const q = (query.q ?? '').trim().slice(0, 100);
      let rows = db.selectFrom('runs').select(['id', 'name', 'status', 'requested_by', 'created_at', 'updated_at', 'error']);
      if (statuses.length > 0) rows = rows.where('status', 'in', statuses);
      if (q) {
        const like = `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
        rows = rows.where((eb) => eb.or([eb('id', 'ilike', like), eb('name', 'ilike', like), eb('requested_by', 'ilike', like)]));
      }
      return { runs: await rows.orderBy('created_at', 'desc').limit(query.limit).execute() };
    },
  });
  route(app, {
    method: 'POST', url: '/api/runs', action: 'start',
    summary: 'Start a run: a YAML body, or JSON {spec (YAML text or object) | example (a path under examples/), specDir?}',
    // A JSON body is checked against startRunRequest; any other body is the spec's YAML text.
    body: startRunRequest, rawBody: true, response: { 201: startRunResponse },
    async handler({ req, reply, who, body }) {
      const isJson = (req.headers['content-type'] ?? '').includes('json');
      if (isJson && req.validationError) throw req.validationError;
      const { spec, specDir, example } = await takeSpec(isJson ? body : { spec: typeof req.body === 'string' ? req.body : '' }, cfg);
      const runId = newRunId(spec.name);
      const input: PipelineInput = { spec, specDir, requestedBy: who.user, responsible: who.user };
      await db.insertInto('runs').values({ id: runId, name: spec.name, spec: JSON.stringify(spec), spec_dir: specDir ?? null, status: 'queued', requested_by: who.user }).execute();
      await temporal.workflow.start(WORKFLOW_TYPE, { taskQueue: CONTROL_TASK_QUEUE, workflowId: runId, args: [input] });
      await audit(db, { actor: who.user, action: 'run.start', target: `run:${runId}`, details: example ? { example } : undefined });
      await notifyChange(db, runId, 'run');
      reply.code(201);
      return { runId, name: spec.name, requestedBy: who.user };
    },
  });
  route(app, {
    method: 'GET', url: '/api/runs/:id', action: 'read', summary: 'A run: stages, artifacts, metrics, approvals, labels, model, deployment',
    params: idParam, response: { 200: runDetailSchema },
    async handler({ params }) {
      const detail = await runDetail(views, params.id);
      if (!detail) throw new HttpError(404, `no run ${params.id}`);
      return detail;
    },
  });
  route(app, {
    method: 'GET', url: '/api/runs/:id/events', action: 'read', summary: 'Server-sent events of a run: snapshot, run, metrics, logs, labels, approvals',
    params: idParam, response: { stream: 'text/event-stream', description: 'RunEvents: snapshot (RunDetail), run, metrics, logs, labels, approvals' },
    async handler({ reply, params }) {
      const stream = await hub.watchRun(params.id, (fn) => reply.raw.on('close', fn));
      if (!stream) throw new HttpError(404, `no run ${params.id}`);
      return reply.headers(SSE_HEADERS).send(stream);
    },
  });
  route(app, {
    method: 'GET', url: '/api/events', action: 'read', summary: 'Server-sent events: `runs` with a run summary whenever any run changes',
    response: { stream: 'text/event-stream', description: '`runs` events: {run: RunSummary}' },
    handler: async ({ reply }) => reply.headers(SSE_HEADERS).send(hub.watchAll((fn) => reply.raw.on('close', fn))),
  });
  route(app, {
    method: 'GET', url: '/api/runs/:id/logs', action: 'read', summary: "A run's log: the tail, or the lines after ?after=<id>",
    params: idParam, querystring: logsQuery, response: { 200: logsResponse },
    async handler({ query, params }) {
      return { lines: await logsAfter(db, params.id, query.after ?? 0, query.limit) };
    },
  });
  route(app, {
    method: 'GET', url: '/api/runs/:id/answers', action: 'read',
    summary: "The test stage's answers: each test record's prompt, reference, this model's, the untrained model's and the serving model's answer (?suite=NAME: a test suite's, with the judge's verdicts and safety)",
    params: idParam, querystring: answersQuery, response: { 200: answersResponse },
    async handler({ query, params }) {
      const [counts, answers] = await Promise.all([answerCounts(db, params.id, query.suite), answersOf(db, params.id, query.filter, query.skip ?? 0, query.limit, query.suite)]);
      if (counts.all === 0 && !(await db.selectFrom('runs').select('id').where('id', '=', params.id).executeTakeFirst())) throw new HttpError(404, `no run ${params.id}`);
      if (counts.all === 0 && query.suite !== undefined) {
        const suites = await db.selectFrom('test_answers').select('suite').distinct().where('run_id', '=', params.id).where('suite', 'is not', null).execute();
        throw new HttpError(404, `suite: run ${params.id} has no answers of a suite ${query.suite}; its suites are ${suites.map((s) => s.suite).join(', ') || 'none'}`);
      }
      return { counts, answers };
    },
  });
  route(app, {
    method: 'POST', url: '/api/runs/:id/cancel', action: 'start', summary: 'Cancel a run (its trainer is stopped, the stage recorded cancelled)',
    params: idParam, response: { 200: cancelResponse },
    async handler({ params, who }) {
      const handle = temporal.workflow.getHandle(params.id);
      try {
        // Temporal takes a cancel request for a closed workflow as done (a no-op): say so instead of
        // answering `cancelled: true` and auditing a cancel that changed nothing.
        const { status } = await handle.describe();
        if (status.name !== 'RUNNING') throw new HttpError(409, `run ${params.id} has already finished (${status.name.toLowerCase().replace('_', ' ')}); there is nothing to cancel`);
        await handle.cancel();
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw new HttpError(404, `no running run ${params.id}`);
        throw err;
      }
      await audit(db, { actor: who.user, action: 'run.cancel', target: `run:${params.id}` });
      return { cancelled: true };
    },
  });
  route(app, {
    method: 'POST', url: '/api/runs/:id/approval', action: 'approve',
    summary: "Decide a run's deployment gate (an approver who did not start the run; override: true to deploy a challenger that lost to the serving model)",
    params: idParam, body: decisionRequest, response: { 200: approvalReceipt },
    async handler({ params, who, body }) {
      const runId = params.id;
      try {
        const decision = { decision: body.decision, approver: who.user, comment: body.comment, override: body.override, signedAt: new Date().toISOString() };
        // Signed, so the workflow can tell a decision made here from one sent to Temporal directly.
        const signature = approvalSignature(approvalKey(cfg.approvalKeyFile), { runId, ...decision });
        const receipt = await temporal.workflow.getHandle(runId).executeUpdate(approveDeploymentUpdate, { args: [{ ...decision, signature }] });
        const action = receipt.override ? 'gate.override' : `gate.${body.decision}`;
        await audit(db, { actor: who.user, action, target: `run:${runId}`, comment: body.comment });
        return receipt;
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) throw new HttpError(404, `no running run ${runId}`);
        if (err instanceof WorkflowUpdateFailedError) throw new HttpError(409, (err.cause as Error)?.message ?? err.message);
        throw err;
      }
    },
  });
}
