/**
 * validate: validation loss and perplexity of every checkpoint, the best one exported as a model, and the
 * spec's threshold gate (a failed gate is final: its message gives the figure and the threshold).
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, ValidateResult } from '@tempered/contract';
import { node, recordArtifacts, recordLineage, recordMetrics } from '@tempered/db';
import { type Deps, gateFailed, log, withScratch } from './context';
import { cachedStage, marked } from './cache';
import { loraBase } from './base-models';
import { runTrainer } from './trainer';

/** What the cache keeps of a validation: the result, and what the run's bookkeeping needs besides it. */
interface Validated {
  result: ValidateResult;
  /** Index in `input.checkpoints` of the exported checkpoint. */
  bestIndex: number;
  adapter?: ArtifactRef;
}

/** The spec's thresholds, checked on a computed result before its export and on a reused one alike. */
function checkGate(spec: PipelineSpec, best: { loss: number; perplexity: number }): void {
  const { maxLoss, maxPerplexity } = spec.validate;
  if (maxLoss !== undefined && best.loss > maxLoss) {
    throw gateFailed(`validation gate failed: best validation loss ${best.loss.toFixed(4)} is above validate.maxLoss ${maxLoss}`);
  }
  if (maxPerplexity !== undefined && best.perplexity > maxPerplexity) {
    throw gateFailed(`validation gate failed: perplexity ${best.perplexity.toFixed(3)} is above validate.maxPerplexity ${maxPerplexity}`);
  }
}

export async function validate(
  deps: Deps,
  input: {
    runId: string;
    spec: PipelineSpec;
    /** Where the spec file was (resolves a base model given by a relative path); absent in older runs. */
    specDir?: string;
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
    const outcome = await cachedStage<Validated>(
      deps,
      {
        runId,
        stage: 'validate',
        spec,
        // Cache key: the digests of the checkpoints (in order), the validation shard and the tokenizer; the
        // evaluation batch size (`train.batchSize`); the candidate's label (it names the metric series); and
        // (added by the cache) the trainer's code digest. Not the `validate` thresholds: they decide pass or
        // fail, not the figures or the export, and are checked again on a reused result.
        config: { batchSize: spec.train.batchSize, candidate: input.candidate ?? null },
        inputs: { checkpoints: input.checkpoints.map((c) => c.sha256), validationShard: input.validationShard.sha256, tokenizer: input.tokenizer.sha256 },
        metrics: { series: input.candidate },
      },
      async () => {
        const shard = await deps.store.download(input.validationShard, path.join(dir, 'validation.shard'));
        const tokenizer = await deps.store.download(input.tokenizer, path.join(dir, 'tokenizer.json'));
        const checkpoints = await Promise.all(
          input.checkpoints.map((ref, i) => deps.store.download(ref, path.join(dir, 'checkpoints', `${i}.pt`))),
        );
        // LoRA checkpoints of a base model hold the adapter only: eval and export are given the base again.
        const base = await loraBase(deps, runId, spec, input.specDir, dir);
        const { finished } = await runTrainer(
          deps,
          'eval',
          {
            checkpoints,
            shard,
            tokenizer,
            batch_size: spec.train.batchSize,
            device: 'auto',
            output_dir: path.join(dir, 'eval'),
            ...base,
            ...(spec.model.maxSeqLength ? { max_seq_length: spec.model.maxSeqLength } : {}),
          },
          dir,
          (e) => {
            if (e.event === 'eval') ctx.heartbeat({ evaluated: e.checkpoint });
            else if (e.event === 'progress') ctx.heartbeat({ [String(e.what)]: `${e.done}/${e.total}` });
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
        checkGate(spec, best);

        const exportDir = path.join(dir, 'export');
        const exported = await runTrainer(deps, 'export', { checkpoint: checkpoints[bestIndex], tokenizer, output_dir: exportDir, ...base }, dir);
        // A LoRA run delivers the merged model (what later stages use) and the adapter alone.
        const model = await deps.store.putFile(path.join(exportDir, 'model.tar'), 'model', 'model.tar');
        const adapter = exported.finished.adapter_tar ? await deps.store.putFile(String(exported.finished.adapter_tar), 'adapter', 'adapter.tar') : undefined;
        log('validated', { bestStep: best.step, valLoss: best.loss, initialValLoss: initial.loss });
        return {
          result: { best: model, bestStep: best.step, valLoss: best.loss, perplexity: best.perplexity, initialValLoss: initial.loss },
          bestIndex,
          ...(adapter ? { adapter } : {}),
        };
      },
      {
        artifacts: (v) => (v.adapter ? [v.result.best, v.adapter] : [v.result.best]),
        record: async (v) => {
          // A reused result must pass this run's gate before the run gets its model.
          checkGate(spec, { loss: v.result.valLoss, perplexity: v.result.perplexity });
          const { best: model } = v.result;
          await recordArtifacts(deps.db, runId, 'validate', v.adapter ? [model, v.adapter] : [model]);
          await recordLineage(deps.db, runId, [
            { parent: node.artifact(input.checkpoints[v.bestIndex]), child: node.artifact(model), relation: 'exported-as' },
            ...(v.adapter ? [{ parent: node.artifact(input.checkpoints[v.bestIndex]), child: node.artifact(v.adapter), relation: 'adapter-of' }] : []),
          ]);
        },
      },
    );
    return marked(outcome.value.result, outcome);
  });
}
