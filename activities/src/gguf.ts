/**
 * GGUF files of a model version: made once by the trainer's `gguf` command (llama.cpp's converter, then its
 * quantizer, every file loaded back by llama.cpp and checked) and kept as artifacts of the version's run, so a
 * llama.cpp deployment, the restart of its server and a download all use the same files. They are recorded as
 * `model` artifacts of the deploy stage named `model-<type>.gguf`, with a lineage edge from the model version
 * (`exported-as-gguf`).
 */
import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ArtifactRef } from '@tempered/contract';
import { type Db, ggufArtifacts, ggufName, node, recordArtifacts, recordLineage } from '@tempered/db';
import { GGUF_TYPES, type GgufType } from '@tempered/spec';
import type { Deps } from './context';
import { runTrainer, type TrainerEvent } from './trainer';

/** One stored GGUF file of a version. */
export interface GgufFile extends ArtifactRef {
  type: GgufType;
  /** The artifacts table row: its download is /api/artifacts/<id>. */
  id: number;
}

/** The version's stored GGUF files, by type (absent types were never exported). */
export async function storedGgufs(db: Db, modelVersionId: string): Promise<Partial<Record<GgufType, GgufFile>>> {
  const stored = await ggufArtifacts(db, modelVersionId);
  const out: Partial<Record<GgufType, GgufFile>> = {};
  for (const type of GGUF_TYPES) if (stored[type]) out[type] = { ...stored[type], kind: 'model', type };
  return out;
}

/** The version's model.tar in the data directory, downloaded (digest checked) once and renamed into place. */
export async function localModelTar(deps: Pick<Deps, 'cfg' | 'store'>, modelVersionId: string, model: { uri: string; sha256: string }): Promise<string> {
  const modelTar = path.join(deps.cfg.dataDir, 'models', modelVersionId, 'model.tar');
  if (!existsSync(modelTar)) {
    await deps.store.download({ ...model, bytes: 0, kind: 'model' }, `${modelTar}.part`);
    await rename(`${modelTar}.part`, modelTar);
  }
  return modelTar;
}

/**
 * Every GGUF type of a version, exported now unless stored already. A model llama.cpp's converter cannot convert
 * is a bad-input failure naming `deploy.engine`. Runs inside an activity (the trainer's events heartbeat it).
 */
export async function ensureGgufs(
  deps: Deps,
  input: { modelVersionId: string; model: { uri: string; sha256: string }; scratch: string; checkPrompt: string },
): Promise<Record<GgufType, GgufFile>> {
  const stored = await storedGgufs(deps.db, input.modelVersionId);
  if (GGUF_TYPES.every((t) => stored[t])) return stored as Record<GgufType, GgufFile>;
  const version = await deps.db.selectFrom('model_versions').select(['run_id']).where('id', '=', input.modelVersionId).executeTakeFirstOrThrow();
  const modelTar = await localModelTar(deps, input.modelVersionId, input.model);
  const outputDir = path.join(input.scratch, 'gguf');
  let finished: TrainerEvent;
  try {
    const config = { model: modelTar, output_dir: outputDir, types: [...GGUF_TYPES], check_prompt: input.checkPrompt };
    // Every event (phases, and `progress` at least every 10 s of a long conversion) is a heartbeat.
    ({ finished } = await runTrainer(deps, 'gguf', config, input.scratch, (e) => Context.current().heartbeat({ phase: 'gguf', event: e.event, step: e.phase ?? null })));
  } catch (err) {
    if (err instanceof ApplicationFailure && err.type === 'BadInput') {
      throw ApplicationFailure.create({
        message: `field 'deploy.engine': llamacpp serves a GGUF export of the model, and exporting ${input.modelVersionId} failed: ${err.message}`,
        type: 'BadInput',
        nonRetryable: true,
      });
    }
    throw err;
  }
  const files = finished.files as Array<{ type: GgufType; path: string; bytes: number; sha256: string; check: { answer: string; tokens_per_sec: number | null } }>;
  const refs = await Promise.all(files.map((f) => deps.store.putFile(f.path, 'model', ggufName(f.type))));
  await recordArtifacts(deps.db, version.run_id, 'deploy', refs);
  await recordLineage(deps.db, version.run_id, refs.map((r) => ({ parent: node.modelVersion(input.modelVersionId), child: node.artifact(r), relation: 'exported-as-gguf' })));
  const out = await storedGgufs(deps.db, input.modelVersionId);
  return out as Record<GgufType, GgufFile>;
}
