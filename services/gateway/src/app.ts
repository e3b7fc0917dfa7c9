/**
 * The inference gateway: an OpenAI-compatible front for the model versions recorded in `routes`, with the
 * use stage's processing around every call and a feedback channel that feeds the next RLHF run. This module
 * assembles it: a Fastify app with zod schemas for every request and response, the key check, request ids,
 * the per-request log line, metrics and request record, and the routes, each in its own module:
 *
 *   POST /v1/completions          routes/completions.ts  OpenAI completions; other fields go to the model
 *   POST /v1/chat/completions     routes/completions.ts  OpenAI chat; the whole conversation goes upstream
 *   GET  /v1/models               routes/models.ts       model names routable now, with their versions and weights
 *   POST /v1/feedback             routes/feedback.ts     {request_id, rating: "up"|"down", comment?}
 *   POST /v1/feedback/pairwise    routes/feedback.ts     {prompt, response_a, response_b, preferred, request_ids?, model?, comment?}
 *   GET  /metrics                 routes/ops.ts          Prometheus text (prom-client): requests, errors, latency per version, feedback
 *   GET  /openapi.json            routes/ops.ts          the OpenAPI 3 document generated from schemas.ts
 *   GET  /healthz                 routes/ops.ts          {status: "ok"}, never needs the key
 *
 * Around them: auth.ts (the bearer key), body.ts (JSON bodies: bounded depth, well-formed text), errors.ts
 * (OpenAI's error body, 400 naming the field), schemas.ts (the contract), upstream.ts (calling model servers),
 * routing.ts (weights, stickiness), processing.ts (normalization, blocklist), request-log.ts (the batched
 * record of served requests), metrics.ts.
 *
 * `model` is a model name (traffic split between its versions by weight, sticky per client: the
 * `x-client-key` header, else the body's `user`, else the client's address) or a version id (pinned to it).
 * The upstream is asked for `model: <version id>`, so a vLLM upstream must serve it under that name
 * (`--served-model-name`). Every response carries `x-request-id` (also the body's `id`, also in error bodies)
 * and, once routed, `x-model-version`. With TEMPERED_GATEWAY_KEY set, every route but /healthz needs
 * `Authorization: Bearer <key>`. One log line per request: method, path, status, time, version, request id;
 * never prompt text or keys.
 */
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import fastifySwagger from '@fastify/swagger';
import type { Config } from '@tempered/config';
import type { Db } from '@tempered/db';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { installAuth } from './auth';
import { parseBody } from './body';
import type { GatewayContext } from './context';
import { installErrorHandling, normalizedPath } from './errors';
import { GatewayMetrics } from './metrics';
import { Blocklist } from './processing';
import { RequestLog } from './request-log';
import { RouteTable } from './routing';
import { completionRoutes } from './routes/completions';
import { feedbackRoutes } from './routes/feedback';
import { modelRoutes } from './routes/models';
import { opsRoutes } from './routes/ops';
import { MAX_BODY, MODEL_FIELD_MESSAGE } from './schemas';

// What a test or a bench needs to drive a gateway's parts on their own.
export { GatewayMetrics } from './metrics';
export { RequestLog, type RequestRecord } from './request-log';
export { MAX_JSON_DEPTH } from './schemas';
export { Blocklist, StreamFilter } from './processing';

export interface GatewayDeps {
  cfg: Config;
  db: Db;
  /** Defaults to the config's TEMPERED_BLOCKLIST, TEMPERED_BLOCKLIST_FILE and TEMPERED_BLOCKLIST_LANGUAGES. */
  blocklist?: Blocklist;
}

export interface Gateway {
  app: FastifyInstance;
  /** The app's HTTP server (listen with `app.listen`). */
  server: http.Server;
  routes: RouteTable;
  metrics: GatewayMetrics;
  requestLog: RequestLog;
  blocklist: Blocklist;
  /** Loads the routes, starts following their changes and readies the app; call before listening. */
  start(): Promise<void>;
  /** Stops following routes and writes the request records still waiting (after `app.close()`). */
  close(): Promise<void>;
}

const OPENAI_PATHS = new Set(['/v1/completions', '/v1/chat/completions']);
const QUIET_PATHS = new Set(['/healthz', '/metrics']);

export function createGateway({ cfg, db, blocklist = Blocklist.load(cfg.gateway.blocklist, cfg.gateway.blocklistFile, cfg.gateway.blocklistLanguages) }: GatewayDeps): Gateway {
  const metrics = new GatewayMetrics();
  const requestLog = new RequestLog(db, metrics);
  const routes = new RouteTable(db, cfg.databaseUrl, (table) => {
    metrics.routeWeight.reset();
    for (const m of table.allModels()) for (const r of m.routes) metrics.routeWeight.set({ model: m.name, version: r.modelVersionId }, r.weight);
  });
  const gw: GatewayContext = { cfg, db, routes, metrics, requestLog, blocklist, settle: () => {} };

  const app = Fastify({
    logger: false, // one line per request, below: never the body, never the key
    bodyLimit: MAX_BODY,
    keepAliveTimeout: 65_000, // longer than the usual load balancer's idle timeout
    genReqId: () => `req-${randomUUID()}`,
    routerOptions: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: true },
    exposeHeadRoutes: false, // a route answers the methods it names, and no other
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  // A route that takes a body reads it as JSON, whatever its content type says (body.ts: the parse error,
  // a nesting too deep or a lone surrogate is a 400); other routes (and unknown ones) ignore any body, as
  // they always have.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, text, done) => {
    if (!req.routeOptions.schema?.body) return done(null, undefined);
    try {
      done(null, parseBody(text as string));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  app.decorateRequest('served', null as never);
  app.addHook('onRequest', async (req, reply) => {
    req.served = { path: normalizedPath(req.url) };
    reply.header('x-request-id', req.id);
  });
  installAuth(app, cfg.gateway.key);
  installErrorHandling(app, {
    // The schema cannot know the models deployed now: the message about `model` lists them.
    fieldMessage: (param, said) =>
      param === 'model' && said === MODEL_FIELD_MESSAGE
        ? `must be a model name (${routes.modelNames().join(', ') || 'none deployed yet'}) or a model version id`
        : undefined,
  });

  app.addHook('onSend', async (req, reply, payload) => {
    if (req.served.version) reply.header('x-model-version', req.served.version);
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith('application/json')) reply.header('content-type', 'application/json');
    return payload;
  });

  // What is counted and recorded once the response is out: requests per version and status, latency, the
  // record. Once per request: on the response's end, or, for a stream the client left (no 'finish' comes
  // then), when the route has wound the stream down (gw.settle).
  const settle = (req: FastifyRequest, reply: FastifyReply) => {
    if (req.served.settled) return;
    req.served.settled = true;
    const ms = reply.elapsedTime;
    const { path, model, version, record } = req.served;
    const status = req.served.status ?? reply.statusCode;
    if (OPENAI_PATHS.has(path)) {
      const labels = { model: model ?? 'none', version: version ?? 'none' };
      metrics.requests.inc({ ...labels, status: String(status) });
      if (version) metrics.latency.observe(labels, ms / 1000);
      if (record) requestLog.add({ ...record, id: req.id, at: new Date(Date.now() - ms), status, latency_ms: ms });
    }
    if (!QUIET_PATHS.has(path)) console.log(`${req.method} ${path} ${status} ${ms.toFixed(1)}ms version=${version ?? '-'} id=${req.id}`);
  };
  gw.settle = settle;
  app.addHook('onResponse', async (req, reply) => settle(req, reply));

  app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Tempered gateway',
        description: 'OpenAI-compatible inference gateway: routing to model versions by weight, use-stage processing, metrics and feedback.',
        version: '0.1.0',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'TEMPERED_GATEWAY_KEY, when the gateway was started with one' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  app.register(opsRoutes, { gw });
  app.register(modelRoutes, { gw });
  app.register(completionRoutes, { gw });
  app.register(feedbackRoutes, { gw });

  return {
    app,
    server: app.server,
    routes,
    metrics,
    requestLog,
    blocklist,
    async start() {
      await routes.start();
      await app.ready();
    },
    async close() {
      await routes.close();
      await requestLog.drain();
    },
  };
}
