/**
 * clean: normalises and filters the dataset version (NFKC, control characters, whitespace, PII masking,
 * length bounds, exact duplicates, and when the spec turns them on languages, blocklists and near duplicates)
 * and writes a report of what each rule removed or changed.
 */
import path from 'node:path';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef, CleanResult } from '@tempered/contract';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, badInput, log, withScratch } from './context';
import { cachedStage, marked } from './cache';
import { cleanFile } from './clean-core';

export async function clean(deps: Deps, input: { runId: string; spec: PipelineSpec; dataset: ArtifactRef }): Promise<CleanResult> {
  const { runId, spec } = input;
  return withScratch(deps, async (dir) => {
    const outcome = await cachedStage(
      deps,
      // Cache key: the whole `clean` section (every rule and bound changes the output) and the dataset's digest.
      { runId, stage: 'clean', spec, config: spec.clean, inputs: { dataset: input.dataset.sha256 } },
      async (): Promise<CleanResult> => {
        const source = await deps.store.download(input.dataset, path.join(dir, 'dataset.jsonl'));
        const outPath = path.join(dir, 'cleaned.jsonl');
        const report = await cleanFile(source, outPath, spec.clean);
        if (report.kept === 0) throw badInput(`cleaning removed every record: ${JSON.stringify(report.removed)}; relax the clean rules in the spec`);
        const cleaned = await deps.store.putFile(outPath, 'cleaned', 'cleaned.jsonl');
        const reportRef = await deps.store.putBytes(JSON.stringify(report, null, 2), 'clean-report', 'clean-report.json');
        const removed = Object.values(report.removed).reduce((a: number, b) => a + (b as number), 0);
        // A record touched by several rules counts once here; the report has the per-rule figures.
        const changed = report.changedRecords;
        log('cleaned', { kept: report.kept, removed, changed });
        return { cleaned, report: reportRef, counts: { input: report.input, kept: report.kept, removed, changed } };
      },
      {
        artifacts: (r) => [r.cleaned, r.report],
        record: async (r) => {
          await recordArtifacts(deps.db, runId, 'clean', [r.cleaned, r.report]);
          await recordLineage(deps.db, runId, [
            { parent: node.artifact(input.dataset), child: node.artifact(r.cleaned), relation: 'cleaned-into' },
            { parent: node.artifact(r.cleaned), child: node.artifact(r.report), relation: 'reported-by' },
          ]);
        },
      },
    );
    return marked(outcome.value, outcome);
  });
}
