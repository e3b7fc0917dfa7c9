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
import { CHANGE_RULES, charCount, cleanText, type ChangeRule, type TextChange, type TextRules } from '@tempered/text';
import { Blocklist } from '@tempered/text/blocklist';
import { detectLanguage } from '@tempered/text/language';
import { NearDuplicateIndex, signature } from '@tempered/text/minhash';
import { qualityFailure, type QualityHeuristic, type QualityThresholds } from '@tempered/text/quality';
import { DigestSet } from './digest-set';
import { JsonlWriter, conversationOf, mapTexts, readRecords, textsOf, type DataRecord, type RecordContent } from './records';

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

export async function cleanFile(inPath: string, outPath: string, options: CleanOptions): Promise<CleanReport> {
  const report: CleanReport = {
    input: 0,
    kept: 0,
    removed: { empty: 0, tooShort: 0, tooLong: 0, duplicate: 0 },
    changed: { nfkc: 0, control: 0, whitespace: 0, email: 0, phone: 0 },
    changedRecords: 0,
    examples: { nfkc: [], control: [], whitespace: [], email: [], phone: [] },
  };
  const seen = new DigestSet();
  const rules = qualityRules(options, report);
  const out = new JsonlWriter(outPath);
  try {
    for await (const record of readRecords(inPath)) {
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
      const qualityReason = rules.beforeDedupe(cleaned);
      if (qualityReason) {
        report.removed[qualityReason]!++;
        continue;
      }
      if (options.dedupe !== 'none') {
        // JSON is unambiguous where joined texts would not be (a text may hold NUL). A record is compared as
        // the conversation it is, roles included, so a turn and the same [user, assistant] conversation are
        // duplicates; a plain text only equals a plain text.
        const same = 'text' in cleaned ? { text: cleaned.text } : conversationOf(cleaned)!.map((m) => [m.role, m.content]);
        if (!seen.add(createHash('sha256').update(JSON.stringify(same)).digest())) {
          report.removed.duplicate++;
          continue;
        }
      }
      if (rules.nearDuplicate(cleaned)) {
        report.removed.nearDuplicate!++;
        continue;
      }
      await out.write(cleaned);
      report.kept++;
    }
    await out.close();
  } catch (error) {
    out.abort();
    throw error;
  }
  return report;
}

/** A record's texts as one string, each on its own line: what the language and near-duplicate rules read. */
const joinedText = (record: RecordContent) => textsOf(record).join('\n');

/**
 * The quality rules that the options turn on, with their state (the near-duplicate index, the clusters), and
 * their entries in the report set to zero, so the report has a key for each rule that ran and only for those.
 */
function qualityRules(options: CleanOptions, report: CleanReport) {
  const languages = options.languages?.length ? new Set(options.languages) : undefined;
  const blocklist =
    options.blocklist && (options.blocklist.languages.length || options.blocklist.words.length)
      ? new Blocklist(options.blocklist.words, options.blocklist.languages)
      : undefined;
  const near = options.dedupe === 'near' ? new NearDuplicateIndex(options.nearThreshold ?? 0.7) : undefined;
  /** Key of each kept record, in keeping order (the near index names kept records by their position). */
  const keptKeys: string[] = [];
  const clusterSizes = new Map<number, number>();
  const examples: NonNullable<CleanReport['removedExamples']> = {};
  if (languages) ((report.removed.language = 0), (report.languages = {}));
  if (blocklist) report.removed.blocked = 0;
  const quality = options.quality;
  if (quality) ((report.removed.quality = 0), (report.quality = {}));
  if (near) ((report.removed.nearDuplicate = 0), (report.nearDuplicates = { clusters: 0, examples: [] }));
  if (languages || blocklist || quality || near) report.removedExamples = examples;

  const sample = (rule: QualityReason, key: string, why: string, text: string) => {
    const list = (examples[rule] ??= []);
    if (list.length < SAMPLES_PER_RULE) list.push({ key, why, text: clip(text) });
  };

  return {
    /** Why the language, blocklist or quality rule removes this record, or undefined. */
    beforeDedupe(record: DataRecord): QualityReason | undefined {
      if (languages) {
        const text = joinedText(record);
        const lang = detectLanguage(text);
        report.languages![lang] = (report.languages![lang] ?? 0) + 1;
        if (!languages.has(lang)) return sample('language', record.key, lang, text), 'language';
      }
      if (blocklist) {
        for (const text of textsOf(record)) {
          const hit = blocklist.find(text);
          if (hit !== undefined) return sample('blocked', record.key, hit, text), 'blocked';
        }
      }
      if (quality) {
        const text = joinedText(record);
        const failed = qualityFailure(text, quality);
        if (failed) {
          report.quality![failed] = (report.quality![failed] ?? 0) + 1;
          return sample('quality', record.key, failed, text), 'quality';
        }
      }
      return undefined;
    },
    /** Whether the record nearly duplicates a kept one; when it does not, it now counts as kept. */
    nearDuplicate(record: DataRecord): boolean {
      if (!near) return false;
      const text = joinedText(record);
      const hit = near.check(signature(text));
      if (!hit) {
        keptKeys.push(record.key);
        return false;
      }
      const size = clusterSizes.get(hit.of) ?? 0;
      clusterSizes.set(hit.of, size + 1);
      const clusters = report.nearDuplicates!;
      if (size === 0) clusters.clusters++;
      let cluster = clusters.examples.find((c) => c.kept === keptKeys[hit.of]);
      if (!cluster && size === 0 && clusters.examples.length < CLUSTER_EXAMPLES) clusters.examples.push((cluster = { kept: keptKeys[hit.of], removed: [] }));
      if (cluster && cluster.removed.length < CLUSTER_KEYS) cluster.removed.push({ key: record.key, similarity: Math.round(hit.similarity * 1000) / 1000 });
      sample('nearDuplicate', record.key, keptKeys[hit.of], text);
      return true;
    },
  };
}

function clip(text: string): string {
  return text.length > SAMPLE_CHARS ? `${text.slice(0, SAMPLE_CHARS)}…` : text;
}
