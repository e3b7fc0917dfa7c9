/** What serves: `deployments`, and ending a running canary by hand with `deployments promote|abort RUN`. */
import type { CanaryActionRequest, DeploymentsResponse } from '@tempered/api-contract';
import { CliError, type Invocation } from '../args';
import { api, token } from '../client';
import { out } from '../output';

export async function deployments(inv: Invocation): Promise<void> {
  const { arg, flags } = inv;
  if (arg === 'promote' || arg === 'abort') {
    const runId = inv.positionals[2];
    if (!runId) throw new CliError(`deployments ${arg} needs a run id; see tempered --help`);
    const body: CanaryActionRequest = { action: arg, comment: flags.comment ?? '' };
    const sent = await api<{ sent: 'promote' | 'abort' }>('POST', `/api/runs/${runId}/canary`, token(flags.user, 'approver'), body);
    return out(flags, sent, () => console.log(`${arg === 'promote' ? 'promotion' : 'abort'} sent to the canary of ${runId}`));
  }
  if (arg) throw new CliError(`unknown deployments subcommand "${arg}": promote RUN or abort RUN`);
  const { deployments: list } = await api<DeploymentsResponse>('GET', '/api/deployments', token(flags.user, 'operator'));
  out(flags, list, () => {
    for (const d of list) {
      const health = d.canary?.health as { requests?: number; errors?: number } | undefined;
      const canary = d.canary ? `  canary step ${d.canary.step} at ${d.canary.weight}%${health ? `, ${health.requests} requests, ${health.errors} errors` : ''}` : '';
      console.log(`${`${d.model_name} v${d.version}`.padEnd(28)} ${d.status.padEnd(11)} ${String(d.weight).padStart(3)}% of traffic  ${d.endpoint}${canary}`);
    }
    if (list.length === 0) console.log('nothing deployed yet');
  });
}
