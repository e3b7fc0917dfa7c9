/**
 * ingest: reads the spec's data sources (JSONL or CSV, UTF-8 or Shift_JIS, from S3 or a local path),
 * streams them into one snapshot of `{key, prompt, response}` records, and quarantines what does not parse,
 * with reasons. The snapshot is a dataset version: same data, same version id.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineSpec } from '@tempered/spec';
import type { IngestResult } from '@tempered/workflows';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { type Deps, badInput, log, withScratch } from './context';
import { formatOf, ingestFiles } from './ingest-core';
import { stageSource } from './sources';

export async function ingest(deps: Deps, input: { runId: string; spec: PipelineSpec; specDir?: string }): Promise<IngestResult> {
  const { runId, spec } = input;
  return withScratch(deps, async (dir) => {
    const sources = [];
    for (const [i, source] of spec.data.sources.entries()) {
      let format: 'jsonl' | 'csv';
      try {
        format = formatOf(source.uri, source.format);
      } catch (err) {
        throw badInput(`data.sources.${i}: ${(err as Error).message}`);
      }
      sources.push({ path: await stageSource(deps, source.uri, input.specDir, dir, i), label: source.uri, format, encoding: source.encoding });
    }
    Context.current().heartbeat({ phase: 'parsing' });
    const out = { datasetPath: path.join(dir, 'dataset.jsonl'), quarantinePath: path.join(dir, 'quarantine.jsonl') };
    const counts = await ingestFiles(sources, spec.data.fields, out);
    if (counts.kept === 0) {
      throw badInput(`no usable records in ${spec.data.sources.length} source(s): all ${counts.input} were quarantined (see the quarantine artifact reasons)`);
    }
    const dataset = await deps.store.putFile(out.datasetPath, 'dataset', 'dataset.jsonl');
    const quarantine = await deps.store.putFile(out.quarantinePath, 'quarantine', 'quarantine.jsonl');
    const datasetVersionId = `ds-${dataset.sha256.slice(0, 12)}`;

    await deps.db
      .insertInto('dataset_versions')
      .values({
        id: datasetVersionId,
        name: spec.name,
        run_id: runId,
        snapshot_uri: dataset.uri,
        sha256: dataset.sha256,
        input_count: counts.input,
        kept_count: counts.kept,
        quarantined_count: counts.quarantined,
        quarantine_uri: quarantine.uri,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    await recordArtifacts(deps.db, runId, 'ingest', [dataset, quarantine]);
    await recordLineage(deps.db, runId, [
      { parent: node.artifact(dataset), child: node.datasetVersion(datasetVersionId), relation: 'snapshot-of' },
      { parent: node.datasetVersion(datasetVersionId), child: node.artifact(quarantine), relation: 'quarantined' },
    ]);
    log('ingested', { datasetVersionId, ...counts });
    return {
      datasetVersionId,
      dataset,
      quarantine,
      counts: { input: counts.input, kept: counts.kept, quarantined: counts.quarantined },
    };
  });
}
