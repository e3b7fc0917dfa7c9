/**
 * The few HTTP pieces every route shares: an error type that becomes a 4xx body naming the field and the
 * reason, body reading with a size limit, request validation against the contract's zod schemas, and a
 * small route table (method + path pattern + the action a caller's role must allow).
 */
import type http from 'node:http';
import type { Action } from '@tempered/api-contract';
import type { z } from 'zod';
import type { Principal } from './auth';

const MAX_BODY = 1024 * 1024;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export async function readBody(req: http.IncomingMessage): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `body is not valid JSON: ${(err as Error).message}`);
  }
}

/** The request body checked against a contract schema; a 400 lists every offending field. */
export async function bodyOf<S extends z.ZodType>(req: http.IncomingMessage, schema: S): Promise<z.output<S>> {
  const result = schema.safeParse(parseJson(await readBody(req)));
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({
    path: i.path.map(String).join('.'),
    message: i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message,
  }));
  throw new HttpError(400, issues.map((i) => `${i.path || '(body)'}: ${i.message}`).join('; '), { issues });
}

export interface RouteContext {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  params: string[];
  who: Principal;
}

/** What a handler returns; `undefined` when it wrote the response itself (downloads, event streams). */
export type Reply = { status: number; body: unknown; headers?: Record<string, string> } | undefined;

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** Matched against the whole path; capture groups become `params`. */
  path: RegExp;
  /** The role permission needed (see `can` in the contract). */
  action: Action;
  summary: string;
  /** For the OpenAPI description: the request schema and the contract's response type name. */
  request?: z.ZodType;
  response?: string;
  handler(ctx: RouteContext): Promise<Reply>;
}

export const ok = (body: unknown, status = 200): Reply => ({ status, body });

/** A path segment that names a run, a model or a dataset version. */
export const ID = '([A-Za-z0-9._:-]{1,128})';
