/**
 * The check that makes a gate decision attributable: the API signs each decision with the approval key
 * (packages/config/src/approval-key.ts) and the workflow counts it only after this activity found the
 * signature good and fresh. Workflow code cannot do it itself: it must not read the key.
 */
import { timingSafeEqual } from 'node:crypto';
import { approvalKey, approvalSignature } from '@tempered/config';
import type { ApprovalDecision } from '@tempered/contract';
import type { Deps } from './context';

/** How old a signature may be when checked: the API forwards it at once, so minutes mean a replayed decision. */
export const APPROVAL_SIGNATURE_MAX_AGE_MS = 5 * 60_000;

export async function verifyApproval(
  deps: Pick<Deps, 'cfg'>,
  input: { runId: string; decision: ApprovalDecision },
): Promise<{ ok: true } | { ok: false; reason: string }> {
  const { decision: d, runId } = input;
  if (!d.signature || !d.signedAt) return { ok: false, reason: 'the decision is not signed by the API: decide gates through the API (POST /api/runs/:id/approval)' };
  const at = Date.parse(d.signedAt);
  if (!Number.isFinite(at) || Math.abs(Date.now() - at) > APPROVAL_SIGNATURE_MAX_AGE_MS) {
    return { ok: false, reason: `the decision's signature (signed at ${d.signedAt}) is stale or from the future; decide again through the API` };
  }
  const expected = Buffer.from(approvalSignature(approvalKey(deps.cfg.approvalKeyFile), { runId, ...d, signedAt: d.signedAt }), 'hex');
  const given = Buffer.from(d.signature, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'the decision\'s signature does not match: it was not made by the API for this run, approver and decision' };
  }
  return { ok: true };
}
