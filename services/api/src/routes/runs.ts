/**
 * Runs: start one (YAML, JSON, or an example under examples/), list and search, show, follow live, read
 * the log, cancel, and decide the deployment gate.
 */
import { readdir, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { decisionRequest, type ExampleSpec, startRunRequest } from '@tempered/api-contract';
import { repoRoot } from '@tempered/config';
import { notifyChange } from '@tempered/db';
import { parseSpec, SpecError, validateSpec, type PipelineSpec } from '@tempered/spec';
import { type PipelineInput, RUN_STATUSES } from '@tempered/contract';
import { approveDeploymentUpdate, CONTROL_TASK_QUEUE, WORKFLOW_TYPE } from '@tempered/workflows';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import { bodyOf, HttpError, ID, ok, parseJson, readBody, type Route } from '../http';
import { logsAfter, runDetail } from '../views';

const examplesRoot = path.join(repoRoot, 'examples');

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

/**
 * A spec sent as text has no directory of its own, so a relative data path would resolve against the
 * worker's working directory and fail at ingest minutes later: refuse it now, at the field.
 */
function refuseRelativePaths(spec: PipelineSpec): void {
  const uris = [
    ...spec.data.sources.map((s, i) => ({ path: `data.sources.${i}.uri`, uri: s.uri })),
    // Preferences are read only when RLHF runs on a dataset (or feedback plus a dataset).
    ...(spec.rlhf.preferences && spec.rlhf.method !== 'none' && spec.rlhf.source !== 'labels' ? [{ path: 'rlhf.preferences.uri', uri: spec.rlhf.preferences.uri }] : []),
  ];
  const issues = uris
    .filter(({ uri }) => !/^(s3|file):\/\//.test(uri) && !path.isAbsolute(uri))
    .map(({ path: p, uri }) => ({ path: p, message: `"${uri}" is relative, and a spec sent as text has no folder to resolve it against: use an absolute path, an s3:// URI, or start the example that contains it` }));
  if (issues.length > 0) throw new HttpError(400, issues.map((i) => `${i.path}: ${i.message}`).join('; '), { issues });
}

function specFailure(err: unknown): never {
  if (err instanceof SpecError) throw new HttpError(400, err.message, { issues: err.issues });
  throw err;
}

export function runRoutes({ db, temporal, hub }: ApiDeps): Route[] {
  const views = { db, temporal };

  return [
    {
      method: 'GET', path: /^\/api\/examples$/, action: 'read', summary: 'Example pipeline specs under examples/', response: '{examples: ExampleSpec[]}',
      handler: async () => ok({ examples: await listExamples() }),
    },
    {
      method: 'GET', path: /^\/api\/runs$/, action: 'read', summary: 'Runs, newest first; ?status=a,b &q=search &limit=', response: '{runs: RunSummary[]}',
      async handler({ url }) {
        const limit = Math.min(Number(url.searchParams.get('limit') ?? 50) || 50, 500);
        const statuses = (url.searchParams.get('status') ?? '').split(',').filter(Boolean);
        const bad = statuses.find((s) => !(RUN_STATUSES as readonly string[]).includes(s));
        if (bad) throw new HttpError(400, `status: unknown status "${bad}"; one of ${RUN_STATUSES.join(', ')}`, { issues: [{ path: 'status', message: `unknown status "${bad}"` }] });
        const q = (url.searchParams.get('q') ?? '').trim().slice(0, 100);
        let query = db.selectFrom('runs').select(['id', 'name', 'status', 'requested_by', 'created_at', 'updated_at', 'error']);
        if (statuses.length > 0) query = query.where('status', 'in', statuses);
        if (q) {
          const like = `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
          query = query.where((eb) => eb.or([eb('id', 'ilike', like), eb('name', 'ilike', like), eb('requested_by', 'ilike', like)]));
        }
        return ok({ runs: await query.orderBy('created_at', 'desc').limit(limit).execute() });
      },
    },
    {
      method: 'POST', path: /^\/api\/runs$/, action: 'start',
      summary: 'Start a run: a YAML body, or JSON {spec (YAML text or object) | example (a path under examples/), specDir?}',
      request: startRunRequest, response: '{runId, name, requestedBy}',
      async handler({ req, who }) {
        const text = await readBody(req);
        let spec: PipelineSpec;
        let specDir: string | undefined;
        let example: string | undefined;
        try {
          if ((req.headers['content-type'] ?? '').includes('json')) {
            const parsed = startRunRequest.safeParse(parseJson(text));
            if (!parsed.success) {
              const issues = parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
              throw new HttpError(400, issues.map((i) => `${i.path}: ${i.message}`).join('; '), { issues });
            }
            const body = parsed.data;
            specDir = body.specDir;
            if (body.example !== undefined) {
              const file = path.resolve(examplesRoot, body.example);
              if (!file.startsWith(examplesRoot + path.sep)) throw new HttpError(400, 'example: must be a path under examples/', { issues: [{ path: 'example', message: 'must be a path under examples/' }] });
              const yaml = await readFile(file, 'utf8').catch(() => {
                throw new HttpError(400, `example: no example ${body.example}; GET /api/examples lists them`, { issues: [{ path: 'example', message: 'no such example' }] });
              });
              spec = parseSpec(yaml);
              specDir = path.dirname(file);
              example = body.example;
            } else {
              spec = typeof body.spec === 'string' ? parseSpec(body.spec) : validateSpec(body.spec);
            }
          } else {
            spec = parseSpec(text);
          }
        } catch (err) {
          specFailure(err);
        }
        if (specDir === undefined) refuseRelativePaths(spec);
        const runId = newRunId(spec.name);
        const input: PipelineInput = { spec, specDir, requestedBy: who.user };
        await db.insertInto('runs').values({ id: runId, name: spec.name, spec: JSON.stringify(spec), status: 'queued', requested_by: who.user }).execute();
        await temporal.workflow.start(WORKFLOW_TYPE, { taskQueue: CONTROL_TASK_QUEUE, workflowId: runId, args: [input] });
        await audit(db, { actor: who.user, action: 'run.start', target: `run:${runId}`, details: example ? { example } : undefined });
        await notifyChange(db, runId, 'run');
        return ok({ runId, name: spec.name, requestedBy: who.user }, 201);
      },
    },
    {
      method: 'GET', path: new RegExp(`^/api/runs/${ID}$`), action: 'read', summary: 'A run: stages, artifacts, metrics, approvals, labels, model, deployment', response: 'RunDetail',
      async handler({ params }) {
        const detail = await runDetail(views, params[0]);
        if (!detail) throw new HttpError(404, `no run ${params[0]}`);
        return ok(detail);
      },
    },
    {
      method: 'GET', path: new RegExp(`^/api/runs/${ID}/events$`), action: 'read', summary: 'Server-sent events of a run: snapshot, run, metrics, logs, labels, approvals', response: 'RunEvents (text/event-stream)',
      async handler({ req, res, params }) {
        if (!(await hub.watchRun(req, res, params[0]))) throw new HttpError(404, `no run ${params[0]}`);
        return undefined;
      },
    },
    {
      method: 'GET', path: /^\/api\/events$/, action: 'read', summary: 'Server-sent events: `runs` with a run summary whenever any run changes', response: '{run: RunSummary} (text/event-stream)',
      async handler({ req, res }) {
        hub.watchAll(req, res);
        return undefined;
      },
    },
    {
      method: 'GET', path: new RegExp(`^/api/runs/${ID}/logs$`), action: 'read', summary: "A run's log: the tail, or the lines after ?after=<id>", response: '{lines: LogLine[]}',
      async handler({ url, params }) {
        const after = Math.max(0, Number(url.searchParams.get('after') ?? 0) || 0);
        const limit = Math.min(Math.max(1, Number(url.searchParams.get('limit') ?? 200) || 200), 2000);
        return ok({ lines: await logsAfter(db, params[0], after, limit) });
      },
    },
    {
      method: 'POST', path: new RegExp(`^/api/runs/${ID}/cancel$`), action: 'start', summary: 'Cancel a run (its trainer is stopped, the stage recorded cancelled)', response: '{cancelled: true}',
      async handler({ params, who }) {
        try {
          await temporal.workflow.getHandle(params[0]).cancel();
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) throw new HttpError(404, `no running run ${params[0]}`);
          throw err;
        }
        await audit(db, { actor: who.user, action: 'run.cancel', target: `run:${params[0]}` });
        return ok({ cancelled: true });
      },
    },
    {
      method: 'POST', path: new RegExp(`^/api/runs/${ID}/approval$`), action: 'approve',
      summary: "Decide a run's deployment gate (an approver who did not start the run; override: true to deploy a challenger that lost to the serving model)", request: decisionRequest, response: 'ApprovalReceipt',
      async handler({ req, params, who }) {
        const body = await bodyOf(req, decisionRequest);
        const runId = params[0];
        try {
          const receipt = await temporal.workflow
            .getHandle(runId)
            .executeUpdate(approveDeploymentUpdate, { args: [{ decision: body.decision, approver: who.user, comment: body.comment, override: body.override }] });
          const action = receipt.override ? 'gate.override' : `gate.${body.decision}`;
          await audit(db, { actor: who.user, action, target: `run:${runId}`, comment: body.comment });
          return ok(receipt);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) throw new HttpError(404, `no running run ${runId}`);
          if (err instanceof WorkflowUpdateFailedError) throw new HttpError(409, (err.cause as Error)?.message ?? err.message);
          throw err;
        }
      },
    },
  ];
}
