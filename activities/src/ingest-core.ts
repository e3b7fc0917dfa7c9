/**
 * Ingest, the local-file core: reads data sources (JSONL or CSV with a header row, UTF-8 or Shift_JIS), maps
 * their fields onto `{key, prompt, response}` and writes one dataset JSONL. Anything that cannot be read as a
 * record goes to a quarantine JSONL with its source, line and reason instead of failing the run, so that
 * `kept + quarantined = input` always holds and a person can see exactly what was left out and why.
 *
 * Pure local I/O, streamed and deterministic (same inputs, same bytes out); the Temporal activity around it
 * stages the files from S3 and uploads the outputs.
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream';
import { parse, type CsvError } from 'csv-parse';
import iconv from 'iconv-lite';
import { JsonlWriter, readLines, type DataRecord, type TextEncoding } from './records';

export type SourceFormat = 'jsonl' | 'csv';

export interface IngestSource {
  /** Local path of the staged file. */
  path: string;
  /** How the source is named in quarantine entries and counts (typically its URI). */
  label: string;
  format: SourceFormat;
  encoding: TextEncoding;
}

/** Which input fields (JSONL keys or CSV header columns) hold the prompt, the response and the record id. */
export interface FieldMapping {
  prompt: string;
  response: string;
  key?: string;
}

export interface IngestOutputs {
  datasetPath: string;
  quarantinePath: string;
}

/** One quarantine JSONL line. */
export interface QuarantineEntry {
  source: string;
  /** 1-based line number (JSONL) or row number with the header as row 1 (CSV). */
  line: number;
  reason: string;
  /** The offending text, truncated to 500 characters. */
  raw: string;
}

/**
 * Why a row was quarantined. `reason` in a quarantine entry starts with one of these, optionally followed by
 * ": detail"; the counts are keyed by the kind alone so they stay comparable between runs.
 */
export type QuarantineKind =
  | 'undecodable bytes'
  | 'invalid JSON'
  | 'not a JSON object'
  | 'missing field'
  | 'wrong number of columns'
  | 'unparseable CSV';

export interface IngestCounts {
  input: number;
  kept: number;
  quarantined: number;
  /** Quarantined rows by kind. */
  reasons: Partial<Record<QuarantineKind, number>>;
}

export interface IngestReport extends IngestCounts {
  /** The same counts per source, in the order given. */
  bySource: Array<IngestCounts & { label: string }>;
}

const RAW_LIMIT = 500;

/**
 * The format of a source: the explicit one when given, else from the extension of a path or URI
 * (`.jsonl`/`.json` -> jsonl, `.csv` -> csv).
 */
export function formatOf(pathOrUri: string, explicit?: SourceFormat): SourceFormat {
  if (explicit) return explicit;
  // Ignore a query string or fragment so that presigned or versioned URLs still resolve.
  const name = pathOrUri.split(/[?#]/, 1)[0].toLowerCase();
  if (name.endsWith('.jsonl') || name.endsWith('.json')) return 'jsonl';
  if (name.endsWith('.csv')) return 'csv';
  throw new Error(
    `cannot tell the format of "${pathOrUri}" from its extension (expected .jsonl, .json or .csv); set "format: jsonl" or "format: csv" on the source`,
  );
}

/** The content-derived key of a record without an id: first 16 hex digits of sha256(prompt NUL response). */
export function recordKey(prompt: string, response: string): string {
  return createHash('sha256').update(`${prompt}\u0000${response}`).digest('hex').slice(0, 16);
}

/** Reads every source in order and writes the dataset and quarantine files. */
export async function ingestFiles(
  sources: IngestSource[],
  fields: FieldMapping,
  out: IngestOutputs,
): Promise<IngestReport> {
  const dataset = new JsonlWriter(out.datasetPath);
  const quarantine = new JsonlWriter(out.quarantinePath);
  const report: IngestReport = { ...emptyCounts(), bySource: [] };
  try {
    for (const source of sources) {
      const counts = emptyCounts();
      const sink: Sink = {
        async keep(record) {
          counts.input++;
          counts.kept++;
          await dataset.write(record);
        },
        async reject(line, kind, detail, raw) {
          counts.input++;
          counts.quarantined++;
          counts.reasons[kind] = (counts.reasons[kind] ?? 0) + 1;
          const entry: QuarantineEntry = {
            source: source.label,
            line,
            reason: detail ? `${kind}: ${detail}` : kind,
            raw: raw.length > RAW_LIMIT ? raw.slice(0, RAW_LIMIT) : raw,
          };
          await quarantine.write(entry);
        },
      };
      if (source.format === 'jsonl') await ingestJsonl(source, fields, sink);
      else await ingestCsv(source, fields, sink);
      report.bySource.push({ label: source.label, ...counts });
      report.input += counts.input;
      report.kept += counts.kept;
      report.quarantined += counts.quarantined;
      for (const [kind, n] of Object.entries(counts.reasons) as Array<[QuarantineKind, number]>) {
        report.reasons[kind] = (report.reasons[kind] ?? 0) + n;
      }
    }
    await dataset.close();
    await quarantine.close();
  } catch (error) {
    dataset.abort();
    quarantine.abort();
    throw error;
  }
  return report;
}

function emptyCounts(): IngestCounts {
  return { input: 0, kept: 0, quarantined: 0, reasons: {} };
}

/** Where a reader sends each input row: every row ends in exactly one of the two calls. */
interface Sink {
  keep(record: DataRecord): Promise<void>;
  reject(line: number, kind: QuarantineKind, detail: string, raw: string): Promise<void>;
}

/**
 * Builds the record from already-decoded fields, or says which field is missing. `get` returns the raw field
 * value (a JSON value, or a CSV cell string, or undefined when absent).
 */
function toRecord(
  get: (name: string) => unknown,
  fields: FieldMapping,
): { record: DataRecord } | { missing: string } {
  const prompt = get(fields.prompt);
  if (typeof prompt !== 'string') return { missing: fields.prompt };
  const response = get(fields.response);
  if (typeof response !== 'string') return { missing: fields.response };
  // An id column is optional per record: a blank or absent id falls back to the content digest.
  let key = recordKey(prompt, response);
  if (fields.key !== undefined) {
    const id = get(fields.key);
    if ((typeof id === 'string' && id.trim() !== '') || (typeof id === 'number' && Number.isFinite(id))) {
      key = String(id).trim();
    }
  }
  return { record: { key, prompt, response } };
}

async function ingestJsonl(source: IngestSource, fields: FieldMapping, sink: Sink): Promise<void> {
  for await (const { text, line } of readLines(source.path, source.encoding)) {
    if (text.trim() === '') continue;
    // The decoder turns bytes it cannot decode into U+FFFD; such a line's text is not what was written.
    if (text.includes('\uFFFD')) {
      await sink.reject(line, 'undecodable bytes', `not valid ${source.encoding}`, text);
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      await sink.reject(line, 'invalid JSON', (error as Error).message, text);
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      await sink.reject(line, 'not a JSON object', `got ${jsonType(value)}`, text);
      continue;
    }
    const object = value as Record<string, unknown>;
    const result = toRecord((name) => (Object.hasOwn(object, name) ? object[name] : undefined), fields);
    if ('missing' in result) {
      await sink.reject(line, 'missing field', `"${result.missing}" is absent or not a string`, text);
      continue;
    }
    await sink.keep(result.record);
  }
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** A row as csv-parse hands it over with `raw` and `info` on. */
interface CsvRow {
  record: string[];
  raw: string;
  info: { records: number; empty_lines: number };
}

/** A record csv-parse could not parse (reported through `on_skip`), with its parser position. */
interface SkippedRow {
  /** Records the parser had emitted before this one (header included). */
  recordsBefore: number;
  emptyLinesBefore: number;
  message: string;
  raw: string;
}

async function ingestCsv(source: IngestSource, fields: FieldMapping, sink: Sink): Promise<void> {
  const skipped: SkippedRow[] = [];
  const parser = parse({
    // Rows with too many or too few cells still come through, so we can quarantine them one by one rather
    // than let the parser fail the file.
    relax_column_count: true,
    // A stray quote inside an unquoted cell is read literally instead of derailing every following row.
    relax_quotes: true,
    skip_empty_lines: true,
    // What remains fatal to a record (e.g. a quote never closed before the end of the file) skips that
    // record and continues; we quarantine it from the hook.
    skip_records_with_error: true,
    on_skip: (error: CsvError | undefined, raw: string | undefined) => {
      const context = (error ?? {}) as Partial<{ records: number; empty_lines: number }>;
      skipped.push({
        recordsBefore: context.records ?? 0,
        emptyLinesBefore: context.empty_lines ?? 0,
        message: error?.message ?? 'unreadable record',
        raw: raw ?? '',
      });
      return undefined;
    },
    raw: true,
    info: true,
  });
  // pipeline forwards a read or decode error to the parser, so the loop below rejects instead of hanging.
  pipeline(fs.createReadStream(source.path), iconv.decodeStream(source.encoding), parser, () => {});

  let header: string[] | undefined;
  let columns: { prompt: number; response: number; key: number } | undefined;
  // Skipped records are not counted in `info.records`, so the row number needs them added back.
  let skippedSoFar = 0;

  // `on_skip` runs while the parser works ahead of this loop; flushing by parser position keeps the
  // quarantine in file order and the row numbers right.
  const flushSkipped = async (upToRecords: number) => {
    while (skipped.length > 0 && skipped[0].recordsBefore < upToRecords) {
      const skip = skipped.shift()!;
      skippedSoFar++;
      const row = skip.recordsBefore + skip.emptyLinesBefore + skippedSoFar;
      await sink.reject(row, 'unparseable CSV', skip.message, trimNewlines(skip.raw));
    }
  };

  for await (const { record, raw, info } of parser as AsyncIterable<CsvRow>) {
    await flushSkipped(info.records);
    const row = info.records + info.empty_lines + skippedSoFar;
    const text = trimNewlines(raw);
    if (header === undefined) {
      header = record.map((name) => name.trim());
      columns = {
        prompt: columnOf(header, fields.prompt, source.label),
        response: columnOf(header, fields.response, source.label),
        // A missing id column is not an error: keys fall back to content digests, as for JSONL.
        key: fields.key === undefined ? -1 : header.indexOf(fields.key),
      };
      continue;
    }
    // A row of only spaces counts as blank, like a blank JSONL line.
    if (record.length === 1 && record[0].trim() === '') continue;
    if (text.includes('\uFFFD')) {
      await sink.reject(row, 'undecodable bytes', `not valid ${source.encoding}`, text);
      continue;
    }
    if (record.length !== header.length) {
      await sink.reject(row, 'wrong number of columns', `expected ${header.length}, got ${record.length}`, text);
      continue;
    }
    const cells = columns!;
    const result = toRecord((name) => {
      if (name === fields.prompt) return record[cells.prompt];
      if (name === fields.response) return record[cells.response];
      return cells.key >= 0 ? record[cells.key] : undefined;
    }, fields);
    // With the column count checked, every mapped cell exists; this only guards the types.
    if ('missing' in result) {
      await sink.reject(row, 'missing field', `"${result.missing}" is absent`, text);
      continue;
    }
    await sink.keep(result.record);
  }
  await flushSkipped(Number.POSITIVE_INFINITY);
}

/** Index of a required header column; a file without it cannot be ingested at all, so that is an error. */
function columnOf(header: string[], name: string, label: string): number {
  const index = header.indexOf(name);
  if (index < 0) {
    throw new Error(`${label}: the CSV header has no "${name}" column (columns: ${header.join(', ')}); check data.fields`);
  }
  return index;
}

/** csv-parse's raw text carries the row's line break and any blank lines skipped before it. */
function trimNewlines(text: string): string {
  return text.replace(/^[\r\n]+|[\r\n]+$/g, '');
}
