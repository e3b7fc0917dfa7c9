/** The deployment gate: `approve` (then wait for the deployment, canary included, to end) and `reject`. */
import type { ApprovalReceipt } from '@tempered/contract';
import type { DecisionRequest, RunDetail } from '@tempered/api-contract';
import { loadConfig } from '@tempered/config';
import { type Invocation, need } from '../args';
import { api, token } from '../client';
import type { SpecView } from '../output';
import { waitForRun } from '../wait';

/** `tempered approve RUN` / `tempered reject RUN`: exit 1 when an approved run does not end deployed. */
export async function decide(inv: Invocation, decision: 'approve' | 'reject'): Promise<number> {
  const { flags } = inv;
  const runId = need(inv, 'a run id');
  const auth = token(flags.user, 'approver');
  const body: DecisionRequest = { decision, comment: flags.comment ?? '', ...(flags.override ? { override: true } : {}) };
  const receipt = await api<ApprovalReceipt>('POST', `/api/runs/${runId}/approval`, auth, body);
  if (flags.json && decision === 'reject') {
    console.log(JSON.stringify(receipt));
    return 0;
  }
  console.log(`${decision === 'approve' ? (receipt.override ? 'approved by override' : 'approved') : 'rejected'} by ${receipt.approver} at ${receipt.decidedAt}`);
  if (decision === 'reject') return 0;
  console.log('deploying…');
  const detail = await waitForRun(runId, auth, 'end');
  if (flags.json) {
    console.log(JSON.stringify(detail, null, 2));
    return 0;
  }
  return reportDeployment(detail);
}

/** How an approved run ended: the way to ask the model it deployed (exit 0), or why there is none (exit 1). */
function reportDeployment(detail: RunDetail): number {
  const { run, deployment, modelVersion } = detail;
  if (run.status === 'deployed' && deployment && modelVersion) {
    const gateway = loadConfig().gateway.url;
    console.log(`\nModel ${modelVersion.id} is serving (its server: ${deployment.endpoint}). Ask it through the gateway:`);
    // The spec's own smoke prompt: a question this model was trained to answer, asked as a chat.
    const question = (run.spec as unknown as SpecView).deploy?.smokePrompt ?? 'Hello';
    const body = JSON.stringify({ model: modelVersion.name, messages: [{ role: 'user', content: question }], max_tokens: 24 });
    console.log(`  curl -s ${gateway}/v1/chat/completions -H 'content-type: application/json' -d '${body.replace(/'/g, "'\\''")}'`);
    return 0;
  }
  console.log(`run ended ${run.status}${run.error ? `: ${run.error}` : ''}`);
  if (run.status === 'rolled-back') console.log('the previous version keeps serving (tempered deployments)');
  return 1;
}
