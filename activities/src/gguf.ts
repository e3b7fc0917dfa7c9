/**
 * GGUF files of a run's model: made once by the trainer's `gguf` command (llama.cpp's converter, then its
 * quantizer, every file loaded back by llama.cpp and checked) and kept as artifacts of the run, so the optimize
 * stage's scores, a llama.cpp deployment, the restart of its server and a download all use the same files. They are
 * `model` artifacts of the stage that made them (optimize, else deploy) named `model-<type>.gguf`, with a lineage
 * edge (`exported-as-gguf`) from the model artifact and, once registered, from the model version.
 */
import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ArtifactRef, StageName } from '@tempered/contract';
import { type Db, ggufArtifacts, ggufName, node, recordArtifacts, recordLineage, runGgufArtifacts } from '@tempered/db';
import { GGUF_TYPES, type GgufType } from '@tempered/spec';
import type { Deps } from './context';
import { runTrainer, type TrainerEvent } from './trainer';

/** Where ensureGgufs leaves a file it made in its scratch directory (so the caller need not download it again). */
export const exportedGguf = (scratch: string, type: GgufType) => path.join(scratch, 'gguf', ggufName(type));

/** One stored GGUF file. */
export interface GgufFile extends ArtifactRef {
  type: GgufType;
  /** The artifacts table row: its download is /api/artifacts/<id>. */
  id: number;
}

const byType = (stored: Awaited<ReturnType<typeof ggufArtifacts>>): Partial<Record<GgufType, GgufFile>> => {
  const out: Partial<Record<GgufType, GgufFile>> = {};
  for (const type of GGUF_TYPES) if (stored[type]) out[type] = { ...stored[type], kind: 'model', type };
  return out;
};

/** The version's stored GGUF files, by type (absent types were never exported). */
export async function storedGgufs(db: Db, modelVersionId: string): Promise<Partial<Record<GgufType, GgufFile>>> {
  return byType(await ggufArtifacts(db, modelVersionId));
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
 * Every GGUF type of a run's model, exported now unless the run stored them already. A model llama.cpp's converter
 * cannot convert is a bad-input failure naming `field`. Runs inside an activity (the trainer's events heartbeat it).
 */
export async function ensureGgufs(
  deps: Deps,
  input: {
    runId: string;
    /** The stage whose artifacts the files become when made now. */
    stage: Extract<StageName, 'optimize' | 'deploy'>;
    model: ArtifactRef;
    /** The model.tar on local disk. */
    modelTar: () => Promise<string>;
    /** Once registered: the version the files are the export of. */
    modelVersionId?: string;
    scratch: string;
    checkPrompt: string;
    /** The spec field a model llama.cpp cannot convert is refused at. */
    field: string;
  },
): Promise<Record<GgufType, GgufFile>> {
  let stored = byType(await runGgufArtifacts(deps.db, input.runId));
  if (!GGUF_TYPES.every((t) => stored[t])) {
    const modelTar = await input.modelTar();
    const outputDir = path.dirname(exportedGguf(input.scratch, GGUF_TYPES[0]));
    let finished: TrainerEvent;
    try {
      const config = { model: modelTar, output_dir: outputDir, types: [...GGUF_TYPES], check_prompt: input.checkPrompt };
      // Every event (phases, and `progress` at least every 10 s of a long conversion) is a heartbeat.
      ({ finished } = await runTrainer(deps, 'gguf', config, input.scratch, (e) => Context.current().heartbeat({ phase: 'gguf', event: e.event, step: e.phase ?? null })));
    } catch (err) {
      if (err instanceof ApplicationFailure && err.type === 'BadInput') {
        throw ApplicationFailure.create({ message: `field '${input.field}': llama.cpp needs a GGUF export of the model, and exporting it failed: ${err.message}`, type: 'BadInput', nonRetryable: true });
      }
      throw err;
    }
    const files = finished.files as Array<{ type: GgufType; path: string }>;
    const refs = await Promise.all(files.map((f) => deps.store.putFile(f.path, 'model', ggufName(f.type))));
    await recordArtifacts(deps.db, input.runId, input.stage, refs);
    await recordLineage(deps.db, input.runId, refs.map((r) => ({ parent: node.artifact(input.model), child: node.artifact(r), relation: 'exported-as-gguf' })));
    stored = byType(await runGgufArtifacts(deps.db, input.runId));
  }
  const all = stored as Record<GgufType, GgufFile>;
  if (input.modelVersionId) {
    const version = node.modelVersion(input.modelVersionId);
    await recordLineage(deps.db, input.runId, GGUF_TYPES.map((t) => ({ parent: version, child: node.artifact(all[t]), relation: 'exported-as-gguf' })));
  }
  return all;
}
