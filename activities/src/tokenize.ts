/**
 * tokenize: trains a byte-level BPE tokenizer on the cleaned records (Python `tokenizers`: it takes the
 * vocabulary size and special tokens, which the npm binding cannot) and encodes every record into a binary
 * shard with loss masks over the responses. The shard format is in services/trainer/CONTRACT.md.
 */
import path from 'node:path';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, TokenizeResult } from '@tempered/contract';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, log, withScratch } from './context';
import { stageBaseModel } from './base-models';
import { cachedStage, marked } from './cache';
import { runTrainer } from './trainer';

export async function tokenize(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; specDir?: string; cleaned: ArtifactRef },
): Promise<TokenizeResult> {
  const { runId, spec } = input;
  return withScratch(deps, async (dir) => {
    // Fine-tuning a base model: encode with its own tokenizer instead of training one.
    const staged = await stageBaseModel(deps, runId, spec, input.specDir, dir);
    const base = staged?.path;
    const outcome = await cachedStage(
      deps,
      {
        runId,
        stage: 'tokenize',
        spec,
        // Cache key: the cleaned records' digest; with a base model, the base's digest (its tokenizer is used
        // and `tokenizer` settings are ignored), otherwise `tokenizer.vocabSize` and `minFrequency`, which are
        // all the trainer's tokenize command receives. The trainer's code digest is added by the cache.
        config: base ? { mode: 'base-model' } : { mode: 'train-bpe', vocabSize: spec.tokenizer.vocabSize, minFrequency: spec.tokenizer.minFrequency },
        inputs: { cleaned: input.cleaned.sha256, ...(staged ? { baseModel: staged.digest } : {}) },
      },
      async (): Promise<TokenizeResult> => {
        const cleanedPath = await deps.store.download(input.cleaned, path.join(dir, 'cleaned.jsonl'));
        const outDir = path.join(dir, 'out');
        const { finished } = await runTrainer(
          deps,
          'tokenize',
          base
            ? { input: cleanedPath, tokenizer: base, output_dir: outDir }
            : { input: cleanedPath, vocab_size: spec.tokenizer.vocabSize, min_frequency: spec.tokenizer.minFrequency, output_dir: outDir },
          dir,
        );
        const tokenizer = await deps.store.putFile(path.join(outDir, 'tokenizer.json'), 'tokenizer', 'tokenizer.json');
        const encoded = await deps.store.putFile(path.join(outDir, 'encoded.shard'), 'shard', 'encoded.shard');
        log('tokenized', { records: finished.records, tokens: finished.tokens });
        return { tokenizer, encoded, counts: { records: Number(finished.records), tokens: Number(finished.tokens) } };
      },
      {
        artifacts: (r) => [r.tokenizer, r.encoded],
        record: async (r) => {
          await recordArtifacts(deps.db, runId, 'tokenize', [r.tokenizer, r.encoded]);
          await recordLineage(deps.db, runId, [
            { parent: node.artifact(input.cleaned), child: node.artifact(r.tokenizer), relation: 'trained' },
            { parent: node.artifact(input.cleaned), child: node.artifact(r.encoded), relation: 'encoded-into' },
            { parent: node.artifact(r.tokenizer), child: node.artifact(r.encoded), relation: 'encoded-with' },
          ]);
        },
      },
    );
    return marked(outcome.value, outcome);
  });
}
