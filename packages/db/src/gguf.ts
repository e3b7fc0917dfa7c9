/**
 * The GGUF files of a model version: `model` artifacts of its run named `model-<type>.gguf`, written once by the
 * run's optimize stage or else its deploy activity (activities/src/gguf.ts) and read by both, the server's
 * restarts and the API's downloads.
 */
import type { Db } from './index';

export const ggufName = (type: string) => `model-${type}.gguf`;

export interface GgufArtifact {
  /** The artifacts row (its download: /api/artifacts/<id>). */
  id: number;
  uri: string;
  sha256: string;
  bytes: number;
  /** f16, q8_0, q4_k_m: what the file name says. */
  type: string;
}

/** The newest stored GGUF file of each type of a model version, by type. */
export async function ggufArtifacts(db: Db, modelVersionId: string): Promise<Record<string, GgufArtifact>> {
  const version = await db.selectFrom('model_versions').select('run_id').where('id', '=', modelVersionId).executeTakeFirst();
  return version ? runGgufArtifacts(db, version.run_id) : {};
}

/** The newest GGUF file of each type a run stored (at optimize or deploy), by type. */
export async function runGgufArtifacts(db: Db, runId: string): Promise<Record<string, GgufArtifact>> {
  const rows = await db
    .selectFrom('artifacts')
    .select(['id', 'uri', 'sha256', 'bytes'])
    .where('run_id', '=', runId)
    .where('stage', 'in', ['optimize', 'deploy'])
    .where('uri', 'like', '%/model-%.gguf')
    .orderBy('id', 'desc')
    .execute();
  const out: Record<string, GgufArtifact> = {};
  for (const row of rows) {
    const type = /\/model-([a-z0-9_]+)\.gguf$/.exec(row.uri)?.[1];
    if (type && !out[type]) out[type] = { ...row, bytes: Number(row.bytes), type };
  }
  return out;
}
