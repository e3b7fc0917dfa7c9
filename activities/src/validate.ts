/**
 * validate: validation loss and perplexity of every checkpoint, the best one exported as a model, and the
 * spec's threshold gate (a failed gate is final: its message gives the figure and the threshold).
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, ValidateResult } from '@tempered/workflows';
import { node, recordArtifacts, recordLineage, recordMetrics } from '@tempered/db';
import { type Deps, gateFailed, log, withScratch } from './context';
import { runTrainer } from './trainer';

export async function validate(
  deps: Deps,
  input: {
    runId: string;
    spec: PipelineSpec;
    checkpoints: ArtifactRef[];
    validationShard: ArtifactRef;
    tokenizer: ArtifactRef;
    /** The sweep candidate's label, which prefixes its metric names. */
    candidate?: string;
  },
): Promise<ValidateResult> {
  const { runId, spec } = input;
  const ctx = Context.current();
  return withScratch(deps, async (dir) => {
    const shard = await deps.store.download(input.validationShard, path.join(dir, 'validation.shard'));
    const tokenizer = await deps.store.download(input.tokenizer, path.join(dir, 'tokenizer.json'));
    const checkpoints = await Promise.all(
      input.checkpoints.map((ref, i) => deps.store.download(ref, path.join(dir, 'checkpoints', `${i}.pt`))),
    );
    const { finished } = await runTrainer(
      deps,
      'eval',
      { checkpoints, shard, tokenizer, batch_size: spec.train.batchSize, device: 'auto', output_dir: path.join(dir, 'eval') },
      dir,
      (e) => {
        if (e.event === 'eval') ctx.heartbeat({ evaluated: e.checkpoint });
      },
    );
    const prefix = input.candidate ? `${input.candidate}/` : '';
    const results = finished.results as Array<{ step: number; loss: number; perplexity: number }>;
    await recordMetrics(
      deps.db,
      runId,
      'validate',
      results.flatMap((r) => [
        { name: `${prefix}val_loss`, step: r.step, value: r.loss },
        { name: `${prefix}val_perplexity`, step: r.step, value: r.perplexity },
      ]),
    );
    const bestIndex = results.reduce((best, r, i) => (r.loss < results[best].loss ? i : best), 0);
    const best = results[bestIndex];
    const initial = results.reduce((first, r) => (r.step < first.step ? r : first), results[0]);

    const { maxLoss, maxPerplexity } = spec.validate;
    if (maxLoss !== undefined && best.loss > maxLoss) {
      throw gateFailed(`validation gate failed: best validation loss ${best.loss.toFixed(4)} is above validate.maxLoss ${maxLoss}`);
    }
    if (maxPerplexity !== undefined && best.perplexity > maxPerplexity) {
      throw gateFailed(`validation gate failed: perplexity ${best.perplexity.toFixed(3)} is above validate.maxPerplexity ${maxPerplexity}`);
    }

    const exportDir = path.join(dir, 'export');
    const exported = await runTrainer(deps, 'export', { checkpoint: checkpoints[bestIndex], tokenizer, output_dir: exportDir }, dir);
    // A LoRA run delivers the merged model (what later stages use) and the adapter alone.
    const model = await deps.store.putFile(path.join(exportDir, 'model.tar'), 'model', 'model.tar');
    const adapter = exported.finished.adapter_tar ? await deps.store.putFile(String(exported.finished.adapter_tar), 'adapter', 'adapter.tar') : undefined;
    await recordArtifacts(deps.db, runId, 'validate', adapter ? [model, adapter] : [model]);
    await recordLineage(deps.db, runId, [
      { parent: node.artifact(input.checkpoints[bestIndex]), child: node.artifact(model), relation: 'exported-as' },
      ...(adapter ? [{ parent: node.artifact(input.checkpoints[bestIndex]), child: node.artifact(adapter), relation: 'adapter-of' }] : []),
    ]);
    log('validated', { bestStep: best.step, valLoss: best.loss, initialValLoss: initial.loss });
    return { best: model, bestStep: best.step, valLoss: best.loss, perplexity: best.perplexity, initialValLoss: initial.loss };
  });
}
