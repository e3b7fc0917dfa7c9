/**
 * The GGUF files of a model version: `model` artifacts of its run's deploy stage named `model-<type>.gguf`,
 * written once by the deploy activity (activities/src/gguf.ts) and read by it, its server's restarts and the
 * API's downloads.
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
  const rows = await db
    .selectFrom('artifacts')
    .innerJoin('model_versions', 'model_versions.run_id', 'artifacts.run_id')
    .select(['artifacts.id', 'artifacts.uri', 'artifacts.sha256', 'artifacts.bytes'])
    .where('model_versions.id', '=', modelVersionId)
    .where('artifacts.stage', '=', 'deploy')
    .where('artifacts.uri', 'like', '%/model-%.gguf')
    .orderBy('artifacts.id', 'desc')
    .execute();
  const out: Record<string, GgufArtifact> = {};
  for (const row of rows) {
    const type = /\/model-([a-z0-9_]+)\.gguf$/.exec(row.uri)?.[1];
    if (type && !out[type]) out[type] = { ...row, bytes: Number(row.bytes), type };
  }
  return out;
}
