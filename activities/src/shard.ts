/**
 * Reading and writing encoded-record shards (`*.shard`), byte-compatible with the Python trainer's
 * `tempered_trainer/shard.py` (see services/trainer/CONTRACT.md):
 *
 *     bytes 0..7     magic "TMPSHRD1"
 *     bytes 8..11    uint32 LE: H, length of the header
 *     next H bytes   UTF-8 JSON header: {"version": 1, "records": N, "keys": [N strings],
 *                    "offsets": [N + 1 token offsets, offsets[0] = 0], "vocab_size": V, "eos_id": E}
 *     then           int32 LE tokens, offsets[N] of them
 *     then           uint8 loss mask, offsets[N] of them
 *
 * `readShard` loads a whole shard (training needs it all anyway); `writeShardSubset` copies chosen records
 * of a shard into a new one through a fixed-size buffer, so the split stage never holds a shard in memory.
 */
import { open, type FileHandle } from 'node:fs/promises';
import os from 'node:os';

export const SHARD_MAGIC = 'TMPSHRD1';
export const SHARD_VERSION = 1;
/** Magic plus the header-length field. */
const PREAMBLE_BYTES = 12;
const TOKEN_BYTES = 4;
const MASK_BYTES = 1;
const COPY_BLOCK_BYTES = 1 << 20;

export interface ShardHeader {
  version: 1;
  records: number;
  keys: string[];
  offsets: number[];
  vocab_size: number;
  eos_id: number;
}

export interface Shard {
  header: ShardHeader;
  tokens: Int32Array;
  /** 1 where the token belongs to a response (the loss is computed there), else 0. */
  lossMask: Uint8Array;
}

export interface ShardRecordInput {
  tokens: ArrayLike<number>;
  mask: ArrayLike<number>;
}

export interface ShardContents {
  keys: string[];
  records: ShardRecordInput[];
  vocabSize: number;
  eosId: number;
}

/** Reads and validates the header; `dataOffset` is where the tokens start. */
export async function readShardHeader(path: string): Promise<{ header: ShardHeader; dataOffset: number }> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    const preamble = await readExactly(file, 0, PREAMBLE_BYTES, path);
    if (preamble.toString('latin1', 0, 8) !== SHARD_MAGIC) throw new Error(`${path}: not a shard (bad magic)`);
    const headerBytes = preamble.readUInt32LE(8);
    if (PREAMBLE_BYTES + headerBytes > size) throw new Error(`${path}: truncated shard header`);
    const raw = await readExactly(file, PREAMBLE_BYTES, headerBytes, path);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch (error) {
      throw new Error(`${path}: shard header is not JSON (${(error as Error).message})`);
    }
    const header = validateHeader(parsed, path);
    const dataOffset = PREAMBLE_BYTES + headerBytes;
    const total = header.offsets[header.records];
    const expected = dataOffset + total * (TOKEN_BYTES + MASK_BYTES);
    if (size !== expected) throw new Error(`${path}: shard is ${size} bytes, its header implies ${expected}`);
    return { header, dataOffset };
  } finally {
    await file.close();
  }
}

function validateHeader(value: unknown, path: string): ShardHeader {
  const fail = (why: string): never => {
    throw new Error(`${path}: invalid shard header: ${why}`);
  };
  if (typeof value !== 'object' || value === null) return fail('not an object');
  const h = value as Record<string, unknown>;
  if (h.version !== SHARD_VERSION) fail(`unsupported version ${JSON.stringify(h.version)}`);
  const n = h.records;
  if (!Number.isInteger(n) || (n as number) < 0) fail('records is not a non-negative integer');
  const records = n as number;
  if (!Array.isArray(h.keys) || h.keys.length !== records || !h.keys.every((k) => typeof k === 'string')) {
    fail(`keys must be ${records} strings`);
  }
  const offsets = h.offsets;
  if (!Array.isArray(offsets) || offsets.length !== records + 1 || offsets[0] !== 0) {
    fail(`offsets must be ${records + 1} integers starting at 0`);
  }
  for (let i = 1; i < (offsets as unknown[]).length; i++) {
    const o = (offsets as unknown[])[i];
    if (!Number.isInteger(o) || (o as number) < (offsets as number[])[i - 1]) fail(`offsets[${i}] is not a non-decreasing integer`);
  }
  if (!Number.isInteger(h.vocab_size) || (h.vocab_size as number) <= 0) fail('vocab_size is not a positive integer');
  if (!Number.isInteger(h.eos_id) || (h.eos_id as number) < 0) fail('eos_id is not a non-negative integer');
  return {
    version: SHARD_VERSION,
    records,
    keys: h.keys as string[],
    offsets: offsets as number[],
    vocab_size: h.vocab_size as number,
    eos_id: h.eos_id as number,
  };
}

export async function readShard(path: string): Promise<Shard> {
  const { header, dataOffset } = await readShardHeader(path);
  const total = header.offsets[header.records];
  const file = await open(path, 'r');
  try {
    // Read straight into the typed arrays' memory: no intermediate copy of a large shard.
    const tokens = new Int32Array(total);
    const tokenBytes = Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength);
    await readInto(file, tokenBytes, dataOffset, path);
    // The file is little-endian; only a big-endian host needs to swap.
    if (os.endianness() === 'BE') tokenBytes.swap32();
    const lossMask = new Uint8Array(total);
    await readInto(file, Buffer.from(lossMask.buffer), dataOffset + total * TOKEN_BYTES, path);
    return { header, tokens, lossMask };
  } finally {
    await file.close();
  }
}

/** Record `index` of a loaded shard: views into its arrays, not copies. */
export function shardRecord(shard: Shard, index: number): { key: string; tokens: Int32Array; mask: Uint8Array } {
  const { offsets, keys } = shard.header;
  if (!(index >= 0 && index < shard.header.records)) throw new RangeError(`record ${index} out of range`);
  return {
    key: keys[index],
    tokens: shard.tokens.subarray(offsets[index], offsets[index + 1]),
    mask: shard.lossMask.subarray(offsets[index], offsets[index + 1]),
  };
}

/** Serialises the header; key order is fixed so that equal shards are equal bytes. */
function encodePreambleAndHeader(header: ShardHeader): Buffer {
  const json = Buffer.from(
    JSON.stringify({
      version: header.version,
      records: header.records,
      keys: header.keys,
      offsets: header.offsets,
      vocab_size: header.vocab_size,
      eos_id: header.eos_id,
    }),
    'utf8',
  );
  const preamble = Buffer.alloc(PREAMBLE_BYTES);
  preamble.write(SHARD_MAGIC, 0, 'latin1');
  preamble.writeUInt32LE(json.length, 8);
  return Buffer.concat([preamble, json]);
}

export async function writeShard(path: string, contents: ShardContents): Promise<ShardHeader> {
  const { keys, records, vocabSize, eosId } = contents;
  if (keys.length !== records.length) throw new Error(`${keys.length} keys for ${records.length} records`);
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) throw new Error(`invalid vocabSize ${vocabSize}`);
  if (!Number.isInteger(eosId) || eosId < 0 || eosId >= vocabSize) throw new Error(`eosId ${eosId} outside the vocabulary`);
  const offsets = [0];
  records.forEach((record, i) => {
    if (record.tokens.length !== record.mask.length) {
      throw new Error(`record ${i} (${keys[i]}): ${record.tokens.length} tokens but ${record.mask.length} mask values`);
    }
    for (let j = 0; j < record.tokens.length; j++) {
      const t = record.tokens[j];
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new Error(`record ${i} (${keys[i]}): token ${t} outside [0, ${vocabSize})`);
      const m = record.mask[j];
      if (m !== 0 && m !== 1) throw new Error(`record ${i} (${keys[i]}): mask value ${m} is not 0 or 1`);
    }
    offsets.push(offsets[i] + record.tokens.length);
  });
  const header: ShardHeader = { version: SHARD_VERSION, records: records.length, keys, offsets, vocab_size: vocabSize, eos_id: eosId };

  const file = await open(path, 'w');
  try {
    const out = new BlockWriter(file);
    await out.push(encodePreambleAndHeader(header));
    for (const record of records) {
      const bytes = Buffer.alloc(record.tokens.length * TOKEN_BYTES);
      for (let j = 0; j < record.tokens.length; j++) bytes.writeInt32LE(record.tokens[j], j * TOKEN_BYTES);
      await out.push(bytes);
    }
    for (const record of records) await out.push(Buffer.from(Uint8Array.from(record.mask)));
    await out.flush();
  } finally {
    await file.close();
  }
  return header;
}

/**
 * Writes a shard holding records `indices` (strictly ascending) of the shard at `inPath`, in that order,
 * with the same vocabulary. Token and mask bytes are copied through a 1 MiB buffer.
 */
export async function writeShardSubset(inPath: string, outPath: string, indices: readonly number[]): Promise<ShardHeader> {
  const { header: source, dataOffset } = await readShardHeader(inPath);
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i];
    if (!Number.isInteger(index) || index < 0 || index >= source.records) throw new RangeError(`record ${index} out of range`);
    if (i > 0 && index <= indices[i - 1]) throw new Error('indices must be strictly ascending');
  }
  const offsets = [0];
  for (const index of indices) offsets.push(offsets[offsets.length - 1] + source.offsets[index + 1] - source.offsets[index]);
  const header: ShardHeader = {
    version: SHARD_VERSION,
    records: indices.length,
    keys: indices.map((index) => source.keys[index]),
    offsets,
    vocab_size: source.vocab_size,
    eos_id: source.eos_id,
  };

  const input = await open(inPath, 'r');
  try {
    const output = await open(outPath, 'w');
    try {
      const out = new BlockWriter(output);
      await out.push(encodePreambleAndHeader(header));
      const total = source.offsets[source.records];
      await copySections(input, out, dataOffset, TOKEN_BYTES, source.offsets, indices, inPath);
      await copySections(input, out, dataOffset + total * TOKEN_BYTES, MASK_BYTES, source.offsets, indices, inPath);
      await out.flush();
    } finally {
      await output.close();
    }
  } finally {
    await input.close();
  }
  return header;
}

/**
 * Writes one shard holding every record of `inPaths`, in order: the same bytes as the shard of all their records
 * encoded at once. The shards must share their vocabulary and end token (encoded with one tokenizer).
 */
export async function concatShards(inPaths: readonly string[], outPath: string): Promise<ShardHeader> {
  const parts = await Promise.all(inPaths.map(async (p) => ({ path: p, ...(await readShardHeader(p)) })));
  if (parts.length === 0) throw new Error('no shards to join');
  const first = parts[0].header;
  const odd = parts.find((p) => p.header.vocab_size !== first.vocab_size || p.header.eos_id !== first.eos_id);
  if (odd) throw new Error(`${odd.path}: vocabulary ${odd.header.vocab_size}/eos ${odd.header.eos_id}, but ${parts[0].path} has ${first.vocab_size}/${first.eos_id}`);
  const offsets = [0];
  const keys: string[] = [];
  for (const { header } of parts) {
    const base = offsets[offsets.length - 1];
    for (let i = 1; i <= header.records; i++) offsets.push(base + header.offsets[i]);
    for (const key of header.keys) keys.push(key); // not push(...keys): a shard's keys outnumber the stack
  }
  const header: ShardHeader = { version: SHARD_VERSION, records: keys.length, keys, offsets, vocab_size: first.vocab_size, eos_id: first.eos_id };
  const output = await open(outPath, 'w');
  try {
    const out = new BlockWriter(output);
    await out.push(encodePreambleAndHeader(header));
    // All tokens first, then all masks, as the format lays them out.
    for (const [section, elementBytes] of [[0, TOKEN_BYTES], [1, MASK_BYTES]] as const) {
      for (const part of parts) {
        const total = part.header.offsets[part.header.records];
        const start = part.dataOffset + (section === 0 ? 0 : total * TOKEN_BYTES);
        await copyRange(part.path, out, start, total * elementBytes);
      }
    }
    await out.flush();
  } finally {
    await output.close();
  }
  return header;
}

async function copyRange(file: string, out: BlockWriter, start: number, length: number): Promise<void> {
  const input = await open(file, 'r');
  try {
    const block = Buffer.alloc(COPY_BLOCK_BYTES);
    for (let done = 0; done < length; ) {
      const { bytesRead } = await input.read(block, 0, Math.min(COPY_BLOCK_BYTES, length - done), start + done);
      if (bytesRead === 0) throw new Error(`${file}: shard is truncated`);
      await out.push(Buffer.from(block.subarray(0, bytesRead)));
      done += bytesRead;
    }
  } finally {
    await input.close();
  }
}

/**
 * Appends, for each record in `indices`, its slice of one section (tokens or mask) of the input. Reads move
 * forward only, one block at a time, so copying a large subset costs about one pass over the section.
 */
async function copySections(
  input: FileHandle,
  out: BlockWriter,
  sectionStart: number,
  elementBytes: number,
  offsets: readonly number[],
  indices: readonly number[],
  path: string,
): Promise<void> {
  const block = Buffer.alloc(COPY_BLOCK_BYTES);
  let blockStart = 0;
  let blockLength = 0;
  for (const index of indices) {
    let from = offsets[index] * elementBytes;
    const to = offsets[index + 1] * elementBytes;
    while (from < to) {
      if (from < blockStart || from >= blockStart + blockLength) {
        const { bytesRead } = await input.read(block, 0, COPY_BLOCK_BYTES, sectionStart + from);
        if (bytesRead === 0) throw new Error(`${path}: shard is truncated`);
        blockStart = from;
        blockLength = bytesRead;
      }
      const end = Math.min(to, blockStart + blockLength);
      // Copy: the block buffer is reused by the next read.
      await out.push(Buffer.from(block.subarray(from - blockStart, end - blockStart)));
      from = end;
    }
  }
}

/** Gathers small buffers into ~1 MiB writes. */
class BlockWriter {
  private parts: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly file: FileHandle) {}

  async push(buffer: Buffer): Promise<void> {
    this.parts.push(buffer);
    this.bytes += buffer.length;
    if (this.bytes >= COPY_BLOCK_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.bytes === 0) return;
    const data = Buffer.concat(this.parts, this.bytes);
    this.parts = [];
    this.bytes = 0;
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await this.file.write(data, written, data.length - written);
      written += bytesWritten;
    }
  }
}

async function readExactly(file: FileHandle, position: number, length: number, path: string): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  await readInto(file, buffer, position, path);
  return buffer;
}

/** Fills `buffer` from `position`; a short file is an error, not a partial result. */
async function readInto(file: FileHandle, buffer: Buffer, position: number, path: string): Promise<void> {
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await file.read(buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) throw new Error(`${path}: unexpected end of shard`);
    filled += bytesRead;
  }
}
