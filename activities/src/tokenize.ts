/**
 * tokenize: trains a byte-level BPE tokenizer on the cleaned records (Python `tokenizers`: it takes the
 * vocabulary size and special tokens, which the npm binding cannot) and encodes every record into a binary
 * shard with loss masks over the responses. The shard format is in services/trainer/CONTRACT.md.
 */
import path from 'node:path';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, TokenizeResult } from '@tempered/workflows';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, log, withScratch } from './context';
import { stageSource } from './sources';
import { runTrainer } from './trainer';

export async function tokenize(
  deps: Deps,
  input: { runId: string; spec: PipelineSpec; specDir?: string; cleaned: ArtifactRef },
): Promise<TokenizeResult> {
  const { runId, spec } = input;
  return withScratch(deps, async (dir) => {
    const cleanedPath = await deps.store.download(input.cleaned, path.join(dir, 'cleaned.jsonl'));
    const outDir = path.join(dir, 'out');
    // Fine-tuning a base model: encode with its own tokenizer instead of training one.
    const base = spec.model.base ? await stageSource(deps, spec.model.base.uri, input.specDir, dir, 0) : undefined;
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
    await recordArtifacts(deps.db, runId, 'tokenize', [tokenizer, encoded]);
    await recordLineage(deps.db, runId, [
      { parent: node.artifact(input.cleaned), child: node.artifact(tokenizer), relation: 'trained' },
      { parent: node.artifact(input.cleaned), child: node.artifact(encoded), relation: 'encoded-into' },
      { parent: node.artifact(tokenizer), child: node.artifact(encoded), relation: 'encoded-with' },
    ]);
    log('tokenized', { records: finished.records, tokens: finished.tokens });
    return { tokenizer, encoded, counts: { records: Number(finished.records), tokens: Number(finished.tokens) } };
  });
}
