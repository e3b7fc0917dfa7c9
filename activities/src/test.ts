/**
 * test: held-out metrics of the model about to be deployed, on the test split: loss, perplexity and the
 * task's exact match by greedy generation, next to the same figures for the untrained (step 0) model, then
 * the spec's gates. When a model of the same name is serving, the challenger and that champion answer the
 * same held-out records (each with its own tokenizer, compared as text) and the result says whether the
 * challenger wins by `test.championMargin`; the deployment gate then needs an override if it does not.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, ChampionComparison, TestResult } from '@tempered/contract';
import { recordMetrics } from '@tempered/db';
import { type Deps, gateFailed, log, withScratch } from './context';
import { JsonlWriter, promptAndReference, readRecords } from './records';
import { assignSplit } from './split-core';
import { loraBase } from './base-models';
import { runTrainer } from './trainer';

/** Held-out records the champion comparison uses at most (greedy generation by two models on CPU). */
const MAX_COMPARE_RECORDS = 500;

export async function test(
  deps: Deps,
  input: {
    runId: string;
    spec: PipelineSpec;
    /** Where the spec file was (resolves a base model given by a relative path); absent in older runs. */
    specDir?: string;
    model: ArtifactRef;
    /** The fine-tuned model before RLHF, scored beside it (absent when RLHF did not run, and in older runs). */
    sftModel?: ArtifactRef;
    baseline: ArtifactRef;
    testShard: ArtifactRef;
    tokenizer: ArtifactRef;
    /** The cleaned records, whose test-split members the champion comparison uses (absent in older runs). */
    cleaned?: ArtifactRef;
  },
): Promise<TestResult> {
  const { runId, spec } = input;
  const ctx = Context.current();
  return withScratch(deps, async (dir) => {
    const [shard, tokenizer, baseline, model, sftModel] = await Promise.all([
      deps.store.download(input.testShard, path.join(dir, 'test.shard')),
      deps.store.download(input.tokenizer, path.join(dir, 'tokenizer.json')),
      deps.store.download(input.baseline, path.join(dir, 'baseline.pt')),
      deps.store.download(input.model, path.join(dir, 'model.tar')),
      input.sftModel ? deps.store.download(input.sftModel, path.join(dir, 'sft-model.tar')) : undefined,
    ]);
    const { choices } = spec.test;
    const { finished } = await runTrainer(
      deps,
      'eval',
      {
        checkpoints: [baseline, model, ...(sftModel ? [sftModel] : [])],
        shard,
        tokenizer,
        batch_size: spec.train.batchSize,
        generate: true,
        max_new_tokens: spec.test.maxNewTokens,
        device: 'auto',
        output_dir: path.join(dir, 'eval'),
        // Only the candidate's loss is reported: the baseline and SFT models are compared on their answers.
        loss_targets: [1],
        // The step-0 checkpoint of a LoRA run on a base model is the base itself, which it names but does not hold.
        ...(await loraBase(deps, runId, spec, input.specDir, dir)),
        ...(choices ? { choices } : {}),
        ...(spec.model.maxSeqLength ? { max_seq_length: spec.model.maxSeqLength } : {}),
      },
      dir,
      (e) => {
        // Scoring a real model can take minutes: `progress` events keep the attempt alive between models.
        if (e.event === 'eval') ctx.heartbeat({ evaluated: e.checkpoint });
        else if (e.event === 'progress') ctx.heartbeat({ [String(e.what)]: `${e.done}/${e.total}` });
      },
    );
    type Scored = { exact_match: number; examples: number; generated: number; accuracy?: number; macro_f1?: number; no_label?: number };
    // loss_targets [1]: the candidate's loss, null for the others.
    const [before, after, sft] = finished.results as [Scored, Scored & { loss: number; perplexity: number }, Scored?];
    const champion = input.cleaned ? await compareWithChampion(deps, { ...input, cleaned: input.cleaned, modelTar: model }, dir) : undefined;
    const result: TestResult = {
      loss: after.loss,
      perplexity: after.perplexity,
      exactMatch: after.exact_match,
      baselineExactMatch: before.exact_match,
      examples: after.examples,
      ...(choices
        ? {
            classification: {
              choices,
              examples: after.generated,
              accuracy: after.accuracy!,
              macroF1: after.macro_f1!,
              noLabel: after.no_label!,
              baselineAccuracy: before.accuracy!,
              ...(sft ? { sftAccuracy: sft.accuracy! } : {}),
            },
          }
        : {}),
      ...(champion ? { champion } : {}),
    };
    await recordMetrics(deps.db, runId, 'test', [
      { name: 'test_loss', step: 0, value: result.loss },
      { name: 'test_perplexity', step: 0, value: result.perplexity },
      { name: 'test_exact_match', step: 0, value: result.exactMatch },
      { name: 'baseline_exact_match', step: 0, value: result.baselineExactMatch },
      ...(result.classification
        ? [
            { name: 'test_accuracy', step: 0, value: result.classification.accuracy },
            { name: 'test_macro_f1', step: 0, value: result.classification.macroF1 },
            { name: 'baseline_accuracy', step: 0, value: result.classification.baselineAccuracy },
            ...(result.classification.sftAccuracy !== undefined ? [{ name: 'sft_accuracy', step: 0, value: result.classification.sftAccuracy }] : []),
          ]
        : []),
      ...(champion
        ? [
            { name: 'champion_exact_match', step: 0, value: champion.championExactMatch },
            { name: 'challenger_exact_match', step: 0, value: champion.challengerExactMatch },
          ]
        : []),
    ]);
    log('tested', { ...result });
    const { minExactMatch, maxLoss, minAccuracy } = spec.test;
    if (minAccuracy !== undefined && result.classification && result.classification.accuracy < minAccuracy) {
      throw gateFailed(`test gate failed: accuracy ${result.classification.accuracy.toFixed(3)} on ${result.classification.examples} records is below test.minAccuracy ${minAccuracy}`);
    }
    if (minExactMatch !== undefined && result.exactMatch < minExactMatch) {
      throw gateFailed(`test gate failed: exact match ${result.exactMatch.toFixed(3)} is below test.minExactMatch ${minExactMatch}`);
    }
    if (maxLoss !== undefined && result.loss > maxLoss) {
      throw gateFailed(`test gate failed: test loss ${result.loss.toFixed(4)} is above test.maxLoss ${maxLoss}`);
    }
    return result;
  });
}

/**
 * The serving model of the same name (the champion) against this run's model on the same held-out records:
 * the cleaned records the split puts in `test`, each answered greedily and compared with its reference.
 */
async function compareWithChampion(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; cleaned: ArtifactRef; modelTar: string },
  dir: string,
): Promise<ChampionComparison | undefined> {
  const { spec } = input;
  const champion = await deps.db
    .selectFrom('deployments')
    .innerJoin('model_versions', 'model_versions.id', 'deployments.model_version_id')
    .select(['model_versions.id', 'model_versions.version', 'model_versions.model_uri', 'model_versions.sha256'])
    .where('deployments.status', '=', 'serving')
    .where('model_versions.name', '=', spec.name)
    .where('deployments.run_id', '!=', input.runId)
    .orderBy('deployments.created_at', 'desc')
    .executeTakeFirst();
  if (!champion) return undefined;

  const cleaned = await deps.store.download(input.cleaned, path.join(dir, 'cleaned.jsonl'));
  const prompts = path.join(dir, 'champion-prompts.jsonl');
  const sink = new JsonlWriter(prompts);
  let n = 0;
  for await (const r of readRecords(cleaned)) {
    if (assignSplit(r.key, spec.split) !== 'test') continue;
    // A plain text has no question to answer; a conversation is asked as the messages before its last answer.
    const asked = promptAndReference(r);
    if (!asked) continue;
    const { prompt, reference } = asked;
    await sink.write(typeof prompt === 'string' ? { prompt, reference } : { messages: prompt, reference });
    if (++n >= MAX_COMPARE_RECORDS) break;
  }
  await sink.close();
  if (n === 0) return undefined;

  const championTar = await deps.store.download({ uri: champion.model_uri, sha256: champion.sha256, bytes: 0, kind: 'model' }, path.join(dir, 'champion.tar'));
  const ctx = Context.current();
  const { finished } = await runTrainer(
    deps,
    'compare',
    { model_a: input.modelTar, model_b: championTar, prompts, rule: 'reference', max_new_tokens: spec.test.maxNewTokens, device: 'auto' },
    dir,
    () => ctx.heartbeat({ comparing: champion.id }),
  );
  const challengerExactMatch = Number(finished.exact_match_a);
  const championExactMatch = Number(finished.exact_match_b);
  const margin = spec.test.championMargin ?? 0;
  return {
    modelVersionId: champion.id,
    version: champion.version,
    championExactMatch,
    challengerExactMatch,
    winRate: Number(finished.win_rate_a),
    margin,
    examples: n,
    challengerWins: challengerExactMatch - championExactMatch >= margin - 1e-9,
  };
}
