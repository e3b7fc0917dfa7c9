/**
 * deploy (after the approval gate): registers a model version, starts a Python model server for it (an
 * OpenAI-compatible `/v1/completions`, on a port of its own), checks it with a smoke request, and records the
 * deployment with its lineage: dataset version → model version → deployment. Then, without a canary, the
 * gateway's route for the model name points at the new version alone and the previous version's server
 * stops (after the new one answers, so there is no gap). With `deploy.canary` and a version serving, both
 * keep running and the canary workflow moves the traffic.
 */
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { childEnv } from '@tempered/config';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, DeployResult, ServingVersion, TestResult } from '@tempered/contract';
import { node, recordLineage, setRoutes } from '@tempered/db';
import { type Deps, log, noteAttempt } from './context';

const serverName = (deploymentId: string) => `model-server-${deploymentId}`;
/** In the run folder, so `npm stop` ends every model server with the rest of the stack. */
const pidFile = (deps: Deps, deploymentId: string) => path.join(deps.cfg.dataDir, 'run', `${serverName(deploymentId)}.pid`);

function stopProcessGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {
    /* not running */
  }
}

/** Stops a deployment's model server and records why (`stopped` when replaced, `rolled-back` by a canary). */
export async function stopDeployment(deps: Deps, deploymentId: string, status: 'stopped' | 'rolled-back'): Promise<void> {
  const row = await deps.db.selectFrom('deployments').select('pid').where('id', '=', deploymentId).executeTakeFirst();
  if (row?.pid) stopProcessGroup(row.pid);
  await rm(pidFile(deps, deploymentId), { force: true });
  await deps.db.updateTable('deployments').set({ status }).where('id', '=', deploymentId).execute();
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

/** The first port from the stack's model port up that no live deployment holds and nothing listens on. */
async function freeModelPort(deps: Deps): Promise<number> {
  const live = await deps.db.selectFrom('deployments').select('endpoint').where('status', 'in', ['serving', 'canary']).execute();
  const taken = new Set(live.map((d) => Number(new URL(d.endpoint).port)));
  for (let port = deps.cfg.ports.model; port < deps.cfg.ports.model + 50; port++) {
    if (!taken.has(port) && !(await portInUse(port))) return port;
  }
  throw new Error(`no free model-server port in ${deps.cfg.ports.model}–${deps.cfg.ports.model + 49}; stop old deployments`);
}

async function waitHealthy(endpoint: string, timeoutMs: number, isAlive: () => boolean, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    Context.current().heartbeat({ phase: 'waiting for model server' });
    if (!isAlive()) throw new Error(`the model server exited during start-up; see ${logFile}`);
    try {
      if ((await fetch(`${endpoint}/health`)).ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`the model server did not answer ${endpoint}/health within ${timeoutMs / 1000}s`);
}

export async function deploy(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; model: ArtifactRef; datasetVersionId: string; metrics: TestResult; approver: string },
): Promise<DeployResult> {
  const { runId, spec, db } = { ...input, db: deps.db };
  await noteAttempt(deps);

  // 1. The model version: one per run, so a retried deploy finds the one it registered.
  let version = await db.selectFrom('model_versions').selectAll().where('run_id', '=', runId).executeTakeFirst();
  if (!version) {
    const { max } = await db
      .selectFrom('model_versions')
      .select((eb) => eb.fn.max('version').as('max'))
      .where('name', '=', spec.name)
      .executeTakeFirstOrThrow();
    const n = Number(max ?? 0) + 1;
    version = await db
      .insertInto('model_versions')
      .values({
        id: `${spec.name}-v${n}`,
        name: spec.name,
        version: n,
        run_id: runId,
        model_uri: input.model.uri,
        sha256: input.model.sha256,
        metrics: JSON.stringify(input.metrics),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  // 2. What serves this model now; a retried deploy stops the server its earlier attempt may have left.
  const deploymentId = `dep-${runId}`;
  await stopDeployment(deps, deploymentId, 'stopped');
  const serving = await db
    .selectFrom('deployments')
    .innerJoin('model_versions', 'model_versions.id', 'deployments.model_version_id')
    .select(['deployments.id', 'deployments.model_version_id', 'deployments.endpoint'])
    .where('model_versions.name', '=', spec.name)
    .where('deployments.status', '=', 'serving')
    .where('deployments.id', '!=', deploymentId)
    .orderBy('deployments.created_at', 'desc')
    .execute();
  const previous: ServingVersion | undefined =
    spec.deploy.canary && serving[0] ? { deploymentId: serving[0].id, modelVersionId: serving[0].model_version_id, endpoint: serving[0].endpoint } : undefined;

  // 3. The new model server, on a port of its own.
  const port = await freeModelPort(deps);
  const endpoint = `http://127.0.0.1:${port}`;
  const modelDir = path.join(deps.cfg.dataDir, 'models', version.id);
  const modelTar = await deps.store.download(input.model, path.join(modelDir, 'model.tar'));
  const configPath = path.join(modelDir, 'serve.json');
  await writeFile(configPath, JSON.stringify({ model: modelTar, host: '127.0.0.1', port, model_name: version.id, device: 'auto' }));
  await mkdir(path.join(deps.cfg.dataDir, 'logs'), { recursive: true, mode: 0o700 });
  await mkdir(path.join(deps.cfg.dataDir, 'run'), { recursive: true });
  const logFile = path.join(deps.cfg.dataDir, 'logs', `${serverName(deploymentId)}.log`);
  const server = spawn(deps.cfg.python, ['-m', 'tempered_trainer', 'serve', '--config', configPath], {
    detached: true, // outlives this activity and the worker; `npm stop` ends it through its pid file
    // Owner-only, whatever the umask of the process that deploys (a worker the stack started has 077; not every one).
    stdio: ['ignore', openSync(logFile, 'a', 0o600), openSync(logFile, 'a', 0o600)],
    env: childEnv(deps.cfg),
  });
  server.unref();
  await writeFile(pidFile(deps, deploymentId), String(server.pid), { mode: 0o600 });
  await waitHealthy(endpoint, 120_000, () => server.exitCode === null, logFile);

  // 4. Smoke request: the deployment counts only if the model answers.
  const res = await fetch(`${endpoint}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: version.id, prompt: spec.deploy.smokePrompt, max_tokens: 16, temperature: 0 }),
  });
  const body = (await res.json()) as { choices?: Array<{ text?: string }> };
  const text = body.choices?.[0]?.text;
  if (!res.ok || typeof text !== 'string') {
    stopProcessGroup(server.pid!);
    throw new Error(`smoke request to ${endpoint}/v1/completions failed: HTTP ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
  }

  await db
    .insertInto('deployments')
    .values({ id: deploymentId, model_version_id: version.id, run_id: runId, endpoint, status: previous ? 'canary' : 'serving', pid: server.pid ?? null })
    .onConflict((oc) => oc.column('id').doUpdateSet({ status: previous ? 'canary' : 'serving', pid: server.pid ?? null, endpoint }))
    .execute();
  // 5. Without a canary the gateway sends all of the model's traffic here at once, and the old servers stop.
  if (!previous) {
    await setRoutes(db, spec.name, [{ modelVersionId: version.id, endpoint, weight: 100 }]);
    for (const old of serving) await stopDeployment(deps, old.id, 'stopped');
  }
  await recordLineage(deps.db, runId, [
    { parent: node.datasetVersion(input.datasetVersionId), child: node.modelVersion(version.id), relation: 'trained-into' },
    { parent: node.artifact(input.model), child: node.modelVersion(version.id), relation: 'registered-as' },
    { parent: node.modelVersion(version.id), child: node.deployment(deploymentId), relation: 'deployed-as' },
  ]);
  log('deployed', { modelVersion: version.id, endpoint, approver: input.approver, canary: Boolean(previous), smoke: text.slice(0, 60) });
  return { modelVersionId: version.id, deploymentId, endpoint, ...(previous ? { previous } : {}) };
}
