/**
 * Errors and how they reach the client: every failure becomes OpenAI's error body
 * `{id, error: {message, type, param, code}}`, with the request id. A 400 names the offending field in
 * `param` and starts its message with it, whether the schema (schemas.ts) or the text rules (processing.ts)
 * refused it; 401 for a missing or wrong key, 404 for no such route or model, 413 for a body over the limit,
 * 502/504 for a model server that is down, failing or too slow, 500 (logged) for anything else.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { FieldError } from './processing';
import { MAX_BODY } from './schemas';

export { FieldError };

/** A failure with its HTTP status; `extra` goes at the top of the body (e.g. `available_models`). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly param?: string,
  ) {
    super(message);
  }
}

const TYPES: Record<number, string> = { 400: 'invalid_request_error', 401: 'authentication_error', 404: 'not_found_error', 413: 'invalid_request_error' };

/** A zod issue's path as OpenAI names a param: `messages[0].content[1].text`. */
export function paramName(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
}

/** `/messages/0/role` (a validation error's instancePath) as a path. */
function instancePath(path: string): Array<string | number> {
  return path
    .split('/')
    .filter(Boolean)
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

export interface ErrorHooks {
  /** The message for a field, when it says more than the schema can (the models deployed now, for `model`). */
  fieldMessage?: (param: string, said: string) => string | undefined;
}

/** The error as status and OpenAI body, for any thrown value. */
export function errorReply(err: unknown, id: string, hooks: ErrorHooks = {}): { status: number; body: Record<string, unknown> } {
  if (hasZodFastifySchemaValidationErrors(err)) {
    // The first issue, in the schema's field order: the field a client would fix first.
    const issue = err.validation[0];
    const path = instancePath(issue.instancePath);
    if (path.length === 0) err = new HttpError(400, 'the body must be a JSON object');
    else {
      const param = paramName(path);
      const said = issue.message ?? 'is invalid';
      err = new FieldError(param, hooks.fieldMessage?.(param, said) ?? said);
    }
  }
  if (err instanceof FieldError) return { status: 400, body: { id, error: { message: err.message, type: 'invalid_request_error', param: err.param, code: 400 } } };
  const fe = err as FastifyError;
  if (fe?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') err = new HttpError(413, `request body over ${MAX_BODY} bytes`);
  else if (!(err instanceof HttpError) && !isResponseSerializationError(err) && typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    err = new HttpError(fe.statusCode, fe.message); // what Fastify itself refused (a malformed request)
  }
  if (err instanceof HttpError) {
    const type = TYPES[err.status] ?? (err.status < 500 ? 'invalid_request_error' : 'upstream_error');
    return { status: err.status, body: { id, error: { message: err.message, type, param: err.param ?? null, code: err.status }, ...err.extra } };
  }
  return { status: 500, body: { id, error: { message: 'internal error; see the gateway log', type: 'server_error', param: null, code: 500 } } };
}

/** Installs the error handler and the 404 for unknown routes. */
export function installErrorHandling(app: FastifyInstance, hooks: ErrorHooks): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const { status, body } = errorReply(err, req.id, hooks);
    if (status === 500) console.error(`${req.method} ${req.url.split('?', 1)[0]} ${req.id} failed:`, err);
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const { status, body } = errorReply(new HttpError(404, `no route ${req.method} ${normalizedPath(req.url)}`), req.id, hooks);
    return reply.code(status).send(body);
  });
}

/** The request's path without the query string and trailing slashes, as it is logged and counted. */
export function normalizedPath(url: string): string {
  return url.split('?', 1)[0].replace(/(.)\/+$/, '$1');
}
