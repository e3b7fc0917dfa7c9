/**
 * clean and tokenize on shards of their input, for data larger than `data.shards.bytes`: the workflow
 * (workflows/src/data.ts) fans the shard activities out over every worker of the data pool, then one activity
 * merges their parts into the stage's usual artifacts, under the stage's usual cache key.
 *
 * The merged output is byte for byte what the stage gives in one activity, whatever the number of shards or
 * workers: a shard is the lines that begin in its byte range (line-ranges.ts), clean's first pass is pure per
 * record, and what depends on order (exact and near duplicates: the first copy is kept) runs once over the
 * shards' candidates in input order (clean-core.ts). Tokenize trains its tokenizer once (on the stage's own
 * vocabulary sample), each shard is encoded with it, and the encoded shards are joined in order (shard.ts `concatShards`).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { ArtifactRef, ByteRange, CleanResult, CleanShardResult, EncodedShardResult, TokenizeResult } from '@tempered/contract';
import { type Deps, heartbeating, log, withScratch } from './context';
import { cachedStage, marked } from './cache';
import { cleanCacheRequest, cleanHooks, type CleanInput, storeCleaned } from './clean';
import { cleanShardFile, dedupeShardFiles, type CleanReport } from './clean-core';
import { stageBaseModel } from './base-models';
import { downloadLines } from './line-ranges';
import { concatShards } from './shard';
import { heartbeatOnEvents, tokenizeCacheRequest, tokenizeHooks, tokenizerConfig, type TokenizeInput, vocabularySample } from './tokenize';
import { runTrainer } from './trainer';

/**
 * Shard parts live under the workflow that fans the shards out (ArtifactStore.putPart), named by their range,
 * so a retried shard rewrites its own part and `removeShardParts` can delete them all once they are merged.
 */
function partsOwner(): string {
  return Context.current().info.workflowExecution?.workflowId ?? 'standalone';
}

function partName(range: ByteRange): string {
  return `${range.start}-${range.end}`;
}

/**
 * Deletes the parts of a sharded stage once its merge is done (or it failed): they are in the stage's own
 * artifacts by then, and otherwise every sharded run would leave about twice its data in S3. Already-deleted
 * parts are fine (a retry), and only scratch parts can be named (the store refuses any other object).
 */
export async function removeShardParts(deps: Deps, input: { runId: string; parts: ArtifactRef[] }): Promise<{ removed: number }> {
  await Promise.all(input.parts.map((part) => deps.store.removePart(part.uri)));
  log('removed shard parts', { parts: input.parts.length });
  return { removed: input.parts.length };
}

/** Thrown by a cache probe's compute: the cache had no usable result. */
class NotCached extends Error {}

/** The cached result of `cachedStage`'s request, recorded for this run as a hit is, or null (nothing is computed). */
async function fromCache<T>(run: (compute: () => Promise<T>) => Promise<T>): Promise<T | null> {
  try {
    return await run(() => Promise.reject(new NotCached()));
  } catch (error) {
    if (error instanceof NotCached) return null;
    throw error;
  }
}

/** The clean stage's cached result for this dataset and spec, if there is one: then no shard needs cleaning. */
export async function cleanFromCache(deps: Deps, input: CleanInput): Promise<CleanResult | null> {
  return fromCache(async (compute) => {
    const outcome = await cachedStage(deps, cleanCacheRequest(input), compute, cleanHooks(deps, input));
    return marked(outcome.value, outcome);
  });
}

/** Clean's first pass over the lines that begin in `range` of the dataset. */
export async function cleanShard(deps: Deps, input: CleanInput & { range: ByteRange }): Promise<CleanShardResult> {
  return withScratch(
    deps,
    (dir) =>
      heartbeating(async () => {
        const lines = await downloadLines(deps.store, input.dataset, [input.range], path.join(dir, 'shard.jsonl'));
        const candidatesPath = path.join(dir, 'candidates.jsonl');
        const sidecarPath = path.join(dir, 'candidates.bin');
        const report = await cleanShardFile(lines, candidatesPath, sidecarPath, input.spec.clean);
        const at = partName(input.range);
        const [candidates, sidecar] = await Promise.all([deps.store.putPart(candidatesPath, partsOwner(), `${at}.candidates.jsonl`), deps.store.putPart(sidecarPath, partsOwner(), `${at}.candidates.bin`)]);
        const kept = report.input - Object.values(report.removed).reduce((a: number, b) => a + (b as number), 0);
        log('cleaned shard', { range: input.range, input: report.input, candidates: kept });
        return { candidates, sidecar, report: report as unknown as Record<string, unknown>, counts: { input: report.input, candidates: kept } };
      }),
    'clean',
  );
}

/** Clean's second pass over every shard's candidates in order: the stage's cleaned records and report. */
export async function mergeCleanShards(deps: Deps, input: CleanInput & { shards: CleanShardResult[] }): Promise<CleanResult> {
  return withScratch(
    deps,
    async (dir) => {
      const outcome = await cachedStage(
        deps,
        cleanCacheRequest(input),
        () =>
          heartbeating(async () => {
            const parts = await Promise.all(
              input.shards.map(async (s, i) => ({
                candidates: await deps.store.download(s.candidates, path.join(dir, `candidates-${i}.jsonl`)),
                sidecar: await deps.store.download(s.sidecar, path.join(dir, `candidates-${i}.bin`)),
                report: s.report as unknown as CleanReport,
              })),
            );
            const outPath = path.join(dir, 'cleaned.jsonl');
            return storeCleaned(deps, outPath, await dedupeShardFiles(parts, outPath, input.spec.clean));
          }),
        cleanHooks(deps, input),
      );
      return marked(outcome.value, outcome);
    },
    'clean',
  );
}

/** The tokenize stage's cached result for these cleaned records and spec, if there is one. */
export async function tokenizeFromCache(deps: Deps, input: TokenizeInput): Promise<TokenizeResult | null> {
  return withScratch(
    deps,
    async (dir) => {
      const staged = await stageBaseModel(deps, input.runId, input.spec, input.specDir, dir);
      return fromCache(async (compute) => {
        const outcome = await cachedStage(deps, tokenizeCacheRequest(input, staged), compute, tokenizeHooks(deps, input));
        return marked(outcome.value, outcome);
      });
    },
    'tokenize',
  );
}

/**
 * The tokenizer every shard is encoded with: trained on the cleaned records' vocabulary sample, or all of them
 * when they are no larger (as the one-activity stage trains it), or the base model's own, saved as
 * tokenizer.json the way the stage saves it.
 */
export async function shardTokenizer(deps: Deps, input: TokenizeInput): Promise<ArtifactRef> {
  return withScratch(
    deps,
    async (dir) => {
      const staged = await stageBaseModel(deps, input.runId, input.spec, input.specDir, dir);
      // A base model's tokenizer is not trained: the first record is all the trainer needs to read to save it.
      const records = staged
        ? await downloadLines(deps.store, input.cleaned, [{ start: 0, end: 1 }], path.join(dir, 'first.jsonl'))
        : ((await vocabularySample(deps, input, staged, dir)) ?? (await deps.store.download(input.cleaned, path.join(dir, 'cleaned.jsonl'))));
      const outDir = path.join(dir, 'out');
      await runTrainer(deps, 'tokenize', { input: records, output_dir: outDir, encode: false, ...tokenizerConfig(input.spec, staged?.path) }, dir, heartbeatOnEvents);
      return deps.store.putFile(path.join(outDir, 'tokenizer.json'), 'tokenizer', 'tokenizer.json');
    },
    'tokenize',
  );
}

/**
 * The cleaned records that begin in `range`, encoded: with the base model (its chat format renders them), or
 * with the tokenizer `shardTokenizer` trained (a tokenizer.json encodes in the plain format, as the stage does).
 */
export async function encodeShard(deps: Deps, input: TokenizeInput & { range: ByteRange; tokenizer: ArtifactRef }): Promise<EncodedShardResult> {
  return withScratch(
    deps,
    async (dir) => {
      const staged = await stageBaseModel(deps, input.runId, input.spec, input.specDir, dir);
      const tokenizer = staged ? staged.path : await deps.store.download(input.tokenizer, path.join(dir, 'tokenizer.json'));
      const lines = await downloadLines(deps.store, input.cleaned, [input.range], path.join(dir, 'shard.jsonl'));
      // A range no line begins in (a record longer than data.shards.bytes spans it) has nothing to encode.
      if ((await stat(lines)).size === 0) return { counts: { records: 0, tokens: 0 } };
      const outDir = path.join(dir, 'out');
      const { finished } = await runTrainer(deps, 'tokenize', { input: lines, output_dir: outDir, tokenizer }, dir, heartbeatOnEvents);
      const encoded = await deps.store.putPart(path.join(outDir, 'encoded.shard'), partsOwner(), `${partName(input.range)}.encoded.shard`);
      return { encoded, counts: { records: Number(finished.records), tokens: Number(finished.tokens) } };
    },
    'tokenize',
  );
}

/** The encoded shards joined in order: the stage's encoded.shard, with the tokenizer they were encoded with. */
export async function mergeEncodedShards(deps: Deps, input: TokenizeInput & { tokenizer: ArtifactRef; shards: EncodedShardResult[] }): Promise<TokenizeResult> {
  return withScratch(
    deps,
    async (dir) => {
      const staged = await stageBaseModel(deps, input.runId, input.spec, input.specDir, dir);
      const outcome = await cachedStage(
        deps,
        tokenizeCacheRequest(input, staged),
        () =>
          heartbeating(async () => {
            const parts = await Promise.all(input.shards.flatMap((s, i) => (s.encoded ? [deps.store.download(s.encoded, path.join(dir, `encoded-${i}.shard`))] : [])));
            const outPath = path.join(dir, 'encoded.shard');
            const header = await concatShards(parts, outPath);
            const encoded = await deps.store.putFile(outPath, 'shard', 'encoded.shard');
            const tokens = header.offsets[header.records];
            log('tokenized', { records: header.records, tokens, shards: parts.length });
            return { tokenizer: input.tokenizer, encoded, counts: { records: header.records, tokens } };
          }),
        tokenizeHooks(deps, input),
      );
      return marked(outcome.value, outcome);
    },
    'tokenize',
  );
}
