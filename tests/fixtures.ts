/**
 * Test fixtures in formats that a real, maintained writer must make rather than a test by hand: Parquet files
 * and zstd streams, both written by pyarrow, which the trainer's venv has (through `datasets`). Gzip comes
 * from node:zlib in the tests themselves.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { childEnv, loadConfig } from '@tempered/config';

const cfg = loadConfig();

function python(code: string, args: string[]): string {
  return execFileSync(cfg.python, ['-c', code, ...args], { env: childEnv(cfg), stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
}

/**
 * Writes `rows` (plain objects; a list of objects becomes a list<struct> column, as `messages` needs) as a
 * Parquet file through pyarrow's `Table.from_pylist`, in row groups of `rowGroupSize` rows.
 */
export function writeParquet(file: string, rows: Array<Record<string, unknown>>, options: { rowGroupSize?: number; compression?: 'snappy' | 'zstd' | 'gzip' | 'none' } = {}): void {
  const json = `${file}.rows.json`;
  writeFileSync(json, JSON.stringify(rows));
  python(
    [
      'import json, sys',
      'import pyarrow as pa, pyarrow.parquet as pq',
      'rows = json.load(open(sys.argv[1]))',
      // from_pylist takes its columns from the first row: give every row every column (null where it has none).
      'keys = list(dict.fromkeys(k for r in rows for k in r))',
      'rows = [{k: r.get(k) for k in keys} for r in rows]',
      'pq.write_table(pa.Table.from_pylist(rows), sys.argv[2], row_group_size=int(sys.argv[3]), compression=sys.argv[4])',
    ].join('\n'),
    [json, file, String(options.rowGroupSize ?? 1024), options.compression ?? 'snappy'],
  );
}

/** Compresses `data` into a zstd file (one frame, written by pyarrow's Zstandard stream). */
export function writeZstd(file: string, data: string | Buffer): void {
  const raw = `${file}.raw`;
  writeFileSync(raw, data);
  python(
    [
      'import sys',
      'import pyarrow as pa',
      "with pa.CompressedOutputStream(sys.argv[2], 'zstd') as out:",
      "    out.write(open(sys.argv[1], 'rb').read())",
    ].join('\n'),
    [raw, file],
  );
}

/** Where each row group's first data page starts in a Parquet file (pyarrow's reading of its footer). */
export function parquetRowGroupOffsets(file: string): number[] {
  const out = python(
    [
      'import json, sys',
      'import pyarrow.parquet as pq',
      'm = pq.ParquetFile(sys.argv[1]).metadata',
      'print(json.dumps([m.row_group(i).column(0).data_page_offset for i in range(m.num_row_groups)]))',
    ].join('\n'),
    [file],
  );
  return JSON.parse(out) as number[];
}
