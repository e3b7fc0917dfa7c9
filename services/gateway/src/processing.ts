/**
 * Use-stage processing: what the gateway does to text on the way in and on the way out.
 *
 * In: the prompt goes through the clean stage's own rules (NFKC, control characters, whitespace), from
 * @tempered/text, so that serving and training can never disagree on what a prompt looks like. PII masking is
 * a training-data rule and is not applied to live prompts.
 *
 * Out: words and phrases on the blocklist are replaced by "[BLOCKED]" (case-insensitive, whole words only, so
 * "ass" does not hit "class"), and the answer is flagged.
 */
import { readFileSync } from 'node:fs';
import { cleanText, type TextRules } from '@tempered/text';

const NORMALIZE: TextRules = { nfkc: true, stripControl: true, collapseWhitespace: true, maskPii: false };

/** The prompt as the model saw its training prompts. */
export function normalizePrompt(text: string): string {
  return cleanText(text, NORMALIZE).text;
}

export const BLOCKED = '[BLOCKED]';

export class Blocklist {
  private readonly pattern: RegExp | undefined;
  readonly size: number;

  constructor(words: string[]) {
    // Entries are matched as the model would write them: NFKC-normalized, case-insensitively.
    const entries = [...new Set(words.map((w) => normalizePrompt(w)).filter(Boolean))];
    this.size = entries.length;
    // Longest first, so that a phrase wins over a word it contains.
    entries.sort((a, b) => b.length - a.length);
    const escaped = entries.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/ /g, '\\s+'));
    this.pattern = entries.length ? new RegExp(`(?<![\\p{L}\\p{N}_])(?:${escaped.join('|')})(?![\\p{L}\\p{N}_])`, 'giu') : undefined;
  }

  /** Entries from the config (TEMPERED_BLOCKLIST) and from a file of one entry per line (`#` comments). */
  static load(words: string[], file: string | undefined): Blocklist {
    const fromFile = file
      ? readFileSync(file, 'utf8')
          .split('\n')
          .map((l) => l.replace(/#.*/, '').trim())
          .filter(Boolean)
      : [];
    return new Blocklist([...words, ...fromFile]);
  }

  /** The text with blocked words replaced, and whether anything was. */
  filter(text: string): { text: string; flagged: boolean } {
    if (!this.pattern) return { text, flagged: false };
    let flagged = false;
    const out = text.replace(this.pattern, () => ((flagged = true), BLOCKED));
    return { text: out, flagged };
  }
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
