/**
 * POST /v1/feedback and POST /v1/feedback/pairwise: what people think of served answers, stored with the
 * version that served them, for the next RLHF run (feedbackPreferencePairs in @tempered/db turns them into
 * preference pairs). A rating names a served request by its id; a request still waiting in the request log
 * is written first, so an answer can be rated at once.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { GatewayContext } from '../context';
import { FieldError, HttpError } from '../errors';
import { normalizePrompt } from '../processing';
import { errorResponses, FeedbackRequest, FeedbackResponse, PairwiseFeedbackRequest, PairwiseFeedbackResponse } from '../schemas';

export const feedbackRoutes: FastifyPluginAsyncZod<{ gw: GatewayContext }> = async (app, { gw }) => {
  const { db, requestLog, metrics } = gw;

  /** The served request behind a feedback, written first if it is still waiting in the request log. */
  async function servedRequest(id: string, field: string) {
    if (requestLog.has(id)) await requestLog.settle(id);
    const row = await db.selectFrom('gateway_requests').select(['id', 'model_name', 'model_version_id', 'prompt', 'response']).where('id', '=', id).executeTakeFirst();
    if (!row) throw new HttpError(404, `${field}: no request ${id} was served by this gateway (use the x-request-id header or the body id of a /v1/completions or /v1/chat/completions response)`, {}, field);
    return row;
  }

  app.post(
    '/v1/feedback',
    {
      schema: {
        summary: 'Rate a served answer up or down',
        description: 'A later rating of the same request replaces the earlier one.',
        body: FeedbackRequest,
        response: { 201: FeedbackResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { rating, comment, request_id } = req.body;
      const served = await servedRequest(request_id, 'request_id');
      const row = await db
        .insertInto('feedback_ratings')
        .values({ request_id: served.id, model_name: served.model_name, model_version_id: served.model_version_id, rating, comment: comment ?? null })
        .returning(['id', 'created_at'])
        .executeTakeFirstOrThrow();
      metrics.feedback.inc({ model: served.model_name, version: served.model_version_id, rating });
      return reply.code(201).send({
        id: row.id,
        request_id: served.id,
        model: served.model_name,
        model_version: served.model_version_id,
        rating,
        created_at: new Date(row.created_at).toISOString(),
      });
    },
  );

  app.post(
    '/v1/feedback/pairwise',
    {
      schema: {
        summary: 'Say which of two responses to one prompt is better',
        description: 'With request_ids, the serving versions (and the model) are taken from the served requests; a tie makes no preference pair.',
        body: PairwiseFeedbackRequest,
        response: { 201: PairwiseFeedbackResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      const body = req.body;
      // The prompt is normalized as served prompts are, so that it matches them; responses stay as the client saw them.
      const prompt = normalizePrompt(body.prompt);
      if (prompt === '') throw new FieldError('prompt', 'is empty once normalized');
      let model = body.model ?? undefined;
      let served: Array<Awaited<ReturnType<typeof servedRequest>> | undefined> = [undefined, undefined];
      if (body.request_ids) {
        served = await Promise.all(body.request_ids.map((id, i) => (id === null ? undefined : servedRequest(id, `request_ids[${i}]`))));
        model ??= served[0]?.model_name ?? served[1]?.model_name;
      }
      const row = await db
        .insertInto('feedback_pairwise')
        .values({
          model_name: model ?? null,
          prompt,
          response_a: body.response_a,
          response_b: body.response_b,
          preferred: body.preferred,
          request_id_a: served[0]?.id ?? null,
          request_id_b: served[1]?.id ?? null,
          model_version_a: served[0]?.model_version_id ?? null,
          model_version_b: served[1]?.model_version_id ?? null,
          comment: body.comment ?? null,
        })
        .returning(['id', 'created_at'])
        .executeTakeFirstOrThrow();
      return reply.code(201).send({ id: row.id, model: model ?? null, preferred: body.preferred, created_at: new Date(row.created_at).toISOString() });
    },
  );
};
