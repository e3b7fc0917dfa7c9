/**
 * split: partitions the encoded shard into train / validation / test by a salted hash of each record's key.
 * A record's split depends on its key alone, so adding records never moves an existing one.
 */
import path from 'node:path';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, SplitResult } from '@tempered/contract';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, badInput, log, withScratch } from './context';
import { cachedStage, marked } from './cache';
import { splitShard } from './split-core';

export async function split(deps: Deps, input: { runId: string; spec: PipelineSpec; encoded: ArtifactRef }): Promise<SplitResult> {
  const { runId, spec } = input;
  return withScratch(deps, async (dir) => {
    const outcome = await cachedStage(
      deps,
      // Cache key: the whole `split` section (fractions and salt) and the encoded shard's digest.
      { runId, stage: 'split', spec, config: spec.split, inputs: { encoded: input.encoded.sha256 } },
      async (): Promise<SplitResult> => {
        const encodedPath = await deps.store.download(input.encoded, path.join(dir, 'encoded.shard'));
        const out = { train: path.join(dir, 'train.shard'), validation: path.join(dir, 'validation.shard'), test: path.join(dir, 'test.shard') };
        const counts = await splitShard(encodedPath, out, spec.split);
        for (const [name, n] of Object.entries(counts)) {
          if (n === 0) throw badInput(`the ${name} split is empty (${JSON.stringify(counts)}); add data or raise split fractions`);
        }
        const [train, validation, test] = await Promise.all(
          (['train', 'validation', 'test'] as const).map((s) => deps.store.putFile(out[s], 'shard', `${s}.shard`)),
        );
        log('split', counts);
        return { train, validation, test, counts: { train: counts.train, validation: counts.validation, test: counts.test } };
      },
      {
        artifacts: (r) => [r.train, r.validation, r.test],
        record: async (r) => {
          await recordArtifacts(deps.db, runId, 'split', [r.train, r.validation, r.test]);
          await recordLineage(
            deps.db,
            runId,
            [r.train, r.validation, r.test].map((ref, i) => ({ parent: node.artifact(input.encoded), child: node.artifact(ref), relation: ['train', 'validation', 'test'][i] })),
          );
        },
      },
    );
    return marked(outcome.value, outcome);
  });
}
