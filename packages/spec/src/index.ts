/**
 * Parsing and validation of pipeline specs. `parseSpec` is the single entry point for YAML text (CLI, API,
 * examples); `validateSpec` for an already-parsed object. Errors name the field path and the reason.
 */
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { pipelineSpecSchema, type PipelineSpec } from './schema';

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

export function validateSpec(value: unknown): PipelineSpec {
  const result = pipelineSpecSchema.safeParse(value);
  if (!result.success) throw new SpecError(issuesOf(result.error));
  return result.data;
}

export function parseSpec(yamlText: string): PipelineSpec {
  const doc = parseDocument(yamlText, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new SpecError(doc.errors.map((e) => ({ path: '', message: `YAML: ${e.message.split('\n')[0]}` })));
  }
  return validateSpec(doc.toJS());
}

/** The JSON Schema of a spec as a person writes it (served by the API, usable by editors). */
export function specJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(pipelineSpecSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}
