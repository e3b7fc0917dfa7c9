/**
 * deploy (after the approval gate): registers a model version, starts a Python model server for it (an
 * OpenAI-compatible `/v1/completions`, on a port of its own), checks it with a smoke request, and records the
 * deployment with its lineage: dataset version → model version → deployment. Then, without a canary, the
 * gateway's route for the model name points at the new version alone and the previous version's server
 * stops (after the new one answers, so there is no gap). With `deploy.canary` and a version serving, both
 * keep running and the canary workflow moves the traffic. With `deploy.engine: llamacpp` the version is first
 * exported to GGUF (every type, once per run, kept as artifacts: ./gguf.ts; the optimize stage may have done it) and
 * llama.cpp's server serves the asked type.
 */
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, DeployResult, ServingVersion, TestResult } from '@tempered/contract';
import { node, recordLineage, sendAllTraffic } from '@tempered/db';
import { type Deps, log, noteAttempt, withScratch } from './context';
import { ensureGgufs, localModelTar } from './gguf';
import { freeModelPort, servingOf, startModelServer, stopDeployment, stopProcessGroup, stopServer } from './model-server';

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

  // 3. The new model server, on a port of its own; llama.cpp's serves a GGUF export, made now unless stored.
  const servedBy = servingOf(spec.deploy);
  if (servedBy.engine === 'llamacpp') {
    const versionId = version.id;
    // Made by the optimize stage already when the spec has one.
    const files = await withScratch(
      deps,
      (scratch) =>
        ensureGgufs(deps, {
          runId,
          stage: 'deploy',
          model: input.model,
          modelTar: () => localModelTar(deps, versionId, input.model),
          modelVersionId: versionId,
          scratch,
          checkPrompt: spec.deploy.smokePrompt,
          field: 'deploy.engine',
        }),
      'deploy',
    );
    log('gguf', { modelVersion: version.id, bytes: Object.fromEntries(Object.entries(files).map(([t, f]) => [t, f.bytes])) });
  }
  const server = await startModelServer(deps, {
    deploymentId,
    modelVersionId: version.id,
    model: input.model,
    port: await freeModelPort(deps),
    serving: servedBy,
    heartbeat: () => Context.current().heartbeat({ phase: 'waiting for model server' }),
  });
  const { endpoint } = server;

  // 4. Smoke request: the deployment counts only if the model answers.
  const res = await fetch(`${endpoint}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: version.id, prompt: spec.deploy.smokePrompt, max_tokens: 16, temperature: 0 }),
  });
  const body = (await res.json()) as { choices?: Array<{ text?: string }> };
  const text = body.choices?.[0]?.text;
  if (!res.ok || typeof text !== 'string') {
    stopProcessGroup(server.pid);
    throw new Error(`smoke request to ${endpoint}/v1/completions failed: HTTP ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
  }

  await db
    .insertInto('deployments')
    .values({ id: deploymentId, model_version_id: version.id, run_id: runId, endpoint, status: previous ? 'canary' : 'serving', pid: server.pid })
    .onConflict((oc) => oc.column('id').doUpdateSet({ status: previous ? 'canary' : 'serving', pid: server.pid, endpoint }))
    .execute();
  // 5. Without a canary the gateway sends all of the model's traffic here at once, and the old servers stop.
  if (!previous) {
    const replaced = await sendAllTraffic(db, spec.name, { deploymentId, modelVersionId: version.id, endpoint }, 'stopped');
    for (const old of replaced) await stopServer(deps, old.id);
  }
  await recordLineage(deps.db, runId, [
    { parent: node.datasetVersion(input.datasetVersionId), child: node.modelVersion(version.id), relation: 'trained-into' },
    { parent: node.artifact(input.model), child: node.modelVersion(version.id), relation: 'registered-as' },
    { parent: node.modelVersion(version.id), child: node.deployment(deploymentId), relation: 'deployed-as' },
  ]);
  log('deployed', { modelVersion: version.id, endpoint, engine: servedBy.engine, approver: input.approver, canary: Boolean(previous), smoke: text.slice(0, 60) });
  return { modelVersionId: version.id, deploymentId, endpoint, ...(previous ? { previous } : {}) };
}
