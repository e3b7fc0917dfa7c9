/**
 * The CLI's client of the HTTP API: the caller's token, typed JSON requests (`api<T>()`, response types from
 * @tempered/api-contract) and the server-sent event streams (parsed by eventsource-parser).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ApiError } from '@tempered/api-contract';
import { loadConfig } from '@tempered/config';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { CliError } from './args';

/** A user of the local stack the command acts as when no --user is given: who may do what it does. */
export type DefaultUser = 'operator' | 'approver' | 'admin';

/** The API token: TEMPERED_API_TOKEN, or with --user (or without a token) that user's from credentials.json. */
export function token(user: string | undefined, defaultUser: DefaultUser): string {
  const cfg = loadConfig();
  if (cfg.api.token && !user) return cfg.api.token;
  const file = path.join(cfg.dataDir, 'credentials.json');
  if (!existsSync(file)) throw new CliError(`no API token: set TEMPERED_API_TOKEN, or start the local stack (npm start) which writes ${file}`);
  const creds = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { token: string }>;
  const name = user ?? defaultUser;
  if (!creds[name]) throw new CliError(`no user "${name}" in ${file}; known: ${Object.keys(creds).join(', ')}`);
  return creds[name].token;
}

async function request(route: string, init: RequestInit): Promise<Response> {
  const url = `${loadConfig().api.url}${route}`;
  try {
    return await fetch(url, init);
  } catch {
    throw new CliError(`cannot reach the API at ${url}: is the stack up? (npm start, or set TEMPERED_API_URL)`);
  }
}

/** The API's refusal as one message: its `error`, and the offending fields when it names them. */
function refusal(res: Response, payload: Partial<ApiError>): CliError {
  const issues = payload.issues ?? [];
  return new CliError(
    issues.length && !String(payload.error).includes(issues[0].message)
      ? `${payload.error}\n${issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n')}`
      : String(payload.error ?? `HTTP ${res.status}`),
  );
}

/** One JSON request; T is the route's response type (the API's route table names it). */
export async function api<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', route: string, auth: string, body?: unknown): Promise<T> {
  const res = await request(route, {
    method,
    headers: { authorization: `Bearer ${auth}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const payload: unknown = await res.json().catch(() => ({}));
  if (!res.ok) throw refusal(res, payload as Partial<ApiError>);
  return payload as T;
}

/** One event of a stream whose events are typed by E (e.g. RunEvents: `snapshot` carries a RunDetail). */
export type StreamEvent<E> = { [K in keyof E & string]: { type: K; data: E[K] } }[keyof E & string];

/**
 * The server-sent events of an API stream, each `{type, data}` with its data parsed. Ends when the server
 * closes the stream; stopping the iteration (return, break) closes the connection.
 */
export async function* streamEvents<E>(route: string, auth: string): AsyncGenerator<StreamEvent<E>> {
  const abort = new AbortController();
  const res = await request(route, { headers: { authorization: `Bearer ${auth}`, accept: 'text/event-stream' }, signal: abort.signal });
  if (!res.ok || !res.body) throw refusal(res, (await res.json().catch(() => ({}))) as Partial<ApiError>);
  const parsed: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (message) => parsed.push(message) });
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      parser.feed(decoder.decode(chunk, { stream: true }));
      for (const { event, data } of parsed.splice(0)) {
        if (event && data) yield { type: event, data: JSON.parse(data) } as StreamEvent<E>;
      }
    }
  } finally {
    abort.abort();
  }
}
