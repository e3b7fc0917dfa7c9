/**
 * Inappropriate-content blocklists, in one place: the clean stage removes training records that hold an entry
 * and the gateway replaces entries in model output, from the same lists and the same matching.
 *
 * The lists per language come from the npm package `naughty-words` (Shutterstock's List of Dirty, Naughty,
 * Obscene and Otherwise Bad Words, 28 languages, Japanese and Chinese included), plus the words a spec or the
 * gateway's config adds. Matching, case-insensitive on NFKC-normalized text:
 *   - an entry written in a script with spaces between words matches whole words only, so "ass" does not hit
 *     "class" (a space in an entry matches any run of whitespace);
 *   - an entry in Han, kana or Thai (scripts written without spaces) matches anywhere, as a substring, since
 *     there is no word boundary to wait for; one-character entries of those scripts are left out, because a
 *     single ideograph is part of ordinary words (乳 is in 牛乳, milk).
 */
import naughtyWords from 'naughty-words';
import { normalizeLive } from './index';
import { BLOCKLIST_LANGUAGES, type BlocklistLanguage } from './codes';

export { BLOCKLIST_LANGUAGES, type BlocklistLanguage };

/** Scripts written without spaces between words. */
const UNSPACED = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}]/u;

export const BLOCKED = '[BLOCKED]';

/** The packaged entries of these languages; an unknown code is an error that names it. */
export function packagedWords(languages: readonly string[]): string[] {
  const lists: Record<string, readonly string[] | undefined> = naughtyWords;
  return languages.flatMap((lang) => {
    const list = lists[lang];
    if (!list) throw new Error(`no blocklist for language "${lang}"; known: ${BLOCKLIST_LANGUAGES.join(', ')}`);
    return list;
  });
}

/** The entries of a blocklist file's text: one per line, `#` starts a comment (the gateway's TEMPERED_BLOCKLIST_FILE). */
export function blocklistFileEntries(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean);
}

const escape = (w: string) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/ /g, '\\s+');

export class Blocklist {
  private readonly pattern: RegExp | undefined;
  readonly size: number;
  /** Code points of the longest entry, a run of whitespace counted as one (what a stream holds back). */
  readonly longest: number;

  /** `words` are the caller's own entries; `languages` add the packaged lists of those languages. */
  constructor(words: readonly string[], languages: readonly string[] = []) {
    // Entries are compared as the model would write them: NFKC-normalized (case-insensitively, by the flags).
    const all = [...words, ...packagedWords(languages)].map(normalizeLive).filter(Boolean);
    const entries = [...new Set(all)].filter((w) => !(UNSPACED.test(w) && [...w].length === 1));
    this.size = entries.length;
    this.longest = Math.max(0, ...entries.map((w) => [...w].length));
    // Longest first, so that a phrase wins over a word it contains.
    entries.sort((a, b) => b.length - a.length);
    const spaced = entries.filter((w) => !UNSPACED.test(w)).map(escape);
    const unspaced = entries.filter((w) => UNSPACED.test(w)).map(escape);
    const parts = [
      ...(spaced.length ? [`(?<![\\p{L}\\p{N}_])(?:${spaced.join('|')})(?![\\p{L}\\p{N}_])`] : []),
      ...(unspaced.length ? [`(?:${unspaced.join('|')})`] : []),
    ];
    this.pattern = parts.length ? new RegExp(parts.join('|'), 'giu') : undefined;
  }

  /** The text with blocked entries replaced, and whether anything was. */
  filter(text: string): { text: string; flagged: boolean } {
    if (!this.pattern) return { text, flagged: false };
    let flagged = false;
    const out = text.replace(this.pattern, () => ((flagged = true), BLOCKED));
    return { text: out, flagged };
  }

  /** Where the entries are found in `text`: [start, end) ranges in UTF-16 units, in order. */
  matches(text: string): Array<[number, number]> {
    if (!this.pattern) return [];
    return [...text.matchAll(this.pattern)].map((m) => [m.index, m.index + m[0].length]);
  }

  /** The first entry found in `text` (as written there), or undefined. */
  find(text: string): string | undefined {
    if (!this.pattern) return undefined;
    this.pattern.lastIndex = 0;
    const m = this.pattern.exec(text);
    this.pattern.lastIndex = 0;
    return m?.[0];
  }
}
