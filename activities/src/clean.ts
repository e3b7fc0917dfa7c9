/**
 * clean: normalises and filters the dataset version (NFKC, control characters, whitespace, PII masking,
 * length bounds, exact duplicates, and when the spec turns them on languages, blocklists and near duplicates)
 * and writes a report of what each rule removed or changed. A large dataset is cleaned on shards instead
 * (./data-shards.ts), into the same artifacts under the same cache key.
 */
import path from 'node:path';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, CleanResult } from '@tempered/contract';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, badInput, heartbeating, log, withScratch } from './context';
import { cachedStage, marked, type StageCacheHooks, type StageCacheRequest } from './cache';
import { cleanFile, type CleanReport } from './clean-core';

export interface CleanInput {
  runId: string;
  spec: PipelineSpec;
  dataset: ArtifactRef;
}

export async function clean(deps: Deps, input: CleanInput): Promise<CleanResult> {
  return withScratch(deps, async (dir) => {
    const outcome = await cachedStage(
      deps,
      cleanCacheRequest(input),
      () =>
        heartbeating(async () => {
          const source = await deps.store.download(input.dataset, path.join(dir, 'dataset.jsonl'));
          const outPath = path.join(dir, 'cleaned.jsonl');
          return storeCleaned(deps, outPath, await cleanFile(source, outPath, input.spec.clean));
        }),
      cleanHooks(deps, input),
    );
    return marked(outcome.value, outcome);
  });
}

/** Cache key: the whole `clean` section (every rule and bound changes the output) and the dataset's digest. */
export function cleanCacheRequest(input: CleanInput): StageCacheRequest {
  return { runId: input.runId, stage: 'clean', spec: input.spec, config: input.spec.clean, inputs: { dataset: input.dataset.sha256 } };
}

export function cleanHooks(deps: Deps, input: CleanInput): StageCacheHooks<CleanResult> {
  return {
    artifacts: (r) => [r.cleaned, r.report],
    record: async (r) => {
      await recordArtifacts(deps.db, input.runId, 'clean', [r.cleaned, r.report]);
      await recordLineage(deps.db, input.runId, [
        { parent: node.artifact(input.dataset), child: node.artifact(r.cleaned), relation: 'cleaned-into' },
        { parent: node.artifact(r.cleaned), child: node.artifact(r.report), relation: 'reported-by' },
      ]);
    },
  };
}

/** Uploads the cleaned records and the report: the stage's result. */
export async function storeCleaned(deps: Deps, outPath: string, report: CleanReport): Promise<CleanResult> {
  if (report.kept === 0) throw badInput(`cleaning removed every record: ${JSON.stringify(report.removed)}; relax the clean rules in the spec`);
  const cleaned = await deps.store.putFile(outPath, 'cleaned', 'cleaned.jsonl');
  const reportRef = await deps.store.putBytes(JSON.stringify(report, null, 2), 'clean-report', 'clean-report.json');
  const removed = Object.values(report.removed).reduce((a: number, b) => a + (b as number), 0);
  // A record touched by several rules counts once here; the report has the per-rule figures.
  const changed = report.changedRecords;
  log('cleaned', { kept: report.kept, removed, changed });
  return { cleaned, report: reportRef, counts: { input: report.input, kept: report.kept, removed, changed } };
}
