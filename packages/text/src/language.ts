/**
 * Language identification for the clean stage's `languages` rule, with `tinyld` (character n-gram profiles of
 * 62 languages shipped inside the package: nothing is downloaded at run time). A text it cannot place (empty,
 * digits and symbols only, too short to tell) is `und`, ISO 639's "undetermined".
 */
import { detect } from 'tinyld';

export const UNDETERMINED = 'und';

/** The ISO 639-1 code of the text's language, or `und`. */
export function detectLanguage(text: string): string {
  return detect(text) || UNDETERMINED;
}
