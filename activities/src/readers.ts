/**
 * The byte-level side of ingest: which file format and compression a source has (from its name, or as the spec
 * states), and streaming readers for each, so that memory stays flat however large a source is.
 *
 *   .jsonl .json          JSON lines                 .csv                 CSV with a header row
 *   .txt .text            plain text: one document per line, or the whole file one document (`documents`)
 *   .parquet .pq          Parquet, read one row group at a time (hyparquet, pure JS; snappy, gzip, zstd,
 *                         brotli, lz4 pages through hyparquet-compressors)
 *   + .gz .gzip           gzip (node:zlib), for JSONL, CSV and text
 *   + .zst .zstd          Zstandard (fzstd's streaming decoder: Node 20's zlib has no zstd), likewise
 *
 * A compressed stream that turns out corrupt or truncated part-way is not a failed stage: what was read before
 * the damage stands, and the rest of the file becomes one quarantine entry (`CorruptSourceError` marks it).
 */
import fs from 'node:fs';
import { Transform, pipeline, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';

export type SourceFormat = 'jsonl' | 'csv' | 'text' | 'parquet';
export type Compression = 'none' | 'gzip' | 'zstd';

const FORMAT_EXTENSIONS: Array<[SourceFormat, string[]]> = [
  ['jsonl', ['.jsonl', '.json', '.ndjson']],
  ['csv', ['.csv']],
  ['text', ['.txt', '.text']],
  ['parquet', ['.parquet', '.pq']],
];
const COMPRESSION_EXTENSIONS: Array<[Exclude<Compression, 'none'>, string[]]> = [
  ['gzip', ['.gz', '.gzip']],
  ['zstd', ['.zst', '.zstd']],
];

/** The name of a path or URI without a query string or fragment, lower-cased (presigned or versioned URLs resolve). */
function nameOf(pathOrUri: string): string {
  return pathOrUri.split(/[?#]/, 1)[0].toLowerCase();
}

/** The compression of a source: the stated one, else from its last extension (`.gz`, `.zst`), else none. */
export function compressionOf(pathOrUri: string, explicit?: Compression): Compression {
  if (explicit) return explicit;
  const name = nameOf(pathOrUri);
  return COMPRESSION_EXTENSIONS.find(([, exts]) => exts.some((e) => name.endsWith(e)))?.[0] ?? 'none';
}

/**
 * The format of a source: the stated one, else from the extension of a path or URI, looking past a compression
 * extension (`train.jsonl.gz` is JSONL). Throws a message that names the spec fields to set.
 */
export function formatOf(pathOrUri: string, explicit?: SourceFormat): SourceFormat {
  if (explicit) return explicit;
  let name = nameOf(pathOrUri);
  for (const [, exts] of COMPRESSION_EXTENSIONS) {
    const ext = exts.find((e) => name.endsWith(e));
    if (ext) name = name.slice(0, -ext.length);
  }
  const found = FORMAT_EXTENSIONS.find(([, exts]) => exts.some((e) => name.endsWith(e)));
  if (found) return found[0];
  throw new Error(
    `cannot tell the format of "${pathOrUri}" from its extension (expected .jsonl, .json, .csv, .txt or .parquet, optionally followed by .gz or .zst); set "format: jsonl", "csv", "text" or "parquet" on the source`,
  );
}

/** A compressed source whose stream broke part-way (corrupt or truncated); what came before it was read. */
export class CorruptSourceError extends Error {}

/**
 * What damage in a compressed stream a reader's error reports (zlib's Z_DATA_ERROR, Z_BUF_ERROR for a truncated
 * gzip, a zstd decoder's or a Parquet row group's error), or undefined for a failure to read the file itself,
 * which a retry may cure.
 */
export function corruptionOf(error: unknown): string | undefined {
  if (error instanceof CorruptSourceError) return error.message;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && code.startsWith('Z_')) return `not a valid gzip stream (${(error as Error).message})`;
  return undefined;
}

/** A streaming Zstandard decoder as a Transform (fzstd decodes frame by frame as bytes arrive). */
function zstdStream(): Transform {
  let decoder: ZstdDecompress;
  let sawInput = false;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done) {
      sawInput ||= chunk.length > 0;
      try {
        decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
        done();
      } catch (error) {
        done(new CorruptSourceError(`not a valid zstd stream (${(error as Error).message})`));
      }
    },
    flush(done) {
      try {
        if (sawInput) decoder.push(new Uint8Array(0), true);
        done();
      } catch (error) {
        done(new CorruptSourceError(`not a valid zstd stream (${(error as Error).message})`));
      }
    },
  });
  decoder = new ZstdDecompress((data) => {
    if (data.length > 0) stream.push(Buffer.from(data.buffer, data.byteOffset, data.length));
  });
  return stream;
}

/**
 * The decompressed bytes of a file, streamed. A read error (a missing file) comes through as it is; damage in
 * the compressed data as an error `corruptionOf` describes.
 */
export function openBytes(path: string, compression: Compression): Readable {
  const file = fs.createReadStream(path);
  if (compression === 'none') return file;
  // pipeline forwards a read error to the decoder, so iterating it rejects instead of hanging.
  return pipeline(file, compression === 'gzip' ? zlib.createGunzip() : zstdStream(), () => {});
}

/** A Parquet row as hyparquet decodes it: column name to value (strings, numbers, bigints, lists, structs). */
export type ParquetRow = Record<string, unknown>;

/** A Parquet file whose footer was read: its row count, and its rows in order. */
export interface ParquetSource {
  rows: number;
  /**
   * The rows with their 1-based row numbers, read one row group at a time: memory is one row group's decoded
   * rows, never the file. A row group that cannot be decoded throws a `CorruptSourceError`.
   */
  read(): AsyncGenerator<{ row: ParquetRow; line: number }>;
}

/** Opens a Parquet file by its footer; throws when the file is not Parquet (hyparquet's message). */
export async function openParquet(path: string): Promise<ParquetSource> {
  // hyparquet is an ES module; a dynamic import keeps this package loadable as CommonJS.
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  const { compressors } = await import('hyparquet-compressors');
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  return {
    rows: Number(metadata.num_rows),
    async *read() {
      let start = 0;
      for (const group of metadata.row_groups) {
        const end = start + Number(group.num_rows);
        let rows: ParquetRow[];
        try {
          rows = (await parquetReadObjects({ file, metadata, compressors, rowStart: start, rowEnd: end })) as ParquetRow[];
        } catch (error) {
          throw new CorruptSourceError(`a row group of rows ${start + 1}–${end} cannot be decoded (${(error as Error).message})`);
        }
        for (const [i, row] of rows.entries()) yield { row, line: start + i + 1 };
        start = end;
      }
    },
  };
}
