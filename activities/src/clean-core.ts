/**
 * Clean, the local-file core: normalizes the text of every record of a dataset JSONL and drops the records
 * that should not be trained on, reporting what each rule did (counts and a few before/after samples).
 *
 * The text rules (@tempered/text: NFKC, control characters, whitespace, PII masking) apply to every text of a
 * record (prompt and response, each message of a conversation, a plain text: `textsOf`).
 * Then a record is removed when any of its texts is empty, when its texts together are shorter than
 * `minChars` or longer than `maxChars` (in code points), or, with `dedupe: exact`, when a record of the same
 * cleaned content was already kept (compared as the conversation a record is: every role and text; a turn
 * is [user, assistant]). Record keys and roles pass through unchanged.
 *
 * Quality rules, each off by default (an existing spec cleans exactly as before, and its report has no key
 * for them), applied in this order after the length bounds:
 *   - `languages`: the record's texts together are identified (tinyld: @tempered/text/language) and a record
 *     in a language not listed is removed as `language`; `languages` in the report counts every record that
 *     reached the rule, per detected language;
 *   - `blocklist`: a record with an entry of the packaged lists or the spec's words in any text is removed as
 *     `blocked` (@tempered/text/blocklist, the gateway's own lists and matching);
 *   - `quality`: a record whose texts together fail one of Gopher's heuristics (@tempered/text/quality) is
 *     removed as `quality`; `quality` in the report counts the removals per heuristic (the first one failed);
 *   - `dedupe: near`: after the exact check, a record whose MinHash signature (character 5-grams, 14 × 8
 *     bands: @tempered/text/minhash) reaches `nearThreshold` against a kept record's is removed as
 *     `nearDuplicate`; `nearDuplicates` in the report gives the cluster count and the first clusters.
 *
 * The per-field functions are pure and exported for tests; `cleanFile` streams, so memory grows only with
 * the dedupe set (a 16-byte digest per kept record in one typed array: digest-set.ts) and, with near dedupe,
 * the kept records' signatures and band keys (under 0.9 KB each: @tempered/text/minhash).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { CHANGE_RULES, charCount, cleanText, type ChangeRule, type TextChange, type TextRules } from '@tempered/text';
import { Blocklist } from '@tempered/text/blocklist';
import { detectLanguage } from '@tempered/text/language';
import { HASHES, NearDuplicateIndex, signature } from '@tempered/text/minhash';
import { qualityFailure, type QualityHeuristic, type QualityThresholds } from '@tempered/text/quality';
import { DigestSet } from './digest-set';
import { LineWriter, conversationOf, mapTexts, readLines, readRecords, textsOf, type DataRecord, type RecordContent } from './records';

export interface CleanOptions extends TextRules {
  dedupe: 'exact' | 'near' | 'none';
  minChars: number;
  maxChars: number;
  /** With `dedupe: near` (the spec's default: 0.7). */
  nearThreshold?: number;
  languages?: string[];
  blocklist?: { languages: string[]; words: string[] };
  quality?: QualityThresholds;
}

/** Reasons of the rules that are always on. */
type BaseReason = 'empty' | 'tooShort' | 'tooLong' | 'duplicate';
/** Reasons of the quality rules, in the report only when their rule is on. */
type QualityReason = 'language' | 'blocked' | 'quality' | 'nearDuplicate';
export type RemovalReason = BaseReason | QualityReason;

export const REMOVAL_REASONS: readonly RemovalReason[] = ['empty', 'tooShort', 'tooLong', 'duplicate', 'language', 'blocked', 'quality', 'nearDuplicate'];

/** A kept record and the near duplicates of it that were removed. */
export interface NearCluster {
  kept: string;
  removed: Array<{ key: string; similarity: number }>;
}

/** A record removed by a quality rule, with what decided it. */
export interface RemovedSample {
  key: string;
  /** The detected language, the blocked entry as written, the heuristic failed, or the kept record's key. */
  why: string;
  text: string;
}

/** Where a text sits in its record: a turn's prompt or response, a plain text, or a conversation's n-th message (0-based). */
export type TextField = 'prompt' | 'response' | 'text' | `messages.${number}`;

export interface CleanSample {
  key: string;
  field: TextField;
  /** The field just before and just after this rule ran (truncated to 200 characters). */
  before: string;
  after: string;
}

export interface CleanReport {
  input: number;
  kept: number;
  /** Records removed, by reason; each removed record counts once. kept + sum(removed) = input. */
  removed: Record<BaseReason, number> & Partial<Record<QualityReason, number>>;
  /** Records (of all input records, removed ones included) with a text a rule altered. */
  changed: Record<ChangeRule, number>;
  /** Records altered by at least one rule. */
  changedRecords: number;
  /** Up to 3 samples per rule, the first ones in input order. */
  examples: Record<ChangeRule, CleanSample[]>;
  /** With `languages`: records that reached the rule, per detected language (`und` when undetermined). */
  languages?: Record<string, number>;
  /** Up to 3 samples per quality rule that removed something, the first ones in input order. */
  removedExamples?: Partial<Record<QualityReason, RemovedSample[]>>;
  /** With `quality`: records removed, per heuristic (the first one each failed). */
  quality?: Partial<Record<QualityHeuristic, number>>;
  /** With `dedupe: near`: how many kept records have near duplicates, and the first clusters (5 removed keys each at most). */
  nearDuplicates?: { clusters: number; examples: NearCluster[] };
}

const SAMPLES_PER_RULE = 3;
const CLUSTER_EXAMPLES = 3;
const CLUSTER_KEYS = 5;
const SAMPLE_CHARS = 200;
/** Of a record's sha256, what the exact check compares (DigestSet's width). */
const DIGEST_BYTES = 16;

/** The field names of a record's texts, in the order of `textsOf`. */
function fieldsOf(record: RecordContent): TextField[] {
  if ('messages' in record) return record.messages.map((_, i) => `messages.${i}` as const);
  if ('text' in record) return ['text'];
  return ['prompt', 'response'];
}

/**
 * Why a cleaned record would be removed before deduplication, or undefined when it passes. An empty text
 * (a prompt, a response, any message of a conversation) leaves a turn with nothing to learn from or to
 * answer, so the whole record goes, as `empty`.
 */
export function removalReason(
  record: RecordContent,
  options: Pick<CleanOptions, 'minChars' | 'maxChars'>,
): Exclude<RemovalReason, 'duplicate'> | undefined {
  const texts = textsOf(record);
  if (texts.some((t) => t === '')) return 'empty';
  const length = texts.reduce((n, t) => n + charCount(t), 0);
  if (length < options.minChars) return 'tooShort';
  if (length > options.maxChars) return 'tooLong';
  return undefined;
}

/** A report with every count at zero, and a key for each quality rule the options turn on (and only those). */
export function emptyReport(options: CleanOptions): CleanReport {
  const report: CleanReport = {
    input: 0,
    kept: 0,
    removed: { empty: 0, tooShort: 0, tooLong: 0, duplicate: 0 },
    changed: { nfkc: 0, control: 0, whitespace: 0, email: 0, phone: 0 },
    changedRecords: 0,
    examples: { nfkc: [], control: [], whitespace: [], email: [], phone: [] },
  };
  const on = rulesOn(options);
  if (on.languages) ((report.removed.language = 0), (report.languages = {}));
  if (on.blocklist) report.removed.blocked = 0;
  if (on.quality) ((report.removed.quality = 0), (report.quality = {}));
  if (on.near) ((report.removed.nearDuplicate = 0), (report.nearDuplicates = { clusters: 0, examples: [] }));
  if (on.languages || on.blocklist || on.quality || on.near) report.removedExamples = {};
  return report;
}

function rulesOn(options: CleanOptions) {
  return {
    languages: options.languages?.length ? new Set(options.languages) : undefined,
    blocklist: options.blocklist && (options.blocklist.languages.length || options.blocklist.words.length) ? options.blocklist : undefined,
    quality: options.quality,
    near: options.dedupe === 'near',
  };
}

/**
 * A record that passed every rule that looks at one record alone, and what the dedupe pass decides it by.
 * Clean is these two passes: the first is pure per record, so it can run on shards of a dataset in parallel;
 * the second is sequential in input order (the first copy of a text is the one kept), so the kept records
 * are the same, byte for byte, however the dataset was sharded.
 */
export interface Candidate {
  /** The cleaned record as its JSONL line (no line break). */
  line: string;
  /** With dedupe exact or near: the first 16 bytes of the sha256 the exact check compares. */
  digest?: Buffer;
  /** With dedupe near: the record's MinHash signature. */
  signature?: Uint32Array;
  /** The record, when at hand (the near rule's report needs its key and text; else parsed from `line`). */
  record?: DataRecord;
}

/** The first pass over records in input order: text rules, length bounds, languages, blocklist, quality. */
export async function* cleanCandidates(records: AsyncIterable<DataRecord>, options: CleanOptions, report: CleanReport): AsyncGenerator<Candidate> {
  const rules = perRecordRules(options, report);
  for await (const record of records) {
    report.input++;
    const results = textsOf(record).map((text) => cleanText(text, options));
    const fields = fieldsOf(record);

    const rulesHit = new Set<ChangeRule>();
    for (const [i, result] of results.entries()) {
      const field = fields[i];
      for (const change of result.changes) {
        rulesHit.add(change.rule);
        const samples = report.examples[change.rule];
        // One sample per record and rule keeps the three samples from being one record's texts.
        if (samples.length < SAMPLES_PER_RULE && samples.at(-1)?.key !== record.key) {
          samples.push({ key: record.key, field, before: clip(change.before), after: clip(change.after) });
        }
      }
    }
    for (const rule of rulesHit) report.changed[rule]++;
    if (rulesHit.size > 0) report.changedRecords++;

    // mapTexts builds the record afresh (key first, then its own fields), so a turn is written as before.
    const cleaned: DataRecord = mapTexts(record, (_, i) => results[i].text);
    const reason = removalReason(cleaned, options);
    if (reason) {
      report.removed[reason]++;
      continue;
    }
    const qualityReason = rules.reason(cleaned);
    if (qualityReason) {
      report.removed[qualityReason]!++;
      continue;
    }
    const candidate: Candidate = { line: JSON.stringify(cleaned), record: cleaned };
    if (options.dedupe !== 'none') {
      // JSON is unambiguous where joined texts would not be (a text may hold NUL). A record is compared as
      // the conversation it is, roles included, so a turn and the same [user, assistant] conversation are
      // duplicates; a plain text only equals a plain text.
      const same = 'text' in cleaned ? { text: cleaned.text } : conversationOf(cleaned)!.map((m) => [m.role, m.content]);
      candidate.digest = createHash('sha256').update(JSON.stringify(same)).digest().subarray(0, DIGEST_BYTES);
    }
    if (options.dedupe === 'near') candidate.signature = signature(joinedText(cleaned));
    yield candidate;
  }
}

/**
 * The second pass, fed candidates in input order: exact duplicates, then near duplicates of a kept record.
 * `keep` answers whether a candidate is kept, counting it in `report` either way.
 */
export class Deduplicator {
  private readonly seen = new DigestSet();
  private readonly near: NearDuplicateIndex | undefined;
  /** Key of each kept record, in keeping order (the near index names kept records by their position). */
  private readonly keptKeys: string[] = [];
  private readonly clusterSizes = new Map<number, number>();

  constructor(
    private readonly options: CleanOptions,
    private readonly report: CleanReport,
  ) {
    this.near = options.dedupe === 'near' ? new NearDuplicateIndex(options.nearThreshold ?? 0.7) : undefined;
  }

  keep(candidate: Candidate): boolean {
    const { report } = this;
    if (this.options.dedupe !== 'none' && !this.seen.add(candidate.digest!)) {
      report.removed.duplicate++;
      return false;
    }
    if (this.near) {
      const record = (candidate.record ??= JSON.parse(candidate.line) as DataRecord);
      const hit = this.near.check(candidate.signature!);
      if (!hit) {
        this.keptKeys.push(record.key);
      } else {
        const size = this.clusterSizes.get(hit.of) ?? 0;
        this.clusterSizes.set(hit.of, size + 1);
        const clusters = report.nearDuplicates!;
        if (size === 0) clusters.clusters++;
        const keptKey = this.keptKeys[hit.of];
        let cluster = clusters.examples.find((c) => c.kept === keptKey);
        if (!cluster && size === 0 && clusters.examples.length < CLUSTER_EXAMPLES) clusters.examples.push((cluster = { kept: keptKey, removed: [] }));
        if (cluster && cluster.removed.length < CLUSTER_KEYS) cluster.removed.push({ key: record.key, similarity: Math.round(hit.similarity * 1000) / 1000 });
        sampleRemoved(report, 'nearDuplicate', record.key, keptKey, joinedText(record));
        report.removed.nearDuplicate!++;
        return false;
      }
    }
    report.kept++;
    return true;
  }
}

/** Cleans a dataset JSONL in one process: both passes, streaming. */
export async function cleanFile(inPath: string, outPath: string, options: CleanOptions): Promise<CleanReport> {
  const report = emptyReport(options);
  const dedupe = new Deduplicator(options, report);
  const out = new LineWriter(outPath);
  try {
    for await (const candidate of cleanCandidates(readRecords(inPath), options, report)) {
      if (dedupe.keep(candidate)) await out.write(candidate.line);
    }
    await out.close();
  } catch (error) {
    out.abort();
    throw error;
  }
  return ordered(report);
}

/**
 * The first pass over one shard of a dataset (a JSONL file of whole lines): the candidates' lines to
 * `candidatesPath`, their digests and signatures, fixed-size, to `sidecarPath`. Returns the shard's report.
 */
export async function cleanShardFile(inPath: string, candidatesPath: string, sidecarPath: string, options: CleanOptions): Promise<CleanReport> {
  const report = emptyReport(options);
  const lines = new LineWriter(candidatesPath);
  const sidecar = new LineWriter(sidecarPath);
  try {
    for await (const candidate of cleanCandidates(readRecords(inPath), options, report)) {
      await lines.write(candidate.line);
      if (candidate.digest) await sidecar.writeBytes(candidate.digest);
      if (candidate.signature) await sidecar.writeBytes(Buffer.from(candidate.signature.buffer, candidate.signature.byteOffset, candidate.signature.byteLength));
    }
    await Promise.all([lines.close(), sidecar.close()]);
  } catch (error) {
    lines.abort();
    sidecar.abort();
    throw error;
  }
  return report;
}

/**
 * The second pass over the shards' candidates, in shard order, writing the kept records to `outPath`; the
 * shards' reports and this pass's are summed into the dataset's report, the same as `cleanFile` would give.
 */
export async function dedupeShardFiles(
  shards: Array<{ candidates: string; sidecar: string; report: CleanReport }>,
  outPath: string,
  options: CleanOptions,
): Promise<CleanReport> {
  const report = emptyReport(options);
  const dedupe = new Deduplicator(options, report);
  const recordBytes = (options.dedupe === 'none' ? 0 : DIGEST_BYTES) + (options.dedupe === 'near' ? HASHES * 4 : 0);
  const out = new LineWriter(outPath);
  try {
    for (const shard of shards) {
      const sidecar = fixedRecords(shard.sidecar, recordBytes);
      for await (const { text } of readLines(shard.candidates, 'utf-8', Number.POSITIVE_INFINITY)) {
        const candidate: Candidate = { line: text };
        if (recordBytes > 0) {
          const { value, done } = await sidecar.next();
          if (done) throw new Error(`${shard.sidecar}: fewer entries than ${shard.candidates} has lines`);
          if (options.dedupe !== 'none') candidate.digest = value.subarray(0, DIGEST_BYTES);
          if (options.dedupe === 'near') candidate.signature = new Uint32Array(value.buffer.slice(value.byteOffset + DIGEST_BYTES, value.byteOffset + recordBytes));
        }
        if (dedupe.keep(candidate)) await out.write(candidate.line);
      }
      if (recordBytes > 0 && !(await sidecar.next()).done) throw new Error(`${shard.sidecar}: more entries than ${shard.candidates} has lines`);
    }
    await out.close();
  } catch (error) {
    out.abort();
    throw error;
  }
  return ordered(mergeReports([...shards.map((s) => s.report), report]));
}

/** Reports of consecutive parts of a dataset summed: counts added, each sample list the first ones in order. */
export function mergeReports(parts: CleanReport[]): CleanReport {
  const [first, ...rest] = parts.map((p) => structuredClone(p));
  for (const part of rest) {
    first.input += part.input;
    first.kept += part.kept;
    first.changedRecords += part.changedRecords;
    addCounts(first.removed, part.removed);
    addCounts(first.changed, part.changed);
    for (const rule of CHANGE_RULES) first.examples[rule] = [...first.examples[rule], ...part.examples[rule]].slice(0, SAMPLES_PER_RULE);
    if (part.languages) addCounts((first.languages ??= {}), part.languages);
    if (part.quality) addCounts((first.quality ??= {}), part.quality);
    if (part.removedExamples) {
      const into = (first.removedExamples ??= {});
      for (const [rule, samples] of Object.entries(part.removedExamples) as Array<[QualityReason, RemovedSample[]]>) {
        into[rule] = [...(into[rule] ?? []), ...samples].slice(0, SAMPLES_PER_RULE);
      }
    }
    if (part.nearDuplicates) {
      const into = (first.nearDuplicates ??= { clusters: 0, examples: [] });
      into.clusters += part.nearDuplicates.clusters;
      into.examples = [...into.examples, ...part.nearDuplicates.examples].slice(0, CLUSTER_EXAMPLES);
    }
  }
  return first;
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, n] of Object.entries(from)) into[key] = (into[key] ?? 0) + n;
}

/** The report with its removed-record samples in rule order (they are gathered in two passes). */
function ordered(report: CleanReport): CleanReport {
  const samples = report.removedExamples;
  if (samples) report.removedExamples = Object.fromEntries(REMOVAL_REASONS.filter((r) => r in samples).map((r) => [r, samples[r as QualityReason]]));
  return report;
}

/** A record's texts as one string, each on its own line: what the language and near-duplicate rules read. */
const joinedText = (record: RecordContent) => textsOf(record).join('\n');

function sampleRemoved(report: CleanReport, rule: QualityReason, key: string, why: string, text: string): void {
  const list = (report.removedExamples![rule] ??= []);
  if (list.length < SAMPLES_PER_RULE) list.push({ key, why, text: clip(text) });
}

/** The language, blocklist and quality rules the options turn on: `reason` says which one removes a record. */
function perRecordRules(options: CleanOptions, report: CleanReport) {
  const on = rulesOn(options);
  const blocklist = on.blocklist ? new Blocklist(on.blocklist.words, on.blocklist.languages) : undefined;
  return {
    reason(record: DataRecord): QualityReason | undefined {
      if (on.languages) {
        const text = joinedText(record);
        const lang = detectLanguage(text);
        report.languages![lang] = (report.languages![lang] ?? 0) + 1;
        if (!on.languages.has(lang)) return sampleRemoved(report, 'language', record.key, lang, text), 'language';
      }
      if (blocklist) {
        for (const text of textsOf(record)) {
          const hit = blocklist.find(text);
          if (hit !== undefined) return sampleRemoved(report, 'blocked', record.key, hit, text), 'blocked';
        }
      }
      if (on.quality) {
        const text = joinedText(record);
        const failed = qualityFailure(text, on.quality);
        if (failed) {
          report.quality![failed] = (report.quality![failed] ?? 0) + 1;
          return sampleRemoved(report, 'quality', record.key, failed, text), 'quality';
        }
      }
      return undefined;
    },
  };
}

/** The fixed-size entries of a binary file, in order, read in blocks. */
async function* fixedRecords(file: string, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of fs.createReadStream(file)) {
    pending = pending.length ? Buffer.concat([pending, chunk as Buffer]) : (chunk as Buffer);
    let at = 0;
    for (; at + size <= pending.length; at += size) yield pending.subarray(at, at + size);
    pending = pending.subarray(at);
  }
  if (pending.length) throw new Error(`${file}: ends inside an entry (${pending.length} of ${size} bytes)`);
}

function clip(text: string): string {
  return text.length > SAMPLE_CHARS ? `${text.slice(0, SAMPLE_CHARS)}…` : text;
}
