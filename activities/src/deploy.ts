/**
 * deploy (after the approval gate): registers a model version, starts the Python model server for it (an
 * OpenAI-compatible `/v1/completions`), checks it with a smoke request, and records the deployment with its
 * lineage: dataset version → model version → deployment. The embedded stack has one serving slot; a new
 * deployment replaces the previous one, which is marked stopped.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, DeployResult, TestResult } from '@tempered/workflows';
import { node, recordLineage } from '@tempered/db';
import { type Deps, log, noteAttempt } from './context';

const SERVER_NAME = 'model-server';

function stopProcessGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {
    /* not running */
  }
}

async function waitHealthy(endpoint: string, timeoutMs: number, isAlive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    Context.current().heartbeat({ phase: 'waiting for model server' });
    if (!isAlive()) throw new Error('the model server exited during start-up; see logs/model-server.log');
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

  // 2. The model server, replacing whatever served before.
  const runDir = path.join(deps.cfg.dataDir, 'run');
  const pidPath = path.join(runDir, `${SERVER_NAME}.pid`);
  if (existsSync(pidPath)) stopProcessGroup(Number(readFileSync(pidPath, 'utf8')));
  await db.updateTable('deployments').set({ status: 'stopped' }).where('status', '=', 'serving').execute();

  const modelDir = path.join(deps.cfg.dataDir, 'models', version.id);
  const modelTar = await deps.store.download(input.model, path.join(modelDir, 'model.tar'));
  const endpoint = `http://127.0.0.1:${deps.cfg.ports.model}`;
  const configPath = path.join(modelDir, 'serve.json');
  await writeFile(
    configPath,
    JSON.stringify({ model: modelTar, host: '127.0.0.1', port: deps.cfg.ports.model, model_name: version.id, device: 'auto' }),
  );
  await mkdir(path.join(deps.cfg.dataDir, 'logs'), { recursive: true });
  await mkdir(runDir, { recursive: true });
  const out = openSync(path.join(deps.cfg.dataDir, 'logs', `${SERVER_NAME}.log`), 'a');
  const server = spawn(deps.cfg.python, ['-m', 'tempered_trainer', 'serve', '--config', configPath], {
    detached: true, // outlives this activity and the worker; `npm stop` ends it through its pid file
    stdio: ['ignore', out, out],
    env: { ...process.env, PYTHONPATH: deps.cfg.trainerDir, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
  });
  server.unref();
  await writeFile(pidPath, String(server.pid));
  await waitHealthy(endpoint, 120_000, () => server.exitCode === null);

  // 3. Smoke request: the deployment counts only if the model answers.
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

  const deploymentId = `dep-${runId}`;
  await db
    .insertInto('deployments')
    .values({ id: deploymentId, model_version_id: version.id, run_id: runId, endpoint, status: 'serving', pid: server.pid ?? null })
    .onConflict((oc) => oc.column('id').doUpdateSet({ status: 'serving', pid: server.pid ?? null, endpoint }))
    .execute();
  await recordLineage(deps.db, runId, [
    { parent: node.datasetVersion(input.datasetVersionId), child: node.modelVersion(version.id), relation: 'trained-into' },
    { parent: node.artifact(input.model), child: node.modelVersion(version.id), relation: 'registered-as' },
    { parent: node.modelVersion(version.id), child: node.deployment(deploymentId), relation: 'deployed-as' },
  ]);
  log('deployed', { modelVersion: version.id, endpoint, approver: input.approver, smoke: text.slice(0, 60) });
  return { modelVersionId: version.id, deploymentId, endpoint };
}
