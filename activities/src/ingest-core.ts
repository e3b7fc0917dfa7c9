/**
 * Ingest, the local-file core: reads data sources (JSONL, CSV with a header row, plain text, Parquet; UTF-8 or
 * Shift_JIS; gzip- or zstd-compressed: readers.ts), maps each row onto a training record (records.ts: a turn, a
 * conversation or plain text) by its record format, and writes one dataset JSONL. Anything that cannot be read
 * as a record, or that a later stage could not process (text that is not valid Unicode, which no tokenizer can
 * encode), goes to a quarantine JSONL with its source, line and reason instead of failing the run, so that
 * `kept + quarantined = input` always holds and a person can see exactly what was left out and why.
 *
 * Record formats (the spec's `records`, per source or for all of `data`), and what each becomes:
 *   prompt-response    the `data.fields` names (default prompt, response)      -> {key, prompt, response}
 *   prompt-completion  prompt, completion                                      -> {key, prompt, response}
 *   alpaca             instruction, input (optional), output: the prompt is the
 *                      instruction, then a blank line and the input if any     -> {key, prompt, response}
 *   messages           an OpenAI chat `messages` list; JSONL only              -> {key, messages}
 *   text               text (continued pretraining)                            -> {key, text}
 *                      (a plain-text source is always this: each line, or the whole file, one text)
 *   auto               detected per row (per header for CSV): `detectFormat`.
 *
 * Pure local I/O, streamed and deterministic (same inputs, same bytes out); the Temporal activity around it
 * stages the files from S3 and uploads the outputs.
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { pipeline, type Readable } from 'node:stream';
import { parse, type CsvError } from 'csv-parse';
import iconv from 'iconv-lite';
import type { RecordFormat } from '@tempered/spec';
import {
  CHAT_ROLES,
  JsonlWriter,
  MAX_LINE_CHARS,
  conversationOf,
  readLines,
  type ChatMessage,
  type ChatRole,
  type DataRecord,
  type RecordContent,
  type TextEncoding,
} from './records';
import { corruptionOf, openBytes, openParquet, type Compression, type ParquetSource, type SourceFormat } from './readers';

export { compressionOf, formatOf, type Compression, type SourceFormat } from './readers';

/** A plain-text source's documents: one per non-blank line, or the whole file as one. */
export type TextDocuments = 'line' | 'file';

export interface IngestSource {
  /** Local path of the staged file. */
  path: string;
  /** How the source is named in quarantine entries and counts (typically its URI). */
  label: string;
  format: SourceFormat;
  /** Of the file as staged (JSONL, CSV and text; a Parquet file compresses its own pages); default none. */
  compression?: Compression;
  /** A plain-text source's documents; default one per line. */
  documents?: TextDocuments;
  encoding: TextEncoding;
  /** How its rows become records: the source's `records`, else `data.records`; default auto. */
  records?: RecordFormat;
}

/** A format a row is read by: a stated one, or the one detected for it. */
export type RowFormat = Exclude<RecordFormat, 'auto'>;

/**
 * Which input fields (JSONL keys or CSV header columns) hold the prompt and the response of the prompt-response
 * format, and the record id of every format.
 */
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
  /**
   * 1-based line number (JSONL, text per line), row number with the header as row 1 (CSV), row number
   * (Parquet), 1 (a text file as one document); for `unreadable source`, the first line not read.
   */
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
  /** A field the row's format needs is absent (or null) or not a string. */
  | 'missing field'
  /** Auto-detection found no field of any record format in the row. */
  | 'unknown record format'
  /** A chat `messages` list that is not a conversation this system can train on (`readMessages`). */
  | 'bad messages'
  | 'wrong number of columns'
  | 'unparseable CSV'
  /**
   * A text (or the record's key) holding a lone UTF-16 surrogate, as a JSON escape such as "\ud800" can
   * write: it has no UTF-8 form, so the tokenizer (and anything else outside JavaScript) cannot encode it.
   */
  | 'invalid Unicode'
  /** A compressed source damaged part-way: the rest of the file from `line` on, as one entry. */
  | 'unreadable source'
  /** A line (a CSV record, a text file read as one document) longer than MAX_LINE_CHARS. */
  | 'too long';

export interface IngestCounts {
  input: number;
  kept: number;
  quarantined: number;
  /** Quarantined rows by kind. */
  reasons: Partial<Record<QuarantineKind, number>>;
  /** Kept records by the format they were read as (what auto-detection decided). */
  formats: Partial<Record<RowFormat, number>>;
}

export interface IngestReport extends IngestCounts {
  /** The same counts per source, in the order given. */
  bySource: Array<IngestCounts & { label: string }>;
}

const RAW_LIMIT = 500;
const TOO_LONG = `longer than ${MAX_LINE_CHARS / (1024 * 1024)} Mi characters; the rest of it was read past`;

/**
 * A source that cannot be read as configured at all (a CSV header without a needed column, chat messages asked
 * of a CSV): the spec must change, so the activity reports it as bad input rather than retrying.
 */
export class SourceError extends Error {}

/**
 * Refuses a record format its file format cannot hold: a CSV cell is a string, never a list of messages, and
 * plain text is only text.
 */
export function checkRecordFormat(format: SourceFormat, records: RecordFormat | undefined, label: string): void {
  if (format === 'csv' && records === 'messages') {
    throw new SourceError(`${label}: a CSV source cannot hold chat messages (records: messages); write it as JSONL, or give this source its own \`records\` (data.records applies to every source)`);
  }
  if (format === 'text' && records !== undefined && records !== 'auto' && records !== 'text') {
    throw new SourceError(`${label}: a plain-text source holds only text (records: text), not records: ${records}; give this source its own \`records: text\` (data.records applies to every source)`);
  }
}

/** The content-derived key of a turn without an id: first 16 hex digits of sha256(prompt NUL response). */
export function recordKey(prompt: string, response: string): string {
  return sha256Key(`${prompt}\u0000${response}`);
}

/**
 * The key of a record without an id: first 16 hex digits of a sha256 over its whole content. A turn keeps
 * `recordKey`, which existing datasets, caches and splits are keyed by, and so does the conversation [user,
 * assistant] that is the same example (`conversationOf`): one key, one split, whichever shape a source used.
 * Any other conversation (every role and content, in order) or a text hashes its JSON, which never holds a
 * raw NUL, so it cannot collide with a turn's input.
 */
export function contentKey(content: RecordContent): string {
  if ('text' in content) return sha256Key(JSON.stringify({ text: content.text }));
  const messages = conversationOf(content)!;
  const [user, assistant] = messages;
  if (messages.length === 2 && user.role === 'user' && assistant.role === 'assistant') return recordKey(user.content, assistant.content);
  return sha256Key(JSON.stringify({ messages: messages.map((m) => ({ role: m.role, content: m.content })) }));
}

function sha256Key(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** The fields a format cannot do without (detection looks for them, a CSV header must have them). */
function requiredFields(format: RowFormat, fields: FieldMapping): string[] {
  switch (format) {
    case 'messages':
      return ['messages'];
    case 'prompt-completion':
      return ['prompt', 'completion'];
    case 'alpaca':
      return ['instruction', 'output'];
    case 'prompt-response':
      return [fields.prompt, fields.response];
    case 'text':
      return ['text'];
  }
}

/** Auto-detection tries the formats in this order (the spec's `data.records` documents it). */
const DETECTION_ORDER: readonly RowFormat[] = ['messages', 'prompt-completion', 'alpaca', 'prompt-response', 'text'];

/**
 * The format a row (or a CSV header) is read as under `auto`: the first whose required fields it all has.
 * Failing that, the format it has part of, so that the quarantine names what is missing: `completion` means
 * prompt-completion, an alpaca field alpaca, and any other field a format reads (a lone `prompt` above all)
 * the prompt/response fields, how every row was read before formats were detected. Undefined: none at all.
 * A CSV (`tabular`) cannot hold messages, so a column of that name is not taken for them.
 */
export function detectFormat(has: (field: string) => boolean, fields: FieldMapping, tabular = false): RowFormat | undefined {
  const whole = DETECTION_ORDER.find((f) => !(tabular && f === 'messages') && requiredFields(f, fields).every(has));
  if (whole) return whole;
  if (has('completion')) return 'prompt-completion';
  if (['instruction', 'input', 'output'].some(has)) return 'alpaca';
  if ([fields.prompt, fields.response, 'prompt'].some(has)) return 'prompt-response';
  return undefined;
}

/** Why a row (a CSV header: `tabular`) fits no format: the fields it has and those that were looked for. */
function unknownFormat(present: string[], fields: FieldMapping, tabular = false): string {
  const shown = present.length > 10 ? [...present.slice(0, 10), '…'] : present;
  const formats = [...(tabular ? [] : ['messages']), 'prompt + completion', 'instruction + output', `${fields.prompt} + ${fields.response}`, 'text'];
  return `none of the fields {${shown.join(', ')}} belongs to a record format; expected ${formats.join(', ')}`;
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
        async keep(record, format) {
          counts.input++;
          counts.kept++;
          counts.formats[format] = (counts.formats[format] ?? 0) + 1;
          await dataset.write(record);
        },
        async reject(line, kind, detail, raw) {
          counts.input++;
          counts.quarantined++;
          counts.reasons[kind] = (counts.reasons[kind] ?? 0) + 1;
          const entry: QuarantineEntry = { source: source.label, line, reason: detail ? `${kind}: ${detail}` : kind, raw: clipRaw(raw) };
          await quarantine.write(entry);
        },
      };
      await READERS[source.format](source, fields, sink);
      report.bySource.push({ label: source.label, ...counts });
      report.input += counts.input;
      report.kept += counts.kept;
      report.quarantined += counts.quarantined;
      for (const [kind, n] of Object.entries(counts.reasons) as Array<[QuarantineKind, number]>) {
        report.reasons[kind] = (report.reasons[kind] ?? 0) + n;
      }
      for (const [format, n] of Object.entries(counts.formats) as Array<[RowFormat, number]>) {
        report.formats[format] = (report.formats[format] ?? 0) + n;
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
  return { input: 0, kept: 0, quarantined: 0, reasons: {}, formats: {} };
}

/** At most RAW_LIMIT UTF-16 units of a quarantined row, never cutting a surrogate pair in two. */
function clipRaw(raw: string): string {
  if (raw.length <= RAW_LIMIT) return raw;
  const cut = /[\uD800-\uDBFF]/.test(raw[RAW_LIMIT - 1]) ? RAW_LIMIT - 1 : RAW_LIMIT;
  return raw.slice(0, cut);
}

/** Where a reader sends each input row: every row ends in exactly one of the two calls. */
interface Sink {
  keep(record: DataRecord, format: RowFormat): Promise<void>;
  reject(line: number, kind: QuarantineKind, detail: string, raw: string): Promise<void>;
}

type Reader = (source: IngestSource, fields: FieldMapping, sink: Sink) => Promise<void>;
const READERS: Record<SourceFormat, Reader> = {
  jsonl: (source, fields, sink) => ingestJsonl(source, fields, sink),
  csv: (source, fields, sink) => ingestCsv(source, fields, sink),
  text: (source, _fields, sink) => ingestText(source, sink),
  parquet: (source, fields, sink) => ingestParquet(source, fields, sink),
};

/**
 * Runs a line- or row-reading loop; when a compressed source turns out damaged part-way, the rest of the file
 * (from the first line not read) becomes one `unreadable source` entry. Other errors (a file that cannot be
 * read at all) propagate.
 */
async function untilDamaged(source: IngestSource, sink: Sink, nextLine: () => number, read: () => Promise<void>): Promise<void> {
  try {
    await read();
  } catch (error) {
    const damage = corruptionOf(error);
    if (damage === undefined) throw error;
    await sink.reject(nextLine(), 'unreadable source', `${damage}; the rest of the file from here was not read`, '');
  }
}

function openSource(source: IngestSource): Readable {
  return openBytes(source.path, source.compression ?? 'none');
}

/**
 * Why a record's texts (or its key) cannot leave JavaScript: the first lone UTF-16 surrogate, where it is.
 * Every other stage (the tokenizer above all) needs text that has a UTF-8 form.
 */
function invalidUnicode(content: RecordContent, key: string): string | undefined {
  const texts: Array<[string, string]> = [['key', key]];
  if ('messages' in content) content.messages.forEach((m, i) => texts.push([`messages.${i}.content`, m.content]));
  else if ('text' in content) texts.push(['text', content.text]);
  else texts.push(['prompt', content.prompt], ['response', content.response]);
  for (const [field, text] of texts) {
    const lone = /\p{Cs}/u.exec(text);
    if (lone) {
      const unit = lone[0].charCodeAt(0).toString(16);
      return `"${field}" holds a lone UTF-16 surrogate (\\u${unit}) at position ${lone.index}, which has no UTF-8 form`;
    }
  }
  return undefined;
}

/** A row's field by name: a JSON value or a CSV cell string; undefined when absent (or JSON null). */
type Getter = (field: string) => unknown;

/** A row read by a format: the record's content, or why it is not one. */
type Reading = { content: RecordContent } | { kind: QuarantineKind; detail: string };

/** Reads one row as `format`; every shape the trainer takes comes out of here. */
function readRow(format: RowFormat, get: Getter, fields: FieldMapping): Reading {
  const missing = (field: string): Reading => ({ kind: 'missing field', detail: `"${field}" is absent or not a string (records: ${format})` });
  const str = (field: string) => {
    const value = get(field);
    return typeof value === 'string' ? value : undefined;
  };
  switch (format) {
    case 'prompt-response':
    case 'prompt-completion': {
      const [promptField, responseField] = requiredFields(format, fields);
      const prompt = str(promptField);
      if (prompt === undefined) return missing(promptField);
      const response = str(responseField);
      if (response === undefined) return missing(responseField);
      return { content: { prompt, response } };
    }
    case 'alpaca': {
      const instruction = str('instruction');
      if (instruction === undefined) return missing('instruction');
      const output = str('output');
      if (output === undefined) return missing('output');
      const input = get('input');
      if (input !== undefined && typeof input !== 'string') return { kind: 'missing field', detail: `"input" is ${jsonType(input)}, not a string (records: alpaca)` };
      // Most alpaca rows carry an empty input when the instruction says it all: then no blank line is added.
      const prompt = input !== undefined && input.trim() !== '' ? `${instruction}\n\n${input}` : instruction;
      return { content: { prompt, response: output } };
    }
    case 'text': {
      const text = str('text');
      return text === undefined ? missing('text') : { content: { text } };
    }
    case 'messages':
      return get('messages') === undefined ? { kind: 'missing field', detail: '"messages" is absent (records: messages)' } : readMessages(get('messages'));
  }
}

/**
 * A chat `messages` list as OpenAI's chat format writes it, checked to be a conversation the trainer can
 * render: roles system, user and assistant only (a `tool` turn or a tool call has no place in a chat template
 * here), an optional system message first and nowhere else, at least one user message, and the assistant's
 * answer last (the turn the loss is on). Fields other than role and content are dropped.
 */
function readMessages(value: unknown): Reading {
  const bad = (detail: string): Reading => ({ kind: 'bad messages', detail });
  if (!Array.isArray(value)) return bad(`"messages" is ${jsonType(value)}, not a list`);
  if (value.length === 0) return bad('the list is empty');
  const messages: ChatMessage[] = [];
  for (const [i, m] of value.entries()) {
    const n = i + 1;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return bad(`message ${n} is ${jsonType(m)}, not an object`);
    const { role, content } = m as Record<string, unknown>;
    if (!CHAT_ROLES.includes(role as ChatRole)) {
      return bad(`message ${n} has ${role === undefined ? 'no role' : `role ${show(role)}`}; expected system, user or assistant`);
    }
    const text = contentText(content);
    if (typeof text !== 'string') return bad(`message ${n}: ${text.error}`);
    messages.push({ role: role as ChatRole, content: text });
  }
  const lateSystem = messages.findIndex((m, i) => i > 0 && m.role === 'system');
  if (lateSystem >= 0) return bad(`message ${lateSystem + 1} is a system message; only the first message may be one`);
  if (!messages.some((m) => m.role === 'user')) return bad('no user message');
  // Chat templates open a conversation with the user (SmolLM2's adds its system prompt before the first turn).
  const first = messages.find((m) => m.role !== 'system')!;
  if (first.role !== 'user') return bad(`the first message after any system message is the ${first.role}'s; a conversation starts with the user`);
  const last = messages[messages.length - 1];
  if (last.role !== 'assistant') return bad(`the last message is the ${last.role}'s; a conversation ends with the assistant's answer`);
  return { content: { messages } };
}

/**
 * A message's content as text. OpenAI also takes a list of typed parts: text parts are joined with newlines
 * (as vLLM's chat server joins them); any other part (an image, audio) cannot be trained on here.
 */
function contentText(content: unknown): string | { error: string } {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return { error: `content is ${content === undefined ? 'absent' : jsonType(content)}, not a string` };
  const texts: string[] = [];
  for (const part of content) {
    const p = (typeof part === 'object' && part !== null ? part : {}) as Record<string, unknown>;
    if (p.type !== 'text' || typeof p.text !== 'string') {
      return { error: `a content part ${p.type === undefined ? 'is not a {type: "text", text} part' : `has type ${show(p.type)}`}; only text parts are read` };
    }
    texts.push(p.text);
  }
  return texts.join('\n');
}

/** A JSON value in a reason, cut short: reasons are read in a table. */
function show(value: unknown): string {
  const json = safeJson(value);
  return json.length > 40 ? `${json.slice(0, 40)}…` : json;
}

/**
 * JSON of any decoded value, never throwing: a value nested deeper than the stack (JSON.parse reads any depth,
 * JSON.stringify does not) and Parquet's bigints would make JSON.stringify throw, failing the whole stage.
 */
function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
  } catch {
    return Array.isArray(value) ? '[…deeply nested…]' : '{…deeply nested…}';
  }
}

/** The record of a row's content: its id when it has one, else the digest of its content. */
function toRecord(content: RecordContent, get: Getter, fields: FieldMapping): DataRecord {
  // An id column is optional per record: a blank or absent id falls back to the content digest.
  let key = contentKey(content);
  if (fields.key !== undefined) {
    const id = get(fields.key);
    if ((typeof id === 'string' && id.trim() !== '') || (typeof id === 'number' && Number.isFinite(id)) || typeof id === 'bigint') {
      key = String(id).trim();
    }
  }
  // Key first, then the content's own fields in order: a turn is written exactly as before formats existed.
  return { key, ...content } as DataRecord;
}

/** Keeps a record, unless a later stage could not process its text: then it is quarantined. */
async function keepRecord(sink: Sink, line: number, record: DataRecord, format: RowFormat, raw: string): Promise<void> {
  const invalid = invalidUnicode(record, record.key);
  if (invalid) await sink.reject(line, 'invalid Unicode', invalid, raw);
  else await sink.keep(record, format);
}

/** One object-shaped row (a JSONL object, a Parquet row) read by its stated or detected format. */
async function ingestObject(object: Record<string, unknown>, line: number, raw: string, stated: RecordFormat, fields: FieldMapping, sink: Sink): Promise<void> {
  // A null field counts as absent: exports of mixed datasets fill the columns a row lacks with null.
  const get: Getter = (name) => (Object.hasOwn(object, name) && object[name] !== null ? object[name] : undefined);
  const format = stated === 'auto' ? detectFormat((name) => get(name) !== undefined, fields) : stated;
  if (format === undefined) return sink.reject(line, 'unknown record format', unknownFormat(Object.keys(object), fields), raw);
  const reading = readRow(format, get, fields);
  if ('kind' in reading) return sink.reject(line, reading.kind, reading.detail, raw);
  await keepRecord(sink, line, toRecord(reading.content, get, fields), format, raw);
}

async function ingestJsonl(source: IngestSource, fields: FieldMapping, sink: Sink): Promise<void> {
  const stated = source.records ?? 'auto';
  let last = 0;
  await untilDamaged(source, sink, () => last + 1, async () => {
    for await (const { text, line, tooLong } of readLines(openSource(source), source.encoding)) {
      last = line;
      if (tooLong) {
        await sink.reject(line, 'too long', TOO_LONG, text);
        continue;
      }
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
        // NUL bytes between the characters are what UTF-16 looks like when read as UTF-8.
        const nuls = text.split('\u0000').length - 1;
        const hint = nuls * 4 >= text.length ? ' (a NUL byte between characters: is the file UTF-16? sources must be UTF-8 or Shift_JIS)' : '';
        await sink.reject(line, 'invalid JSON', `${(error as Error).message}${hint}`, text);
        continue;
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        await sink.reject(line, 'not a JSON object', `got ${jsonType(value)}`, text);
        continue;
      }
      await ingestObject(value as Record<string, unknown>, line, text, stated, fields, sink);
    }
  });
}

/** Parquet: every row an object of its columns (a `messages` column of structs reads as a chat list). */
async function ingestParquet(source: IngestSource, fields: FieldMapping, sink: Sink): Promise<void> {
  const stated = source.records ?? 'auto';
  let parquet: ParquetSource;
  try {
    parquet = await openParquet(source.path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw error;
    // Not Parquet at all (no footer): the spec names the wrong file or format.
    throw new SourceError(`${source.label}: not a Parquet file (${(error as Error).message}); check the file or its \`format\``);
  }
  let last = 0;
  await untilDamaged(source, sink, () => last + 1, async () => {
    for await (const { row, line } of parquet.read()) {
      last = line;
      const raw = safeJson(row);
      // hyparquet decodes a string column's invalid UTF-8 into U+FFFD, as the line decoder does.
      const bad = Object.entries(row).find(([, v]) => typeof v === 'string' && v.includes('\uFFFD'));
      if (bad) {
        await sink.reject(line, 'undecodable bytes', `column "${bad[0]}" is not valid UTF-8`, raw);
        continue;
      }
      await ingestObject(row, line, raw, stated, fields, sink);
    }
  });
}

/**
 * Plain text: each non-blank line one `{key, text}` record, or (`documents: file`) the whole file one record,
 * its line breaks kept. Either way the key is the digest of the text.
 */
async function ingestText(source: IngestSource, sink: Sink): Promise<void> {
  checkRecordFormat('text', source.records, source.label);
  const keep = async (line: number, text: string) => {
    if (text.includes('\uFFFD')) return sink.reject(line, 'undecodable bytes', `not valid ${source.encoding}`, text);
    await keepRecord(sink, line, { key: contentKey({ text }), text }, 'text', text);
  };
  let last = 0;
  if ((source.documents ?? 'line') === 'line') {
    await untilDamaged(source, sink, () => last + 1, async () => {
      for await (const { text, line, tooLong } of readLines(openSource(source), source.encoding)) {
        last = line;
        if (tooLong) await sink.reject(line, 'too long', TOO_LONG, text);
        else if (text.trim() !== '') await keep(line, text);
      }
    });
    return;
  }
  const parts: string[] = [];
  let chars = 0;
  await untilDamaged(source, sink, () => 1, async () => {
    for await (const { text, tooLong } of readLines(openSource(source), source.encoding)) {
      chars += text.length + 1;
      parts.push(text);
      // The whole file is one string: past the limit it is refused, and the rest is not held.
      if (tooLong || chars > MAX_LINE_CHARS) return sink.reject(1, 'too long', TOO_LONG, parts.join('\n').slice(0, RAW_LIMIT));
    }
    const document = parts.join('\n');
    if (document.trim() !== '') await keep(1, document);
  });
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
  checkRecordFormat('csv', source.records, source.label);
  const skipped: SkippedRow[] = [];
  const parser = parse({
    // Rows with too many or too few cells still come through, so we can quarantine them one by one rather
    // than let the parser fail the file.
    relax_column_count: true,
    // A stray quote inside an unquoted cell is read literally instead of derailing every following row.
    relax_quotes: true,
    skip_empty_lines: true,
    // Either line ending, mixed in one file too: csv-parse would otherwise take the first one it meets for the
    // only one, and read every LF row of a file whose header ends in CRLF as part of one record.
    record_delimiter: ['\r\n', '\n'],
    // What remains fatal to a record (e.g. a quote never closed before the end of the file) skips that
    // record and continues; we quarantine it from the hook.
    skip_records_with_error: true,
    // A record past the line limit is one of those (and memory stays bounded), not a stage that runs out of it.
    max_record_size: MAX_LINE_CHARS,
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
  pipeline(openSource(source), iconv.decodeStream(source.encoding), parser, () => {});

  let header: string[] | undefined;
  // Every row has the header's columns, so the format is settled once, from the header.
  let format: RowFormat | undefined;
  const columns = new Map<string, number>();
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

  let last = 0;
  await untilDamaged(source, sink, () => last + 1, async () => {
    for await (const { record, raw, info } of parser as AsyncIterable<CsvRow>) {
      await flushSkipped(info.records);
      const row = info.records + info.empty_lines + skippedSoFar;
      last = row;
      const text = trimNewlines(raw);
      if (header === undefined) {
        header = record.map((name) => name.trim());
        // The first of repeated column names counts. A missing id column is not an error: keys fall back to
        // content digests, as for JSONL; neither is a missing alpaca input.
        header.forEach((name, i) => columns.has(name) || columns.set(name, i));
        format = csvFormat(header, columns, source, fields);
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
      const get: Getter = (name) => {
        const i = columns.get(name);
        return i === undefined ? undefined : record[i];
      };
      // With the header and the column count checked, every needed cell exists; this only guards the types.
      const reading = readRow(format!, get, fields);
      if ('kind' in reading) {
        await sink.reject(row, reading.kind, reading.detail, text);
        continue;
      }
      await keepRecord(sink, row, toRecord(reading.content, get, fields), format!, text);
    }
    await flushSkipped(Number.POSITIVE_INFINITY);
  });
}

/**
 * The format of a CSV's rows, from its header: the stated one or the detected one, whose required columns must
 * all be there. A file without them cannot be ingested at all, so that is an error, not a quarantine.
 */
function csvFormat(header: string[], columns: Map<string, number>, source: IngestSource, fields: FieldMapping): RowFormat {
  const stated = source.records ?? 'auto';
  const format = stated === 'auto' ? detectFormat((name) => columns.has(name), fields, true) : stated;
  if (format === undefined) throw new SourceError(`${source.label}: the CSV header fits no record format: ${unknownFormat(header, fields, true)}`);
  for (const name of requiredFields(format, fields)) {
    if (!columns.has(name)) {
      const hint = format === 'prompt-response' ? 'check data.fields' : `records: ${format} needs it`;
      throw new SourceError(`${source.label}: the CSV header has no "${name}" column (columns: ${header.join(', ')}); ${hint}`);
    }
  }
  return format;
}

/** csv-parse's raw text carries the row's line break and any blank lines skipped before it. */
function trimNewlines(text: string): string {
  return text.replace(/^[\r\n]+|[\r\n]+$/g, '');
}
