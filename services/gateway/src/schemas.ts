/**
 * The gateway's HTTP contract as zod schemas: what each route accepts (validated by Fastify before a handler
 * runs; a failure is a 400 naming the field, see errors.ts) and what the gateway itself answers (checked as
 * it is sent). The OpenAPI document at /openapi.json is generated from these.
 *
 * The request schemas check shape, and the sampling numbers against OpenAI's own ranges (temperature 0..2,
 * top_p 0..1, penalties -2..2, whole token counts): a number a model server would fail on (a temperature of
 * 1e-320 divides its logits into infinities) is the client's mistake, a 400 here, not a 502 counted against
 * the model version. Other fields meant for the model server pass through unchecked, and its refusal is
 * passed on. Rules on content (a prompt empty once normalized, a system message only first, ...) are checked
 * by processing.ts, which normalizes the text; body.ts bounds the nesting and refuses lone surrogates.
 */
import { z } from 'zod';

/** Longest feedback comment, in characters. */
export const MAX_COMMENT = 4000;
/** Longest request body, in bytes (413 beyond). */
export const MAX_BODY = 1024 * 1024;
/**
 * Deepest nesting of arrays and objects in a request body (400 beyond). OpenAI's requests nest a handful of
 * levels; the model server's json.loads fails near 1,000 and the gateway's own JSON.stringify near 10,000.
 */
export const MAX_JSON_DEPTH = 64;
/**
 * Smallest temperature above 0 (greedy). OpenAI accepts 0..2; below this, sampling is greedy in all but name,
 * and a denormal such as 1e-320 is 0 in the model's float32, so logits / temperature are infinities.
 */
export const MIN_TEMPERATURE = 1e-6;

/** Said of `model` when it is missing; errors.ts adds the models deployed now. */
export const MODEL_FIELD_MESSAGE = 'must be a model name or a model version id';

const modelField = z
  .string({ error: MODEL_FIELD_MESSAGE })
  .min(1, { error: MODEL_FIELD_MESSAGE })
  .describe('A model name (traffic split between its versions by weight, sticky per client) or a model version id (pinned to it).');

const streamField = z
  .unknown()
  .refine((v) => v !== true, { error: 'streaming is not supported by the gateway; leave it out or send false' })
  .optional()
  .describe('Streaming is not supported: leave it out or send false.');

/** A field the gateway forwards to the model server, which validates it. */
const forwarded = (what: string) => z.unknown().optional().describe(`${what}; forwarded to the model server, which validates it.`);

/** A finite number in [min, max] (null as OpenAI allows: the model server's default), forwarded as given. */
const inRange = (min: number, max: number, what: string) => {
  const said = `must be a number from ${min} to ${max}`;
  return z.number({ error: said }).min(min, { error: said }).max(max, { error: said }).nullish().describe(`${what}, ${min} to ${max}.`);
};

/** A whole number (a safe integer) of at least `min` and at most `max`, or null. */
const whole = (what: string, min: number, max?: number) => {
  const range = max === undefined ? `>= ${min}` : `from ${min} to ${max}`;
  const said = `must be a whole number ${range}`;
  const int = z.int({ error: said }).min(min, { error: said });
  return (max === undefined ? int : int.max(max, { error: said })).nullish().describe(`${what}, a whole number ${range}.`);
};

const temperatureSaid = `must be 0 (greedy) or a number from ${MIN_TEMPERATURE} to 2`;
const temperatureField = z
  .number({ error: temperatureSaid })
  .min(0, { error: temperatureSaid })
  .max(2, { error: temperatureSaid })
  .refine((t) => t === 0 || t >= MIN_TEMPERATURE, { error: temperatureSaid })
  .nullish()
  .describe(`Sampling temperature: 0 (greedy) or ${MIN_TEMPERATURE} to 2 (OpenAI's range is 0 to 2).`);

/** The sampling fields both OpenAI calls share, checked against OpenAI's ranges and forwarded to the model server. */
const sampling = {
  max_tokens: whole('Most tokens to generate', 1),
  temperature: temperatureField,
  top_p: inRange(0, 1, 'Nucleus sampling'),
  n: whole('Choices to generate', 1, 128),
  stop: forwarded('Stop sequences'),
  seed: z.int({ error: 'must be a whole number' }).nullish().describe('Sampling seed, a whole number.'),
  presence_penalty: inRange(-2, 2, 'Presence penalty'),
  frequency_penalty: inRange(-2, 2, 'Frequency penalty'),
};

const userField = z.unknown().optional().describe('The end user; when a string and no x-client-key header is sent, the key that keeps a client on one version.');

export const CompletionRequest = z
  .looseObject({
    model: modelField,
    stream: streamField,
    prompt: z
      .union([z.string(), z.tuple([z.string()])], { error: 'must be a string (or a list of exactly one string)' })
      .describe('The prompt, normalized like training data (NFKC, control characters, whitespace) before it goes upstream.'),
    ...sampling,
    user: userField,
  })
  .describe('An OpenAI completion request. Fields other than model and prompt go to the model server as given.');

const chatMessage = z.object(
  {
    role: z.enum(['system', 'user', 'assistant'], { error: 'must be one of system, user, assistant' }),
    content: z
      .union([z.string(), z.array(z.unknown().describe('A content part: {type: "text", text} parts are joined by newlines, others are ignored.'))], {
        error: 'must be a string or an array of content parts',
      })
      .describe('The text, or content parts.'),
  },
  { error: 'must be a message {role, content}' },
);

export const ChatCompletionRequest = z
  .looseObject({
    model: modelField,
    stream: streamField,
    messages: z
      .array(chatMessage, { error: 'must be a non-empty array of {role, content}' })
      .min(1, { error: 'must be a non-empty array of {role, content}' })
      .describe('The conversation: a system message only first, at least one non-empty user message, ending with one to answer.'),
    ...sampling,
    max_completion_tokens: whole('Most tokens to generate, when max_tokens is not given', 1),
    user: userField,
  })
  .describe('An OpenAI chat request: the whole conversation goes upstream, every turn normalized. Other fields are ignored.');

const optionalText = (max: number) =>
  z
    .string({ error: 'must be a string' })
    .max(max, { error: `must be at most ${max} characters` })
    .nullish();

const requestId = (what: string) =>
  z
    .string({ error: 'must be the id of a gateway response (its x-request-id header or body id)' })
    .min(1, { error: 'must be the id of a gateway response (its x-request-id header or body id)' })
    .describe(what);

export const FeedbackRequest = z.object({
  rating: z.enum(['up', 'down'], { error: 'must be "up" or "down"' }),
  comment: optionalText(MAX_COMMENT),
  request_id: requestId('The served request rated: its x-request-id header or body id.'),
});

const requiredText = z
  .string({ error: 'must be a non-empty string' })
  .max(MAX_BODY, { error: 'is too long' })
  .refine((v) => v.trim() !== '', { error: 'must be a non-empty string' });

export const PairwiseFeedbackRequest = z.object({
  prompt: requiredText.describe('The prompt both responses answer (normalized as served prompts are).'),
  response_a: requiredText.describe('The first response, as the client saw it.'),
  response_b: requiredText.describe('The second response, as the client saw it.'),
  preferred: z.enum(['a', 'b', 'tie'], { error: 'must be "a", "b" or "tie"' }),
  comment: optionalText(MAX_COMMENT),
  model: optionalText(200).describe('The model name; taken from the served requests when not given.'),
  request_ids: z
    .tuple([requestId('The request that answered response_a').nullable(), requestId('The request that answered response_b').nullable()], {
      error: 'must be two request ids: the one that answered response_a, then response_b (null for one not served here)',
    })
    .nullish(),
});

// ---- Responses ----

export const ErrorBody = z
  .looseObject({
    id: z.string().optional().describe('The request id (also the x-request-id header).'),
    error: z.looseObject({
      message: z.string(),
      type: z.string().nullish(),
      param: z.string().nullish().describe('The offending field, for a 400.'),
      code: z.union([z.number(), z.string()]).nullish(),
    }),
    available_models: z.array(z.string()).optional().describe('With a 404 for an unknown model: the models deployed now.'),
  })
  .describe("OpenAI's error shape. A model server's own refusal is passed on with its status and fields.");

const tempered = z.object({
  model: z.string().describe('The model name.'),
  model_version: z.string().describe('The version that answered.'),
  flagged: z.boolean().describe('Whether the blocklist replaced something in the output.'),
});

const finishReason = z.string().nullable().describe('"content_filter" when the blocklist replaced something.');

export const CompletionResponse = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number(),
  model: z.string().describe('The model version id that answered.'),
  choices: z.array(z.object({ index: z.number(), text: z.string(), logprobs: z.unknown().nullable(), finish_reason: finishReason })),
  usage: z.unknown().optional().describe("The model server's token counts."),
  tempered,
});

export const ChatCompletionResponse = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number(),
  model: z.string().describe('The model version id that answered.'),
  choices: z.array(
    z.object({
      index: z.number(),
      message: z.object({ role: z.literal('assistant'), content: z.string() }),
      logprobs: z.null(),
      finish_reason: finishReason,
    }),
  ),
  usage: z.unknown().optional().describe("The model server's token counts."),
  tempered,
});

export const ModelList = z.object({
  object: z.literal('list'),
  data: z.array(
    z.object({
      id: z.string().describe('A model name, or one of its version ids.'),
      object: z.literal('model'),
      created: z.number().int(),
      owned_by: z.string(),
      versions: z
        .array(z.object({ id: z.string(), weight: z.number(), share: z.number() }))
        .optional()
        .describe("A model name's versions, with their routing weights and share of traffic."),
      parent: z.string().optional().describe("A version's model name."),
      weight: z.number().optional().describe("A version's routing weight."),
    }),
  ),
});

const timestamp = z.iso.datetime().describe('When it was stored.');

export const FeedbackResponse = z.object({
  id: z.number().int(),
  request_id: z.string(),
  model: z.string(),
  model_version: z.string(),
  rating: z.enum(['up', 'down']),
  created_at: timestamp,
});

export const PairwiseFeedbackResponse = z.object({
  id: z.number().int(),
  model: z.string().nullable(),
  preferred: z.enum(['a', 'b', 'tie']),
  created_at: timestamp,
});

export const Health = z.object({ status: z.literal('ok'), models: z.number().int().describe('Model names routable now.') });

/** The error answers every OpenAI route may give. */
export const errorResponses = { '4xx': ErrorBody, '5xx': ErrorBody } as const;
