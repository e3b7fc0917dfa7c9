/**
 * Test suites (`test.suites`): named evaluation sets beside the held-out split. Each suite's file is read as
 * ingest reads data (any format; a bad row is quarantined and counted, never fatal), its texts normalized by the
 * spec's clean rules (so it reads like the training data; only records left empty are removed), encoded by the
 * candidate model's own tokenizer and chat format, then answered and scored by the trainer's `eval` with each
 * metric's n and bootstrap 95% interval. The suite's min/max gates are the test stage's to apply.
 *
 * `win_rate`: the trainer's `judge` has this model and the other one (the serving model of the same name, else the
 * untrained / base model) answer the suite's prompts, and the spec's judge (the run's reward model, or a catalog
 * base model asked which answer is better) compares each pair in both orders. `unsafe_rate`: the answers pass
 * through the gateway's output filter (./safety.ts) and those still unsafe are counted. Every answer comes back
 * too, with its verdicts and its safety, for the test stage to store beside the held-out split's.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { type Interval, type JudgeVerdict, type SuiteJudgement, type SuiteResult, type TestAnswer, describeInterval } from '@tempered/contract';
import type { PipelineSpec, TestSuiteSpec } from '@tempered/spec';
import { type Deps, badInput, log } from './context';
import { cleanFile } from './clean-core';
import { SourceError, ingestFiles } from './ingest-core';
import { readingOf } from './ingest';
import { JsonlWriter, promptAndReference, readRecords } from './records';
import { stageCatalogModel } from './base-models';
import { safetyFilters, scoreSafety } from './safety';
import { stageSource } from './sources';
import { runTrainer } from './trainer';

/** eval's figure name of each suite metric that comes from answers (perplexity comes from the loss). */
const TEXT_METRICS = ['rouge_l', 'chrf'] as const;

/** What a win rate is judged against: the serving model's tar, or the run's untrained step-0 checkpoint. */
export type Opponent =
  | { kind: 'serving'; modelVersionId: string; version: number; modelTar: string }
  | { kind: 'untrained'; checkpoint: string; tokenizer: string; baseModel?: string };

export interface SuiteInput {
  runId: string;
  spec: PipelineSpec;
  specDir?: string;
  modelTar: string;
  /** Resolved only when a suite asks for win_rate. */
  opponent: () => Promise<Opponent>;
}

/** A suite read, cleaned and encoded, ready to be answered by any model that shares the candidate's vocabulary. */
export interface PreparedSuite {
  dir: string;
  cleanedPath: string;
  /** The cleaned records encoded by the candidate's tokenizer and chat format. */
  shard: string;
  /** Its records' fate so far (nothing answered yet). */
  result: SuiteResult;
}

/** Reads, cleans and encodes a suite's file in `scratch/suite-<index>`; a suite left without records is bad input. */
export async function prepareSuite(
  deps: Deps,
  input: Pick<SuiteInput, 'spec' | 'specDir' | 'modelTar'>,
  suite: TestSuiteSpec,
  index: number,
  scratch: string,
): Promise<PreparedSuite> {
  const { spec } = input;
  const dir = path.join(scratch, `suite-${index}`);
  await mkdir(dir, { recursive: true });
  const field = `test.suites.${index}.source`;
  const source = { ...readingOf(suite.source, spec.data.records, field), path: await stageSource(deps, suite.source.uri, input.specDir, dir, 0) };
  const datasetPath = path.join(dir, 'dataset.jsonl');
  const ingested = await ingestFiles([source], suite.fields ?? spec.data.fields, { datasetPath, quarantinePath: path.join(dir, 'quarantine.jsonl') }).catch((err: unknown) => {
    throw err instanceof SourceError ? badInput(`${field}: ${err.message}`) : err;
  });
  const cleanedPath = path.join(dir, 'cleaned.jsonl');
  // A safety suite's prompts are provocative on purpose: the blocklist that keeps them out of training must not empty it.
  const blocklist = suite.metrics.includes('unsafe_rate') ? { blocklist: undefined } : {};
  const cleaned = await cleanFile(datasetPath, cleanedPath, { ...spec.clean, dedupe: 'none', minChars: 0, maxChars: Number.MAX_SAFE_INTEGER, ...blocklist });
  const result: SuiteResult = { name: suite.name, input: ingested.input, quarantined: ingested.quarantined, removed: ingested.kept - cleaned.kept, examples: 0, metrics: {} };
  if (cleaned.kept === 0) throw badInput(`test suite ${suite.name}: no usable records in ${suite.source.uri} (${ingested.quarantined} quarantined, ${result.removed} empty after cleaning)`);
  const encoded = path.join(dir, 'encoded');
  await runTrainer(deps, 'tokenize', { input: cleanedPath, tokenizer: input.modelTar, output_dir: encoded }, dir);
  return { dir, cleanedPath, shard: path.join(encoded, 'encoded.shard'), result };
}

/** One model's scores on a prepared suite: the metrics that come from its answers and its loss, and the answers. */
export interface SuiteScores {
  examples: number;
  metrics: Record<string, Interval>;
  perplexity?: { value: number; n: number };
  unsafeBeforeFilter?: Interval;
  answers: TestAnswer[];
}

/**
 * Each target (a model.tar, or GGUF files exported from it: then `tokenizer` decodes) answers the prepared suite in
 * one trainer `eval`, scored with the suite's metrics but win_rate (a judged comparison: judgeSuite).
 */
export async function scoreSuite(
  deps: Deps,
  spec: PipelineSpec,
  suite: TestSuiteSpec,
  prepared: PreparedSuite,
  targets: string[],
  options: { tokenizer?: string; name?: string } = {},
): Promise<SuiteScores[]> {
  const ctx = Context.current();
  const wants = new Set(suite.metrics);
  const textMetrics = TEXT_METRICS.filter((m) => wants.has(m));
  const output = path.join(prepared.dir, options.name ?? 'eval');
  const { finished } = await runTrainer(
    deps,
    'eval',
    {
      checkpoints: targets,
      shard: prepared.shard,
      ...(options.tokenizer ? { tokenizer: options.tokenizer } : {}),
      batch_size: spec.train.batchSize,
      generate: true,
      max_new_tokens: spec.test.maxNewTokens,
      device: 'auto',
      output_dir: output,
      loss_targets: wants.has('perplexity') ? targets.map((_, i) => i) : [],
      ...(wants.has('accuracy') || wants.has('macro_f1') ? { choices: spec.test.choices } : {}),
      ...(textMetrics.length ? { text_metrics: textMetrics } : {}),
      ...(spec.model.maxSeqLength ? { max_seq_length: spec.model.maxSeqLength } : {}),
    },
    prepared.dir,
    (e) => {
      if (e.event === 'progress') ctx.heartbeat({ suite: suite.name, [String(e.what)]: `${e.done}/${e.total}` });
    },
  );
  type Scored = { generated?: number; examples: number; perplexity: number | null; intervals?: Record<string, Interval> };
  type Prediction = { key: string; prompt: string; reference: string; prediction: string; correct: boolean; label?: string | null; reference_label?: string | null };
  const { results } = JSON.parse(await readFile(path.join(output, 'eval.json'), 'utf8')) as { results: Array<{ predictions?: Prediction[] }> };
  const out: SuiteScores[] = [];
  for (const [i, scored] of (finished.results as Scored[]).entries()) {
    const scores: SuiteScores = {
      examples: scored.generated ?? 0,
      metrics: {},
      answers: (results[i].predictions ?? []).map((p) => ({
        suite: suite.name,
        key: p.key,
        prompt: p.prompt,
        reference: p.reference,
        answer: p.prediction,
        correct: p.correct,
        baselineAnswer: '',
        ...(p.label !== undefined ? { label: p.label, referenceLabel: p.reference_label ?? null } : {}),
      })),
    };
    for (const metric of suite.metrics) {
      if (metric === 'perplexity') scores.perplexity = { value: scored.perplexity!, n: scored.examples };
      else if (scored.intervals?.[metric]) scores.metrics[metric] = scored.intervals[metric];
    }
    if (wants.has('unsafe_rate')) {
      const safety = await unsafeRates(deps, scores.answers, prepared.dir);
      scores.metrics.unsafe_rate = safety.after;
      scores.unsafeBeforeFilter = safety.before;
    }
    out.push(scores);
  }
  return out;
}

/** The share of answers still unsafe after the gateway's output filter (and before it), each answer marked. */
async function unsafeRates(deps: Deps, answers: TestAnswer[], dir: string): Promise<{ after: Interval; before: Interval }> {
  const scores = scoreSafety(
    answers.map((a) => a.answer),
    await safetyFilters(deps.cfg.gateway),
  );
  scores.forEach((score, i) => (answers[i].unsafe = score.unsafeAfter));
  const { finished } = await runTrainer(deps, 'interval', { names: ['after', 'before'], scores: [scores.map((x) => Number(x.unsafeAfter)), scores.map((x) => Number(x.unsafeBefore))] }, dir);
  return finished.intervals as Record<'after' | 'before', Interval>;
}

export async function runSuite(
  deps: Deps,
  input: SuiteInput,
  suite: TestSuiteSpec,
  index: number,
  scratch: string,
): Promise<{ result: SuiteResult; answers: TestAnswer[] }> {
  const started = Date.now();
  const prepared = await prepareSuite(deps, input, suite, index, scratch);
  const [scores] = await scoreSuite(deps, input.spec, suite, prepared, [input.modelTar]);
  const { answers } = scores;
  const result: SuiteResult = {
    ...prepared.result,
    examples: scores.examples,
    metrics: scores.metrics,
    ...(scores.perplexity ? { perplexity: scores.perplexity } : {}),
    ...(scores.unsafeBeforeFilter ? { unsafeBeforeFilter: scores.unsafeBeforeFilter } : {}),
  };
  if (suite.metrics.includes('win_rate')) {
    const judged = await judgeSuite(deps, input, suite, index, prepared.cleanedPath, prepared.dir);
    result.metrics.win_rate = judged.winRate;
    result.judged = judged.summary;
    for (const a of answers) {
      const verdict = judged.verdicts.get(a.key);
      if (verdict) a.judge = verdict;
      if (verdict && judged.summary.against.kind === 'untrained') a.baselineAnswer = verdict.otherAnswer;
    }
  }
  result.seconds = Math.round((Date.now() - started) / 100) / 10;
  log('suite tested', { ...result });
  return { result, answers };
}

/**
 * Each `min` / `max` bound of the spec's suites that these results cross, said with the figure and its interval
 * (the test stage fails its gate on the first; an on-demand evaluation reports them all). `results` are the
 * suites' in any order, matched by name; a suite not among them is skipped.
 */
export function suiteBreaches(spec: PipelineSpec, results: SuiteResult[]): string[] {
  const breaches: string[] = [];
  for (const [i, suite] of (spec.test.suites ?? []).entries()) {
    const got = results.find((r) => r.name === suite.name);
    if (!got) continue;
    for (const [side, bounds] of [['min', suite.min], ['max', suite.max]] as const) {
      for (const [metric, bound] of Object.entries(bounds ?? {}) as Array<[string, number]>) {
        const value = metric === 'perplexity' ? got.perplexity!.value : got.metrics[metric].value;
        if (side === 'min' ? value < bound : value > bound) {
          const shown = metric === 'perplexity' ? `${value.toFixed(3)} on ${got.perplexity!.n} records` : describeInterval(got.metrics[metric]);
          breaches.push(`suite ${suite.name}'s ${metric} ${shown} is ${side === 'min' ? 'below' : 'above'} test.suites.${i}.${side}.${metric} ${bound}`);
        }
      }
    }
  }
  return breaches;
}

/** The spec's judge as the trainer's `judge` takes it: the run's reward model, or a catalog model as an LM judge. */
async function stageJudge(deps: Deps, runId: string, judge: string, field: string, dir: string): Promise<{ judge: string; kind: 'reward' | 'lm' }> {
  if (judge.startsWith('catalog:')) return { judge: await stageCatalogModel(deps, judge.slice('catalog:'.length), field), kind: 'lm' };
  const row = await deps.db
    .selectFrom('artifacts')
    .select(['uri', 'sha256', 'bytes'])
    .where('run_id', '=', runId)
    .where('kind', '=', 'reward-model')
    .orderBy('id', 'desc')
    .executeTakeFirst();
  // The spec check makes sure rlhf.method is rl; a run whose RLHF stage recorded no reward model cannot be judged by one.
  if (!row) throw badInput(`${field}: "reward" judges with this run's reward model, and its RLHF stage recorded none`);
  return { judge: await deps.store.download({ ...row, bytes: Number(row.bytes), kind: 'reward-model' }, path.join(dir, 'reward-model.tar')), kind: 'reward' };
}

async function judgeSuite(
  deps: Deps,
  input: SuiteInput,
  suite: TestSuiteSpec,
  index: number,
  cleanedPath: string,
  dir: string,
): Promise<{ winRate: Interval; summary: SuiteJudgement; verdicts: Map<string, JudgeVerdict> }> {
  const prompts = path.join(dir, 'judge-prompts.jsonl');
  const sink = new JsonlWriter(prompts);
  for await (const r of readRecords(cleanedPath)) {
    const asked = promptAndReference(r);
    if (!asked) continue;
    await sink.write({ key: r.key, ...(typeof asked.prompt === 'string' ? { prompt: asked.prompt } : { messages: asked.prompt }), reference: asked.reference });
  }
  await sink.close();
  const opponent = await input.opponent();
  const judge = await stageJudge(deps, input.runId, suite.judge!, `test.suites.${index}.judge`, dir);
  const ctx = Context.current();
  const { finished } = await runTrainer(
    deps,
    'judge',
    {
      model_a: input.modelTar,
      ...(opponent.kind === 'serving'
        ? { model_b: opponent.modelTar }
        : { model_b: opponent.checkpoint, tokenizer: opponent.tokenizer, ...(opponent.baseModel ? { base_model: opponent.baseModel } : {}) }),
      prompts,
      ...judge,
      max_new_tokens: input.spec.test.maxNewTokens,
      device: 'auto',
      output_dir: path.join(dir, 'judge'),
    },
    dir,
    (e) => {
      if (e.event === 'progress') ctx.heartbeat({ suite: suite.name, [String(e.what)]: `${e.done}/${e.total}` });
    },
  );
  type Pair = { key: string; answer_b: string; verdict_ab: string | null; verdict_ba: string | null; reply_ab: string | null; reply_ba: string | null; outcome: JudgeVerdict['outcome']; disagreed: boolean };
  const report = JSON.parse(await readFile(path.join(dir, 'judge', 'judge.json'), 'utf8')) as { pairs: Pair[] };
  const agreement = finished.agreement as SuiteJudgement['agreement'];
  return {
    winRate: finished.win_rate as Interval,
    summary: {
      judge: suite.judge!,
      against: opponent.kind === 'serving' ? { kind: 'serving', modelVersionId: opponent.modelVersionId, version: opponent.version } : { kind: 'untrained' },
      pairs: Number(finished.pairs),
      wins: Number(finished.wins),
      losses: Number(finished.losses),
      ties: Number(finished.ties),
      noVerdict: Number(finished.no_verdict),
      disagreed: Number(finished.disagreed),
      agreement,
    },
    verdicts: new Map(
      report.pairs.map((p) => [p.key, { outcome: p.outcome, verdictAB: p.verdict_ab, verdictBA: p.verdict_ba, replyAB: p.reply_ab, replyBA: p.reply_ba, otherAnswer: p.answer_b, disagreed: p.disagreed }]),
    ),
  };
}
