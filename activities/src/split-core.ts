/**
 * Split, the local-file core: partitions an encoded shard into train, validation and test shards by a
 * salted hash of each record's key.
 *
 * Each record's split depends on nothing but its key and the salt, never on the other records, their count
 * or their order. So a retrain on a grown dataset keeps every old record where it was (no test record
 * drifts into training), records sharing a key always land together, and the same input gives the same
 * bytes out.
 */
import { createHash } from 'node:crypto';
import { readShardHeader, writeShardSubset } from './shard';

export type SplitName = 'train' | 'validation' | 'test';
export const SPLIT_NAMES: readonly SplitName[] = ['train', 'validation', 'test'];

export interface SplitOptions {
  /** Fractions of records, each in [0, 1), validation + test < 1. */
  validation: number;
  test: number;
  /** Changing it reshuffles every record. */
  salt: string;
}

export type SplitCounts = Record<SplitName, number>;

/**
 * The key's position in [0, 1): the first 8 bytes of sha256(salt NUL key) as a big-endian unsigned
 * integer, of which the top 53 bits become the fraction (a double holds 53 bits exactly, so the result is
 * uniform and never rounds up to 1).
 */
export function splitFraction(key: string, salt: string): number {
  const digest = createHash('sha256').update(`${salt}\u0000${key}`, 'utf8').digest();
  return Number(digest.readBigUInt64BE(0) >> 11n) / 2 ** 53;
}

/** test below `test`, validation below `test + validation`, train above. */
export function assignSplit(key: string, options: SplitOptions): SplitName {
  const u = splitFraction(key, options.salt);
  if (u < options.test) return 'test';
  if (u < options.test + options.validation) return 'validation';
  return 'train';
}

function checkOptions(options: SplitOptions): void {
  const ok = (x: number) => Number.isFinite(x) && x >= 0 && x < 1;
  if (!ok(options.validation) || !ok(options.test) || options.validation + options.test >= 1) {
    throw new Error(`invalid split fractions validation=${options.validation} test=${options.test}`);
  }
}

/** Writes the three shards (records keep their input order within each) and returns their record counts. */
export async function splitShard(
  inPath: string,
  out: Record<SplitName, string>,
  options: SplitOptions,
): Promise<SplitCounts> {
  checkOptions(options);
  const { header } = await readShardHeader(inPath);
  const indices: Record<SplitName, number[]> = { train: [], validation: [], test: [] };
  header.keys.forEach((key, index) => indices[assignSplit(key, options)].push(index));
  for (const name of SPLIT_NAMES) await writeShardSubset(inPath, out[name], indices[name]);
  return { train: indices.train.length, validation: indices.validation.length, test: indices.test.length };
}
