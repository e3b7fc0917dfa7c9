/**
 * Test suites (`test.suites`): named evaluation sets beside the held-out split. Each suite's file is read as
 * ingest reads data (any format; a bad row is quarantined and counted, never fatal), its texts normalized by the
 * spec's clean rules (so it reads like the training data; only records left empty are removed), encoded by the
 * candidate model's own tokenizer and chat format, then answered and scored by the trainer's `eval` with each
 * metric's n and bootstrap 95% interval. The suite's min/max gates are the test stage's to apply.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { SuiteResult } from '@tempered/contract';
import type { PipelineSpec, TestSuiteSpec } from '@tempered/spec';
import { type Deps, badInput, log } from './context';
import { cleanFile } from './clean-core';
import { SourceError, ingestFiles } from './ingest-core';
import { readingOf } from './ingest';
import { stageSource } from './sources';
import { runTrainer } from './trainer';

/** eval's figure name of each suite metric that comes from answers (perplexity comes from the loss). */
const TEXT_METRICS = ['rouge_l', 'chrf'] as const;

export async function runSuite(
  deps: Deps,
  input: { spec: PipelineSpec; specDir?: string; modelTar: string },
  suite: TestSuiteSpec,
  index: number,
  scratch: string,
): Promise<SuiteResult> {
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
  const cleaned = await cleanFile(datasetPath, cleanedPath, { ...spec.clean, dedupe: 'none', minChars: 0, maxChars: Number.MAX_SAFE_INTEGER });
  const result: SuiteResult = { name: suite.name, input: ingested.input, quarantined: ingested.quarantined, removed: ingested.kept - cleaned.kept, examples: 0, metrics: {} };
  if (cleaned.kept === 0) throw badInput(`test suite ${suite.name}: no usable records in ${suite.source.uri} (${ingested.quarantined} quarantined, ${result.removed} empty after cleaning)`);

  const ctx = Context.current();
  const encoded = path.join(dir, 'encoded');
  await runTrainer(deps, 'tokenize', { input: cleanedPath, tokenizer: input.modelTar, output_dir: encoded }, dir);
  const wants = new Set(suite.metrics);
  const textMetrics = TEXT_METRICS.filter((m) => wants.has(m));
  const { finished } = await runTrainer(
    deps,
    'eval',
    {
      model: input.modelTar,
      shard: path.join(encoded, 'encoded.shard'),
      batch_size: spec.train.batchSize,
      generate: true,
      max_new_tokens: spec.test.maxNewTokens,
      device: 'auto',
      output_dir: path.join(dir, 'eval'),
      loss_targets: wants.has('perplexity') ? [0] : [],
      ...(wants.has('accuracy') || wants.has('macro_f1') ? { choices: spec.test.choices } : {}),
      ...(textMetrics.length ? { text_metrics: textMetrics } : {}),
      ...(spec.model.maxSeqLength ? { max_seq_length: spec.model.maxSeqLength } : {}),
    },
    dir,
    (e) => {
      if (e.event === 'progress') ctx.heartbeat({ suite: suite.name, [String(e.what)]: `${e.done}/${e.total}` });
    },
  );
  const [scored] = finished.results as Array<{ generated?: number; examples: number; perplexity: number | null; intervals?: Record<string, SuiteResult['metrics'][string]> }>;
  result.examples = scored.generated ?? 0;
  for (const metric of suite.metrics) {
    if (metric === 'perplexity') result.perplexity = { value: scored.perplexity!, n: scored.examples };
    else if (scored.intervals?.[metric]) result.metrics[metric] = scored.intervals[metric];
  }
  log('suite tested', { ...result });
  return result;
}
