/**
 * The playground's door to the gateway: a signed-in operator or approver chats with a serving model from the
 * dashboard, streamed, and rates what it answered. Everything goes through the gateway exactly as an API client's
 * request would (routing and canary weights, input normalization, the output filter, the request log), so a
 * rating lands in the same feedback tables the next RLHF run reads. The browser never holds the gateway key:
 * the API adds it (TEMPERED_GATEWAY_KEY, when the gateway has one) and a per-user client key, so a user's
 * conversation stays on one version while a canary runs.
 */
import { Readable } from 'node:stream';
import {
  playgroundChatRequest, playgroundFeedbackResponse, playgroundPreferenceRequest, playgroundRatingRequest,
} from '@tempered/api-contract';
import type { FastifyInstance } from 'fastify';
import { audit } from '../auth';
import type { ApiDeps } from '../deps';
import { SSE_HEADERS } from '../events';
import { HttpError, route } from '../http';

/** The gateway's feedback fields as the playground's requests name them (the chat's are OpenAI's, the same). */
const FEEDBACK_FIELDS: Record<string, string> = { request_id: 'requestId', request_ids: 'requestIds', response_a: 'responseA', response_b: 'responseB' };

/** The gateway's error body (OpenAI's shape) as the API's: the same 4xx naming the same field; a 5xx is the gateway's fault, a 502 here. */
async function gatewayRefusal(res: Response, url: string): Promise<HttpError> {
  const body = (await res.json().catch(() => undefined)) as { error?: { message?: string; param?: string | null } } | undefined;
  const message = body?.error?.message ?? `HTTP ${res.status}`;
  if (res.status >= 500) return new HttpError(502, `the gateway answered ${res.status}: ${message}`);
  if (res.status === 401) return new HttpError(502, `the gateway at ${url} refused the API's key: start the API with the gateway's TEMPERED_GATEWAY_KEY`);
  const param = body?.error?.param;
  if (!param) return new HttpError(res.status, message);
  // The gateway's messages usually start with its field already; the API's name the field as this API spells it, once.
  const reason = message.startsWith(`${param}: `) ? message.slice(param.length + 2) : message;
  const field = param.replace(/\[(\d+)\]/g, '.$1').replace(/^[a-z_]+/, (name) => FEEDBACK_FIELDS[name] ?? name);
  return new HttpError(res.status, `${field}: ${reason}`, { issues: [{ path: field, message: reason }] });
}

export function playgroundRoutes(app: FastifyInstance, { cfg, db }: ApiDeps): void {
  const base = cfg.gateway.url;

  /** A request to the gateway on behalf of `user`; an unreachable gateway is a 502 that says what to do. */
  async function toGateway(path: string, user: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    try {
      return await fetch(`${base}${path}`, {
        method: 'POST',
        signal,
        headers: {
          'content-type': 'application/json',
          'x-client-key': `dashboard:${user}`,
          ...(cfg.gateway.key ? { authorization: `Bearer ${cfg.gateway.key}` } : {}),
        },
        body: JSON.stringify(body),
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new HttpError(502, `the gateway at ${base} cannot be reached (${cause}): is the stack up? \`npm start\` starts it`);
    }
  }

  route(app, {
    method: 'POST', url: '/api/playground/chat', action: 'use',
    summary: 'Chat with a serving model (or one version) through the gateway, streamed',
    body: playgroundChatRequest,
    response: {
      stream: 'text/event-stream',
      description: "The gateway's OpenAI chat-completion chunks as it sends them, usage in the last one, then `data: [DONE]`; the `x-request-id` header names the served request to rate",
    },
    async handler({ body, who, reply }) {
      // The browser leaving (a new message, another page) aborts the upstream request, which frees the model server.
      const upstream = new AbortController();
      reply.raw.on('close', () => upstream.abort());
      const res = await toGateway('/v1/chat/completions', who.user, { ...body, stream: true, stream_options: { include_usage: true } }, upstream.signal);
      if (!res.ok || !res.body) throw await gatewayRefusal(res, base);
      const requestId = res.headers.get('x-request-id');
      if (requestId) reply.header('x-request-id', requestId);
      return reply.headers(SSE_HEADERS).send(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream));
    },
  });

  route(app, {
    method: 'POST', url: '/api/playground/rating', action: 'use',
    summary: "Rate one of a serving model's playground answers up or down (the gateway's feedback, read by the next RLHF run)",
    body: playgroundRatingRequest, response: { 201: playgroundFeedbackResponse },
    async handler({ body, who, reply }) {
      const res = await toGateway('/v1/feedback', who.user, { request_id: body.requestId, rating: body.rating, comment: body.comment });
      if (!res.ok) throw await gatewayRefusal(res, base);
      const stored = (await res.json()) as { id: number | string; model: string; model_version: string };
      await audit(db, { actor: who.user, action: 'playground.rating', target: `request:${body.requestId}`, comment: body.comment, details: { rating: body.rating, model: stored.model, modelVersion: stored.model_version } });
      return reply.code(201).send({ id: String(stored.id), model: stored.model, modelVersion: stored.model_version });
    },
  });

  route(app, {
    method: 'POST', url: '/api/playground/preference', action: 'use',
    summary: 'Say which of two playground answers to one prompt is better (a preference pair for the next RLHF run)',
    body: playgroundPreferenceRequest, response: { 201: playgroundFeedbackResponse },
    async handler({ body, who, reply }) {
      const res = await toGateway('/v1/feedback/pairwise', who.user, {
        prompt: body.prompt, response_a: body.responseA, response_b: body.responseB, preferred: body.preferred, request_ids: body.requestIds, comment: body.comment,
      });
      if (!res.ok) throw await gatewayRefusal(res, base);
      const stored = (await res.json()) as { id: number | string; model: string | null };
      await audit(db, { actor: who.user, action: 'playground.preference', target: `request:${body.requestIds.join(',')}`, comment: body.comment, details: { preferred: body.preferred, model: stored.model } });
      return reply.code(201).send({ id: String(stored.id), model: stored.model, modelVersion: null });
    },
  });
}
