/**
 * Text as PostgreSQL will store it. Postgres refuses two things a JavaScript string can hold: the NUL
 * character (text columns: "invalid byte sequence for encoding UTF8: 0x00") and, in jsonb, the escape
 * `\u0000` and lone surrogate escapes (`\ud800` without its pair). One such character in a feedback comment,
 * a served answer or a trainer's log line would fail the whole INSERT it is in. (pg encodes a lone surrogate
 * in a text parameter as U+FFFD on its own, but not inside JSON text, where JSON.stringify escapes it.)
 *
 * So every bound parameter goes through `pgSafe` on its way out, in one Kysely plugin that `createDb`
 * installs: every writer (request log, feedback, run logs, labels, audit comments, specs) is covered in one
 * place, including the ones written later, rather than each remembering to clean its strings. What Postgres
 * cannot hold becomes U+FFFD, the replacement character, as a decoder does with bytes it cannot decode:
 * the text stays the same length and says that something was there.
 */
import {
  type KyselyPlugin,
  OperationNodeTransformer,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  PrimitiveValueListNode,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
  ValueNode,
} from 'kysely';

const REPLACEMENT = '\uFFFD';

/** A `\u` escape jsonb refuses may be in it (cheap test before the exact one). */
const SUSPECT_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;
/**
 * JSON escapes, left to right: a surrogate pair (kept), any other `\uXXXX`, any other escape (`\\`, `\"`,
 * kept). Scanning escape by escape is what tells `\u0000` from `\\u0000` (an escaped backslash, then text).
 */
const JSON_ESCAPE = /\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u([0-9a-fA-F]{4})|\\[^u]/g;

/** JSON text with the escapes jsonb refuses (`\u0000`, a lone surrogate) replaced by `\ufffd`. */
function jsonbSafe(json: string): string {
  return json.replace(JSON_ESCAPE, (escape, hex: string | undefined) => {
    if (hex === undefined) return escape;
    const code = parseInt(hex, 16);
    return code === 0 || (code >= 0xd800 && code <= 0xdfff) ? '\\ufffd' : escape;
  });
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * A string Postgres accepts: NUL and lone surrogates replaced by U+FFFD, and, when the string is JSON text
 * (bound for a jsonb column: this schema writes JSON as strings), the escapes jsonb refuses too. A text that
 * merely mentions `\u0000` without being JSON is left as it is.
 */
export function pgSafeText(text: string): string {
  let out = text.includes('\0') ? text.replaceAll('\0', REPLACEMENT) : text;
  if (!out.isWellFormed()) out = out.toWellFormed();
  if (SUSPECT_ESCAPE.test(out) && isJson(out)) out = jsonbSafe(out);
  return out;
}

/** A bound value with every string in it made safe: arrays (text[]) and plain objects (pg sends them as JSON) too. */
export function pgSafe(value: unknown): unknown {
  if (typeof value === 'string') return pgSafeText(value);
  if (Array.isArray(value)) {
    const safe = value.map(pgSafe);
    return safe.some((v, i) => v !== value[i]) ? safe : value;
  }
  if (value !== null && typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return value; // Date, Buffer, ...: pg knows them
    const entries = Object.entries(value);
    const safe = entries.map(([k, v]) => [pgSafeText(k), pgSafe(v)]);
    return safe.some(([k, v], i) => k !== entries[i][0] || v !== entries[i][1]) ? Object.fromEntries(safe) : value;
  }
  return value;
}

class SafeValues extends OperationNodeTransformer {
  protected override transformValue(node: ValueNode): ValueNode {
    const value = pgSafe(node.value);
    if (value === node.value) return node;
    return node.immediate ? ValueNode.createImmediate(value) : ValueNode.create(value);
  }

  protected override transformPrimitiveValueList(node: PrimitiveValueListNode): PrimitiveValueListNode {
    const values = pgSafe(node.values) as unknown[];
    return values === node.values ? node : PrimitiveValueListNode.create(values);
  }
}

/** The Kysely plugin: every value bound into a query (builders and `sql` templates alike) goes through `pgSafe`. */
export class PgSafeTextPlugin implements KyselyPlugin {
  private readonly transformer = new SafeValues();

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.transformer.transformNode(args.node, args.queryId);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}
