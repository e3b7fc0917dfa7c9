/**
 * test: held-out metrics of the model about to be deployed, on the test split: loss, perplexity and the
 * task's exact match by greedy generation, next to the same figures for the untrained (step 0) model, then
 * the spec's gates.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, TestResult } from '@tempered/workflows';
import { recordMetrics } from '@tempered/db';
import { type Deps, gateFailed, log, withScratch } from './context';
import { runTrainer } from './trainer';

export async function test(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; model: ArtifactRef; baseline: ArtifactRef; testShard: ArtifactRef; tokenizer: ArtifactRef },
): Promise<TestResult> {
  const { runId, spec } = input;
  const ctx = Context.current();
  return withScratch(deps, async (dir) => {
    const [shard, tokenizer, baseline, model] = await Promise.all([
      deps.store.download(input.testShard, path.join(dir, 'test.shard')),
      deps.store.download(input.tokenizer, path.join(dir, 'tokenizer.json')),
      deps.store.download(input.baseline, path.join(dir, 'baseline.pt')),
      deps.store.download(input.model, path.join(dir, 'model.tar')),
    ]);
    const { finished } = await runTrainer(
      deps,
      'eval',
      {
        checkpoints: [baseline, model],
        shard,
        tokenizer,
        batch_size: spec.train.batchSize,
        generate: true,
        max_new_tokens: spec.test.maxNewTokens,
        device: 'auto',
        output_dir: path.join(dir, 'eval'),
      },
      dir,
      (e) => {
        if (e.event === 'eval') ctx.heartbeat({ evaluated: e.checkpoint });
      },
    );
    const [before, after] = finished.results as Array<{ loss: number; perplexity: number; exact_match: number; examples: number }>;
    const result: TestResult = {
      loss: after.loss,
      perplexity: after.perplexity,
      exactMatch: after.exact_match,
      baselineExactMatch: before.exact_match,
      examples: after.examples,
    };
    await recordMetrics(deps.db, runId, 'test', [
      { name: 'test_loss', step: 0, value: result.loss },
      { name: 'test_perplexity', step: 0, value: result.perplexity },
      { name: 'test_exact_match', step: 0, value: result.exactMatch },
      { name: 'baseline_exact_match', step: 0, value: result.baselineExactMatch },
    ]);
    log('tested', { ...result });
    const { minExactMatch, maxLoss } = spec.test;
    if (minExactMatch !== undefined && result.exactMatch < minExactMatch) {
      throw gateFailed(`test gate failed: exact match ${result.exactMatch.toFixed(3)} is below test.minExactMatch ${minExactMatch}`);
    }
    if (maxLoss !== undefined && result.loss > maxLoss) {
      throw gateFailed(`test gate failed: test loss ${result.loss.toFixed(4)} is above test.maxLoss ${maxLoss}`);
    }
    return result;
  });
}
