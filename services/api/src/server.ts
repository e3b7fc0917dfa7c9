/**
 * The HTTP API and the dashboard's host, on Fastify. Routes live in ./routes (runs, people, labels, catalog,
 * deployments, schedules), each declared with zod schemas for its params, query, body and responses; this
 * module wires what they share: one hook that sets the security headers and authenticates each API request
 * (bearer token or session cookie), checking the CSRF header for cookie-borne changes and the caller's role
 * against the route's action; the error handler that turns every failure into `{error, issues?}` (4xx naming
 * the field, 413, 404, 405 as before); the request log line; `/healthz`, `GET /api/openapi.json` (generated
 * from the schemas) and, for every other GET, the dashboard.
 */
import { can, healthResponse, whoMay } from '@tempered/api-contract';
import { specJsonSchema } from '@tempered/spec';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { csrfOk } from './auth';
import type { ApiDeps } from './deps';
import { errorReply, HttpError, MAX_BODY, route, type RouteConfig } from './http';
import { registerOpenApi } from './openapi';
import { catalogRoutes } from './routes/catalog';
import { deploymentRoutes } from './routes/deployments';
import { playgroundRoutes } from './routes/playground';
import { labelRoutes } from './routes/labels';
import { peopleRoutes, publicRoutes } from './routes/people';
import { runRoutes } from './routes/runs';
import { scheduleRoutes } from './routes/schedules';
import { evaluationRoutes } from './routes/evaluations';
import { SECURITY_HEADERS, serveDashboard } from './static';

export { newRunId } from './routes/runs';

const NOT_SIGNED_IN = 'not signed in: send "Authorization: Bearer <token>" (tokens: credentials.json in the data directory, or POST /api/tokens) or sign in at /';
const pathOf = (req: FastifyRequest) => req.url.split('?')[0];

export async function buildServer(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false, bodyLimit: MAX_BODY, exposeHeadRoutes: false, routerOptions: { ignoreTrailingSlash: false },
    // A path the router cannot decode (`/%`) never reaches a route or a hook: answer it in the API's shape
    // (`{error}`, the security headers), for anyone, signed in or not.
    frameworkErrors: (err, req, reply) => {
      const badUrl = (err as FastifyError).code === 'FST_ERR_BAD_URL';
      (reply as FastifyReply).headers(SECURITY_HEADERS).code(400).send({ error: badUrl ? 'the path is not a valid URL: a % must start an escape such as %2F' : err.message });
    },
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('who', undefined);
  await registerOpenApi(app);

  // Bodies: JSON (an empty one is no body); any other type is read as text, which a route that takes text
  // (a YAML spec) gets as it is, and every other route parses as JSON, as the API always has.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if ((body as string).trim() === '') done(null, undefined);
    else json(req, body as string, done);
  });
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, body, done) => {
    const text = body as string;
    if ((req.routeOptions.config as RouteConfig).rawBody) done(null, text);
    else if (text.trim() === '') done(null, undefined);
    else json(req, text, done);
  });

  // The paths of the API's routes, to tell a wrong method (405) from an unknown path (404).
  const patterns: RegExp[] = [];
  app.addHook('onRoute', (r) => {
    if (r.url.startsWith('/api/')) patterns.push(new RegExp(`^${r.url.replace(/:[A-Za-z]+/g, '[^/]+')}$`));
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.headers(SECURITY_HEADERS);
    const config = req.routeOptions.config as RouteConfig;
    if (!config.action || config.public) return; // the dashboard, /healthz, the OpenAPI document, sign-in, 404s
    const who = await deps.auth.authenticate(req.raw);
    if (!who) throw new HttpError(401, NOT_SIGNED_IN);
    if (!csrfOk(req.raw, who)) throw new HttpError(403, 'a signed-in browser request that changes something must send the header "x-tempered: 1"');
    if (!can(who.role, config.action)) throw new HttpError(403, `${who.user} (${who.role}) may not ${config.summary!.toLowerCase()}; ${whoMay(config.action)} may`);
    req.who = who;
  });
  // A route with a body schema and no body checks `{}`: pause, resume and trigger take none; others name their fields.
  app.addHook('preValidation', async (req) => {
    if (req.body === undefined && req.routeOptions.schema?.body) req.body = {};
  });
  // Paths only (no query strings, which may carry search text), never bodies or tokens.
  app.addHook('onResponse', async (req, reply) => {
    const path = pathOf(req);
    if (path !== '/healthz') console.log(`${req.method} ${path} ${reply.statusCode} ${Math.round(reply.elapsedTime)}ms`);
  });
  app.setErrorHandler((err, req, reply) => errorReply(err as Error, req, reply));

  /** No route here: 401 before anything else for a caller who is not signed in, then 405 or 404. */
  async function noRoute(req: FastifyRequest): Promise<never> {
    const path = pathOf(req);
    if (!path.startsWith('/api/')) throw new HttpError(405, `${req.method} is not allowed here`);
    if (!(await deps.auth.authenticate(req.raw))) throw new HttpError(401, NOT_SIGNED_IN);
    if (patterns.some((p) => p.test(path))) throw new HttpError(405, `${req.method} is not allowed on ${path}`);
    throw new HttpError(404, `no route ${req.method} ${path}; see /api/openapi.json`);
  }
  app.setNotFoundHandler((req) => noRoute(req));

  app.get('/healthz', { schema: { hide: true, response: { 200: healthResponse } } }, async () => ({ status: 'ok' as const }));
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  publicRoutes(app, deps);
  route(app, {
    method: 'GET', url: '/api/spec-schema', action: 'read', summary: 'JSON Schema of a pipeline spec',
    response: { 200: z.record(z.string(), z.unknown()) },
    handler: async () => specJsonSchema(),
  });
  runRoutes(app, deps);
  peopleRoutes(app, deps);
  labelRoutes(app, deps);
  catalogRoutes(app, deps);
  deploymentRoutes(app, deps);
  playgroundRoutes(app, deps);
  scheduleRoutes(app, deps);
  evaluationRoutes(app, deps);
  // Every other GET is the dashboard (an unknown /api/ path is still a JSON 404).
  app.get('/*', { schema: { hide: true } }, async (req, reply) => {
    if (pathOf(req).startsWith('/api/')) return noRoute(req);
    return serveDashboard(pathOf(req), reply);
  });
  await app.ready();
  return app;
}
