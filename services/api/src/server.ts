/**
 * The HTTP API and the dashboard's host. Routes live in ./routes (runs, people, labels, catalog, deployments,
 * schedules); this
 * module authenticates each request (bearer token or session cookie), checks the caller's role against the
 * route's action and the CSRF header for cookie-borne changes, and turns errors into 4xx bodies that name
 * the field and the reason. `GET /api/openapi.json` describes every route; `/` serves the dashboard.
 */
import http from 'node:http';
import { can, whoMay } from '@tempered/api-contract';
import { specJsonSchema } from '@tempered/spec';
import { csrfOk } from './auth';
import type { ApiDeps } from './deps';
import { HttpError, ok, type Reply, type Route } from './http';
import { openApi } from './openapi';
import { catalogRoutes } from './routes/catalog';
import { deploymentRoutes } from './routes/deployments';
import { labelRoutes } from './routes/labels';
import { peopleRoutes, publicRoutes } from './routes/people';
import { runRoutes } from './routes/runs';
import { scheduleRoutes } from './routes/schedules';
import { SECURITY_HEADERS, serveDashboard } from './static';

export { newRunId } from './routes/runs';

export function createServer(deps: ApiDeps): http.Server {
  const open = publicRoutes(deps);
  const routes: Route[] = [
    {
      method: 'GET', path: /^\/api\/spec-schema$/, action: 'read', summary: 'JSON Schema of a pipeline spec', response: 'JSON Schema',
      handler: async () => ok(specJsonSchema()),
    },
    ...runRoutes(deps),
    ...peopleRoutes(deps),
    ...labelRoutes(deps),
    ...catalogRoutes(deps),
    ...deploymentRoutes(deps),
    ...scheduleRoutes(deps),
  ];
  const description = openApi(routes, open);

  function match(table: Route[], method: string, pathname: string) {
    for (const r of table) {
      const m = r.path.exec(pathname);
      if (m && r.method === method) return { route: r, params: m.slice(1) };
    }
    return undefined;
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz') return ok({ status: 'ok' });
    if (url.pathname === '/api/openapi.json') return ok(description);
    if (!url.pathname.startsWith('/api/')) {
      if (method !== 'GET') throw new HttpError(405, `${method} is not allowed here`);
      await serveDashboard(url, res);
      return undefined;
    }
    const publicHit = match(open, method, url.pathname);
    if (publicHit) return publicHit.route.handler({ req, res, url, params: publicHit.params, who: { user: '', role: 'viewer', via: 'token' } });

    const who = await deps.auth.authenticate(req);
    if (!who) throw new HttpError(401, 'not signed in: send "Authorization: Bearer <token>" (tokens: credentials.json in the data directory, or POST /api/tokens) or sign in at /');
    const hit = match(routes, method, url.pathname);
    if (!hit) {
      const other = routes.some((r) => r.path.test(url.pathname));
      throw new HttpError(other ? 405 : 404, other ? `${method} is not allowed on ${url.pathname}` : `no route ${method} ${url.pathname}; see /api/openapi.json`);
    }
    if (!csrfOk(req, who)) throw new HttpError(403, 'a signed-in browser request that changes something must send the header "x-tempered: 1"');
    if (!can(who.role, hit.route.action)) {
      throw new HttpError(403, `${who.user} (${who.role}) may not ${hit.route.summary.toLowerCase()}; ${whoMay(hit.route.action)} may`);
    }
    return hit.route.handler({ req, res, url, params: hit.params, who });
  }

  return http.createServer((req, res) => {
    const started = Date.now();
    handle(req, res)
      .catch((err: unknown): Reply => {
        if (err instanceof HttpError) return { status: err.status, body: { error: err.message, ...err.extra } };
        console.error(`${req.method} ${req.url} failed:`, err);
        return { status: 500, body: { error: 'internal error; see the API log' } };
      })
      .then((reply) => {
        if (reply && !res.headersSent) {
          res.writeHead(reply.status, { 'content-type': 'application/json', ...SECURITY_HEADERS, ...reply.headers });
          res.end(JSON.stringify(reply.body));
        } else if (reply && !res.writableEnded) {
          res.end(); // a stream failed midway: close it rather than leave the client hanging
        }
        // Paths only (no query strings, which may carry search text), never bodies or tokens.
        const logPath = (req.url ?? '').split('?')[0];
        if (logPath !== '/healthz') console.log(`${req.method} ${logPath} ${reply?.status ?? res.statusCode} ${Date.now() - started}ms`);
      });
  });
}
