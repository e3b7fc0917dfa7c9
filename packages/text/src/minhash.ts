/**
 * Near-duplicate detection with MinHash LSH on character n-grams, for the clean stage's `dedupe: near`.
 * Characters rather than words, so that Japanese and Chinese, written without spaces, are compared as well.
 *
 * Parameters and their anchors: 5-grams, 112 hashes in 14 bands of 8 rows, as datatrove's MinhashConfig
 * (NeMo Curator's fuzzy dedup uses the same banding idea with 20 × 13 on word 24-grams). With 14 × 8 two texts
 * of Jaccard similarity s become candidates with probability 1 - (1 - s^8)^14: 0.57 at s = 0.7, 0.92 at 0.8,
 * 0.99 at 0.85. A candidate is then verified on the signatures: the share of equal hashes, an unbiased
 * estimate of the Jaccard similarity (standard error about 0.04 at 0.7 with 112 hashes), must reach the
 * threshold. Verifying on the signatures instead of the n-gram sets keeps memory to the kept signatures.
 *
 * No npm package fits: `minhash` (0.0.9) and `bloom-filters`' MinHash draw their hash functions from
 * Math.random, so a dataset would dedupe differently on every run, and `murmurhash` hashes strings as ASCII
 * only. The hash here is MurmurHash3's 32-bit mixing over code points, seeded per hash function from a fixed
 * seed: the same text gets the same signature on every machine and run.
 * Pure functions, no Node API.
 */

export const NGRAM = 5;
export const BANDS = 14;
export const ROWS = 8;
export const HASHES = BANDS * ROWS;

/** MurmurHash3's finalizer: a bijection on 32-bit integers that spreads every input bit over the output. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3's block step, over one code point. */
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** One seed per hash function, from a fixed start, so that signatures never change between runs. */
const SEEDS = (() => {
  const seeds = new Uint32Array(HASHES);
  let s = 0x9e3779b9;
  for (let i = 0; i < HASHES; i++) seeds[i] = s = fmix32(s + 0x9e3779b9);
  return seeds;
})();

/**
 * What is compared: lower case, punctuation and symbols dropped, whitespace runs as one space (datatrove's
 * simplify_text), so that a changed comma or line break does not count as a difference.
 */
export function simplify(text: string): string {
  return text.toLowerCase().replace(/[\p{P}\p{S}]+/gu, '').replace(/\s+/gu, ' ').trim();
}

/** The hashes of the text's character n-grams (the whole text as one n-gram when it is shorter). */
export function ngramHashes(text: string, n = NGRAM): Uint32Array {
  const cps = Array.from(simplify(text), (c) => c.codePointAt(0)!);
  const count = Math.max(1, cps.length - n + 1);
  const hashes = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    let h = 0;
    const end = Math.min(cps.length, i + n);
    for (let j = i; j < end; j++) h = mix(h, cps[j]);
    hashes[i] = fmix32(h ^ (end - i));
  }
  return hashes;
}

/** The MinHash signature: per hash function, the least hash of the text's n-grams. */
export function signature(text: string): Uint32Array {
  const grams = ngramHashes(text);
  const sig = new Uint32Array(HASHES).fill(0xffffffff);
  for (let i = 0; i < HASHES; i++) {
    const seed = SEEDS[i];
    let min = 0xffffffff;
    for (let g = 0; g < grams.length; g++) {
      const h = fmix32(grams[g] ^ seed);
      if (h < min) min = h;
    }
    sig[i] = min;
  }
  return sig;
}

/** The share of equal hashes: the estimate of the two texts' Jaccard similarity. */
export function similarity(a: Uint32Array, b: Uint32Array): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

/** The band's 8 rows hashed with the band's number, so equal rows in two bands are two keys. */
function bandKey(sig: Uint32Array, band: number): number {
  let h = band;
  for (let r = band * ROWS; r < (band + 1) * ROWS; r++) h = mix(h, sig[r]);
  return fmix32(h);
}

/**
 * The kept texts' signatures, banded. `check` answers whether a new text is a near duplicate of a kept one
 * (which one, and how similar) and, when it is not, keeps it, so memory grows with kept texts only.
 *
 * Held in typed arrays, as clean's DigestSet holds digests, because a Map of arrays per band costs about 2 KB a
 * kept text (measured, 200,000 texts): the signatures in chunks of 1024, and the 14 band keys of every kept text
 * in one multimap by open addressing (a slot is a 32-bit band key and the kept text's number + 1, 0 for empty;
 * linear probing, doubled at half full): 448 bytes of signature and 224 to 448 of band slots a kept text, 869
 * in all measured at 200,000 kept texts. A band key is a 32-bit hash of
 * its band number and 8 rows; a collision only adds a candidate, which verification drops.
 */
export class NearDuplicateIndex {
  private static readonly CHUNK = 1024;
  private readonly chunks: Uint32Array[] = [];
  private count = 0;
  private keys = new Uint32Array(1024);
  private ids = new Int32Array(1024);
  private used = 0;

  constructor(readonly threshold: number) {}

  get size(): number {
    return this.count;
  }

  private signatureOf(id: number): Uint32Array {
    const chunk = this.chunks[Math.floor(id / NearDuplicateIndex.CHUNK)];
    const at = (id % NearDuplicateIndex.CHUNK) * HASHES;
    return chunk.subarray(at, at + HASHES);
  }

  /** The kept text this one nearly duplicates (its number in keeping order), or undefined, and then it is kept. */
  check(sig: Uint32Array): { of: number; similarity: number } | undefined {
    const bandKeys = Array.from({ length: BANDS }, (_, b) => bandKey(sig, b));
    let best: { of: number; similarity: number } | undefined;
    const tried = new Set<number>();
    const mask = this.keys.length - 1;
    for (const key of bandKeys) {
      for (let slot = key & mask; this.ids[slot] !== 0; slot = (slot + 1) & mask) {
        if (this.keys[slot] !== key) continue;
        const id = this.ids[slot] - 1;
        if (tried.has(id)) continue;
        tried.add(id);
        const s = similarity(sig, this.signatureOf(id));
        if (s >= this.threshold && (!best || s > best.similarity)) best = { of: id, similarity: s };
      }
    }
    if (best) return best;
    const id = this.count++;
    if (id % NearDuplicateIndex.CHUNK === 0) this.chunks.push(new Uint32Array(NearDuplicateIndex.CHUNK * HASHES));
    this.signatureOf(id).set(sig);
    for (const key of bandKeys) this.insert(key, id + 1);
    return undefined;
  }

  private insert(key: number, value: number): void {
    if ((this.used + 1) * 2 > this.keys.length) {
      const [keys, ids] = [this.keys, this.ids];
      this.keys = new Uint32Array(keys.length * 2);
      this.ids = new Int32Array(ids.length * 2);
      this.used = 0;
      for (let i = 0; i < keys.length; i++) if (ids[i] !== 0) this.insert(keys[i], ids[i]);
    }
    const mask = this.keys.length - 1;
    let slot = key & mask;
    while (this.ids[slot] !== 0) slot = (slot + 1) & mask;
    this.keys[slot] = key;
    this.ids[slot] = value;
    this.used++;
  }
}
