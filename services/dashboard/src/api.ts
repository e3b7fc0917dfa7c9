/**
 * The dashboard's only door to the API: same-origin fetch with the session cookie, the CSRF header on every
 * change, and failures as values the pages render (status, message, the offending fields). A 401 anywhere
 * means the session ended, so it signs the user out instead of showing a broken page. Reads go through
 * TanStack Query (queries.ts) on top of `api`; live changes come from `useEventStream`.
 */
import { CSRF_HEADER, type ApiError } from '@tempered/api-contract';
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
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiFailure(0, 'The API cannot be reached. Is the stack running?');
  }
  const text = await res.text();
  let body: unknown = undefined;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && !init.quiet401) onUnauthorized();
    const err = body as Partial<ApiError> | undefined;
    throw new ApiFailure(res.status, err?.error ?? `${method} ${path} failed with HTTP ${res.status}`, err?.issues ?? []);
  }
  return body as T;
}

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
