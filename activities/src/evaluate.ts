/**
 * On-demand evaluation (workflows/src/evaluate.ts): a model version's test suites run again, exactly as the test
 * stage runs them (./suites.ts), outside any pipeline run. The version is named, or for a drift schedule it is
 * whatever serves the spec's model name when the evaluation starts. A win rate is judged against the serving
 * version of the same name when that is another version, else against where the version's training started (its
 * run's untrained step-0 checkpoint, or the base model of a LoRA run). The results, each suite bound they cross,
 * and every answer (an artifact) go to the `evaluations` row; no run fails and nothing deploys.
 */
import path from 'node:path';
import type { EvaluationInput, EvaluationOutcome, EvaluationStatus, SuiteResult, TestAnswer } from '@tempered/contract';
import { type Deps, badInput, log, withScratch } from './context';
import { loraBase } from './base-models';
import { checkpointName } from './train';
import { type Opponent, runSuite, suiteBreaches } from './suites';
import { clipped, modelTarOf, servingVersion } from './test';

export async function evaluateSuites(deps: Deps, input: EvaluationInput & { evaluationId: string }): Promise<EvaluationOutcome> {
  const { spec, evaluationId } = input;
  const version = await versionToEvaluate(deps, input);
  const all = spec.test.suites ?? [];
  const chosen = input.suites?.length ? input.suites : all.map((s) => s.name);
  for (const [i, name] of chosen.entries()) {
    if (!all.some((s) => s.name === name)) {
      throw badInput(`suites.${i}: no suite ${name} in the spec of ${spec.name}; its suites are ${all.map((s) => s.name).join(', ') || 'none (test.suites is empty)'}`);
    }
  }
  await recordEvaluation(deps, { evaluationId, status: 'running', modelName: spec.name, modelVersionId: version.id, suites: chosen, requestedBy: input.requestedBy });
  return withScratch(deps, async (dir) => {
    const modelTar = await modelTarOf(deps, version, dir, 'model.tar');
    const opponent = async (): Promise<Opponent> => {
      const serving = await servingVersion(deps, spec.name, { versionId: version.id });
      if (serving) return { kind: 'serving', modelVersionId: serving.id, version: serving.version, modelTar: await modelTarOf(deps, serving, dir, 'opponent.tar') };
      return untrainedOpponent(deps, version.run_id, input, dir);
    };
    const results: SuiteResult[] = [];
    const answers: TestAnswer[] = [];
    for (const [index, suite] of all.entries()) {
      if (!chosen.includes(suite.name)) continue;
      const tested = await runSuite(deps, { runId: version.run_id, spec, specDir: input.specDir, modelTar, opponent }, suite, index, dir);
      results.push(tested.result);
      answers.push(...tested.answers.map(clipped));
    }
    const ref = await deps.store.putBytes(answers.map((a) => JSON.stringify(a)).join('\n') + (answers.length ? '\n' : ''), 'answers', 'evaluation-answers.jsonl');
    const breaches = suiteBreaches(spec, results);
    await recordEvaluation(deps, { evaluationId, status: 'completed', results, breaches, answers: ref });
    log('evaluated', { evaluationId, modelVersionId: version.id, suites: results.map((r) => r.name), breaches });
    return { modelVersionId: version.id, suites: results, answers: ref, breaches };
  });
}

/** The named version (it must be of the spec's model), else the one serving the spec's model name now. */
async function versionToEvaluate(deps: Deps, input: EvaluationInput) {
  const { spec } = input;
  if (!input.modelVersionId) {
    const serving = await servingVersion(deps, spec.name);
    if (!serving) throw badInput(`no version of ${spec.name} is serving: a drift evaluation evaluates the serving version; deploy one, or evaluate a version by id`);
    return serving;
  }
  const version = await deps.db
    .selectFrom('model_versions')
    .select(['id', 'version', 'run_id', 'model_uri', 'sha256', 'name'])
    .where('id', '=', input.modelVersionId)
    .executeTakeFirst();
  if (!version) throw badInput(`no model version ${input.modelVersionId}`);
  if (version.name !== spec.name) throw badInput(`model version ${version.id} is of ${version.name}, not of the spec's ${spec.name}`);
  return version;
}

/** The version's run's step-0 checkpoint (any sweep candidate's, whose names end the same: they differ only in learning rate) and tokenizer. */
async function untrainedOpponent(deps: Deps, runId: string, input: EvaluationInput, dir: string): Promise<Opponent> {
  const rows = await deps.db
    .selectFrom('artifacts')
    .select(['uri', 'sha256', 'bytes', 'kind'])
    .where('run_id', '=', runId)
    .where((eb) => eb.or([eb.and([eb('stage', '=', 'train'), eb('kind', '=', 'checkpoint'), eb('uri', 'like', `%${checkpointName(0)}`)]), eb('kind', '=', 'tokenizer')]))
    .orderBy('id')
    .execute();
  const checkpoint = rows.find((r) => r.kind === 'checkpoint');
  const tokenizer = rows.find((r) => r.kind === 'tokenizer');
  if (!checkpoint || !tokenizer) throw badInput(`run ${runId} recorded no untrained checkpoint to judge its model against, and no other version of ${input.spec.name} is serving`);
  const [checkpointFile, tokenizerFile] = await Promise.all([
    deps.store.download({ ...checkpoint, bytes: Number(checkpoint.bytes), kind: 'checkpoint' }, path.join(dir, 'untrained.pt')),
    deps.store.download({ ...tokenizer, bytes: Number(tokenizer.bytes), kind: 'tokenizer' }, path.join(dir, 'tokenizer.json')),
  ]);
  const { base_model: baseModel } = await loraBase(deps, runId, input.spec, input.specDir, dir);
  return { kind: 'untrained', checkpoint: checkpointFile, tokenizer: tokenizerFile, ...(baseModel ? { baseModel } : {}) };
}

/**
 * The evaluation's row: created (or taken over by a retried attempt) when it starts, then its outcome. An
 * activity of its own too, for the workflow to record a failure no attempt could.
 */
export async function recordEvaluation(
  deps: Deps,
  update: { evaluationId: string; status: EvaluationStatus; error?: string } & Partial<{
    modelName: string;
    modelVersionId: string;
    suites: string[];
    requestedBy: string;
    results: SuiteResult[];
    breaches: string[];
    answers: { uri: string; sha256: string };
  }>,
): Promise<void> {
  const finished = update.status === 'running' ? null : new Date();
  const outcome = {
    status: update.status,
    finished_at: finished,
    ...(update.modelVersionId ? { model_version_id: update.modelVersionId } : {}),
    ...(update.error !== undefined ? { error: update.error } : {}),
    ...(update.results ? { results: JSON.stringify(update.results), breaches: JSON.stringify(update.breaches ?? []) } : {}),
    ...(update.answers ? { answers_uri: update.answers.uri, answers_sha256: update.answers.sha256 } : {}),
  };
  if (update.modelName && update.suites && update.requestedBy) {
    // A drift evaluation has no row until it has found the serving version; one the API started has.
    await deps.db
      .insertInto('evaluations')
      .values({ id: update.evaluationId, model_name: update.modelName, suites: JSON.stringify(update.suites), requested_by: update.requestedBy, ...outcome })
      .onConflict((oc) => oc.column('id').doUpdateSet(outcome))
      .execute();
  } else {
    await deps.db.updateTable('evaluations').set(outcome).where('id', '=', update.evaluationId).execute();
  }
}
