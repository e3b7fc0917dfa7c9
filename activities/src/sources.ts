/**
 * Resolves a data source of a spec to a local file for a stage to stream: `s3://` URIs are downloaded from
 * the artifact store (which refuses anything outside its prefix), local paths are read in place but only
 * below the allowed roots (`localData` of @tempered/config, the rule the API checks at submit), so a spec
 * cannot make a worker read arbitrary files of its host.
 */
import path from 'node:path';
import { localData } from '@tempered/config';
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
  // The rule the API applied at submit, again: the file may have moved or become a link since.
  const local = localData(deps.cfg, uri, specDir);
  if (!local.ok) throw badInput(`data source ${local.message}`);
  return local.path;
}
