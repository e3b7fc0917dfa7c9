/**
 * Parsing and validation of pipeline specs. `parseSpec` is the single entry point for YAML text (CLI, API,
 * examples); `validateSpec` for an already-parsed object. Errors name the field path and the reason. Given
 * a deployment's `SpecLimits` (the API passes its configured ones), both also refuse what asks for more.
 */
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { type SpecLimits, specLimitIssues } from './limits';
import { pipelineSpecSchema, type PipelineSpec } from './schema';

export * from './limits';
export * from './schema';

export interface SpecIssue {
  /** Dotted path to the offending field, e.g. `train.steps` or `data.sources.0.uri`; empty for the root. */
  path: string;
  message: string;
}

/** Thrown for a spec that cannot run; `issues` lists every problem, not just the first. */
export class SpecError extends Error {
  constructor(readonly issues: SpecIssue[]) {
    super(`invalid pipeline spec:\n${issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n')}`);
    this.name = 'SpecError';
  }
}

function issuesOf(error: z.ZodError): SpecIssue[] {
  return error.issues.map((issue) => {
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') message = `unknown field(s): ${issue.keys.join(', ')}`;
    return { path: issue.path.map(String).join('.'), message };
  });
}

/**
 * Strings (values and keys) that no store can hold: a NUL character (PostgreSQL's text and jsonb refuse
 * it) or a lone surrogate (not well-formed Unicode, so not valid UTF-8 either). Refused at the field rather
 * than failing the insert with a 500.
 */
function malformedStrings(value: unknown, path: string[] = [], out: SpecIssue[] = []): SpecIssue[] {
  // In a `u` regex a surrogate pair is one code point, so \p{Cs} matches only a lone surrogate.
  const check = (s: string, where: string[], what: string) => {
    if (s.includes('\u0000')) out.push({ path: where.join('.'), message: `${what} contains a NUL character (U+0000)` });
    else if (/\p{Cs}/u.test(s)) out.push({ path: where.join('.'), message: `${what} contains a lone surrogate (not well-formed Unicode)` });
  };
  if (typeof value === 'string') check(value, path, 'text');
  else if (Array.isArray(value)) value.forEach((v, i) => malformedStrings(v, [...path, String(i)], out));
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      check(k, path, 'a field name');
      malformedStrings(v, [...path, k], out);
    }
  }
  return out;
}

export function validateSpec(value: unknown, limits?: SpecLimits): PipelineSpec {
  const malformed = malformedStrings(value);
  if (malformed.length > 0) throw new SpecError(malformed);
  const result = pipelineSpecSchema.safeParse(value);
  if (!result.success) throw new SpecError(issuesOf(result.error));
  const beyond = limits ? specLimitIssues(result.data, limits) : [];
  if (beyond.length > 0) throw new SpecError(beyond);
  return result.data;
}

/**
 * Aliases a spec may use. A spec has no need of many; each alias expands to a copy of its anchor, so a few
 * nested ones (the "billion laughs") would expand to gigabytes.
 */
const MAX_ALIASES = 50;

export function parseSpec(yamlText: string, limits?: SpecLimits): PipelineSpec {
  const doc = parseDocument(yamlText, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new SpecError(doc.errors.map((e) => ({ path: '', message: `YAML: ${e.message.split('\n')[0]}` })));
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    // The yaml package throws (a ReferenceError) for an alias bomb or an alias to no anchor.
    throw new SpecError([{ path: '', message: `YAML: ${(err as Error).message} (a spec may use at most ${MAX_ALIASES} aliases)` }]);
  }
  return validateSpec(value, limits);
}

/** The JSON Schema of a spec as a person writes it (served by the API, usable by editors). */
export function specJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(pipelineSpecSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}
