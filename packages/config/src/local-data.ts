/**
 * Where a spec's local data path (a data source, preferences, a base model given by path) leads, and
 * whether a worker may read it: only below the allowed roots (`localDataRoots`), never the rest of the data
 * directory (credentials live there). The API checks every path of a spec with it at submit, the worker
 * again when it reads the file (the file may have changed in between): one rule, one copy.
 *
 * A path is judged as written first, before anything is looked up, so a caller learns nothing about a file
 * outside the roots: it gets the same answer whether that file exists or not. Only a path inside the roots
 * is looked up, and then followed through its symbolic links, which must not lead out.
 */
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type { Config } from './index';

export type LocalData =
  | { ok: true; path: string }
  | { ok: false; reason: 'unsupported' | 'outside' | 'missing'; message: string };

/** The forms of a directory a path may be written under: as configured, and with its links resolved. */
const formsOf = (dir: string) => {
  const given = path.resolve(dir);
  return existsSync(given) ? [...new Set([given, realpathSync(given)])] : [given];
};
const under = (p: string, dirs: string[]) => dirs.some((d) => p === d || p.startsWith(d + path.sep));

/** Whether a URI that is not `s3://` (a `file://` URI or a path, resolved against `specDir`) may be read, and where it leads. */
export function localData(cfg: Pick<Config, 'localDataRoots' | 'dataDir'>, uri: string, specDir: string | undefined): LocalData {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !uri.startsWith('file://')) {
    return { ok: false, reason: 'unsupported', message: `${uri}: only s3:// URIs and local paths are supported` };
  }
  const local = path.resolve(specDir ?? process.cwd(), uri.replace(/^file:\/\//, ''));
  const roots = cfg.localDataRoots.flatMap(formsOf);
  const dataDir = formsOf(cfg.dataDir);
  const uploads = dataDir.map((d) => path.join(d, 'uploads'));
  const allowed = (p: string) => under(p, roots) && !(under(p, dataDir) && !under(p, uploads));
  const outside: LocalData = {
    ok: false,
    reason: 'outside',
    message: `${uri} is outside the allowed local data roots (${cfg.localDataRoots.join(', ')}); upload it to S3 or add its directory to TEMPERED_LOCAL_DATA_ROOTS`,
  };
  if (!allowed(local)) return outside;
  if (!existsSync(local)) return { ok: false, reason: 'missing', message: `${uri} not found (looked for ${local})` };
  const real = realpathSync(local);
  return allowed(real) ? { ok: true, path: real } : outside;
}
