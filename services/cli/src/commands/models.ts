/** Models: `models` (versions, metrics, which one serves) and `base-models` (the catalog). */
import type { BaseModelsResponse, ModelsResponse } from '@tempered/api-contract';
import type { Invocation } from '../args';
import { api, token } from '../client';
import { out } from '../output';

export async function models(inv: Invocation): Promise<void> {
  const { models: list } = await api<ModelsResponse>('GET', '/api/models', token(inv.flags.user, 'operator'));
  out(inv.flags, list, () => {
    for (const m of list) {
      const em = m.metrics?.exactMatch;
      console.log(`${m.id.padEnd(32)} ${m.serving ? 'serving ' : '        '} exact match ${em === undefined ? '   -' : Number(em).toFixed(3)}  run ${m.run_id}  ${m.created_at}`);
    }
    if (list.length === 0) console.log('no model versions yet: approve a run at its gate');
  });
}

export async function baseModels(inv: Invocation): Promise<void> {
  const { baseModels: list } = await api<BaseModelsResponse>('GET', '/api/base-models', token(inv.flags.user, 'operator'));
  out(inv.flags, list, () => {
    for (const b of list) {
      const versions = b.fineTuned.map((v) => `${v.name} v${v.version}`).join(', ') || 'none yet';
      console.log(`${b.name.padEnd(28)} ${b.architecture.padEnd(20)} ${`${(b.parameters / 1e6).toFixed(1)}M`.padStart(8)} params  ${b.license}  ${b.sha256.slice(0, 12)}`);
      console.log(`${''.padEnd(28)} source ${b.source}; fine-tuned: ${versions}`);
    }
    if (list.length === 0) console.log('no base models registered: the bootstrap converts them and `npm start` registers them');
  });
}
