/**
 * POST /v1/completions and POST /v1/chat/completions: the OpenAI calls. Each is validated (schemas.ts), its
 * text normalized (processing.ts), routed to a model version (routing.ts: by weight, sticky per client key,
 * or pinned by version id), sent to that version's model server (upstream.ts), and its output filtered by the
 * blocklist. A chat goes upstream as a chat, every turn normalized, for the model server to render with the
 * model's own template; the request log records its last user message as the prompt.
 */
import type { Route } from '@tempered/db';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { GatewayContext, Served } from '../context';
import { HttpError } from '../errors';
import { type ChatTurn, chatTurns, FieldError, lastUserText, normalizePrompt } from '../processing';
import { pickRoute, stickyPoint } from '../routing';
import { ChatCompletionRequest, ChatCompletionResponse, CompletionRequest, CompletionResponse, errorResponses } from '../schemas';
import { postJson, UpstreamError } from '../upstream';

/** Fields of a chat request that mean the same in a completion request. */
const CHAT_PASSTHROUGH = ['max_tokens', 'temperature', 'top_p', 'n', 'stop', 'seed', 'presence_penalty', 'frequency_penalty', 'user'];

type Kind = 'completion' | 'chat';

interface Upstream {
  choices: Array<{ index?: number; text?: string; message?: { content: string }; finish_reason?: string; logprobs?: unknown }>;
  created?: unknown;
  usage?: unknown;
}

export const completionRoutes: FastifyPluginAsyncZod<{ gw: GatewayContext }> = async (app, { gw }) => {
  const { routes, metrics, blocklist, cfg } = gw;

  function noRoute(model: string): HttpError {
    const available = routes.modelNames();
    return new HttpError(
      404,
      `no route for model '${model}': ${available.length ? `available models are ${available.join(', ')}` : 'no model is deployed behind the gateway yet'}`,
      { available_models: available },
      'model',
    );
  }

  /** Routes, calls the model server and filters its answer: the OpenAI body, or the model server's own refusal. */
  async function complete(
    kind: Kind,
    body: Record<string, unknown> & { model: string },
    prompt: string,
    turns: ChatTurn[] | undefined,
    served: Served,
    clientAddress: string,
    clientHeader: string | undefined,
  ): Promise<{ status: number; body: any }> {
    const resolved = routes.resolve(body.model);
    if (!resolved) throw noRoute(body.model);
    const clientKey = clientHeader || (typeof body.user === 'string' && body.user) || clientAddress;
    const route: Route = resolved.pinned ?? pickRoute(resolved.model, stickyPoint(resolved.model.name, clientKey));
    served.model = route.modelName;
    served.version = route.modelVersionId;
    const record = (served.record = { model_name: route.modelName, model_version_id: route.modelVersionId, kind, prompt, response: null as string | null, flagged: false, error: null as string | null });

    const upstreamBody: Record<string, unknown> = {};
    if (kind === 'completion') {
      for (const [k, v] of Object.entries(body)) if (k !== 'model' && k !== 'prompt') upstreamBody[k] = v;
    } else {
      for (const k of CHAT_PASSTHROUGH) if (body[k] !== undefined) upstreamBody[k] = body[k];
      if (body.max_tokens === undefined && body.max_completion_tokens !== undefined) upstreamBody.max_tokens = body.max_completion_tokens;
    }
    upstreamBody.model = route.modelVersionId;
    // A chat goes upstream as a chat: the model server renders the whole conversation with its chat template.
    if (turns) upstreamBody.messages = turns;
    else upstreamBody.prompt = prompt;

    const labels = { model: route.modelName, version: route.modelVersionId };
    const t0 = performance.now();
    let up: { status: number; body: any };
    try {
      up = await postJson(new URL(`${route.endpoint}/v1/${kind === 'chat' ? 'chat/completions' : 'completions'}`), upstreamBody, cfg.gateway.upstreamTimeoutMs);
      if (up.status >= 500) {
        const message = up.body?.error?.message ?? JSON.stringify(up.body).slice(0, 200);
        throw new UpstreamError('upstream_error', `answered HTTP ${up.status}: ${message}`);
      }
      const textOf = (c: any) => (kind === 'chat' ? c?.message?.content : c?.text);
      if (up.status < 400 && (!Array.isArray(up.body?.choices) || !up.body.choices.every((c: any) => typeof textOf(c) === 'string'))) {
        throw new UpstreamError('upstream_bad_response', `answered without choices[].${kind === 'chat' ? 'message.content' : 'text'}`);
      }
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      metrics.errors.inc({ ...labels, reason: err.reason });
      const message = `the model server of ${route.modelVersionId} (${route.endpoint}) ${err.message}`;
      record.error = message.slice(0, 1000);
      throw new HttpError(err.reason === 'upstream_timeout' ? 504 : 502, message);
    } finally {
      metrics.upstreamLatency.observe(labels, (performance.now() - t0) / 1000);
    }

    if (up.status >= 400) {
      // The model server refused the request (a bad max_tokens, say): pass its answer on, it names the field.
      const message = up.body?.error?.message ?? `the model server answered HTTP ${up.status}`;
      record.error = String(message).slice(0, 1000);
      return { status: up.status, body: { error: { ...(up.body?.error ?? {}), message } } };
    }

    let flagged = false;
    const choices = (up.body as Upstream).choices.map((c, i) => {
      const out = blocklist.filter(kind === 'chat' ? c.message!.content : c.text!);
      flagged ||= out.flagged;
      const finish_reason = out.flagged ? 'content_filter' : (c.finish_reason ?? null);
      return kind === 'completion'
        ? { index: c.index ?? i, text: out.text, logprobs: c.logprobs ?? null, finish_reason }
        : { index: c.index ?? i, message: { role: 'assistant' as const, content: out.text }, logprobs: null, finish_reason };
    });
    if (flagged) metrics.flagged.inc(labels);
    record.response = kind === 'completion' ? (choices[0] as { text: string }).text : (choices[0] as { message: { content: string } }).message.content;
    record.flagged = flagged;
    return {
      status: 200,
      body: {
        object: kind === 'completion' ? 'text_completion' : 'chat.completion',
        created: typeof up.body.created === 'number' ? up.body.created : Math.floor(Date.now() / 1000),
        model: route.modelVersionId,
        choices,
        usage: up.body.usage,
        tempered: { model: route.modelName, model_version: route.modelVersionId, flagged },
      },
    };
  }

  app.post(
    '/v1/completions',
    {
      schema: {
        summary: 'Complete a prompt (OpenAI completions)',
        description: 'Fields other than model and prompt go to the model server as given. Streaming is not supported.',
        body: CompletionRequest,
        response: { 200: CompletionResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      const raw = Array.isArray(req.body.prompt) ? req.body.prompt[0] : req.body.prompt;
      const prompt = normalizePrompt(raw);
      if (prompt === '') throw new FieldError('prompt', 'is empty once normalized');
      const out = await complete('completion', req.body, prompt, undefined, req.served, req.socket.remoteAddress ?? '', req.headers['x-client-key'] as string | undefined);
      return reply.code(out.status).send({ id: req.id, ...out.body });
    },
  );

  app.post(
    '/v1/chat/completions',
    {
      schema: {
        summary: 'Answer a conversation (OpenAI chat completions)',
        description: 'The whole conversation goes upstream, every turn normalized, rendered by the model server with the model\'s chat template. Streaming is not supported.',
        body: ChatCompletionRequest,
        response: { 200: ChatCompletionResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      const turns = chatTurns(req.body.messages);
      const out = await complete('chat', req.body, lastUserText(turns), turns, req.served, req.socket.remoteAddress ?? '', req.headers['x-client-key'] as string | undefined);
      return reply.code(out.status).send({ id: req.id, ...out.body });
    },
  );
};
