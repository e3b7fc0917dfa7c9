/**
 * Operations routes: GET /healthz (also /health; never needs the key), GET /metrics (Prometheus text from
 * the gateway's prom-client registry) and GET /openapi.json (the OpenAPI document generated from the zod
 * schemas of every route).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { GatewayContext } from '../context';
import { errorResponses, Health } from '../schemas';

export const opsRoutes: FastifyPluginAsyncZod<{ gw: GatewayContext }> = async (app, { gw }) => {
  // Any method answers, as load balancers probe differently; only GET /healthz is in the OpenAPI document.
  for (const url of ['/healthz', '/health']) {
    for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const) {
      app.route({
        method,
        url,
        schema: { summary: 'Whether the gateway is up, and how many models it routes; never needs the key', hide: url !== '/healthz' || method !== 'GET', security: [], response: { 200: Health } },
        handler: async () => ({ status: 'ok' as const, models: gw.routes.modelNames().length }),
      });
    }
  }

  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        description:
          'Requests, errors, latency and upstream latency per model version, flagged answers, feedback, route weights and the request log, in the Prometheus text format.',
        response: { 200: { description: 'Prometheus text exposition format 0.0.4', content: { 'text/plain': { schema: z.string() } } }, ...errorResponses },
      },
    },
    async (_req, reply) => reply.type(gw.metrics.contentType).send(await gw.metrics.render()),
  );

  app.get('/openapi.json', { schema: { hide: true } }, async (_req, reply) => reply.send(app.swagger()));
};
