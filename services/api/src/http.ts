/**
 * The few HTTP pieces every route shares: an error type that becomes a 4xx body naming the field and the
 * reason, the mapping of Fastify's and zod's errors onto that one shape (`{error, issues?}`), and `route()`,
 * which registers a route with its zod schemas (params, query, body, responses) and the action a caller's
 * role must allow. Validation, response serialization and the OpenAPI description all come from those schemas.
 */
import { type Action, apiError } from '@tempered/api-contract';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, ResponseSerializationError } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Principal } from './auth';

export const MAX_BODY = 1024 * 1024;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export type Issue = { path: string; message: string };

/** A 400 that lists every offending field; its message names them too. */
export function badRequest(issues: Issue[]): HttpError {
  return new HttpError(400, issues.map((i) => `${i.path || '(body)'}: ${i.message}`).join('; '), { issues });
}
export const badField = (field: string, message: string) => badRequest([{ path: field, message }]);

/** zod's issues (as zod gives them, or as the Fastify type provider wraps them) in the API's shape. */
export function issuesOf(raw: Array<{ path?: PropertyKey[]; instancePath?: string; code?: string; keyword?: string; keys?: string[]; params?: { keys?: string[] }; message?: string }>): Issue[] {
  return raw.map((i) => {
    const path = i.path ? i.path.map(String).join('.') : (i.instancePath ?? '').split('/').filter(Boolean).join('.');
    const keys = i.keys ?? i.params?.keys;
    return { path, message: (i.code ?? i.keyword) === 'unrecognized_keys' && keys ? `unknown field(s): ${keys.join(', ')}` : (i.message ?? 'invalid') };
  });
}

/** What the routes declare in `config`: the role permission needed, and whether the route needs no caller. */
export interface RouteConfig {
  action?: Action;
  summary?: string;
  public?: boolean;
  /** A body that is not JSON reaches the handler as text (a YAML spec). */
  rawBody?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; set by the auth hook for every non-public API route. */
    who?: Principal;
  }
}

/** Who may call a route, in words, for its OpenAPI description. */
const ROLE_OF: Record<Action, string> = {
  read: 'any signed-in user',
  start: 'operator or admin',
  label: 'operator or admin',
  approve: "approver or admin (not the run's requester)",
  use: 'operator, approver or admin',
  admin: 'admin',
};

type Schema = z.ZodType | undefined;
type Out<S extends Schema> = S extends z.ZodType ? z.output<S> : undefined;

export interface RouteDef<B extends Schema, Q extends Schema, P extends Schema> {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Fastify's path syntax: `/api/runs/:id`. */
  url: string;
  action: Action;
  summary: string;
  public?: boolean;
  rawBody?: boolean;
  params?: P;
  querystring?: Q;
  body?: B;
  /**
   * Success bodies by status code; every reply is serialized through its schema (a mismatch is a logged 500).
   * A route that streams (events, downloads) gives its content type instead.
   */
  response: Record<number, z.ZodType> | { stream: string; description: string };
  handler(ctx: { req: FastifyRequest; reply: FastifyReply; who: Principal; body: Out<B>; query: Out<Q>; params: Out<P> }): Promise<unknown>;
}

/** The error bodies every route may answer with, for validation and the OpenAPI description. */
const ERRORS = { '4xx': apiError, '5xx': apiError };

export function route<B extends Schema = undefined, Q extends Schema = undefined, P extends Schema = undefined>(app: FastifyInstance, def: RouteDef<B, Q, P>): void {
  const response =
    'stream' in def.response
      ? { 200: { description: def.response.description, content: { [def.response.stream]: { schema: z.string() } } }, ...ERRORS }
      : { ...def.response, ...ERRORS };
  const config: RouteConfig = { action: def.action, summary: def.summary, public: def.public, rawBody: def.rawBody };
  app.route({
    method: def.method,
    url: def.url,
    config,
    attachValidation: def.rawBody,
    schema: {
      summary: def.summary,
      description: def.public ? 'No authentication.' : `Allowed: ${ROLE_OF[def.action]}.`,
      ...(def.public ? { security: [] } : {}),
      ...(def.params ? { params: def.params } : {}),
      ...(def.querystring ? { querystring: def.querystring } : {}),
      ...(def.body ? { body: def.body } : {}),
      response,
    },
    handler: (req, reply) =>
      def.handler({ req, reply, who: req.who!, body: req.body as Out<B>, query: req.query as Out<Q>, params: req.params as Out<P> }),
  });
}

/** A path segment that names a run, a model, a dataset version or a schedule. */
export const idParam = z.object({ id: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/) });
/** A path segment that names a row by number (artifacts, preference pairs). */
export const numberParam = z.object({ id: z.string().regex(/^\d{1,18}$/) });

const pathOf = (req: FastifyRequest) => req.url.split('?')[0];

/** Every error, thrown by a route, a hook, Fastify or zod, as the API's one error shape. */
export function errorReply(err: FastifyError | HttpError | Error, req: FastifyRequest, reply: FastifyReply) {
  if (err instanceof HttpError) return reply.code(err.status).send({ error: err.message, ...err.extra });
  if (hasZodFastifySchemaValidationErrors(err)) {
    // A path segment that cannot name anything names nothing: as if there were no such route.
    if (err.validationContext === 'params') return reply.code(404).send({ error: `no route ${req.method} ${pathOf(req)}; see /api/openapi.json` });
    const issues = issuesOf(err.validation);
    const e = badRequest(issues);
    return reply.code(400).send({ error: e.message, issues });
  }
  if (err instanceof ResponseSerializationError) {
    // Never send a body that breaks the contract: log what did not match, answer 500.
    console.error(`${req.method} ${pathOf(req)}: the response does not match its schema: ${JSON.stringify((err.cause as z.ZodError | undefined)?.issues ?? String(err.cause))}`);
    return reply.code(500).send({ error: 'internal error; see the API log' });
  }
  const fe = err as FastifyError;
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send({ error: `request body over ${MAX_BODY} bytes` });
  if (fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) return reply.code(400).send({ error: `body is not valid JSON: ${err.message}` });
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return reply.code(fe.statusCode).send({ error: err.message });
  console.error(`${req.method} ${pathOf(req)} failed:`, err);
  return reply.code(500).send({ error: 'internal error; see the API log' });
}
