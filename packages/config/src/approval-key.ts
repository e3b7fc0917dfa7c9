/**
 * The approval key and what it signs. The API signs every gate decision it forwards to Temporal; a worker
 * activity checks the signature before the workflow counts the decision. Whoever reaches the Temporal frontend
 * without going through the API (the dev server has no auth) cannot produce a valid decision without this key.
 *
 * The key is 32 random bytes, hex, in a mode-600 file created at first use by whichever process needs it first
 * (`wx`, so two processes starting at once agree on one key). API and workers on other machines are given the
 * same file through TEMPERED_APPROVAL_KEY_FILE.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const cached = new Map<string, Buffer>();

export function approvalKey(file: string): Buffer {
  const hit = cached.get(file);
  if (hit) return hit;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    try {
      writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    text = readFileSync(file, 'utf8');
  }
  const key = Buffer.from(text.trim(), 'hex');
  if (key.length < 32) throw new Error(`${file} does not hold an approval key (64 hex digits); delete it to have one generated`);
  cached.set(file, key);
  return key;
}

/** What a signature covers: the decision as the workflow will record it, for one run, at one time. */
export interface SignedFields {
  runId: string;
  decision: string;
  approver: string;
  override?: boolean;
  comment?: string;
  signedAt: string;
}

/** HMAC-SHA256 (hex) over the fields in a fixed order, so signer and checker agree byte for byte. */
export function approvalSignature(key: Buffer, f: SignedFields): string {
  const canonical = JSON.stringify([f.runId, f.decision, f.approver, f.override === true, f.comment ?? '', f.signedAt]);
  return createHmac('sha256', key).update(canonical).digest('hex');
}
