/**
 * What serves: `deployments`; ending a running canary by hand with `deployments promote|abort RUN`; and
 * `deployments rollback NAME [--to VERSION] --reason TEXT`, all of a model's traffic back to an earlier version.
 */
import type { CanaryActionRequest, DeploymentsResponse, RollbackRequest, RollbackResponse } from '@tempered/api-contract';
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
  if (arg === 'rollback') {
    const name = inv.positionals[2];
    if (!name) throw new CliError('deployments rollback needs a model name; see tempered --help');
    // The API refuses a missing reason too; said here, the user is told before waiting for anything.
    if (!flags.reason?.trim()) throw new CliError('deployments rollback needs --reason TEXT: why the traffic goes back');
    const body: RollbackRequest = { reason: flags.reason, ...(flags.to !== undefined ? { to: /^\d+$/.test(flags.to) ? Number(flags.to) : flags.to } : {}) };
    const done = await api<RollbackResponse>('POST', `/api/deployments/${encodeURIComponent(name)}/rollback`, token(flags.user, 'approver'), body);
    return out(flags, done, () =>
      console.log(`all of ${done.modelName}'s traffic goes to ${done.to} (${done.endpoint})${done.from ? `; ${done.from} rolled back, still registered and downloadable` : ''}`),
    );
  }
  if (arg) throw new CliError(`unknown deployments subcommand "${arg}": promote RUN, abort RUN or rollback NAME`);
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
