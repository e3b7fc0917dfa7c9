/**
 * The text rules of the platform, in one place: the clean stage applies them to training data and the
 * gateway to live prompts, so serving and training can never disagree on what a text looks like.
 *
 * Rules, in the order they apply:
 *   1. NFKC normalization (full-width letters and digits, ideographic spaces, ligatures -> canonical forms);
 *   2. removal of control characters (Unicode Cc) except newline and tab;
 *   3. whitespace collapsing: runs of spaces/tabs -> one space, runs of newlines -> one newline, trimmed;
 *   4. PII masking: e-mail addresses -> "[EMAIL]", phone numbers -> "[PHONE]".
 * Pure functions, no Node API. The quality rules of the clean stage, each its own entry point so that the
 * gateway does not load a language model: ./blocklist (shared with the gateway's output filter), ./language,
 * ./minhash (near duplicates), ./quality (Gopher's heuristics), ./codes (the language codes, as data).
 */

/** Which rules apply (PII masking is a training-data rule; the gateway leaves it off). */
export interface TextRules {
  nfkc: boolean;
  stripControl: boolean;
  collapseWhitespace: boolean;
  maskPii: boolean;
}

/** Rules that change text; `email` and `phone` are the two halves of `maskPii`. */
export type ChangeRule = 'nfkc' | 'control' | 'whitespace' | 'email' | 'phone';
export const CHANGE_RULES: readonly ChangeRule[] = ['nfkc', 'control', 'whitespace', 'email', 'phone'];

export function normalizeNfkc(text: string): string {
  return text.normalize('NFKC');
}

/** Removes C0/C1 control characters and DEL, keeping `\n` and `\t` (they carry layout). */
export function stripControlChars(text: string): string {
  return text.replace(/[^\P{Cc}\n\t]/gu, '');
}

/**
 * Spaces and tabs (and any other whitespace but `\n`) collapse to one space; a run of newlines, with the
 * spaces around it, becomes one newline; the ends are trimmed.
 */
export function collapseWhitespace(text: string): string {
  return text
    .replace(/[^\S\n]+/g, ' ')
    .replace(/ ?\n[\n ]*/g, '\n')
    .trim();
}

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;

export function maskEmails(text: string): string {
  return text.replace(EMAIL, '[EMAIL]');
}

/**
 * Phone numbers in the shapes people write them, and nothing looser, because lists of numbers ("3 9 1 4",
 * "12 345 6789") are ordinary data here:
 *   - international: "+" country code, then 2–5 groups (+81 90-1234-5678, +44 20 7946 0958, +1 (555) 123-4567);
 *   - an area code in parentheses: (555) 123-4567, (03) 1234-5678;
 *   - three groups joined by the same "-" or ".": 555-123-4567, 090-1234-5678, 555.123.4567.
 * Space-separated groups without "+" or parentheses are never taken. The match must hold 7–15 digits
 * (E.164 allows at most 15), and must not be glued to other digits, letters or dotted numbers, which keeps
 * dates (2024-01-15), versions and IP addresses (192.168.100.200) out.
 */
const PHONE = new RegExp(
  String.raw`(?<![\w+.-])(?:` +
    String.raw`\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,5}` +
    String.raw`|\(\d{2,4}\)[ .-]?\d{2,4}[ .-]?\d{3,4}` +
    String.raw`|\d{2,4}([-.])\d{2,4}\1\d{3,4}` +
    String.raw`)(?![\w-]|\.\d)`,
  'g',
);

export function maskPhones(text: string): string {
  return text.replace(PHONE, (match) => {
    const digits = match.replace(/\D/g, '').length;
    return digits >= 7 && digits <= 15 ? '[PHONE]' : match;
  });
}

/** The text-changing rules enabled by `options`, in the order they apply. */
function enabledRules(options: TextRules): Array<[ChangeRule, (text: string) => string]> {
  const rules: Array<[ChangeRule, (text: string) => string]> = [];
  if (options.nfkc) rules.push(['nfkc', normalizeNfkc]);
  if (options.stripControl) rules.push(['control', stripControlChars]);
  if (options.collapseWhitespace) rules.push(['whitespace', collapseWhitespace]);
  if (options.maskPii) rules.push(['email', maskEmails], ['phone', maskPhones]);
  return rules;
}

export interface TextChange {
  rule: ChangeRule;
  before: string;
  after: string;
}

/** Applies the enabled rules to one field; `changes` lists the rules that altered it, in order. */
export function cleanText(text: string, options: TextRules): { text: string; changes: TextChange[] } {
  const changes: TextChange[] = [];
  let current = text;
  for (const [rule, apply] of enabledRules(options)) {
    const next = apply(current);
    if (next !== current) changes.push({ rule, before: current, after: next });
    current = next;
  }
  return { text: current, changes };
}

/** Length in code points, so that one emoji or one astral CJK character counts as one character. */
export function charCount(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * The rules for live text, every one but PII masking (a training-data rule): what the gateway does to prompts,
 * and how blocklist entries are compared (@tempered/text/blocklist), so both sides of a match look alike.
 */
export const LIVE_TEXT_RULES: TextRules = { nfkc: true, stripControl: true, collapseWhitespace: true, maskPii: false };

export function normalizeLive(text: string): string {
  return cleanText(text, LIVE_TEXT_RULES).text;
}
