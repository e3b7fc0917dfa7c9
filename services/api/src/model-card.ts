/**
 * A model version's model card, the written report a model ships with: Hugging Face's model-card format (a
 * README.md whose YAML metadata block carries base_model, library_name, tags, datasets and a model-index of
 * results), rendered from what the run recorded: base model, data set version with its counts and cleaning
 * summary, training and RLHF settings, every test figure with its n and 95% interval, the comparison with the
 * model that was serving, and who approved it and when. Rendered on request, so a decision made after the test
 * is in it. `renderModelCard` is pure (tests call it directly); `modelCardOf` gathers its input.
 */
import type { ChampionComparison, CleanResult, IngestResult, Interval, OptimizeResult, RlhfResult, SuiteResult, TestResult, ValidateResult } from '@tempered/contract';
import { describeInterval } from '@tempered/contract';
import type { Db } from '@tempered/db';
import type { PipelineSpec } from '@tempered/spec';
import { stringify } from 'yaml';

export interface ModelCardInput {
  model: { id: string; name: string; version: number; runId: string; sha256: string; createdAt: string };
  spec: PipelineSpec;
  /** The catalog entry of `model.base.name`, when the model was fine-tuned from one. */
  baseModel?: { name: string; source: string; license: string; parameters: number };
  /** The stages' summaries as the workflow records them (its `stage(…, summarize)`): figures, no artifact references. */
  stages: {
    ingest?: IngestResult['counts'] & { datasetVersionId: string };
    clean?: CleanResult['counts'];
    train?: { steps: number; initialLoss: number; finalLoss: number };
    validate?: Pick<ValidateResult, 'bestStep' | 'valLoss' | 'initialValLoss'>;
    rlhf?: Pick<RlhfResult, 'method' | 'steps' | 'rewardAccuracy'>;
    test?: TestResult;
    optimize?: OptimizeResult;
  };
  approvals: Array<{ decision: string; approver: string | null; comment: string | null; decidedAt: string }>;
  /** Completed on-demand and drift evaluations of this version since (`tempered eval`), newest first. */
  evaluations?: Array<{ id: string; requestedBy: string; finishedAt: string; results: SuiteResult[]; breaches: string[] }>;
}

const f3 = (x: number) => x.toFixed(3);
/** The most recent evaluations a card lists. */
const MAX_CARD_EVALUATIONS = 10;

type Row = { name: string; type: string; value: number; interval?: Interval; n?: number };

function results(test: TestResult | undefined): Row[] {
  if (!test) return [];
  const rows: Row[] = [
    { name: 'Exact match', type: 'exact_match', value: test.exactMatch, interval: test.intervals?.exactMatch },
  ];
  const c = test.classification;
  if (c) {
    rows.push({ name: 'Label accuracy', type: 'accuracy', value: c.accuracy, interval: test.intervals?.accuracy });
    rows.push({ name: 'Macro-F1', type: 'f1', value: c.macroF1, interval: test.intervals?.macroF1 });
  }
  rows.push({ name: 'Test loss', type: 'loss', value: test.loss }, { name: 'Perplexity', type: 'perplexity', value: test.perplexity });
  for (const suite of test.suites ?? []) {
    for (const [metric, interval] of Object.entries(suite.metrics)) rows.push({ name: `${suite.name}: ${metric}`, type: metric, value: interval.value, interval });
    if (suite.perplexity) rows.push({ name: `${suite.name}: perplexity`, type: 'perplexity', value: suite.perplexity.value, n: suite.perplexity.n });
  }
  return rows;
}

/** What a suite's figures alone do not say: who judged its win rate against whom and how the pairs fell, and the unsafe rate before the output filter. */
function suiteNotes(suites: SuiteResult[]): string[] {
  const lines: string[] = [];
  for (const s of suites) {
    if (s.judged) {
      const j = s.judged;
      const against = j.against.kind === 'serving' ? `the serving version v${j.against.version}` : 'the untrained model';
      lines.push(
        `- ${s.name}: win rate judged by ${j.judge} against ${against}, each of ${j.pairs} pairs in both orders: ${j.wins} wins, ${j.losses} losses, ${j.ties} ties, ${j.noVerdict} without a verdict, ${j.disagreed} disagreed; the judge agreed with the reference rule on ${j.agreement.agreed} of ${j.agreement.decided} pairs it decides`,
      );
    }
    if (s.unsafeBeforeFilter) lines.push(`- ${s.name}: unsafe before the gateway's output filter ${describeInterval(s.unsafeBeforeFilter)}; after it ${s.metrics.unsafe_rate ? describeInterval(s.metrics.unsafe_rate) : 'not measured'}`);
    if (s.quarantined || s.removed) lines.push(`- ${s.name}: ${s.input} records read, ${s.quarantined} quarantined, ${s.removed} empty after cleaning`);
  }
  return lines;
}

function championSection(c: ChampionComparison): string[] {
  const lines = [
    `Compared with the version that was serving (v${c.version}) on the same ${c.examples} test records:`,
    '',
    `- exact match ${f3(c.challengerExactMatch)} against ${f3(c.championExactMatch)}; margin asked for: ${c.margin}`,
  ];
  if (c.difference) lines.push(`- difference ${describeInterval(c.difference, 'paired records')}: ${c.verdict}`);
  if (c.pValue !== undefined) lines.push(`- McNemar's exact test: p = ${c.pValue.toPrecision(2)}`);
  if (c.regressions !== undefined) lines.push(`- ${c.regressions} records the serving version answered right are answered wrong by this one`);
  lines.push(`- ${c.challengerWins ? 'it passed the champion rule' : 'it did not pass the champion rule: deployed only by an override'}`);
  return lines;
}

export function renderModelCard(input: ModelCardInput): string {
  const { model, spec, baseModel, stages, approvals } = input;
  const { ingest, clean, train, validate, rlhf, test } = stages;
  const figures = results(test);
  const classifier = spec.model.type === 'tfidf-logreg';
  const base = spec.model.base;
  const baseName = baseModel ? baseModel.source : base && 'uri' in base ? base.uri : undefined;
  const meta: Record<string, unknown> = {
    ...(baseName ? { base_model: baseName } : {}),
    ...(baseModel ? { license: baseModel.license } : {}),
    library_name: classifier ? 'sklearn' : spec.train.lora ? 'peft' : 'transformers',
    pipeline_tag: classifier ? 'text-classification' : 'text-generation',
    tags: ['tempered', ...(spec.train.lora ? ['lora'] : []), ...(rlhf ? [rlhf.method] : [])],
    ...(ingest ? { datasets: [ingest.datasetVersionId] } : {}),
    'model-index': [
      {
        name: `${model.name}-v${model.version}`,
        results: figures.length
          ? [
              {
                task: { type: 'text-generation' },
                dataset: { name: `${spec.name} test split`, type: ingest?.datasetVersionId ?? spec.name, split: 'test' },
                metrics: figures.map((r) => ({ type: r.type, value: Number(r.value.toFixed(6)), name: r.name })),
              },
            ]
          : [],
      },
    ],
  };
  const md: string[] = ['---', stringify(meta).trimEnd(), '---', '', `# ${model.name} v${model.version}`, ''];
  md.push(
    spec.description ?? `A model trained by the Tempered pipeline \`${spec.name}\`.`,
    '',
    `- model version: \`${model.id}\`, created ${model.createdAt}, from run \`${model.runId}\``,
    `- weights: sha256 \`${model.sha256}\``,
    '',
    '## Base model',
    '',
    baseModel
      ? `Fine-tuned from \`${baseModel.name}\` (${baseModel.source}, ${(baseModel.parameters / 1e6).toFixed(0)}M parameters, license ${baseModel.license}).`
      : baseName
        ? `Fine-tuned from \`${baseName}\`.`
        : 'Trained from scratch (no pretrained base).',
    '',
    '## Data',
    '',
  );
  if (ingest) md.push(`- data set version \`${ingest.datasetVersionId}\`: ${ingest.input} records read, ${ingest.kept} kept, ${ingest.quarantined} quarantined`);
  if (clean) md.push(`- cleaning: ${clean.kept} of ${clean.input} kept, ${clean.removed} removed, ${clean.changed} changed by a text rule`);
  md.push('', '## Training', '');
  if (classifier) {
    md.push(`- a classifier, not a language model: TF-IDF of the prompt's token ${spec.model.classifier.ngrams}-grams and a logistic regression (C = ${spec.model.classifier.c}) over ${spec.test.choices?.join(', ')} (scikit-learn)`);
  } else {
    const how = spec.train.lora ? `LoRA (r = ${spec.train.lora.r})` : base ? 'full fine-tuning' : 'from random weights';
    md.push(`- ${how}, ${spec.train.steps} steps, batch ${spec.train.batchSize}, learning rate ${spec.train.learningRate}`);
  }
  if (train) md.push(`- training loss ${train.initialLoss.toFixed(4)} → ${train.finalLoss.toFixed(4)}`);
  if (validate) md.push(`- validation loss ${validate.initialValLoss.toFixed(4)} → ${validate.valLoss.toFixed(4)} (best checkpoint: step ${validate.bestStep})`);
  md.push(rlhf ? `- RLHF: ${rlhf.method}, ${rlhf.steps} steps${rlhf.rewardAccuracy !== undefined ? `, reward accuracy ${f3(rlhf.rewardAccuracy)}` : ''}` : '- RLHF: none');
  md.push('', '## Evaluation', '');
  if (figures.length) {
    md.push('| metric | value | 95% interval | n |', '| --- | --- | --- | --- |');
    for (const r of figures) md.push(`| ${r.name} | ${f3(r.value)} | ${r.interval ? `${f3(r.interval.low)} to ${f3(r.interval.high)}` : ''} | ${r.interval?.n ?? r.n ?? test!.examples} |`);
    md.push('', `The untrained model's exact match: ${f3(test!.baselineExactMatch)}.`);
    if (test!.classification) md.push(`The base model zero-shot's label accuracy: ${f3(test!.classification.baselineAccuracy)}.`);
    const notes = suiteNotes(test!.suites ?? []);
    if (notes.length) md.push('', ...notes);
    if (test!.champion) md.push('', ...championSection(test!.champion));
  } else md.push('Not tested.');
  if (stages.optimize?.forms?.length) md.push('', ...optimizeSection(stages.optimize));
  if (input.evaluations?.length) {
    md.push('', '## Evaluations since', '', 'The test suites run again on this version (`tempered eval`, drift schedules):', '');
    for (const e of input.evaluations) {
      const figures = e.results.flatMap((r) => Object.entries(r.metrics).map(([m, ci]) => `${r.name} ${m} ${describeInterval(ci)}`));
      md.push(`- ${e.finishedAt}, requested by ${e.requestedBy}: ${figures.join('; ') || 'no figures'}${e.breaches.length ? `. Out of bounds: ${e.breaches.join('; ')}` : ''}`);
    }
  }
  md.push('', '## Approval', '');
  if (approvals.length === 0) md.push('Not decided yet.');
  for (const a of approvals) md.push(`- ${a.decision} by ${a.approver ?? 'nobody (the gate expired)'} at ${a.decidedAt}${a.comment ? `: "${a.comment}"` : ''}`);
  md.push('', '## Use', '', `Served through the gateway's OpenAI-compatible API as model \`${model.name}\` once deployed; downloadable from the Models page.`, '');
  return md.join('\n');
}

/** The GGUF exports the optimize stage scored: each figure of each type beside the model's own, size and speed. */
function optimizeSection(o: OptimizeResult): string[] {
  const md = ['## Optimized forms (GGUF)', ''];
  md.push(`| | model | ${o.forms.map((f) => f.type).join(' | ')} |`, `| --- | --- | ${o.forms.map(() => '---').join(' | ')} |`);
  md.push(`| size | | ${o.forms.map((f) => `${(f.bytes / 1e6).toFixed(1)} MB`).join(' | ')} |`);
  md.push(`| answer tokens/s (llama.cpp, one prompt at a time) | | ${o.forms.map((f) => (f.tokensPerSec === null ? '' : f.tokensPerSec.toFixed(1))).join(' | ')} |`);
  for (const m of o.forms[0].metrics) {
    const of = (f: OptimizeResult['forms'][number]) => f.metrics.find((x) => x.scope === m.scope && x.metric === m.metric);
    const paired = (x: NonNullable<ReturnType<typeof of>>) => (x.changeInterval ? ` (change ${f3(x.change)}, paired 95% interval ${f3(x.changeInterval.low)} to ${f3(x.changeInterval.high)})` : '');
    const cell = (x: ReturnType<typeof of>) => (x ? `${f3(x.value)}${paired(x)}${x.within ? '' : ' (beyond tolerance)'}` : '');
    md.push(`| ${m.scope === 'test' ? 'held-out' : m.scope}: ${m.metric} | ${f3(m.reference)} | ${o.forms.map((f) => cell(of(f))).join(' | ')} |`);
  }
  md.push('', `Each type may lose at most ${o.tolerance} of a score (perplexity: ${(o.tolerance * 100).toFixed(0)}% relative) against the model it was exported from.`);
  if (o.deploys) md.push(`llama.cpp serves ${o.deploys}.`);
  for (const s of o.skipped ?? []) md.push(`Not rescored: ${s.scope} ${s.metric} (${s.reason}).`);
  return md;
}

/** The card's input from the database, or undefined when there is no such model version. */
export async function modelCardOf(db: Db, modelVersionId: string): Promise<ModelCardInput | undefined> {
  const mv = await db.selectFrom('model_versions').selectAll().where('id', '=', modelVersionId).executeTakeFirst();
  if (!mv) return undefined;
  const [run, stages, approvals, evaluations] = await Promise.all([
    db.selectFrom('runs').select(['spec']).where('id', '=', mv.run_id).executeTakeFirstOrThrow(),
    db.selectFrom('stages').select(['name', 'summary']).where('run_id', '=', mv.run_id).execute(),
    db.selectFrom('approvals').selectAll().where('run_id', '=', mv.run_id).orderBy('id').execute(),
    db
      .selectFrom('evaluations')
      .select(['id', 'requested_by', 'finished_at', 'results', 'breaches'])
      .where('model_version_id', '=', modelVersionId)
      .where('status', '=', 'completed')
      .orderBy('finished_at', 'desc')
      .limit(MAX_CARD_EVALUATIONS)
      .execute(),
  ]);
  const spec = run.spec as PipelineSpec;
  const base = spec.model.base && 'name' in spec.model.base ? spec.model.base.name : undefined;
  const catalog = base ? await db.selectFrom('base_models').select(['name', 'source', 'license', 'parameters']).where('name', '=', base).executeTakeFirst() : undefined;
  const summary = (name: string) => (stages.find((s) => s.name === name)?.summary ?? undefined) as never;
  return {
    model: { id: mv.id, name: mv.name, version: mv.version, runId: mv.run_id, sha256: mv.sha256, createdAt: mv.created_at.toISOString() },
    spec,
    ...(catalog ? { baseModel: { ...catalog, parameters: Number(catalog.parameters) } } : {}),
    stages: { ingest: summary('ingest'), clean: summary('clean'), train: summary('train'), validate: summary('validate'), rlhf: summary('rlhf'), test: summary('test'), optimize: summary('optimize') },
    approvals: approvals.map((a) => ({ decision: a.decision, approver: a.approver, comment: a.comment, decidedAt: a.decided_at.toISOString() })),
    evaluations: evaluations.map((e) => ({
      id: e.id,
      requestedBy: e.requested_by,
      finishedAt: e.finished_at!.toISOString(),
      results: e.results as SuiteResult[],
      breaches: (e.breaches as string[] | null) ?? [],
    })),
  };
}
