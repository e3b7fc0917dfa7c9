/**
 * The lines of a JSONL artifact by byte range, read from S3 with ranged GETs: a data stage's shard is the lines
 * that begin in its range, and a tokenizer's vocabulary sample the lines that begin in windows spread over the
 * cleaned records. A line belongs to the range it begins in, so consecutive ranges cover each line once.
 */
import { createWriteStream } from 'node:fs';
import type { ArtifactStore } from '@tempered/artifacts';
import type { ArtifactRef, ByteRange } from '@tempered/contract';

/** How many evenly spread windows a vocabulary sample is read from. */
const SAMPLE_WINDOWS = 64;

/**
 * The ranges a vocabulary sample of about `sampleBytes` is read from: all of an artifact no larger, else 64
 * windows of sampleBytes / 64 spread evenly over it, so a corpus sorted by source is sampled from every part.
 * They depend on the two sizes alone, so one activity and any number of shards learn the same vocabulary.
 */
export function sampleRanges(bytes: number, sampleBytes: number): ByteRange[] {
  if (bytes <= sampleBytes) return [{ start: 0, end: bytes }];
  const width = Math.max(1, Math.floor(sampleBytes / SAMPLE_WINDOWS));
  return Array.from({ length: SAMPLE_WINDOWS }, (_, i) => {
    const start = Math.floor((i * bytes) / SAMPLE_WINDOWS);
    return { start, end: start + width };
  });
}

/**
 * Downloads the lines of a JSONL artifact that begin in each of `ranges` (ascending, disjoint), in order, into
 * one file: per range a ranged read from start - 1, so a line that begins exactly at `start` is recognised as one.
 */
export async function downloadLines(store: ArtifactStore, ref: ArtifactRef, ranges: ByteRange[], file: string): Promise<string> {
  const out = createWriteStream(file);
  const write = (bytes: Buffer) => new Promise<void>((resolve, reject) => out.write(bytes, (error) => (error ? reject(error) : resolve())));
  try {
    for (const range of ranges) {
      const body = await store.openFrom(ref.uri, Math.max(0, range.start - 1));
      try {
        await linesInRange(body, range, write);
      } finally {
        (body as { destroy?: () => void }).destroy?.();
      }
    }
  } finally {
    await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  }
  return file;
}

/**
 * Writes the bytes of the lines that begin in `range`, given the bytes from max(0, start - 1) on; stops reading
 * after the line that holds byte end - 1.
 */
export async function linesInRange(chunks: AsyncIterable<unknown>, range: ByteRange, write: (bytes: Buffer) => Promise<void>): Promise<void> {
  let position = Math.max(0, range.start - 1);
  // Before `start`, the tail of the previous shard's last line is skipped (through its line break).
  let skipping = range.start > 0;
  for await (const chunk of chunks) {
    let bytes = chunk as Buffer;
    if (skipping) {
      const lineBreak = bytes.indexOf(10);
      if (lineBreak < 0) {
        position += bytes.length;
        continue;
      }
      bytes = bytes.subarray(lineBreak + 1);
      position += lineBreak + 1;
      skipping = false;
      if (position >= range.end) return; // no line begins in the range: this one is the next shard's
    }
    // The shard ends with the line that holds byte end - 1.
    const last = range.end - 1 - position;
    const lineBreak = last < bytes.length ? bytes.indexOf(10, Math.max(0, last)) : -1;
    if (lineBreak >= 0) return write(bytes.subarray(0, lineBreak + 1));
    await write(bytes);
    position += bytes.length;
  }
}
