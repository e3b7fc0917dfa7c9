/**
 * GET /v1/models: the model names routable now, each with its versions, weights and share of traffic, then
 * each version on its own (a version id can be asked for directly, pinning the request to it).
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { GatewayContext } from '../context';
import { errorResponses, ModelList } from '../schemas';

export const modelRoutes: FastifyPluginAsyncZod<{ gw: GatewayContext }> = async (app, { gw }) => {
  app.get(
    '/v1/models',
    { schema: { summary: 'List the models routable now (OpenAI models)', response: { 200: ModelList, ...errorResponses } } },
    async () => {
      const data = gw.routes.allModels().flatMap((m) => {
        const created = Math.floor(Math.max(...m.routes.map((r) => r.updatedAt.getTime())) / 1000);
        const versions = m.routes.map((r) => ({ id: r.modelVersionId, weight: r.weight, share: r.weight / m.total }));
        return [
          { id: m.name, object: 'model' as const, created, owned_by: 'tempered', versions },
          ...m.routes.map((r) => ({
            id: r.modelVersionId,
            object: 'model' as const,
            created: Math.floor(r.updatedAt.getTime() / 1000),
            owned_by: 'tempered',
            parent: m.name,
            weight: r.weight,
          })),
        ];
      });
      return { object: 'list' as const, data };
    },
  );
};
