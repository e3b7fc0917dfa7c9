/**
 * Evaluations: `eval VERSION [--suite NAME]…` runs a model version's test suites again and waits for the figures;
 * `evaluations [VERSION]` lists them (drift schedules' too).
 */
import { describeInterval, type EvaluationDetail, type EvaluationsResponse, type SuiteResult } from '@tempered/api-contract';
import { CliError, type Invocation, need } from '../args';
import { api, token } from '../client';
import { out } from '../output';

const POLL_MS = 2000;

/** Exit code of an evaluation that completed with figures across a suite's min / max bounds. */
export const BREACH_EXIT_CODE = 2;

export async function evaluate(inv: Invocation): Promise<number | void> {
  const versionId = need(inv, 'a model version id (tempered models lists them)');
  const auth = token(inv.flags.user, 'operator');
  const suites = inv.flags.suite;
  let evaluation = await api<EvaluationDetail>('POST', `/api/models/${encodeURIComponent(versionId)}/evaluations`, auth, {
    ...(suites?.length ? { suites } : {}),
    ...(inv.flags.comment ? { comment: inv.flags.comment } : {}),
  });
  if (!inv.flags.json) console.log(`evaluation ${evaluation.id}: ${evaluation.suites.join(', ')} on ${versionId} (Ctrl-C leaves it running; tempered evaluations ${versionId} shows it)`);
  while (evaluation.status === 'running') {
    await new Promise((r) => setTimeout(r, POLL_MS));
    evaluation = await api<EvaluationDetail>('GET', `/api/evaluations/${encodeURIComponent(evaluation.id)}`, auth);
  }
  out(inv.flags, evaluation, () => printEvaluation(evaluation));
  if (evaluation.status === 'failed') throw new CliError(`evaluation ${evaluation.id} failed: ${evaluation.error}`);
  return evaluation.breaches?.length ? BREACH_EXIT_CODE : undefined;
}

export async function evaluations(inv: Invocation): Promise<void> {
  const auth = token(inv.flags.user, 'operator');
  const url = inv.arg ? `/api/models/${encodeURIComponent(inv.arg)}/evaluations` : '/api/evaluations';
  const { evaluations: list } = await api<EvaluationsResponse>('GET', url, auth);
  out(inv.flags, list, () => {
    for (const e of list) {
      const figures = (e.results ?? []).map((s) => `${s.name}: ${Object.entries(s.metrics).map(([m, ci]) => `${m} ${ci.value.toFixed(3)}`).join(', ')}`).join('; ');
      console.log(`${e.id}  ${e.status.padEnd(9)} ${e.modelVersionId ?? e.modelName}  by ${e.requestedBy}  ${e.createdAt}  ${figures || e.error || ''}`);
    }
    if (list.length === 0) console.log('no evaluations yet: tempered eval VERSION');
  });
}

function printEvaluation(e: EvaluationDetail): void {
  console.log(`${e.status}: ${e.modelVersionId ?? e.modelName}, requested by ${e.requestedBy}`);
  for (const s of e.results ?? []) printSuite(s);
  for (const b of e.breaches ?? []) console.log(`  ✘ ${b}`);
}

function printSuite(s: SuiteResult): void {
  console.log(`  suite ${s.name}: ${s.examples} answered of ${s.input} records (${s.quarantined} quarantined, ${s.removed} empty after cleaning)${s.seconds !== undefined ? ` in ${s.seconds} s` : ''}`);
  for (const [metric, ci] of Object.entries(s.metrics)) console.log(`    ${metric.padEnd(12)} ${describeInterval(ci)}`);
  if (s.perplexity) console.log(`    ${'perplexity'.padEnd(12)} ${s.perplexity.value.toFixed(3)} on ${s.perplexity.n} records`);
  if (s.judged) {
    const j = s.judged;
    const against = j.against.kind === 'serving' ? `serving v${j.against.version}` : 'the untrained model';
    console.log(`    judged by ${j.judge} against ${against}: ${j.wins} wins, ${j.losses} losses, ${j.ties} ties, ${j.noVerdict} no verdict, ${j.disagreed} disagreed`);
  }
  if (s.unsafeBeforeFilter) console.log(`    ${'unsafe before the output filter'.padEnd(12)} ${describeInterval(s.unsafeBeforeFilter)}`);
}
