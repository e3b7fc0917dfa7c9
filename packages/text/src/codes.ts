/**
 * The language codes the quality rules know, as plain data, so that the spec (also loaded by the dashboard)
 * can refuse an unknown code at the field without loading the language model or the word lists.
 * Each list is exactly its package's own (tests/unit/quality-rules.test.ts compares them), so it is one fact:
 *   - LANGUAGE_CODES: the ISO 639-1 codes (and tinyld's own `ber`, `tlh`, `vo`) that `tinyld` detects;
 *   - BLOCKLIST_LANGUAGES: the languages `naughty-words` has a list for.
 */
export const LANGUAGE_CODES = [
  'af', 'am', 'ber', 'rn', 'ja', 'zh', 'ko', 'my', 'th', 'vi', 'id', 'km', 'tl', 'bn', 'ta', 'hi', 'ur', 'gu', 'kn', 'te',
  'fr', 'en', 'de', 'es', 'pt', 'it', 'nl', 'ga', 'la', 'cs', 'sr', 'el', 'mk', 'sk', 'da', 'sv', 'fi', 'no', 'is', 'hu',
  'ro', 'bg', 'be', 'ru', 'uk', 'pl', 'lt', 'et', 'lv', 'hy', 'tr', 'he', 'yi', 'ar', 'fa', 'tt', 'kk', 'mn', 'tk', 'eo',
  'vo', 'tlh',
] as const;
export type LanguageCode = (typeof LANGUAGE_CODES)[number];

/** What the language rule calls a text tinyld cannot place: ISO 639's "undetermined". */
export const UNDETERMINED = 'und';

export const BLOCKLIST_LANGUAGES = [
  'ar', 'cs', 'da', 'de', 'en', 'eo', 'es', 'fa', 'fi', 'fil', 'fr', 'fr-CA-u-sd-caqc', 'hi', 'hu', 'it', 'ja', 'kab', 'ko',
  'nl', 'no', 'pl', 'pt', 'ru', 'sv', 'th', 'tlh', 'tr', 'zh',
] as const;
export type BlocklistLanguage = (typeof BLOCKLIST_LANGUAGES)[number];
