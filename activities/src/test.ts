/**
 * test: held-out metrics of the model about to be deployed, on the test split: loss, perplexity and the
 * task's exact match by greedy generation, next to the same figures for the untrained (step 0) model, then
 * the spec's gates. When a model of the same name is serving, the challenger and that champion answer the
 * same held-out records (each with its own tokenizer, compared as text) and the result says whether the
 * challenger wins by `test.championMargin`; the deployment gate then needs an override if it does not.
 *
 * Every figure comes with its n and a bootstrap 95% interval, and the comparison with the serving model is paired
 * (the same records): it is judged on the interval of the difference, so noise on a few hundred records cannot
 * flip the gate. Every record's answers (this model's, the untrained one's, the serving model's) are stored as an
 * `answers` artifact and as test_answers rows, for the approver to read. Then each of the spec's test suites
 * (suites.ts) and the gates: the held-out figures', each suite's min/max, and test.maxRegressions.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import { type ArtifactRef, type ChampionComparison, type ChampionVerdict, type Interval, type SuiteResult, type TestAnswer, type TestResult, describeInterval } from '@tempered/contract';
import { recordArtifacts, recordMetrics } from '@tempered/db';
import { type Deps, gateFailed, log, withScratch } from './context';
import { JsonlWriter, promptAndReference, readRecords } from './records';
import { assignSplit } from './split-core';
import { loraBase } from './base-models';
import { type Opponent, runSuite, suiteBreaches } from './suites';
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
    type Scored = { exact_match: number; examples: number; generated: number; accuracy?: number; macro_f1?: number; no_label?: number; intervals?: Record<string, Interval> };
    // loss_targets [1]: the candidate's loss, null for the others.
    const [before, after, sft] = finished.results as [Scored, Scored & { loss: number; perplexity: number }, Scored?];
    const serving = await servingModel(deps, spec, runId);
    // Its model.tar is downloaded at most once, by whichever needs it first (the comparison, a judged suite).
    let servingTarFile: Promise<string> | undefined;
    const servingWithTar = serving && { ...serving, tar: () => (servingTarFile ??= modelTarOf(deps, serving, dir)) };
    const compared = input.cleaned && servingWithTar ? await compareWithChampion(deps, { ...input, cleaned: input.cleaned, modelTar: model }, servingWithTar, dir) : undefined;
    const answers = await answersOf(path.join(dir, 'eval', 'eval.json'), compared?.answers);
    const champion = compared && { ...compared.comparison, regressions: answers.filter(isRegression).length };
    const suites: SuiteResult[] = [];
    // A win rate is judged against the serving model, else against where training started (the base model of a LoRA run).
    const opponent = async (): Promise<Opponent> => {
      if (servingWithTar) return { kind: 'serving', modelVersionId: servingWithTar.id, version: servingWithTar.version, modelTar: await servingWithTar.tar() };
      const { base_model: baseModel } = await loraBase(deps, runId, spec, input.specDir, dir);
      return { kind: 'untrained', checkpoint: baseline, tokenizer, ...(baseModel ? { baseModel } : {}) };
    };
    for (const [i, suite] of (spec.test.suites ?? []).entries()) {
      const tested = await runSuite(deps, { runId, spec, specDir: input.specDir, modelTar: model, opponent }, suite, i, dir);
      suites.push(tested.result);
      answers.push(...tested.answers.map(clipped));
    }
    const answersRef = await storeAnswers(deps, runId, answers);
    const intervals = after.intervals;
    const result: TestResult = {
      loss: after.loss,
      perplexity: after.perplexity,
      exactMatch: after.exact_match,
      baselineExactMatch: before.exact_match,
      examples: after.examples,
      ...(intervals?.exact_match
        ? {
            intervals: {
              exactMatch: intervals.exact_match,
              ...(intervals.accuracy ? { accuracy: intervals.accuracy } : {}),
              ...(intervals.macro_f1 ? { macroF1: intervals.macro_f1 } : {}),
            },
          }
        : {}),
      answers: answersRef,
      ...(suites.length ? { suites } : {}),
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
      ...suites.flatMap((suite) => [
        ...Object.entries(suite.metrics).map(([metric, ci]) => ({ name: `suite_${suite.name}_${metric}`, step: 0, value: ci.value })),
        ...(suite.perplexity ? [{ name: `suite_${suite.name}_perplexity`, step: 0, value: suite.perplexity.value }] : []),
      ]),
      ...(champion
        ? [
            { name: 'champion_exact_match', step: 0, value: champion.championExactMatch },
            { name: 'challenger_exact_match', step: 0, value: champion.challengerExactMatch },
          ]
        : []),
    ]);
    log('tested', { ...result });
    const { minExactMatch, maxLoss, minAccuracy, maxRegressions } = spec.test;
    const figure = (value: number, interval: Interval | undefined, n: number) => (interval ? describeInterval(interval) : `${value.toFixed(3)} on ${n} records`);
    if (minAccuracy !== undefined && result.classification && result.classification.accuracy < minAccuracy) {
      throw gateFailed(`test gate failed: accuracy ${figure(result.classification.accuracy, result.intervals?.accuracy, result.classification.examples)} is below test.minAccuracy ${minAccuracy}`);
    }
    if (minExactMatch !== undefined && result.exactMatch < minExactMatch) {
      throw gateFailed(`test gate failed: exact match ${figure(result.exactMatch, result.intervals?.exactMatch, after.generated)} is below test.minExactMatch ${minExactMatch}`);
    }
    const [breach] = suiteBreaches(spec, suites);
    if (breach) throw gateFailed(`test gate failed: ${breach}`);
    if (maxRegressions !== undefined && champion && champion.regressions > maxRegressions) {
      throw gateFailed(
        `test gate failed: ${champion.regressions} test records the serving version v${champion.version} answers right are answered wrong by this model, more than test.maxRegressions ${maxRegressions}`,
      );
    }
    if (maxLoss !== undefined && result.loss > maxLoss) {
      throw gateFailed(`test gate failed: test loss ${result.loss.toFixed(4)} is above test.maxLoss ${maxLoss}`);
    }
    return result;
  });
}

/** The serving model of the same name (the champion), deployed by another run; undefined when none serves. */
const servingModel = (deps: Deps, spec: PipelineSpec, runId: string) => servingVersion(deps, spec.name, { runId });

/** The newest serving version of a model name, other than the given run's or version; undefined when none serves. */
export async function servingVersion(deps: Deps, name: string, other: { runId?: string; versionId?: string } = {}) {
  let query = deps.db
    .selectFrom('deployments')
    .innerJoin('model_versions', 'model_versions.id', 'deployments.model_version_id')
    .select(['model_versions.id', 'model_versions.version', 'model_versions.run_id', 'model_versions.model_uri', 'model_versions.sha256'])
    .where('deployments.status', '=', 'serving')
    .where('model_versions.name', '=', name);
  if (other.runId) query = query.where('deployments.run_id', '!=', other.runId);
  if (other.versionId) query = query.where('model_versions.id', '!=', other.versionId);
  return query.orderBy('deployments.created_at', 'desc').executeTakeFirst();
}
type Serving = NonNullable<Awaited<ReturnType<typeof servingModel>>>;

/** A model version's model.tar in the attempt's scratch directory (the serving champion's, by default). */
export function modelTarOf(deps: Deps, version: Pick<Serving, 'model_uri' | 'sha256'>, dir: string, name = 'champion.tar'): Promise<string> {
  const file = path.join(dir, name);
  return deps.store.download({ uri: version.model_uri, sha256: version.sha256, bytes: 0, kind: 'model' }, file);
}

/**
 * The serving model of the same name (the champion) against this run's model on the same held-out records:
 * the cleaned records the split puts in `test`, each answered greedily and compared with its reference.
 */
async function compareWithChampion(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; cleaned: ArtifactRef; modelTar: string },
  champion: Serving & { tar: () => Promise<string> },
  dir: string,
): Promise<{ comparison: ChampionComparison; answers: Map<string, { answer: string; correct: boolean }> } | undefined> {
  const { spec } = input;
  const cleaned = await deps.store.download(input.cleaned, path.join(dir, 'cleaned.jsonl'));
  const prompts = path.join(dir, 'champion-prompts.jsonl');
  const sink = new JsonlWriter(prompts);
  const keys: string[] = [];
  for await (const r of readRecords(cleaned)) {
    if (assignSplit(r.key, spec.split) !== 'test') continue;
    // A plain text has no question to answer; a conversation is asked as the messages before its last answer.
    const asked = promptAndReference(r);
    if (!asked) continue;
    const { prompt, reference } = asked;
    await sink.write(typeof prompt === 'string' ? { prompt, reference } : { messages: prompt, reference });
    keys.push(r.key);
    if (keys.length >= MAX_COMPARE_RECORDS) break;
  }
  await sink.close();
  const n = keys.length;
  if (n === 0) return undefined;

  const championTar = await champion.tar();
  const ctx = Context.current();
  const { finished } = await runTrainer(
    deps,
    'compare',
    {
      model_a: input.modelTar,
      model_b: championTar,
      prompts,
      rule: 'reference',
      max_new_tokens: spec.test.maxNewTokens,
      device: 'auto',
      output_dir: path.join(dir, 'compare'),
    },
    dir,
    () => ctx.heartbeat({ comparing: champion.id }),
  );
  const challengerExactMatch = Number(finished.exact_match_a);
  const championExactMatch = Number(finished.exact_match_b);
  const margin = spec.test.championMargin ?? 0;
  const difference = finished.difference as Interval;
  const verdict = verdictOf(difference, margin);
  const report = JSON.parse(await readFile(path.join(dir, 'compare', 'compare.json'), 'utf8')) as { predictions: Array<{ reference: string; answer_b: string }> };
  const answers = new Map(keys.map((key, i) => [key, { answer: report.predictions[i].answer_b, correct: report.predictions[i].answer_b === report.predictions[i].reference }]));
  return {
    comparison: {
      modelVersionId: champion.id,
      version: champion.version,
      championExactMatch,
      challengerExactMatch,
      winRate: Number(finished.win_rate_a),
      margin,
      examples: n,
      challengerWins: verdict !== 'worse',
      difference,
      verdict,
      pValue: Number(finished.mcnemar_p),
    },
    answers,
  };
}

/** Where the paired interval of (challenger − champion) lies against the margin (a hair of float slack). */
export function verdictOf(difference: Interval, margin: number): ChampionVerdict {
  if (difference.low >= margin - 1e-9) return 'better';
  if (difference.high < margin - 1e-9) return 'worse';
  return 'unsure';
}

/** A record the serving model answers right and this model wrong. */
const isRegression = (a: TestAnswer) => a.championCorrect === true && !a.correct;

/** Longest text kept of a prompt or an answer in the stored answers (the model's context bounds them anyway). */
const MAX_ANSWER_CHARS = 4000;
const clip = (text: string) => (text.length > MAX_ANSWER_CHARS ? `${text.slice(0, MAX_ANSWER_CHARS)}…` : text);
export const clipped = (a: TestAnswer): TestAnswer => ({
  ...a,
  prompt: clip(a.prompt),
  reference: clip(a.reference),
  answer: clip(a.answer),
  baselineAnswer: clip(a.baselineAnswer),
  ...(a.judge
    ? { judge: { ...a.judge, otherAnswer: clip(a.judge.otherAnswer), ...(a.judge.replyAB ? { replyAB: clip(a.judge.replyAB) } : {}), ...(a.judge.replyBA ? { replyBA: clip(a.judge.replyBA) } : {}) } }
    : {}),
});

/** The candidate's answers from eval.json (results: [baseline, candidate, sft?]), with the untrained model's and the serving model's beside each. */
async function answersOf(evalJson: string, champion: Map<string, { answer: string; correct: boolean }> | undefined): Promise<TestAnswer[]> {
  type Prediction = { key: string; prompt: string; reference: string; prediction: string; correct: boolean; label?: string | null; reference_label?: string | null };
  const { results } = JSON.parse(await readFile(evalJson, 'utf8')) as { results: Array<{ predictions?: Prediction[] }> };
  const baseline = new Map((results[0].predictions ?? []).map((p) => [p.key, p.prediction]));
  return (results[1].predictions ?? []).map((p) => {
    const served = champion?.get(p.key);
    return {
      key: p.key,
      prompt: clip(p.prompt),
      reference: clip(p.reference),
      answer: clip(p.prediction),
      correct: p.correct,
      baselineAnswer: clip(baseline.get(p.key) ?? ''),
      ...(p.label !== undefined ? { label: p.label, referenceLabel: p.reference_label ?? null } : {}),
      ...(served ? { championAnswer: clip(served.answer), championCorrect: served.correct } : {}),
    };
  });
}

/** The answers (the held-out split's, then each suite's) as an artifact of the test stage (JSON lines) and as test_answers rows (replaced on a retry). */
async function storeAnswers(deps: Deps, runId: string, answers: TestAnswer[]): Promise<ArtifactRef> {
  const ref = await deps.store.putBytes(answers.map((a) => JSON.stringify(a)).join('\n') + (answers.length ? '\n' : ''), 'answers', 'answers.jsonl');
  await recordArtifacts(deps.db, runId, 'test', [ref]);
  await deps.db.transaction().execute(async (tx) => {
    await tx.deleteFrom('test_answers').where('run_id', '=', runId).execute();
    for (let i = 0; i < answers.length; i += 500) {
      await tx
        .insertInto('test_answers')
        .values(
          answers.slice(i, i + 500).map((a, j) => ({
            run_id: runId,
            idx: i + j,
            key: a.key,
            prompt: a.prompt,
            reference: a.reference,
            answer: a.answer,
            correct: a.correct,
            baseline_answer: a.baselineAnswer,
            label: a.label ?? null,
            reference_label: a.referenceLabel ?? null,
            champion_answer: a.championAnswer ?? null,
            champion_correct: a.championCorrect ?? null,
            suite: a.suite ?? null,
            judge: a.judge ? JSON.stringify(a.judge) : null,
            unsafe: a.unsafe ?? null,
          })),
        )
        .execute();
    }
  });
  return ref;
}
