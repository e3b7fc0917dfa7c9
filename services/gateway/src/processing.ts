/**
 * Use-stage processing: what the gateway does to text on the way in and on the way out.
 *
 * In: the prompt goes through the clean stage's own rules (NFKC, control characters, whitespace), from
 * @tempered/text, so that serving and training can never disagree on what a prompt looks like. PII masking is
 * a training-data rule and is not applied to live prompts.
 *
 * Out: words and phrases on the blocklist are replaced by "[BLOCKED]" and the answer is flagged. The lists and
 * their matching (whole words where a language has spaces, substrings in CJK) are the clean stage's own
 * (@tempered/text/blocklist); this module adds the config's file and the filter over a streamed answer.
 */
import { readFileSync } from 'node:fs';
import { normalizeLive } from '@tempered/text';
import { BLOCKED, Blocklist as SharedBlocklist, blocklistFileEntries } from '@tempered/text/blocklist';

export { BLOCKED };

/** The prompt as the model saw its training prompts. */
export const normalizePrompt = normalizeLive;

/**
 * The gateway's blocklist: the shared lists and matching (@tempered/text/blocklist), plus the config's file of
 * entries and a filter over a streamed answer.
 */
export class Blocklist extends SharedBlocklist {
  /**
   * Entries from the config (TEMPERED_BLOCKLIST), from a file of one entry per line (`#` comments,
   * TEMPERED_BLOCKLIST_FILE), and the packaged lists of the config's languages (TEMPERED_BLOCKLIST_LANGUAGES).
   */
  static load(words: string[], file: string | undefined, languages: string[] = []): Blocklist {
    const fromFile = file ? blocklistFileEntries(readFileSync(file, 'utf8')) : [];
    return new Blocklist([...words, ...fromFile], languages);
  }

  /** A filter for one streamed answer. */
  stream(): StreamFilter {
    return new StreamFilter(this);
  }
}

/**
 * The blocklist over a streamed answer, piece by piece. A blocked word may arrive split over two chunks
 * ("bad" then "word"), and whether a word is whole depends on the character after it, so a piece cannot be
 * filtered on its own. Buffering the whole answer would make streaming pointless; instead the filter holds
 * back only the tail that a blocked entry could still be part of: the last `longest + 1` code points (a run of
 * whitespace counts as one, as an entry's space matches any run), and any match that reaches into that tail.
 * Every match that starts before the tail is then complete and final (the entries are at most `longest` long
 * and the character after it is known), so the pieces put together are exactly `filter()` of the whole
 * answer, and a client sees each word at most about one entry's length late. The last released character is
 * kept as context, so "ass" after a released "cl" is still part of "class".
 */
export class StreamFilter {
  private pending = '';
  /** The last code point released: the look-behind of a match at the start of `pending`. */
  private before = '';
  flagged = false;

  constructor(private readonly blocklist: SharedBlocklist) {}

  /** Takes the next piece; returns the filtered text that is final now (possibly empty). */
  push(text: string): string {
    this.pending += text;
    if (this.blocklist.size === 0) return this.release(this.pending.length);
    return this.release(holdFrom(this.pending, this.blocklist.longest + 1));
  }

  /** The rest, filtered, once the answer is complete. */
  end(): string {
    return this.release(this.pending.length, true);
  }

  /** Releases `pending` up to `cut` (earlier when a match reaches past it), filtered. */
  private release(cut: number, last = false): string {
    if (this.blocklist.size === 0) {
      const out = this.pending.slice(0, cut);
      this.pending = this.pending.slice(cut);
      return out;
    }
    const offset = this.before.length;
    let out = '';
    let from = 0;
    for (const [a0, b0] of this.blocklist.matches(this.before + this.pending)) {
      const [a, b] = [a0 - offset, b0 - offset];
      if (a < 0) continue; // starts in the context character: decided when it was released
      if (!last && b > cut) {
        cut = Math.min(cut, a);
        break;
      }
      if (a >= cut) break;
      out += this.pending.slice(from, a) + BLOCKED;
      from = b;
      this.flagged = true;
    }
    if (cut > from) out += this.pending.slice(from, cut);
    const released = this.pending.slice(0, Math.max(cut, from));
    if (released) this.before = [...released].at(-1)!;
    this.pending = this.pending.slice(Math.max(cut, from));
    return out;
  }
}

/** The index where the last `units` code points of `text` start, a run of whitespace counted as one (0 if fewer). */
function holdFrom(text: string, units: number): number {
  let i = text.length;
  let counted = 0;
  while (i > 0 && counted < units) {
    const white = /\s/.test(text[i - 1]);
    i -= /[\uDC00-\uDFFF]/.test(text[i - 1]) && i > 1 ? 2 : 1;
    if (white) while (i > 0 && /\s/.test(text[i - 1])) i--;
    counted++;
  }
  return i;
}

/** A validation failure that names the offending field (OpenAI's `param`). */
export class FieldError extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(`${param}: ${message}`);
  }
}

type ChatContent = string | Array<{ type?: unknown; text?: unknown }>;

function contentText(content: ChatContent, where: string): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part, i) => {
        if (part?.type !== 'text') return '';
        if (typeof part.text !== 'string') throw new FieldError(`${where}[${i}].text`, 'must be a string');
        return part.text;
      })
      .join('\n'); // as ingest joins them, so a message is served as it was trained
  }
  throw new FieldError(where, 'must be a string or an array of content parts');
}

/** A chat message as the model server gets it: its text normalized like the training data's. */
export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}
const ROLES = new Set(['system', 'user', 'assistant']);

/**
 * The conversation of a chat request, checked and normalized turn by turn, for the model server to render
 * through the model's own chat template (system prompt and every turn, as in training). Roles are OpenAI's
 * system, user and assistant (a system message only first); text content parts are joined; the conversation
 * must end with a turn to answer, not with an answer.
 */
export function chatTurns(messages: unknown): ChatTurn[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new FieldError('messages', 'must be a non-empty array of {role, content}');
  const turns = messages.map((m, i): ChatTurn => {
    const msg = m as { role?: unknown; content?: unknown } | null;
    if (typeof msg !== 'object' || msg === null || typeof msg.role !== 'string' || !ROLES.has(msg.role)) {
      throw new FieldError(`messages[${i}].role`, 'must be one of system, user, assistant');
    }
    if (msg.role === 'system' && i > 0) throw new FieldError(`messages[${i}].role`, 'a system message may only come first');
    return { role: msg.role as ChatTurn['role'], content: normalizePrompt(contentText(msg.content as ChatContent, `messages[${i}].content`)) };
  });
  if (turns.at(-1)!.role === 'assistant') throw new FieldError(`messages[${turns.length - 1}].role`, 'the last message must be one to answer (system or user), not an assistant answer');
  if (!turns.some((t) => t.role === 'user' && t.content !== '')) throw new FieldError('messages', 'must contain a non-empty message with role "user"');
  return turns;
}

/** The last user message's text: what the request log records as the prompt of a chat request. */
export function lastUserText(turns: ChatTurn[]): string {
  return [...turns].reverse().find((t) => t.role === 'user')!.content;
}
