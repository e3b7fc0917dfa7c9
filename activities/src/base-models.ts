/**
 * Resolves a spec's `model.base` to a local model for tokenize and train: `{name}` through the base-model
 * catalog (packages/db/src/base-models.ts), `{uri}` like any data source (./sources.ts). Both stages call it, so
 * a name means the same bytes to each, and the lineage gets `base_model:<name>` → its model.tar's artifact,
 * above every checkpoint fine-tuned from it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { sha256File } from '@tempered/artifacts';
import { baseModelNames, findBaseModel, node, recordLineage, registerBaseModels, type BaseModelRow } from '@tempered/db';
import type { PipelineSpec } from '@tempered/spec';
import type { ArtifactRef } from '@tempered/contract';
import { digestPath } from './cache';
import { type Deps, badInput, log } from './context';
import { stageSource } from './sources';

export interface StagedBaseModel {
  /** A model.tar or a Hugging Face directory: the trainer's `base_model` (and tokenize's `tokenizer`). */
  path: string;
  /** What the stage cache keys on: the tar's sha256, or a directory's digestPath. */
  digest: string;
  /** The model.tar as a lineage node (`artifact:<sha256>`); absent for a directory, which is no single object. */
  ref?: Pick<ArtifactRef, 'sha256' | 'bytes'>;
  /** The catalog name, for `{name}`. */
  name?: string;
}

/** Undefined when the spec trains a small model from scratch. `dir` is the attempt's scratch directory. */
export async function stageBaseModel(
  deps: Deps,
  runId: string,
  spec: PipelineSpec,
  specDir: string | undefined,
  dir: string,
): Promise<StagedBaseModel | undefined> {
  const base = spec.model.base;
  if (!base) return undefined;
  if ('uri' in base) {
    const staged = await stageSource(deps, base.uri, specDir, dir, 0);
    if ((await stat(staged)).isDirectory()) return { path: staged, digest: await digestPath(staged) };
    const ref = await sha256File(staged);
    return { path: staged, digest: ref.sha256, ref };
  }
  const row = await catalogEntry(deps, base.name);
  const ref: ArtifactRef = { uri: row.uri, sha256: row.sha256, bytes: row.bytes, kind: 'base-model' };
  const file = await localCopy(deps, ref);
  await recordLineage(deps.db, runId, [{ parent: node.baseModel(row.name), child: node.artifact(ref), relation: 'packaged-as' }]);
  return { path: file, digest: row.sha256, ref, name: row.name };
}

/**
 * `{base_model}` for the trainer's eval and export of a LoRA run's checkpoints, which name their base by digest
 * instead of holding it (services/trainer/CONTRACT.md, `sft`); `{}` when the checkpoints are self-contained.
 */
export async function loraBase(
  deps: Deps,
  runId: string,
  spec: PipelineSpec,
  specDir: string | undefined,
  dir: string,
): Promise<{ base_model?: string }> {
  if (!spec.train.lora || !spec.model.base) return {};
  const staged = await stageBaseModel(deps, runId, spec, specDir, dir);
  return staged ? { base_model: staged.path } : {};
}

/**
 * A catalog model's model.tar on this worker, for a use other than `model.base` (a test suite's judge);
 * `field` is the spec field that names it, for the error when the catalog lacks it.
 */
export async function stageCatalogModel(deps: Deps, name: string, field: string): Promise<string> {
  const row = await catalogEntry(deps, name, field);
  return localCopy(deps, { uri: row.uri, sha256: row.sha256, bytes: row.bytes, kind: 'base-model' });
}

/**
 * The catalog row of a name. A name the catalog lacks may be on this worker's host, which the stack did not
 * see: register what `cfg.baseModelsDir` holds, then look again. Still unknown is the spec's fault (no retry
 * can fix it), told with the names that do exist.
 */
async function catalogEntry(deps: Deps, name: string, field = 'model.base.name'): Promise<BaseModelRow> {
  const found = await findBaseModel(deps.db, name);
  if (found) return found;
  const report = await registerBaseModels(deps.db, deps.store, deps.cfg.baseModelsDir);
  for (const s of report.skipped) log('base model not registered', s);
  const registered = await findBaseModel(deps.db, name);
  if (registered) return registered;
  const known = await baseModelNames(deps.db);
  throw badInput(
    `${field}: no base model "${name}" in the catalog; known: ${known.length ? known.join(', ') : `none (the bootstrap converts them into ${deps.cfg.baseModelsDir})`}`,
  );
}

/**
 * The model.tar in this worker's cache, downloaded and verified the first time. Content addressing means a
 * copy under its sha256 never goes stale, so a base of hundreds of MB crosses the network once per host, not
 * once per stage and run. The trainer only reads it (a tar is extracted to its own temporary directory).
 */
async function localCopy(deps: Deps, ref: ArtifactRef): Promise<string> {
  const file = path.join(deps.cfg.workDir, '.base-models', ref.sha256, 'model.tar');
  if ((await stat(file).catch(() => undefined))?.size === ref.bytes) return file;
  await mkdir(path.dirname(file), { recursive: true });
  // Written under a name of its own, then renamed: a concurrent stage never reads half a file.
  const part = `${file}.${randomBytes(4).toString('hex')}.part`;
  try {
    await deps.store.download(ref, part); // throws on a sha256 mismatch
    await rename(part, file);
  } finally {
    await rm(part, { force: true });
  }
  return file;
}
