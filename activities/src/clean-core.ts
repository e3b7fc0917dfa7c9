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
 * The per-field functions are pure and exported for tests; `cleanFile` streams, so memory grows only with
 * the dedupe set (a 16-byte digest per kept record in one typed array: digest-set.ts).
 */
import { createHash } from 'node:crypto';
import { CHANGE_RULES, charCount, cleanText, type ChangeRule, type TextChange, type TextRules } from '@tempered/text';
import { DigestSet } from './digest-set';
import { JsonlWriter, conversationOf, mapTexts, readRecords, textsOf, type DataRecord, type RecordContent } from './records';

export interface CleanOptions extends TextRules {
  dedupe: 'exact' | 'none';
  minChars: number;
  maxChars: number;
}

export type RemovalReason = 'empty' | 'tooShort' | 'tooLong' | 'duplicate';

export const REMOVAL_REASONS: readonly RemovalReason[] = ['empty', 'tooShort', 'tooLong', 'duplicate'];

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
  removed: Record<RemovalReason, number>;
  /** Records (of all input records, removed ones included) with a text a rule altered. */
  changed: Record<ChangeRule, number>;
  /** Records altered by at least one rule. */
  changedRecords: number;
  /** Up to 3 samples per rule, the first ones in input order. */
  examples: Record<ChangeRule, CleanSample[]>;
}

const SAMPLES_PER_RULE = 3;
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
      if (options.dedupe === 'exact') {
        // JSON is unambiguous where joined texts would not be (a text may hold NUL). A record is compared as
        // the conversation it is, roles included, so a turn and the same [user, assistant] conversation are
        // duplicates; a plain text only equals a plain text.
        const same = 'text' in cleaned ? { text: cleaned.text } : conversationOf(cleaned)!.map((m) => [m.role, m.content]);
        if (!seen.add(createHash('sha256').update(JSON.stringify(same)).digest())) {
          report.removed.duplicate++;
          continue;
        }
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

function clip(text: string): string {
  return text.length > SAMPLE_CHARS ? `${text.slice(0, SAMPLE_CHARS)}…` : text;
}
