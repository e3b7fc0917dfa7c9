/**
 * Live validation of a pipeline spec typed or pasted in the browser, with the same schema the API uses
 * (`@tempered/spec`), and each issue placed on the line of the field it names: `rlhf.labels.required` is
 * looked up in the YAML document and its key's line reported. A field that is missing points at its parent's
 * line; an unknown field at the unknown key itself; a YAML syntax error at the error's own position.
 */
import { SpecError, validateSpec, type PipelineSpec } from '@tempered/spec';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';

export interface LocatedIssue {
  path: string;
  message: string;
  /** 1-based line of the offending field in the text. */
  line: number;
}

export interface SpecCheck {
  issues: LocatedIssue[];
  spec?: PipelineSpec;
}

/** The line of the deepest existing node along `path` (dotted, array indices as numbers). */
export function lineOfPath(doc: Document, lines: LineCounter, path: string, message = ''): number {
  const segments = path === '' ? [] : path.split('.');
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const seg of segments) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === seg);
      if (!pair) break;
      offset = (pair.key as Node).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node)) {
      const item = node.items[Number(seg)] as Node | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else break;
  }
  // "unknown field(s): foo, bar" names keys of the node at `path`: point at the first of them.
  const unknown = /^unknown field\(s\): ([^,\s]+)/.exec(message);
  if (unknown && isMap(node)) {
    const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === unknown[1]);
    if (pair) offset = (pair.key as Node).range?.[0] ?? offset;
  }
  return lines.linePos(offset).line;
}

/** Places issues reported by the API (or `SpecError`) on lines of `text`. */
export function locate(text: string, issues: Array<{ path: string; message: string }>): LocatedIssue[] {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines });
  return issues.map((i) => ({ ...i, line: doc.errors.length ? 1 : lineOfPath(doc, lines, i.path, i.message) }));
}

export function checkSpec(text: string): SpecCheck {
  if (text.trim() === '') return { issues: [{ path: '', message: 'the spec is empty', line: 1 }] };
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  if (doc.errors.length > 0) {
    return {
      issues: doc.errors.map((e) => ({ path: '', message: `YAML: ${e.message.split('\n')[0]}`, line: e.linePos?.[0]?.line ?? 1 })),
    };
  }
  try {
    return { issues: [], spec: validateSpec(doc.toJS()) };
  } catch (err) {
    if (!(err instanceof SpecError)) throw err;
    return { issues: err.issues.map((i) => ({ ...i, line: lineOfPath(doc, lines, i.path, i.message) })).sort((a, b) => a.line - b.line) };
  }
}

/**
 * Local paths in a spec typed in the browser resolve on the server against its working directory, not
 * against anything the writer sees; relative ones almost never mean what they look like. Not an error
 * (the server may have such a file), a warning on the path's line.
 */
export function relativePathWarnings(text: string, spec: PipelineSpec): LocatedIssue[] {
  const found: Array<{ path: string; uri: string }> = [];
  spec.data.sources.forEach((s, i) => found.push({ path: `data.sources.${i}.uri`, uri: s.uri }));
  if (spec.rlhf.preferences) found.push({ path: 'rlhf.preferences.uri', uri: spec.rlhf.preferences.uri });
  // A base model by catalog name (`{name}`) is no path: nothing to check.
  if (spec.model.base && 'uri' in spec.model.base) found.push({ path: 'model.base.uri', uri: spec.model.base.uri });
  const relative = found.filter((f) => !f.uri.startsWith('/') && !/^[a-z][a-z0-9+.-]*:\/\//i.test(f.uri));
  return locate(
    text,
    relative.map((f) => ({ path: f.path, message: `"${f.uri}" is relative: on the server it resolves against the API's working directory; use an absolute path or an s3:// URI` })),
  );
}
