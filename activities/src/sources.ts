/**
 * Resolves a data source of a spec to a local file for a stage to stream: `s3://` URIs are downloaded from
 * the artifact store (which refuses anything outside its prefix), local paths are read in place but only
 * below the allowed roots, so a spec cannot make a worker read arbitrary files of its host.
 */
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { type Deps, badInput } from './context';

export async function stageSource(deps: Deps, uri: string, specDir: string | undefined, scratch: string, index: number): Promise<string> {
  if (uri.startsWith('s3://')) {
    try {
      deps.store.keyOf(uri);
    } catch (err) {
      throw badInput(`data source ${uri}: ${(err as Error).message}`);
    }
    if (!(await deps.store.exists(uri))) throw badInput(`data source ${uri} does not exist`);
    return deps.store.download(uri, path.join(scratch, 'sources', `${index}-${path.posix.basename(uri)}`));
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri) && !uri.startsWith('file://')) {
    throw badInput(`data source ${uri}: only s3:// URIs and local paths are supported`);
  }
  const local = path.resolve(specDir ?? process.cwd(), uri.replace(/^file:\/\//, ''));
  if (!existsSync(local)) throw badInput(`data source ${uri} not found (looked for ${local})`);
  const real = realpathSync(local);
  const roots = deps.cfg.localDataRoots.map((r) => (existsSync(r) ? realpathSync(r) : path.resolve(r)));
  const under = (dir: string) => real === dir || real.startsWith(dir + path.sep);
  const dataDir = existsSync(deps.cfg.dataDir) ? realpathSync(deps.cfg.dataDir) : deps.cfg.dataDir;
  const inDataDir = under(dataDir) && !under(path.join(dataDir, 'uploads'));
  if (inDataDir || !roots.some(under)) {
    throw badInput(
      `data source ${uri} is outside the allowed local data roots (${roots.join(', ')}); upload it to S3 or add its directory to TEMPERED_LOCAL_DATA_ROOTS`,
    );
  }
  return real;
}
