/**
 * The dashboard's only door to the API: same-origin fetch with the session cookie, the CSRF header on every
 * change, and failures as values the pages render (status, message, the offending fields). A 401 anywhere
 * means the session ended, so it signs the user out instead of showing a broken page. Reads go through
 * TanStack Query (queries.ts) on top of `api`; live changes come from `useEventStream`.
 */
import { CSRF_HEADER, type ApiError, type PlaygroundChatRequest } from '@tempered/api-contract';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import { useEffect, useRef, useState } from 'react';

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly issues: NonNullable<ApiError['issues']> = [],
  ) {
    super(message);
    this.name = 'ApiFailure';
  }
}

let onUnauthorized: () => void = () => {};
/** The session provider registers what a 401 does (back to the login page). */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

export async function api<T>(path: string, init: { method?: 'GET' | 'POST' | 'DELETE'; body?: unknown; signal?: AbortSignal; quiet401?: boolean } = {}): Promise<T> {
  const method = init.method ?? 'GET';
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      signal: init.signal,
      headers:
        method === 'POST'
          ? { [CSRF_HEADER]: '1', 'content-type': 'application/json', accept: 'application/json' }
          : method === 'DELETE'
            ? { [CSRF_HEADER]: '1', accept: 'application/json' }
            : { accept: 'application/json' },
      body: method === 'POST' ? JSON.stringify(init.body ?? {}) : undefined,
    });
  } catch (err) {
    throw unreachable(err);
  }
  const body = await jsonOf(res);
  if (!res.ok) throw failureOf(res, body, `${method} ${path}`, init.quiet401);
  return body as T;
}

async function jsonOf(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/** A refused request as the failure pages render; a 401 signs the user out (unless the caller expects one). */
function failureOf(res: Response, body: unknown, what: string, quiet401 = false): ApiFailure {
  if (res.status === 401 && !quiet401) onUnauthorized();
  const err = body as Partial<ApiError> | undefined;
  return new ApiFailure(res.status, err?.error ?? `${what} failed with HTTP ${res.status}`, err?.issues ?? []);
}

const unreachable = (err: unknown) => ((err as Error).name === 'AbortError' ? err : new ApiFailure(0, 'The API cannot be reached. Is the stack running?'));

export const post = <T>(path: string, body: unknown = {}) => api<T>(path, { method: 'POST', body });
/** DELETE carries no body (its parameters are in the query) but changes something, so it sends the CSRF header too. */
export const del = <T>(path: string) => api<T>(path, { method: 'DELETE' });

/** Any thrown value as an ApiFailure, for the pages' error states. */
export const asFailure = (err: unknown): ApiFailure => (err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));

export type StreamState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * One EventSource for `url` while mounted. Handlers may change every render; the connection does not. The
 * browser reconnects by itself after a network error; `onOpen` fires on every (re)connection so a page can
 * fetch what it missed.
 */
export function useEventStream(
  url: string | null,
  handlers: Record<string, (data: any) => void>,
  onOpen?: (reconnect: boolean) => void,
): StreamState {
  const [state, setState] = useState<StreamState>('connecting');
  const latest = useRef({ handlers, onOpen });
  latest.current = { handlers, onOpen };
  const names = Object.keys(handlers).sort().join(',');

  useEffect(() => {
    if (url === null) return;
    const source = new EventSource(url, { withCredentials: true });
    let opened = false;
    setState('connecting');
    source.onopen = () => {
      setState('open');
      latest.current.onOpen?.(opened);
      opened = true;
    };
    source.onerror = () => setState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
    const listeners = names.split(',').filter(Boolean).map((name) => {
      const listener = (e: MessageEvent) => {
        let data: unknown;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        latest.current.handlers[name]?.(data);
      };
      source.addEventListener(name, listener);
      return [name, listener] as const;
    });
    return () => {
      for (const [name, listener] of listeners) source.removeEventListener(name, listener);
      source.close();
    };
  }, [url, names]);
  return state;
}

/** How a streamed playground answer ended: its text, the served request to rate, why it stopped, what it cost. */
export interface ChatAnswer {
  text: string;
  requestId: string | null;
  finishReason: string | null;
  usage?: { prompt_tokens: number; completion_tokens: number };
}

/**
 * One playground answer, streamed: POST /api/playground/chat relays the gateway's OpenAI chunks as server-sent
 * events (parsed by eventsource-parser); `onText` gets the answer so far as each chunk arrives. A refusal before
 * the stream is an ApiFailure like any other; an error the gateway sends inside the stream too.
 */
export async function streamChat(body: PlaygroundChatRequest, onText: (soFar: string) => void, signal: AbortSignal): Promise<ChatAnswer> {
  let res: Response;
  try {
    res = await fetch('/api/playground/chat', {
      method: 'POST',
      credentials: 'same-origin',
      signal,
      headers: { [CSRF_HEADER]: '1', 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw unreachable(err);
  }
  if (!res.ok || !res.body) throw failureOf(res, await jsonOf(res), 'The chat');
  const answer: ChatAnswer = { text: '', requestId: res.headers.get('x-request-id'), finishReason: null };
  const events = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader();
  for (;;) {
    const { value, done } = await events.read();
    if (done || value.data === '[DONE]') break;
    const chunk = JSON.parse(value.data) as {
      id?: string;
      error?: { message?: string };
      choices?: Array<{ delta?: { content?: string | null }; finish_reason?: string | null }>;
      usage?: ChatAnswer['usage'] | null;
    };
    if (chunk.error) throw new ApiFailure(502, `The model failed while answering: ${chunk.error.message ?? 'no reason given'}`);
    answer.requestId ??= chunk.id ?? null;
    const choice = chunk.choices?.[0];
    if (choice?.delta?.content) onText((answer.text += choice.delta.content));
    if (choice?.finish_reason) answer.finishReason = choice.finish_reason;
    if (chunk.usage) answer.usage = chunk.usage;
  }
  return answer;
}
