/**
 * The HTTP API: start a run from a spec, list runs, show a run's stages, artifacts, metrics and lineage, and
 * decide its deployment gate. Every route but `/healthz` needs a bearer token; bad requests get a 4xx that
 * names the field and the reason.
 *
 *   GET  /healthz
 *   GET  /api/spec-schema               JSON Schema of a pipeline spec
 *   POST /api/runs                      body: YAML spec, or JSON {spec, specDir?}
 *   GET  /api/runs                      newest first
 *   GET  /api/runs/:id                  stages, artifacts, metrics, approvals, model version, deployment
 *   POST /api/runs/:id/approval         {decision: "approve"|"reject", comment?}
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Client, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { Config } from '@tempered/config';
import type { Db } from '@tempered/db';
import { parseSpec, SpecError, specJsonSchema, validateSpec } from '@tempered/spec';
import {
  approveDeploymentUpdate,
  CONTROL_TASK_QUEUE,
  type PipelineInput,
  progressQuery,
  WORKFLOW_TYPE,
} from '@tempered/workflows';
import { can, type Principal, TokenStore } from './auth';

const MAX_BODY = 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `body is not valid JSON: ${(err as Error).message}`);
  }
}

export function newRunId(name: string): string {
  return `${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export interface ApiDeps {
  cfg: Config;
  db: Db;
  temporal: Client;
}

export function createServer({ cfg, db, temporal }: ApiDeps): http.Server {
  const tokens = new TokenStore(cfg.dataDir, cfg.api.token);

  async function startRun(req: http.IncomingMessage, who: Principal) {
    if (!can(who, 'start')) throw new HttpError(403, `${who.user} (${who.role}) may not start runs; an operator or admin may`);
    const text = await readBody(req);
    const type = req.headers['content-type'] ?? '';
    let spec;
    let specDir: string | undefined;
    try {
      if (type.includes('json')) {
        const body = parseJson(text);
        spec = typeof body?.spec === 'string' ? parseSpec(body.spec) : validateSpec(body?.spec);
        if (body?.specDir !== undefined && typeof body.specDir !== 'string') throw new HttpError(400, 'specDir must be a string');
        specDir = body?.specDir;
      } else {
        spec = parseSpec(text);
      }
    } catch (err) {
      if (err instanceof SpecError) throw new HttpError(400, err.message, { issues: err.issues });
      throw err;
    }
    const runId = newRunId(spec.name);
    const input: PipelineInput = { spec, specDir, requestedBy: who.user };
    await db
      .insertInto('runs')
      .values({ id: runId, name: spec.name, spec: JSON.stringify(spec), status: 'queued', requested_by: who.user })
      .execute();
    await temporal.workflow.start(WORKFLOW_TYPE, { taskQueue: CONTROL_TASK_QUEUE, workflowId: runId, args: [input] });
    return { status: 201, body: { runId, name: spec.name, requestedBy: who.user } };
  }

  async function showRun(runId: string) {
    const run = await db.selectFrom('runs').selectAll().where('id', '=', runId).executeTakeFirst();
    if (!run) throw new HttpError(404, `no run ${runId}`);
    const [stages, artifacts, approvals, metrics, modelVersion, deployment, datasetVersion] = await Promise.all([
      db.selectFrom('stages').selectAll().where('run_id', '=', runId).execute(),
      db.selectFrom('artifacts').select(['stage', 'uri', 'sha256', 'bytes', 'kind']).where('run_id', '=', runId).orderBy('id').execute(),
      db.selectFrom('approvals').selectAll().where('run_id', '=', runId).orderBy('id').execute(),
      db.selectFrom('metrics').select(['stage', 'name', 'step', 'value']).where('run_id', '=', runId).orderBy('step').execute(),
      db.selectFrom('model_versions').selectAll().where('run_id', '=', runId).executeTakeFirst(),
      db.selectFrom('deployments').selectAll().where('run_id', '=', runId).executeTakeFirst(),
      db.selectFrom('dataset_versions').selectAll().where('run_id', '=', runId).executeTakeFirst(),
    ]);
    let progress;
    try {
      progress = await temporal.workflow.getHandle(runId).query(progressQuery);
    } catch {
      progress = undefined; // the run is gone from Temporal's retention, or not started yet: the database suffices
    }
    const series: Record<string, Array<[number, number]>> = {};
    for (const m of metrics) (series[`${m.stage}.${m.name}`] ??= []).push([m.step, m.value]);
    return { status: 200, body: { run, stages, gate: progress?.gate, progress: progress?.stages, artifacts, approvals, metrics: series, datasetVersion, modelVersion, deployment } };
  }

  async function decide(req: http.IncomingMessage, runId: string, who: Principal) {
    if (!can(who, 'approve')) throw new HttpError(403, `${who.user} (${who.role}) may not decide deployment gates; an approver may`);
    const body = parseJson(await readBody(req));
    if (body?.decision !== 'approve' && body?.decision !== 'reject') {
      throw new HttpError(400, 'decision: must be "approve" or "reject"', { issues: [{ path: 'decision', message: 'must be "approve" or "reject"' }] });
    }
    if (body.comment !== undefined && typeof body.comment !== 'string') {
      throw new HttpError(400, 'comment: must be a string', { issues: [{ path: 'comment', message: 'must be a string' }] });
    }
    try {
      const receipt = await temporal.workflow
        .getHandle(runId)
        .executeUpdate(approveDeploymentUpdate, { args: [{ decision: body.decision, approver: who.user, comment: body.comment ?? '' }] });
      return { status: 200, body: receipt };
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new HttpError(404, `no running run ${runId}`);
      if (err instanceof WorkflowUpdateFailedError) throw new HttpError(409, (err.cause as Error)?.message ?? err.message);
      throw err;
    }
  }

  async function route(req: http.IncomingMessage): Promise<{ status: number; body: unknown }> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz') return { status: 200, body: { status: 'ok' } };
    const who = tokens.authenticate(req.headers.authorization);
    if (!who) throw new HttpError(401, 'missing or unknown bearer token: send "Authorization: Bearer <token>" (see credentials.json in the data directory)');

    if (method === 'GET' && url.pathname === '/api/spec-schema') return { status: 200, body: specJsonSchema() };
    if (url.pathname === '/api/runs') {
      if (method === 'POST') return startRun(req, who);
      if (method === 'GET') {
        const limit = Math.min(Number(url.searchParams.get('limit') ?? 50) || 50, 500);
        const runs = await db.selectFrom('runs').select(['id', 'name', 'status', 'requested_by', 'created_at', 'updated_at', 'error']).orderBy('created_at', 'desc').limit(limit).execute();
        return { status: 200, body: { runs } };
      }
    }
    const m = /^\/api\/runs\/([A-Za-z0-9._-]{1,128})(\/approval)?$/.exec(url.pathname);
    if (m && method === 'GET' && !m[2]) return showRun(m[1]);
    if (m && method === 'POST' && m[2]) return decide(req, m[1], who);
    throw new HttpError(404, `no route ${method} ${url.pathname}`);
  }

  return http.createServer((req, res) => {
    const started = Date.now();
    route(req)
      .catch((err: unknown) => {
        if (err instanceof HttpError) return { status: err.status, body: { error: err.message, ...err.extra } };
        console.error(`${req.method} ${req.url} failed:`, err);
        return { status: 500, body: { error: 'internal error; see the API log' } };
      })
      .then(({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
        console.log(`${req.method} ${req.url} ${status} ${Date.now() - started}ms`);
      });
  });
}
