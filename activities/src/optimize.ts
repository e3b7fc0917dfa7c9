/**
 * optimize (after test, when the spec has `optimize`): the model exported to GGUF by llama.cpp's own converter
 * and quantizer (f16, q8_0, q4_k_m; ./gguf.ts, kept as artifacts a llamacpp deployment then serves), each type
 * asked in `optimize.types` scored by llama.cpp on the held-out split and on every test suite exactly as the test
 * stage scored the model itself (trainer `eval` on the same shards, same metrics, intervals), and each figure set
 * beside the model's: its change and whether the loss stays within `optimize.tolerance`. Size and answer tokens/s
 * come with each type. With `deploy.engine: llamacpp`, a served type that loses more fails the stage's gate, naming
 * the metric and the types that would pass.
 *
 * Not rescored: a suite's judged win_rate (the judge compares two PyTorch models' answers in one trainer call).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { type ArtifactRef, type Interval, metricLoss, type OptimizedForm, type OptimizedMetric, type OptimizeResult, type TestAnswer, type TestResult } from '@tempered/contract';
import { recordMetrics } from '@tempered/db';
import { DEFAULT_GGUF_TYPE, type GgufType, type PipelineSpec } from '@tempered/spec';
import { type Deps, gateFailed, log, withScratch } from './context';
import { ensureGgufs, exportedGguf } from './gguf';
import { prepareSuite, scoreSuite } from './suites';
import { runTrainer } from './trainer';

export async function optimize(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; specDir?: string; model: ArtifactRef; testShard: ArtifactRef; tested: TestResult },
): Promise<OptimizeResult> {
  const { runId, spec } = input;
  const { types, tolerance } = spec.optimize!;
  const ctx = Context.current();
  return withScratch(
    deps,
    async (dir) => {
      const [modelTar, shard] = await Promise.all([
        deps.store.download(input.model, path.join(dir, 'model.tar')),
        deps.store.download(input.testShard, path.join(dir, 'test.shard')),
      ]);
      const files = await ensureGgufs(deps, { runId, stage: 'optimize', model: input.model, modelTar: async () => modelTar, scratch: dir, checkPrompt: spec.deploy.smokePrompt, field: 'optimize' });
      // Local copies: made just now in this scratch directory, or downloaded when an earlier attempt stored them.
      const local = await Promise.all(types.map((t) => (existsSync(exportedGguf(dir, t)) ? exportedGguf(dir, t) : deps.store.download(files[t], path.join(dir, `model-${t}.gguf`)))));
      const metrics = new Map<GgufType, OptimizedMetric[]>(types.map((t) => [t, []]));
      /** Each type's answers per scope (`<type>|test`, `<type>|<suite>`), for the paired intervals of the changes. */
      const answered = new Map<string, Scorable[]>();
      const add = (type: GgufType, scope: string, metric: string, value: number, reference: number, interval?: Interval) => {
        const loss = metricLoss(metric, value, reference);
        metrics.get(type)!.push({ scope, metric, value, ...(interval ? { interval } : {}), reference, change: value - reference, loss, within: loss <= tolerance + 1e-9 });
      };

      // The held-out split, as the test stage scored the model.
      const { choices } = spec.test;
      const { finished } = await runTrainer(
        deps,
        'eval',
        {
          checkpoints: local,
          shard,
          tokenizer: modelTar,
          batch_size: spec.train.batchSize,
          generate: true,
          max_new_tokens: spec.test.maxNewTokens,
          device: 'cpu',
          output_dir: path.join(dir, 'eval'),
          ...(choices ? { choices } : {}),
          ...(spec.model.maxSeqLength ? { max_seq_length: spec.model.maxSeqLength } : {}),
        },
        dir,
        (e) => {
          if (e.event === 'eval') ctx.heartbeat({ scored: path.basename(String(e.checkpoint)) });
          else if (e.event === 'progress') ctx.heartbeat({ [String(e.what)]: `${e.done}/${e.total}` });
        },
      );
      type Scored = { perplexity: number; exact_match: number; accuracy?: number; macro_f1?: number; tokens_per_sec: number | null; intervals: Record<string, Interval> };
      const heldOut = finished.results as Scored[];
      type Prediction = { key: string; correct: boolean; label?: string | null; reference_label?: string | null };
      const report = JSON.parse(await readFile(path.join(dir, 'eval', 'eval.json'), 'utf8')) as { results: Array<{ predictions?: Prediction[] }> };
      types.forEach((t, i) => answered.set(`${t}|test`, (report.results[i].predictions ?? []).map((p) => ({ key: p.key, correct: p.correct, label: p.label, referenceLabel: p.reference_label }))));
      const { tested } = input;
      types.forEach((t, i) => {
        const r = heldOut[i];
        add(t, 'test', 'exact_match', r.exact_match, tested.exactMatch, r.intervals?.exact_match);
        if (tested.classification && r.accuracy !== undefined && r.macro_f1 !== undefined) {
          add(t, 'test', 'accuracy', r.accuracy, tested.classification.accuracy, r.intervals?.accuracy);
          add(t, 'test', 'macro_f1', r.macro_f1, tested.classification.macroF1, r.intervals?.macro_f1);
        }
        add(t, 'test', 'perplexity', r.perplexity, tested.perplexity);
      });

      // Each suite, read, cleaned and encoded again as the test stage did (the same records, the same ids).
      const skipped: NonNullable<OptimizeResult['skipped']> = [];
      for (const [i, suite] of (spec.test.suites ?? []).entries()) {
        const reference = tested.suites?.find((s) => s.name === suite.name);
        if (!reference) continue;
        if (suite.metrics.includes('win_rate')) skipped.push({ scope: suite.name, metric: 'win_rate', reason: 'a judged comparison of two PyTorch models; not rescored on GGUF' });
        const prepared = await prepareSuite(deps, { spec, specDir: input.specDir, modelTar }, suite, i, dir);
        const scored = await scoreSuite(deps, spec, suite, prepared, local, { tokenizer: modelTar, name: 'gguf-eval' });
        types.forEach((t, j) => {
          answered.set(`${t}|${suite.name}`, scored[j].answers);
          for (const [metric, ci] of Object.entries(scored[j].metrics)) {
            const ref = reference.metrics[metric];
            if (ref) add(t, suite.name, metric, ci.value, ref.value, ci);
          }
          if (scored[j].perplexity && reference.perplexity) add(t, suite.name, 'perplexity', scored[j].perplexity!.value, reference.perplexity.value);
        });
      }

      await pairChanges(deps, runId, metrics, answered, dir);

      const forms: OptimizedForm[] = types.map((t, i) => {
        const { id: _id, type: _type, ...file } = files[t];
        const m = metrics.get(t)!;
        return { type: t, bytes: files[t].bytes, file, tokensPerSec: heldOut[i].tokens_per_sec, metrics: m, withinTolerance: m.every((x) => x.within) };
      });
      const deploys = spec.deploy.engine === 'llamacpp' ? (spec.deploy.quantization ?? DEFAULT_GGUF_TYPE) : undefined;
      const result: OptimizeResult = { tolerance, forms, ...(deploys ? { deploys } : {}), ...(skipped.length ? { skipped } : {}) };
      await recordMetrics(
        deps.db,
        runId,
        'optimize',
        forms.flatMap((f) => [
          { name: `optimize_${f.type}_bytes`, step: 0, value: f.bytes },
          ...(f.tokensPerSec !== null ? [{ name: `optimize_${f.type}_tokens_per_sec`, step: 0, value: f.tokensPerSec }] : []),
          ...f.metrics.map((m) => ({ name: `optimize_${f.type}_${m.scope === 'test' ? '' : `suite_${m.scope}_`}${m.metric}`, step: 0, value: m.value })),
        ]),
      );
      log('optimized', { tolerance, forms: forms.map((f) => ({ type: f.type, bytes: f.bytes, tokensPerSec: f.tokensPerSec, withinTolerance: f.withinTolerance })) });
      const served = deploys ? forms.find((f) => f.type === deploys) : undefined;
      if (served && !served.withinTolerance) throw gateFailed(`optimize gate failed: ${toleranceBreach(served, tolerance, forms)}`);
      return result;
    },
    'optimize',
  );
}

/** An answer as the paired intervals read it: right or wrong, and its label and the reference's. */
type Scorable = Pick<TestAnswer, 'key' | 'correct' | 'label' | 'referenceLabel'>;

/**
 * The paired bootstrap interval of each exact_match and accuracy change: this type's answer and the model's (the
 * test stage's stored answers) to the same record, scored 1 or 0, differenced record by record. A scope whose
 * records do not all match (an older run's answers) gets none.
 */
async function pairChanges(deps: Deps, runId: string, metrics: Map<GgufType, OptimizedMetric[]>, answered: Map<string, Scorable[]>, dir: string): Promise<void> {
  const rows = await deps.db.selectFrom('test_answers').select(['suite', 'key', 'correct', 'label', 'reference_label']).where('run_id', '=', runId).execute();
  const model = new Map(rows.map((r) => [`${r.suite ?? 'test'}|${r.key}`, { key: r.key, correct: r.correct, label: r.label, referenceLabel: r.reference_label }]));
  const score = (a: Scorable, metric: string) => Number(metric === 'accuracy' ? a.label != null && a.label === a.referenceLabel : a.correct);
  const names: string[] = [];
  const scores: number[][] = [];
  const targets: OptimizedMetric[] = [];
  for (const [type, list] of metrics) {
    for (const m of list) {
      if (m.metric !== 'exact_match' && m.metric !== 'accuracy') continue;
      const mine = answered.get(`${type}|${m.scope}`) ?? [];
      const theirs = mine.map((a) => model.get(`${m.scope}|${a.key}`));
      if (mine.length === 0 || theirs.some((t) => t === undefined)) continue;
      names.push(`${type}|${m.scope}|${m.metric}`);
      scores.push(mine.map((a, i) => score(a, m.metric) - score(theirs[i]!, m.metric)));
      targets.push(m);
    }
  }
  if (names.length === 0) return;
  const { finished } = await runTrainer(deps, 'interval', { names, scores }, dir);
  const intervals = finished.intervals as Record<string, Interval>;
  names.forEach((name, i) => (targets[i].changeInterval = intervals[name]));
}

/** Why a served type fails optimize.tolerance: its worst metric, and what would pass instead. */
export function toleranceBreach(form: OptimizedForm, tolerance: number, forms: OptimizedForm[]): string {
  const worst = form.metrics.reduce((a, b) => (b.loss > a.loss ? b : a));
  const where = worst.scope === 'test' ? 'the held-out split' : `suite ${worst.scope}`;
  const lost = worst.metric === 'perplexity' ? `${(worst.loss * 100).toFixed(1)}%` : worst.loss.toFixed(3);
  const passing = forms.filter((f) => f.withinTolerance).map((f) => f.type);
  const instead = passing.length ? `serve ${passing.join(' or ')} (deploy.quantization), ` : '';
  return (
    `llama.cpp would serve ${form.type}, which loses ${lost} of ${where}'s ${worst.metric} (${worst.value.toFixed(3)} against the model's ${worst.reference.toFixed(3)}), ` +
    `more than optimize.tolerance ${tolerance}: ${instead}serve the model itself (deploy.engine tempered), or raise the tolerance`
  );
}

