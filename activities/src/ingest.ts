/**
 * ingest: reads the spec's data sources (JSONL, CSV, plain text or Parquet, gzip- or zstd-compressed or not,
 * UTF-8 or Shift_JIS, from S3 or a local path),
 * streams them into one snapshot of training records (turns, conversations or plain text, by each source's
 * record format: ingest-core.ts), and quarantines what does not parse, with reasons. The snapshot is a dataset
 * version: same data, same version id.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { DataSource, PipelineSpec, RecordFormat } from '@tempered/spec';
import type { IngestResult } from '@tempered/contract';
import { node, recordArtifacts, recordLineage } from '@tempered/db';
import { sha256File } from '@tempered/artifacts';
import { type Deps, badInput, log, withScratch } from './context';
import { cachedStage, marked } from './cache';
import { SourceError, checkRecordFormat, compressionOf, formatOf, ingestFiles, type IngestSource, type SourceFormat } from './ingest-core';
import { stageSource } from './sources';

/**
 * How a spec's data source is read (format, compression, documents, record format), or bad input naming `field`.
 * A source's own record format wins over the one for all of data (`records`).
 */
export function readingOf(source: DataSource, records: RecordFormat, field: string): Omit<IngestSource, 'path'> {
  let format: SourceFormat;
  const recordFormat = source.records ?? records;
  const compression = compressionOf(source.uri, source.compression);
  try {
    format = formatOf(source.uri, source.format);
    checkRecordFormat(format, recordFormat, source.uri);
    if (format === 'parquet' && compression !== 'none') throw new Error('a Parquet file compresses its own pages; store it uncompressed (compression: none)');
  } catch (err) {
    throw badInput(`${field}: ${(err as Error).message}`);
  }
  const documents = format === 'text' ? (source.documents ?? 'line') : undefined;
  return { label: source.uri, format, compression, documents, encoding: source.encoding, records: recordFormat };
}

export async function ingest(deps: Deps, input: { runId: string; spec: PipelineSpec; specDir?: string }): Promise<IngestResult> {
  const { runId, spec } = input;
  return withScratch(deps, async (dir) => {
    const sources: IngestSource[] = [];
    for (const [i, source] of spec.data.sources.entries()) {
      sources.push({ ...readingOf(source, spec.data.records, `data.sources.${i}`), path: await stageSource(deps, source.uri, input.specDir, dir, i) });
    }
    const digests = await Promise.all(sources.map(async (s) => (await sha256File(s.path)).sha256));

    const outcome = await cachedStage(
      deps,
      {
        runId,
        stage: 'ingest',
        spec,
        // Cache key: each source's raw bytes (digest), how they are read (format, encoding, record format) and
        // the label the quarantine entries name it by (the URI as written in the spec), in spec order; and the
        // field mapping. Not the spec's name: it only names the dataset version row, which is keyed by content.
        config: {
          sources: sources.map((s) => ({ label: s.label, format: s.format, compression: s.compression, documents: s.documents, encoding: s.encoding, records: s.records })),
          fields: spec.data.fields,
        },
        inputs: { sources: digests },
      },
      async (): Promise<IngestResult> => {
        Context.current().heartbeat({ phase: 'parsing' });
        const out = { datasetPath: path.join(dir, 'dataset.jsonl'), quarantinePath: path.join(dir, 'quarantine.jsonl') };
        const counts = await ingestFiles(sources, spec.data.fields, out).catch((err: unknown) => {
          // A source unreadable as configured (a CSV header without a needed column) needs a new spec, not a retry.
          throw err instanceof SourceError ? badInput(err.message) : err;
        });
        if (counts.kept === 0) {
          throw badInput(`no usable records in ${spec.data.sources.length} source(s): all ${counts.input} were quarantined (see the quarantine artifact reasons)`);
        }
        const dataset = await deps.store.putFile(out.datasetPath, 'dataset', 'dataset.jsonl');
        const quarantine = await deps.store.putFile(out.quarantinePath, 'quarantine', 'quarantine.jsonl');
        log('ingested', { datasetVersionId: `ds-${dataset.sha256.slice(0, 12)}`, ...counts });
        return {
          datasetVersionId: `ds-${dataset.sha256.slice(0, 12)}`,
          dataset,
          quarantine,
          counts: { input: counts.input, kept: counts.kept, quarantined: counts.quarantined },
        };
      },
      {
        artifacts: (r) => [r.dataset, r.quarantine],
        // The run's dataset version, artifacts and lineage, whether computed now or reused.
        record: async (r) => {
          await deps.db
            .insertInto('dataset_versions')
            .values({
              id: r.datasetVersionId,
              name: spec.name,
              run_id: runId,
              snapshot_uri: r.dataset.uri,
              sha256: r.dataset.sha256,
              input_count: r.counts.input,
              kept_count: r.counts.kept,
              quarantined_count: r.counts.quarantined,
              quarantine_uri: r.quarantine.uri,
            })
            .onConflict((oc) => oc.column('id').doNothing())
            .execute();
          await recordArtifacts(deps.db, runId, 'ingest', [r.dataset, r.quarantine]);
          await recordLineage(deps.db, runId, [
            { parent: node.artifact(r.dataset), child: node.datasetVersion(r.datasetVersionId), relation: 'snapshot-of' },
            { parent: node.datasetVersion(r.datasetVersionId), child: node.artifact(r.quarantine), relation: 'quarantined' },
          ]);
        },
      },
    );
    return marked(outcome.value, outcome);
  });
}
