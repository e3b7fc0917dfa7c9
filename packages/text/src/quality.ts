/**
 * Quality heuristics in the spirit of Gopher (Rae et al. 2021, "MassiveText quality filters", as datatrove's
 * GopherQualityFilter and GopherRepetitionFilter implement them) and C4, for the clean stage's `quality` rule.
 * `qualityFailure` names the first heuristic a text fails, so each removed record counts under one heuristic.
 *
 * CJK-aware: Chinese, Japanese and Thai are written without spaces, so there a "word" is one character (a run
 * of Latin letters or digits inside such text is still one word). Mean word length only counts the words of
 * scripts with spaces, and is not checked on a text with fewer than 10 of them (a Chinese review has none).
 * Pure functions, no Node API.
 */

export interface QualityThresholds {
  /** Gopher: 50 and 100,000 words. */
  minWords: number;
  maxWords: number;
  /** Gopher: 3 to 10 characters, over the words of scripts with spaces. */
  minMeanWordLength: number;
  maxMeanWordLength: number;
  /** Gopher: "#" and ellipses ("...", "…") per word at most 0.1. */
  maxSymbolRatio: number;
  /** Not a Gopher rule (the "digit ratio"): digits per non-space character. */
  maxDigitRatio: number;
  /** Gopher: lines that are bullets ("•", "-", "*") at most 0.9; lines ending in an ellipsis at most 0.3. */
  maxBulletLines: number;
  maxEllipsisLines: number;
  /** Gopher: at least 0.8 of words hold a letter. */
  minAlphaWords: number;
  /** Gopher: duplicated lines at most 0.3 of lines and 0.2 of characters. */
  maxDuplicateLines: number;
  maxDuplicateLineChars: number;
  /** Gopher: the most frequent 2-, 3-, 4-gram's characters at most 0.2, 0.18, 0.16 of all word characters. */
  maxTopNgram: { 2: number; 3: number; 4: number };
  /** Gopher: characters in duplicated 5- to 10-grams at most 0.15, 0.14, 0.13, 0.12, 0.11, 0.10. */
  maxDuplicateNgram: { 5: number; 6: number; 7: number; 8: number; 9: number; 10: number };
}

export const GOPHER_DEFAULTS: QualityThresholds = {
  minWords: 50,
  maxWords: 100_000,
  minMeanWordLength: 3,
  maxMeanWordLength: 10,
  maxSymbolRatio: 0.1,
  maxDigitRatio: 0.5,
  maxBulletLines: 0.9,
  maxEllipsisLines: 0.3,
  minAlphaWords: 0.8,
  maxDuplicateLines: 0.3,
  maxDuplicateLineChars: 0.2,
  maxTopNgram: { 2: 0.2, 3: 0.18, 4: 0.16 },
  maxDuplicateNgram: { 5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.1 },
};

export type QualityHeuristic =
  | 'tooFewWords'
  | 'tooManyWords'
  | 'meanWordLength'
  | 'symbolRatio'
  | 'digitRatio'
  | 'bulletLines'
  | 'ellipsisLines'
  | 'alphaWords'
  | 'duplicateLines'
  | 'topNgram'
  | 'duplicateNgram';

const UNSPACED_CHAR = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}]/u;
/** A word: one character of a script without spaces, or a run of anything else that is not space or punctuation. */
const WORD = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}]|[^\s\p{P}\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}]+/gu;

export function words(text: string): string[] {
  return text.match(WORD) ?? [];
}

/**
 * A key per n-gram position: the words as numbers, hashed twice with MurmurHash3's mixing into one 53-bit
 * number, so that counting n-grams builds no strings (nine n-gram sizes over every position of a text). Two
 * different n-grams share a key with a chance of about 2^-53 a pair: never, for texts of this size.
 */
function ngramKeys(ids: Int32Array, n: number): Float64Array {
  const keys = new Float64Array(Math.max(0, ids.length - n + 1));
  for (let i = 0; i < keys.length; i++) {
    let a = n;
    let b = ~n;
    for (let j = i; j < i + n; j++) {
      a = Math.imul(a ^ ids[j], 0xcc9e2d51);
      a = (a << 15) | (a >>> 17);
      b = Math.imul(b + ids[j], 0x1b873593);
      b = (b << 13) | (b >>> 19);
    }
    a = Math.imul(a ^ (a >>> 16), 0x85ebca6b) ^ (a >>> 13);
    b = Math.imul(b ^ (b >>> 16), 0xc2b2ae35) ^ (b >>> 13);
    keys[i] = (a >>> 0) * 0x200000 + ((b >>> 0) & 0x1fffff);
  }
  return keys;
}

function countKeys(keys: Float64Array): Map<number, number> {
  const counts = new Map<number, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  return counts;
}

/** Characters of the n-grams that occur more than once, each word counted once (Gopher's duplicate n-grams). */
function duplicateNgramChars(ids: Int32Array, lengths: Int32Array, n: number): number {
  const keys = ngramKeys(ids, n);
  const counts = countKeys(keys);
  const covered = new Uint8Array(ids.length);
  for (let i = 0; i < keys.length; i++) if (counts.get(keys[i])! > 1) covered.fill(1, i, i + n);
  let chars = 0;
  for (let i = 0; i < ids.length; i++) if (covered[i]) chars += lengths[i];
  return chars;
}

/** The characters of the most frequent n-gram, times its count (Gopher's top n-gram). */
function topNgramChars(ids: Int32Array, lengths: Int32Array, n: number): number {
  const keys = ngramKeys(ids, n);
  const counts = countKeys(keys);
  let best = 1;
  let at = -1;
  for (let i = 0; i < keys.length; i++) {
    const c = counts.get(keys[i])!;
    if (c > best) ((best = c), (at = i));
  }
  if (at < 0) return 0;
  let chars = 0;
  for (let j = at; j < at + n; j++) chars += lengths[j];
  return best * chars;
}

/** The first heuristic `text` fails, or undefined when it passes them all. */
export function qualityFailure(text: string, t: QualityThresholds): QualityHeuristic | undefined {
  const ws = words(text);
  if (ws.length < t.minWords) return 'tooFewWords';
  if (ws.length > t.maxWords) return 'tooManyWords';
  const spaced = ws.filter((w) => !UNSPACED_CHAR.test(w));
  if (spaced.length >= 10) {
    const mean = spaced.reduce((n, w) => n + [...w].length, 0) / spaced.length;
    if (mean < t.minMeanWordLength || mean > t.maxMeanWordLength) return 'meanWordLength';
  }
  const symbols = (text.match(/#|\.\.\.|…/g) ?? []).length;
  if (symbols / ws.length > t.maxSymbolRatio) return 'symbolRatio';
  const visible = text.replace(/\s/g, '').length;
  if (visible && (text.match(/\p{Nd}/gu) ?? []).length / visible > t.maxDigitRatio) return 'digitRatio';
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length) {
    if (lines.filter((l) => /^[•\-*‣◦●]/.test(l)).length / lines.length > t.maxBulletLines) return 'bulletLines';
    if (lines.filter((l) => /(\.\.\.|…)$/.test(l)).length / lines.length > t.maxEllipsisLines) return 'ellipsisLines';
  }
  if (ws.filter((w) => /\p{L}/u.test(w)).length / ws.length < t.minAlphaWords) return 'alphaWords';
  if (lines.length > 1) {
    const seen = new Set<string>();
    let dupLines = 0;
    let dupChars = 0;
    for (const l of lines) {
      if (seen.has(l)) ((dupLines += 1), (dupChars += l.length));
      else seen.add(l);
    }
    const chars = lines.reduce((n, l) => n + l.length, 0);
    if (dupLines / lines.length > t.maxDuplicateLines || dupChars / chars > t.maxDuplicateLineChars) return 'duplicateLines';
  }
  const vocabulary = new Map<string, number>();
  const ids = Int32Array.from(ws, (w) => vocabulary.get(w) ?? (vocabulary.set(w, vocabulary.size), vocabulary.size - 1));
  const lengths = Int32Array.from(ws, (w) => w.length);
  const wordChars = lengths.reduce((n, l) => n + l, 0);
  for (const n of [2, 3, 4] as const) if (topNgramChars(ids, lengths, n) / wordChars > t.maxTopNgram[n]) return 'topNgram';
  for (const n of [5, 6, 7, 8, 9, 10] as const) if (duplicateNgramChars(ids, lengths, n) / wordChars > t.maxDuplicateNgram[n]) return 'duplicateNgram';
  return undefined;
}
