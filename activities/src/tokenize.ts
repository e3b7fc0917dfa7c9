/**
 * tokenize: trains a byte-level BPE tokenizer on the cleaned records, or on a sample of them past
 * `tokenizer.sampleBytes` (Python `tokenizers`: it takes the vocabulary size and special tokens, which the npm
 * binding cannot) and encodes every record into a binary shard with loss masks over the responses. The shard
 * format is in services/trainer/CONTRACT.md. Large cleaned data is encoded on shards instead (./data-shards.ts),
 * into the same artifacts under the same key.
 */
import path from 'node:path';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, TokenizeResult } from '@tempered/contract';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, log, withScratch } from './context';
import { type StagedBaseModel, stageBaseModel } from './base-models';
import { cachedStage, marked, type StageCacheHooks, type StageCacheRequest } from './cache';
import { Context } from '@temporalio/activity';
import { downloadLines, sampleRanges } from './line-ranges';
import { runTrainer, type TrainerEvent } from './trainer';

export interface TokenizeInput {
  runId: string;
  spec: PipelineSpec;
  specDir?: string;
  cleaned: ArtifactRef;
}

export async function tokenize(deps: Deps, input: TokenizeInput): Promise<TokenizeResult> {
  const { spec } = input;
  return withScratch(deps, async (dir) => {
    // Fine-tuning a base model: encode with its own tokenizer instead of training one.
    const staged = await stageBaseModel(deps, input.runId, spec, input.specDir, dir);
    const base = staged?.path;
    const outcome = await cachedStage(
      deps,
      tokenizeCacheRequest(input, staged),
      async (): Promise<TokenizeResult> => {
        const cleanedPath = await deps.store.download(input.cleaned, path.join(dir, 'cleaned.jsonl'));
        const outDir = path.join(dir, 'out');
        const sample = await vocabularySample(deps, input, staged, dir);
        const config = { input: cleanedPath, output_dir: outDir, ...(sample ? { vocabulary_input: sample } : {}), ...tokenizerConfig(spec, base) };
        const { finished } = await runTrainer(deps, 'tokenize', config, dir, heartbeatOnEvents);
        const tokenizer = await deps.store.putFile(path.join(outDir, 'tokenizer.json'), 'tokenizer', 'tokenizer.json');
        const encoded = await deps.store.putFile(path.join(outDir, 'encoded.shard'), 'shard', 'encoded.shard');
        log('tokenized', { records: finished.records, tokens: finished.tokens });
        return { tokenizer, encoded, counts: { records: Number(finished.records), tokens: Number(finished.tokens) } };
      },
      tokenizeHooks(deps, input),
    );
    return marked(outcome.value, outcome);
  });
}

/**
 * Heartbeats on each of the trainer's events (its `progress` while it counts words and encodes), so a tokenize
 * of minutes is not timed out as silent; the trainer's watchdog kills one that stops emitting them.
 */
export function heartbeatOnEvents(e: TrainerEvent): void {
  Context.current().heartbeat({ tokenize: e.event, ...(e.what !== undefined ? { what: e.what, done: e.done } : {}) });
}

/** Whether a trained vocabulary is learnt from a sample of the cleaned records rather than all of them. */
function sampled(input: TokenizeInput, staged: StagedBaseModel | undefined): boolean {
  return !staged && input.cleaned.bytes > input.spec.tokenizer.sampleBytes;
}

/**
 * The records a trained vocabulary is learnt from when the cleaned data is larger than tokenizer.sampleBytes:
 * the lines that begin in windows spread over it (line-ranges.ts `sampleRanges`), downloaded into `dir`;
 * undefined when every record is (a small corpus, or a base model's tokenizer, which is not trained).
 */
export async function vocabularySample(deps: Deps, input: TokenizeInput, staged: StagedBaseModel | undefined, dir: string): Promise<string | undefined> {
  if (!sampled(input, staged)) return undefined;
  const ranges = sampleRanges(input.cleaned.bytes, input.spec.tokenizer.sampleBytes);
  return downloadLines(deps.store, input.cleaned, ranges, path.join(dir, 'vocabulary.jsonl'));
}

/** The trainer's tokenize settings: the base model's tokenizer, or the vocabulary to train. */
export function tokenizerConfig(spec: PipelineSpec, base: string | undefined): Record<string, unknown> {
  return base ? { tokenizer: base } : { vocab_size: spec.tokenizer.vocabSize, min_frequency: spec.tokenizer.minFrequency };
}

/**
 * Cache key: the cleaned records' digest; with a base model, the base's digest (its tokenizer is used and
 * `tokenizer` settings are ignored), otherwise `tokenizer.vocabSize` and `minFrequency`, which are all the
 * trainer's tokenize command receives, and `sampleBytes` only where it samples (so the keys of data no larger
 * stay those from before there was a sample). The trainer's code digest is added by the cache.
 */
export function tokenizeCacheRequest(input: TokenizeInput, staged: StagedBaseModel | undefined): StageCacheRequest {
  const { spec } = input;
  return {
    runId: input.runId,
    stage: 'tokenize',
    spec,
    config: staged
      ? { mode: 'base-model' }
      : { mode: 'train-bpe', vocabSize: spec.tokenizer.vocabSize, minFrequency: spec.tokenizer.minFrequency, ...(sampled(input, staged) ? { sampleBytes: spec.tokenizer.sampleBytes } : {}) },
    inputs: { cleaned: input.cleaned.sha256, ...(staged ? { baseModel: staged.digest } : {}) },
  };
}

export function tokenizeHooks(deps: Deps, input: TokenizeInput): StageCacheHooks<TokenizeResult> {
  return {
    artifacts: (r) => [r.tokenizer, r.encoded],
    record: async (r) => {
      await recordArtifacts(deps.db, input.runId, 'tokenize', [r.tokenizer, r.encoded]);
      await recordLineage(deps.db, input.runId, [
        { parent: node.artifact(input.cleaned), child: node.artifact(r.tokenizer), relation: 'trained' },
        { parent: node.artifact(input.cleaned), child: node.artifact(r.encoded), relation: 'encoded-into' },
        { parent: node.artifact(r.tokenizer), child: node.artifact(r.encoded), relation: 'encoded-with' },
      ]);
    },
  };
}
