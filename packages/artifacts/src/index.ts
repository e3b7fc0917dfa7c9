/**
 * The artifact store: the only code that touches S3. Objects are content-addressed
 * (`<prefix>artifacts/<sha256>/<name>`), so a retried stage rewrites the same key with the same bytes and
 * never duplicates an artifact. Every key is checked to stay under the configured prefix: nothing a client
 * sends can read or write outside it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Config } from '@tempered/config';
import type { ArtifactKind, ArtifactRef } from '@tempered/contract';

// The machine's Node 20 is supported by the SDK versions we pin; its notice about future releases is noise
// in every log line of every process.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Above this size uploads go through lib-storage's multipart upload. */
const MULTIPART_THRESHOLD = 16 * 1024 * 1024;

export class ArtifactPathError extends Error {
  override name = 'ArtifactPathError';
}

export async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** One path segment of a key: the name's last part, with anything but letters, digits and `._-` replaced. */
function safeSegment(name: string): string {
  return path.posix.basename(name).replace(/[^A-Za-z0-9._-]/g, '_') || 'blob';
}

export class ArtifactStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;

  constructor(cfg: Config['s3']) {
    this.client = new S3Client({
      endpoint: cfg.endpoint,
      region: cfg.region,
      forcePathStyle: cfg.forcePathStyle,
      credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
      // versitygw and most S3-compatible servers do not implement the newer default checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    this.bucket = cfg.bucket;
    this.prefix = cfg.prefix;
  }

  /** Creates the bucket if it does not exist (the embedded stack starts empty). */
  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    }
  }

  uriOf(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  /**
   * The key of an `s3://` URI, refused unless it names this store's bucket and stays under its prefix.
   * Normalising first means `a/../../b` cannot climb out.
   */
  keyOf(uri: string): string {
    const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
    if (!m) throw new ArtifactPathError(`not an s3:// URI: ${uri}`);
    const [, bucket, rawKey] = m;
    if (bucket !== this.bucket) throw new ArtifactPathError(`${uri} is outside the artifact bucket ${this.bucket}`);
    if (rawKey.split('/').some((part) => part === '..' || part === '.') || rawKey.includes('\\') || rawKey.includes('\0')) {
      throw new ArtifactPathError(`${uri} contains a relative path segment`);
    }
    const key = path.posix.normalize(rawKey);
    if (!key.startsWith(this.prefix)) throw new ArtifactPathError(`${uri} is outside the artifact prefix ${this.prefix}`);
    return key;
  }

  private contentKey(sha256: string, name: string): string {
    return `${this.prefix}artifacts/${sha256}/${safeSegment(name)}`;
  }

  /** Uploads a local file under its content address; uploading the same bytes twice is a no-op. */
  async putFile(file: string, kind: ArtifactKind, name = path.basename(file)): Promise<ArtifactRef> {
    const { sha256, bytes } = await sha256File(file);
    const key = this.contentKey(sha256, name);
    const ref: ArtifactRef = { uri: this.uriOf(key), sha256, bytes, kind };
    if (await this.headBytes(key) === bytes) return ref;
    await this.upload(key, file, bytes, { sha256, kind });
    return ref;
  }

  private async upload(key: string, file: string, bytes: number, metadata: Record<string, string>): Promise<void> {
    if (bytes > MULTIPART_THRESHOLD) {
      await new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key: key, Body: createReadStream(file), Metadata: metadata },
      }).done();
    } else {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: createReadStream(file), ContentLength: bytes, Metadata: metadata }),
      );
    }
  }

  /**
   * Uploads a workflow's scratch part (a data stage's shard output) under `parts/<owner>/<name>`, not its
   * content address: parts of one owner are never shared with another run, so `removePart` can delete them
   * once they are merged without breaking anyone else's retry. A retried activity rewrites the same key.
   */
  async putPart(file: string, owner: string, name: string): Promise<ArtifactRef> {
    const { sha256, bytes } = await sha256File(file);
    const key = this.keyOf(this.uriOf(`${this.partsPrefix}${safeSegment(owner)}/${safeSegment(name)}`));
    await this.upload(key, file, bytes, { sha256, kind: 'data-part' });
    return { uri: this.uriOf(key), sha256, bytes, kind: 'data-part' };
  }

  /** Deletes a part `putPart` wrote; refuses any other object, so a content-addressed artifact is never removed here. */
  async removePart(uri: string): Promise<void> {
    const key = this.keyOf(uri);
    if (!key.startsWith(this.partsPrefix)) throw new ArtifactPathError(`${uri} is not a scratch part (under ${this.partsPrefix})`);
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  private get partsPrefix(): string {
    return `${this.prefix}parts/`;
  }

  /** Uploads bytes (a report, a small JSON) under their content address. */
  async putBytes(body: Buffer | string, kind: ArtifactKind, name: string): Promise<ArtifactRef> {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    const sha256 = createHash('sha256').update(buf).digest('hex');
    const key = this.contentKey(sha256, name);
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: buf, Metadata: { sha256, kind } }));
    return { uri: this.uriOf(key), sha256, bytes: buf.length, kind };
  }

  /** Uploads to a named key under the prefix (inputs such as example data; not content-addressed). */
  async putNamed(relativeKey: string, file: string): Promise<string> {
    const key = this.keyOf(this.uriOf(`${this.prefix}${relativeKey}`));
    const { size } = await stat(file);
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: createReadStream(file), ContentLength: size }));
    return this.uriOf(key);
  }

  async open(uri: string): Promise<Readable> {
    const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(uri) }));
    return out.Body as Readable;
  }

  /** The object's bytes from offset `start` to its end (a ranged GET: destroy the stream to stop early). */
  async openFrom(uri: string, start: number): Promise<Readable> {
    const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(uri), Range: `bytes=${start}-` }));
    return out.Body as Readable;
  }

  async getBytes(uri: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.open(uri)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** Downloads to a local file; with a ref, verifies the digest so a corrupt object is never used. */
  async download(source: string | ArtifactRef, file: string): Promise<string> {
    const uri = typeof source === 'string' ? source : source.uri;
    await mkdir(path.dirname(file), { recursive: true });
    await pipeline(await this.open(uri), createWriteStream(file));
    if (typeof source !== 'string') {
      const got = await sha256File(file);
      if (got.sha256 !== source.sha256) {
        throw new Error(`artifact ${uri} is corrupt: sha256 ${got.sha256}, expected ${source.sha256}`);
      }
    }
    return file;
  }

  /** The object's size, or undefined when it does not exist. */
  async headBytes(key: string): Promise<number | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return out.ContentLength;
    } catch (err) {
      if (err instanceof NotFound || err instanceof NoSuchKey || (err as { name?: string }).name === 'NotFound') return undefined;
      throw err;
    }
  }

  async exists(uri: string): Promise<boolean> {
    return (await this.headBytes(this.keyOf(uri))) !== undefined;
  }

  /**
   * Deletes an object (garbage collection, tests of a lost artifact). Content-addressed objects may be shared
   * by several runs and stage-cache entries: a cached result whose artifact is gone is recomputed.
   */
  async remove(uri: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(uri) }));
  }
}
