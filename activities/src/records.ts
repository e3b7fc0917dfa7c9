/**
 * The record every data stage exchanges, and the JSONL plumbing they share: line iteration over a file of
 * any supported encoding without reading it whole, and a buffered writer that respects backpressure.
 *
 * A dataset file is JSONL of training records, one per line, UTF-8, in input order. A record is one of three
 * shapes (ingest maps every input format onto them; the trainer renders each through the model's chat
 * template, services/trainer/CONTRACT.md):
 *   {key, prompt, response}  one turn: a user prompt and the assistant's answer (prompt/response,
 *                            prompt/completion and alpaca inputs);
 *   {key, messages}          a conversation: OpenAI roles system/user/assistant, ending with an assistant turn;
 *   {key, text}              plain text for continued pretraining: loss on every token.
 */
import fs from 'node:fs';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import iconv from 'iconv-lite';

export type ChatRole = 'system' | 'user' | 'assistant';
export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface TurnRecord {
  key: string;
  prompt: string;
  response: string;
}
export interface ChatRecord {
  key: string;
  messages: ChatMessage[];
}
export interface TextRecord {
  key: string;
  text: string;
}
/** A normalized training record. `key` is stable across runs: the split stage partitions by it. */
export type DataRecord = TurnRecord | ChatRecord | TextRecord;
/** A record's content, before it has a key (ingest derives the default key from it). */
export type RecordContent = Omit<TurnRecord, 'key'> | Omit<ChatRecord, 'key'> | Omit<TextRecord, 'key'>;

/** Every text a record holds, in order (what cleaning rules, length bounds and duplicate checks look at). */
export function textsOf(r: RecordContent): string[] {
  if ('messages' in r) return r.messages.map((m) => m.content);
  if ('text' in r) return [r.text];
  return [r.prompt, r.response];
}

/** The same record with each of its texts replaced by `f(text)` (in the order of `textsOf`). */
export function mapTexts(r: DataRecord, f: (text: string, index: number) => string): DataRecord {
  if ('messages' in r) return { key: r.key, messages: r.messages.map((m, i) => ({ role: m.role, content: f(m.content, i) })) };
  if ('text' in r) return { key: r.key, text: f(r.text, 0) };
  return { key: r.key, prompt: f(r.prompt, 0), response: f(r.response, 1) };
}

/**
 * The conversation a record is (the trainer's template.py renders it so): a turn is [user: prompt, assistant:
 * response], so one example written as a turn or as that conversation is the same record. Undefined for plain text.
 */
export function conversationOf(r: RecordContent): ChatMessage[] | undefined {
  if ('messages' in r) return r.messages;
  if ('text' in r) return undefined;
  return [
    { role: 'user', content: r.prompt },
    { role: 'assistant', content: r.response },
  ];
}

/**
 * What a model is asked and what it should answer, for scoring generations and sampling answers: the
 * conversation before the last assistant turn and that turn's text. Plain text has no question: undefined.
 */
export function promptAndReference(r: DataRecord): { prompt: string | ChatMessage[]; reference: string } | undefined {
  if ('text' in r) return undefined;
  if ('prompt' in r) return { prompt: r.prompt, reference: r.response };
  const last = r.messages.length - 1;
  return { prompt: r.messages.slice(0, last), reference: r.messages[last].content };
}

/** The last user message of a record's prompt, as text (labeling shows it; preference pairs keep it). */
export function lastUserText(r: DataRecord): string | undefined {
  if ('prompt' in r) return r.prompt;
  if ('messages' in r) return [...r.messages].reverse().find((m) => m.role === 'user')?.content;
  return undefined;
}

/** Text encodings a data source may use (the spec's `encoding`). */
export type TextEncoding = 'utf-8' | 'shift_jis';

export interface TextLine {
  /** The line without its terminator (`\n` or `\r\n`); of a line longer than the limit, its first characters. */
  text: string;
  /** 1-based physical line number, blank lines included. */
  line: number;
  /** The line was longer than the limit: `text` is its head, the rest was read past and dropped. */
  tooLong?: true;
}

/**
 * The longest line `readLines` holds: 64 Mi UTF-16 units (128 MiB). A longer line is no training record, and
 * one past V8's string limit (~512 Mi) would make the reader throw and fail the stage on every retry.
 */
export const MAX_LINE_CHARS = 64 * 1024 * 1024;
/** How much of a line over the limit is kept to show in a quarantine entry. */
const TOO_LONG_HEAD = 1000;

/**
 * Yields the lines of a file (a path, or a byte stream such as a decompressor's) one at a time. Decoding goes
 * through iconv-lite's stateful decoder, so a multi-byte character split across read chunks decodes correctly,
 * undecodable bytes become U+FFFD (callers use that to spot them) and a UTF-8 byte-order mark is dropped. A line
 * longer than `maxChars` comes out as its head with `tooLong`, memory held to the limit. Read errors reject
 * the iteration.
 */
export async function* readLines(source: string | Readable, encoding: TextEncoding = 'utf-8', maxChars = MAX_LINE_CHARS): AsyncGenerator<TextLine> {
  const decoder = iconv.getDecoder(encoding);
  let pending = '';
  let line = 0;
  // Reading past the rest of a line over the limit; `pending` holds its head.
  let dropping = false;
  for await (const chunk of typeof source === 'string' ? fs.createReadStream(source) : source) {
    let decoded = decoder.write(chunk as Buffer);
    if (dropping) {
      const end = decoded.indexOf('\n');
      if (end < 0) continue;
      yield { text: pending, line: ++line, tooLong: true };
      pending = '';
      dropping = false;
      decoded = decoded.slice(end + 1);
    }
    pending += decoded;
    // A long line spans many chunks: only a chunk with a line break needs the pending text split.
    if (decoded.includes('\n')) {
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const part of parts) {
        if (part.length > maxChars) yield { text: part.slice(0, TOO_LONG_HEAD), line: ++line, tooLong: true };
        else yield { text: stripCr(part), line: ++line };
      }
    }
    if (pending.length > maxChars) {
      pending = pending.slice(0, TOO_LONG_HEAD);
      dropping = true;
    }
  }
  const tail = decoder.end() ?? '';
  if (dropping) {
    yield { text: pending, line: ++line, tooLong: true };
    return;
  }
  pending += tail;
  // A final line without a terminating newline is still a line; an empty tail after the last "\n" is not.
  if (pending.length > maxChars) yield { text: pending.slice(0, TOO_LONG_HEAD), line: ++line, tooLong: true };
  else if (pending !== '') yield { text: stripCr(pending), line: ++line };
}

function stripCr(text: string): string {
  return text.endsWith('\r') ? text.slice(0, -1) : text;
}

/**
 * Yields the parsed value of every non-blank line of a UTF-8 JSONL file. For files this system wrote itself:
 * a line that is not JSON is a bug upstream, so it throws (with file and line) instead of skipping.
 */
export async function* readJsonl<T = unknown>(path: string): AsyncGenerator<{ value: T; line: number }> {
  // A file this system wrote has no line limit: ingest already refused the input lines past it.
  for await (const { text, line } of readLines(path, 'utf-8', Number.POSITIVE_INFINITY)) {
    if (text.trim() === '') continue;
    let value: T;
    try {
      value = JSON.parse(text) as T;
    } catch (error) {
      throw new Error(`${path}:${line}: invalid JSON (${(error as Error).message})`);
    }
    yield { value, line };
  }
}

/** Type guard for a well-formed `DataRecord` (used when reading a stage's own intermediate files). */
export function isDataRecord(value: unknown): value is DataRecord {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  if (typeof v.key !== 'string') return false;
  if (Array.isArray(v.messages)) {
    return (
      v.messages.length > 0 &&
      v.messages.every((m) => typeof m === 'object' && m !== null && CHAT_ROLES.includes((m as ChatMessage).role) && typeof (m as ChatMessage).content === 'string') &&
      (v.messages.at(-1) as ChatMessage).role === 'assistant'
    );
  }
  if (typeof v.text === 'string') return true;
  return typeof v.prompt === 'string' && typeof v.response === 'string';
}

/** Reads a dataset file, throwing on any line that is not a training record. */
export async function* readRecords(path: string): AsyncGenerator<DataRecord & { line: number }> {
  for await (const { value, line } of readJsonl(path)) {
    if (!isDataRecord(value)) throw new Error(`${path}:${line}: not a training record ({key, prompt, response}, {key, messages} or {key, text})`);
    const v = value as DataRecord;
    const own: DataRecord = 'messages' in v ? { key: v.key, messages: v.messages } : 'text' in v ? { key: v.key, text: v.text } : { key: v.key, prompt: v.prompt, response: v.response };
    yield { ...own, line };
  }
}

/**
 * Writes lines of text (or raw bytes, for a binary sidecar), batched into ~64 KiB writes (one syscall per line
 * would dominate on large datasets); `write` waits for 'drain' when the stream's buffer is full, so memory stays
 * bounded however fast the producer is. Always finish with `close()` (or `abort()` on failure).
 */
export class LineWriter {
  private readonly stream: fs.WriteStream;
  private batch: Array<string | Buffer> = [];
  private batchChars = 0;
  private failure: Error | undefined;
  /** Lines written so far. */
  lines = 0;

  constructor(
    readonly path: string,
    private readonly batchLimit = 64 * 1024,
  ) {
    this.stream = fs.createWriteStream(path);
    // Remember the first error and rethrow it from the next write/close: an unhandled 'error' would crash.
    this.stream.on('error', (error) => {
      this.failure ??= error;
    });
  }

  /** Writes `text` and a line break (`text` must hold none). */
  async write(text: string): Promise<void> {
    this.lines++;
    return this.push(text + '\n', text.length + 1);
  }

  /** Writes the bytes as they are (copied, so the caller may reuse its buffer). */
  async writeBytes(bytes: Buffer): Promise<void> {
    return this.push(Buffer.from(bytes), bytes.length);
  }

  private async push(part: string | Buffer, size: number): Promise<void> {
    if (this.failure) throw this.failure;
    this.batch.push(part);
    this.batchChars += size;
    if (this.batchChars >= this.batchLimit) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const parts = this.batch;
    const data = parts.every((p) => typeof p === 'string') ? parts.join('') : Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
    this.batch = [];
    this.batchChars = 0;
    // `once` rejects if the stream errors while we wait, so a full disk cannot hang us here.
    if (!this.stream.write(data)) await once(this.stream, 'drain');
  }

  /** Flushes and closes; resolves once the file descriptor is released, i.e. the file is complete. */
  async close(): Promise<void> {
    await this.flush();
    if (this.failure) {
      this.stream.destroy();
      throw this.failure;
    }
    await new Promise<void>((resolve, reject) => {
      this.stream.once('error', reject);
      this.stream.once('close', () => resolve());
      this.stream.end();
    });
    if (this.failure) throw this.failure;
  }

  /** Releases the file after a failure; the partial file is left for the caller to discard. */
  abort(): void {
    this.stream.destroy();
  }
}

/** Writes one JSON value per line. */
export class JsonlWriter extends LineWriter {
  override write(value: unknown): Promise<void> {
    return super.write(JSON.stringify(value));
  }
}
