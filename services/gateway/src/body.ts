/**
 * How a request body becomes a value: JSON, nested at most MAX_JSON_DEPTH deep, and every string in it
 * (keys too) well-formed Unicode. Both are refused here, before any route sees the body, with a 400 naming
 * the field, because each otherwise reaches a model server as a request it fails on (a 502, counted against
 * the model version as its error): a body nested 10,000 deep overflows the stack of the gateway's own
 * JSON.stringify (500) or of the model server's json.loads (RecursionError), and a lone surrogate (`"\ud800"`,
 * half of a UTF-16 pair) is not text a tokenizer can encode.
 */
import { FieldError, HttpError, paramName } from './errors';
import { MAX_JSON_DEPTH } from './schemas';

/**
 * Where the text nests deeper than `max` arrays and objects: the top-level field it happens in (undefined
 * when the body is not an object), or null when it does not. A scan of the text, not of a parsed value, so
 * that nothing recurses over a hostile depth; strings are skipped, brackets in them do not count.
 */
export function tooDeep(text: string, max: number): { field: string | undefined } | null {
  let depth = 0;
  let topIsObject = false;
  let expectKey = false; // at depth 1 of an object, where a key comes next
  let field: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (depth === 1 && topIsObject && expectKey) {
        try {
          field = JSON.parse(text.slice(start, i + 1));
        } catch {
          field = undefined; // not JSON: JSON.parse will say so
        }
        expectKey = false;
      }
    } else if (c === '{' || c === '[') {
      depth++;
      if (depth === 1) {
        topIsObject = c === '{';
        expectKey = topIsObject;
      }
      if (depth > max) return { field: topIsObject ? field : undefined };
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1 && topIsObject) expectKey = true;
  }
  return null;
}

/** The path of the first string (value or key) that is not well-formed Unicode, or null. */
function illFormed(value: unknown, path: Array<string | number>): Array<string | number> | null {
  if (typeof value === 'string') return value.isWellFormed() ? null : path;
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) {
      const found = illFormed(v, [...path, i]);
      if (found) return found;
    }
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (!k.isWellFormed()) return [...path, k];
      const found = illFormed(v, [...path, k]);
      if (found) return found;
    }
  }
  return null;
}

/** The body's value, or the 400 that refuses it. */
export function parseBody(text: string): unknown {
  const deep = tooDeep(text, MAX_JSON_DEPTH);
  if (deep) {
    const message = `is nested deeper than ${MAX_JSON_DEPTH} levels of arrays and objects`;
    throw deep.field ? new FieldError(deep.field, message) : new HttpError(400, `the body ${message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `the body is not valid JSON: ${(err as Error).message}`);
  }
  const path = illFormed(value, []);
  if (path) {
    const message = 'must be well-formed Unicode text: it holds a lone surrogate (half of a UTF-16 pair, such as \\ud800)';
    throw path.length ? new FieldError(paramName(path), message) : new HttpError(400, `the body ${message}`);
  }
  return value;
}
