/**
 * The one spec intake, shared by runs and schedules: a spec sent as YAML text or an object, or an example
 * under examples/, validated into a PipelineSpec. Issues name the spec's own fields (`train.steps`,
 * `data.sources.0.uri`) whichever route took it. A spec is refused when it asks for more than the
 * deployment's limits (`cfg.limits`), when it names a local path outside the allowed roots (the worker's own
 * rule, `localData`), and, without a folder of its own (sent as text, no `specDir`), when it names relative
 * data paths.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type Config, localData, repoRoot } from '@tempered/config';
import { parseSpec, type PipelineSpec, SpecError, validateSpec } from '@tempered/spec';
import { badField, badRequest, HttpError, type Issue } from './http';

export const examplesRoot = path.join(repoRoot, 'examples');

export interface SpecSource {
  /** YAML text or an already parsed object. */
  spec?: string | Record<string, unknown>;
  /** A path under examples/. */
  example?: string;
  /** The folder relative data paths resolve against (the CLI sends its spec file's). */
  specDir?: string;
}

export interface TakenSpec {
  spec: PipelineSpec;
  specDir?: string;
  example?: string;
}

/**
 * The local or `file://` paths a run will read: data sources, preferences (when RLHF reads them), a base model by
 * path, test suites. A suite is a fixed evaluation set, not data still to arrive, so its file must exist now.
 */
function localUris(spec: PipelineSpec): Array<{ path: string; uri: string; mustExist?: boolean }> {
  const uris = [
    ...(spec.test.suites ?? []).map((s, i) => ({ path: `test.suites.${i}.source.uri`, uri: s.source.uri, mustExist: true })),
    ...spec.data.sources.map((s, i) => ({ path: `data.sources.${i}.uri`, uri: s.uri })),
    // Preferences are read only when RLHF runs on a dataset (or feedback plus a dataset).
    ...(spec.rlhf.preferences && spec.rlhf.method !== 'none' && spec.rlhf.source !== 'labels' ? [{ path: 'rlhf.preferences.uri', uri: spec.rlhf.preferences.uri }] : []),
    ...(spec.model.base && 'uri' in spec.model.base ? [{ path: 'model.base.uri', uri: spec.model.base.uri }] : []),
  ];
  return uris.filter(({ uri }) => !uri.startsWith('s3://'));
}

/**
 * A spec sent as text has no directory of its own, so a relative data path would resolve against the
 * worker's working directory and fail at ingest minutes later: refuse it now, at the field. Any other
 * path must lead inside the allowed roots, judged as the worker will judge it; a file that is missing
 * there is the worker's to report (a schedule's data may arrive before its run reads it), except a test suite's.
 */
function pathIssues(spec: PipelineSpec, specDir: string | undefined, cfg: Pick<Config, 'localDataRoots' | 'dataDir'>): Issue[] {
  return localUris(spec).flatMap(({ path: p, uri, mustExist }): Issue[] => {
    if (specDir === undefined && !/^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !path.isAbsolute(uri)) {
      return [{ path: p, message: `"${uri}" is relative, and a spec sent as text has no folder to resolve it against: use an absolute path, an s3:// URI, or start the example that contains it` }];
    }
    const local = localData(cfg, uri, specDir);
    return !local.ok && (local.reason !== 'missing' || mustExist) ? [{ path: p, message: local.message }] : [];
  });
}

/** The spec of a request, validated against the deployment's limits; a 400 names the spec's fields (a missing spec is `spec`). */
export async function takeSpec(source: SpecSource, cfg: Pick<Config, 'limits' | 'localDataRoots' | 'dataDir'>): Promise<TakenSpec> {
  let taken: TakenSpec;
  try {
    if (source.example !== undefined) {
      const file = path.resolve(examplesRoot, source.example);
      if (!file.startsWith(examplesRoot + path.sep)) throw badField('example', 'must be a path under examples/');
      const yaml = await readFile(file, 'utf8').catch(() => {
        throw badField('example', `no example ${source.example}; GET /api/examples lists them`);
      });
      taken = { spec: parseSpec(yaml, cfg.limits), specDir: path.dirname(file), example: source.example };
    } else {
      const spec = typeof source.spec === 'string' ? parseSpec(source.spec, cfg.limits) : validateSpec(source.spec, cfg.limits);
      taken = { spec, specDir: source.specDir };
    }
  } catch (err) {
    if (err instanceof SpecError) throw new HttpError(400, err.message, { issues: err.issues.map((i) => ({ path: i.path || 'spec', message: i.message })) });
    throw err;
  }
  const issues = pathIssues(taken.spec, taken.specDir, cfg);
  if (issues.length > 0) throw badRequest(issues);
  return taken;
}
