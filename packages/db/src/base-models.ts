/**
 * The base-model catalog: pretrained models the bootstrap converted into `cfg.baseModelsDir` (one folder per
 * model: `model/`, `model.tar`, `manifest.json`), registered into the `base_models` table with their model.tar
 * stored once in S3 under its sha256. The stack registers them when it comes up, so the catalog is there
 * before any run; a worker that meets a name it does not know registers what its own host holds (a worker on
 * another machine may have a model the stack's machine has not).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ArtifactRef } from '@tempered/contract';
import type { Kysely } from 'kysely';
import type { BaseModelRow, Database } from './schema';

/** The fields of manifest.json the catalog keeps as columns; the rest stay in the row's `manifest`. */
export interface BaseModelManifest {
  name: string;
  architecture: string;
  model_type: string;
  parameters: number;
  context_length: number;
  license: string;
  source: string;
  /** Of model.tar. */
  sha256: string;
  bytes: number;
  [field: string]: unknown;
}

/**
 * What registration needs of the artifact store. @tempered/artifacts' ArtifactStore fits; the db package does
 * not depend on it (the gateway uses db without S3).
 */
export interface BaseModelStore {
  putFile(file: string, kind: 'base-model', name: string): Promise<ArtifactRef>;
  exists(uri: string): Promise<boolean>;
}

export interface RegistrationReport {
  /** Uploaded, or its row changed (a new manifest of the same name). */
  registered: string[];
  /** Already in the catalog with the same manifest and its object in S3: nothing read or uploaded. */
  unchanged: string[];
  /** Folders that were not registered, and why (a broken manifest, a model.tar that does not match it). */
  skipped: Array<{ dir: string; reason: string }>;
}

const TEXT_FIELDS = ['name', 'architecture', 'model_type', 'license', 'source'] as const;
const COUNT_FIELDS = ['parameters', 'context_length', 'bytes'] as const;

/** A manifest checked field by field, so a broken one is reported by what is wrong rather than half-registered. */
export function parseBaseModelManifest(text: string, file: string): BaseModelManifest {
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${file}: not JSON: ${(err as Error).message}`);
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new Error(`${file}: not a JSON object`);
  const problems = [
    ...TEXT_FIELDS.filter((k) => typeof m[k] !== 'string' || (m[k] as string).length === 0 || (m[k] as string).length > 512).map((k) => `${k} must be a non-empty string`),
    ...COUNT_FIELDS.filter((k) => !Number.isSafeInteger(m[k]) || (m[k] as number) <= 0).map((k) => `${k} must be a positive integer`),
    ...(typeof m.sha256 === 'string' && /^[0-9a-f]{64}$/.test(m.sha256) ? [] : ['sha256 must be 64 lowercase hex digits']),
  ];
  if (problems.length) throw new Error(`${file}: ${problems.join('; ')}`);
  return m as BaseModelManifest;
}

/**
 * Registers every `<dir>/<folder>/manifest.json` (a folder without one is skipped silently: a conversion in
 * progress). A model whose row already has the manifest's sha256 and whose object exists costs one query and
 * one HEAD; otherwise its model.tar is hashed, checked against the manifest, uploaded under its content
 * address (no upload when S3 already has those bytes) and its row upserted. Safe to run concurrently.
 */
export async function registerBaseModels(db: Kysely<Database>, store: BaseModelStore, dir: string): Promise<RegistrationReport> {
  const report: RegistrationReport = { registered: [], unchanged: [], skipped: [] };
  const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return []; // nothing converted yet
    throw err;
  });
  for (const folder of entries.filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name)).sort()) {
    const manifestFile = path.join(folder, 'manifest.json');
    if (!existsSync(manifestFile)) continue;
    try {
      const m = parseBaseModelManifest(await readFile(manifestFile, 'utf8'), manifestFile);
      const row = await db.selectFrom('base_models').selectAll().where('name', '=', m.name).executeTakeFirst();
      if (row && row.sha256 === m.sha256 && sameJson(row.manifest, m) && (await store.exists(row.uri))) {
        report.unchanged.push(m.name);
        continue;
      }
      const ref = await store.putFile(path.join(folder, 'model.tar'), 'base-model', 'model.tar');
      if (ref.sha256 !== m.sha256 || ref.bytes !== m.bytes) {
        throw new Error(`model.tar has sha256 ${ref.sha256} (${ref.bytes} bytes) but ${manifestFile} says ${m.sha256} (${m.bytes} bytes)`);
      }
      const columns = {
        architecture: m.architecture,
        model_type: m.model_type,
        parameters: m.parameters,
        context_length: m.context_length,
        license: m.license,
        source: m.source,
        sha256: m.sha256,
        bytes: m.bytes,
        uri: ref.uri,
        manifest: JSON.stringify(m),
      };
      await db
        .insertInto('base_models')
        .values({ name: m.name, ...columns })
        .onConflict((oc) => oc.column('name').doUpdateSet({ ...columns, updated_at: new Date() }))
        .execute();
      report.registered.push(m.name);
    } catch (err) {
      report.skipped.push({ dir: folder, reason: (err as Error).message });
    }
  }
  return report;
}

/** jsonb comes back with its keys reordered; compare as sorted JSON. */
function sameJson(a: unknown, b: unknown): boolean {
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, x]) => [k, canon(x)])) : v;
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

export async function findBaseModel(db: Kysely<Database>, name: string): Promise<BaseModelRow | undefined> {
  return db.selectFrom('base_models').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function baseModelNames(db: Kysely<Database>): Promise<string[]> {
  return (await db.selectFrom('base_models').select('name').orderBy('name').execute()).map((r) => r.name);
}
