/** Runs: `run`, `runs`, `show`, `logs`, `answers`, and `follow` / `status` (which stop at the deployment gate). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  ANSWER_FILTERS, type AnswersResponse, championShortfall, describeInterval, isTerminalRunStatus, type LogLine, type RunDetail, type RunEvents,
  type RunSummary, STAGES, type StartRunRequest, type TestResult,
} from '@tempered/api-contract';
import { loadConfig } from '@tempered/config';
import { CliError, type Invocation, need } from '../args';
import { api, streamEvents, token } from '../client';
import { out, printLogLine, stageLine } from '../output';
import { waitForRun } from '../wait';

/** `POST /api/runs`. */
interface StartedRun {
  runId: string;
  name: string;
  requestedBy: string;
}

/** The run waits at its gate: what its test measured and the three ways to decide it. */
function printGateHelp(runId: string, detail: RunDetail): void {
  const { url } = loadConfig().api;
  const t = detail.stages.find((s) => s.name === 'test')?.summary as TestResult | null | undefined;
  const deadline = detail.gate?.status === 'waiting' ? detail.gate.deadline : undefined;
  console.log(`\nRun ${runId} is waiting at the deployment gate${deadline ? ` (expires ${deadline})` : ''}.`);
  const ci = t?.intervals;
  if (t) {
    const em = ci ? describeInterval(ci.exactMatch) : Number(t.exactMatch).toFixed(3);
    console.log(`  test exact match ${em} (untrained: ${Number(t.baselineExactMatch).toFixed(3)}), test loss ${Number(t.loss).toFixed(4)}`);
  }
  const c = t?.classification;
  if (c) {
    const sft = c.sftAccuracy === undefined ? '' : `, after SFT ${Number(c.sftAccuracy).toFixed(3)}`;
    const accuracy = ci?.accuracy ? describeInterval(ci.accuracy) : `${Number(c.accuracy).toFixed(3)} on ${c.examples} records`;
    console.log(`  test accuracy ${accuracy} (base model zero-shot ${Number(c.baselineAccuracy).toFixed(3)}${sft}), macro-F1 ${Number(c.macroF1).toFixed(3)}`);
  }
  for (const suite of t?.suites ?? []) {
    const figures = Object.entries(suite.metrics).map(([metric, i]) => `${metric} ${describeInterval(i)}`);
    if (suite.perplexity) figures.push(`perplexity ${suite.perplexity.value.toFixed(3)}`);
    console.log(`  suite ${suite.name} (${suite.quarantined} of ${suite.input} records quarantined): ${figures.join(', ')}`);
  }
  const champion = t?.champion;
  if (champion) {
    const sure = champion.difference ? `, difference ${describeInterval(champion.difference, 'paired records')}: ${champion.verdict}` : '';
    console.log(
      champion.challengerWins
        ? `  against the serving version v${champion.version}: ${champion.challengerExactMatch.toFixed(3)} vs ${champion.championExactMatch.toFixed(3)}${sure}`
        : `  ${championShortfall(champion)}; approving needs --override`,
    );
    if (champion.regressions !== undefined) console.log(`  ${champion.regressions} records the serving model answers right are wrong here: npm run tempered -- answers ${runId} --filter newly-wrong`);
  }
  console.log(`Approve it in the dashboard, ${url}/approvals, signed in as approver (not the user who started it),`);
  console.log(`or with the CLI:`);
  console.log(`  npm run tempered -- approve ${runId} --user approver --comment "looks good"`);
  console.log(`or through the API:`);
  console.log(`  curl -X POST ${url}/api/runs/${runId}/approval -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"decision":"approve","comment":"looks good"}'`);
  console.log(`  (the approver's password and token are in ${path.join(loadConfig().dataDir, 'credentials.json')})`);
}

/** `tempered run SPEC.yaml [--follow]`: exit 1 when a followed run ends before its gate. */
export async function run(inv: Invocation): Promise<number> {
  const { flags } = inv;
  const file = path.resolve(need(inv, 'a spec file'));
  if (!existsSync(file)) throw new CliError(`spec file ${file} not found`);
  const auth = token(flags.user, 'operator');
  const body: StartRunRequest = { spec: readFileSync(file, 'utf8'), specDir: path.dirname(file) };
  const started = await api<StartedRun>('POST', '/api/runs', auth, body);
  if (!flags.follow) {
    out(flags, started, () => console.log(`started run ${started.runId}`));
    return 0;
  }
  console.log(`started run ${started.runId} (${started.name}, as ${started.requestedBy})`);
  const detail = await waitForRun(started.runId, auth, 'gate');
  if (flags.json) console.log(JSON.stringify(detail, null, 2));
  else if (detail.run.status === 'waiting-approval') printGateHelp(started.runId, detail);
  else {
    console.log(`\nrun ${started.runId} ended: ${detail.run.status}${detail.run.error ? `: ${detail.run.error}` : ''}`);
    return 1;
  }
  return 0;
}

/** `tempered follow RUN` / `tempered status RUN`. */
export async function follow(inv: Invocation): Promise<void> {
  const auth = token(inv.flags.user, 'operator');
  const runId = need(inv, 'a run id');
  const detail = await waitForRun(runId, auth, 'gate');
  if (detail.run.status === 'waiting-approval') printGateHelp(runId, detail);
}

/** `tempered runs`. */
export async function runs(inv: Invocation): Promise<void> {
  const { runs: list } = await api<{ runs: RunSummary[] }>('GET', '/api/runs', token(inv.flags.user, 'operator'));
  out(inv.flags, list, () => {
    for (const r of list) console.log(`${r.id.padEnd(40)} ${r.status.padEnd(17)} ${r.requested_by.padEnd(10)} ${r.created_at}`);
    if (list.length === 0) console.log('no runs yet: tempered run examples/demo/pipeline.yaml --follow');
  });
}

/** `tempered show RUN`. */
export async function show(inv: Invocation): Promise<void> {
  const d = await api<RunDetail>('GET', `/api/runs/${need(inv, 'a run id')}`, token(inv.flags.user, 'operator'));
  out(inv.flags, d, () => {
    console.log(`${d.run.id}  ${d.run.status}  (started by ${d.run.requested_by} at ${d.run.created_at})`);
    for (const name of STAGES) {
      const s = d.stages.find((x) => x.name === name);
      if (s) console.log(stageLine(name, s, ` (attempt ${s.attempts})`));
    }
    console.log(`artifacts:`);
    for (const a of d.artifacts) console.log(`  ${a.stage.padEnd(9)} ${a.kind.padEnd(13)} ${String(a.bytes).padStart(10)} B  ${a.sha256.slice(0, 12)}  ${a.uri}`);
    for (const a of d.approvals) console.log(`approval: ${a.decision} by ${a.approver ?? '(timer)'} at ${a.decided_at}${a.comment ? `: ${a.comment}` : ''}`);
    if (d.modelVersion) console.log(`model version: ${d.modelVersion.id} (${d.modelVersion.model_uri})`);
    if (d.deployment) console.log(`deployment: ${d.deployment.id} ${d.deployment.status} at ${d.deployment.endpoint}/v1/completions`);
  });
}

/** `tempered logs RUN [--follow]`: the tail, then with --follow the new lines until the run ends. */
/** `tempered answers RUN [--suite NAME] [--filter all|wrong|newly-wrong|judge-disagreed|unsafe]`: the test stage's answers, one block per test record or suite prompt. */
export async function answers(inv: Invocation): Promise<void> {
  const runId = need(inv, 'a run id');
  const filter = inv.flags.filter ?? 'all';
  if (!(ANSWER_FILTERS as readonly string[]).includes(filter)) throw new CliError(`--filter must be one of ${ANSWER_FILTERS.join(', ')}, got "${filter}"`);
  const suites = inv.flags.suite ?? [];
  if (suites.length > 1) throw new CliError(`answers shows one suite at a time; got --suite ${suites.join(', --suite ')}`);
  const suite = suites[0] ? `&suite=${encodeURIComponent(suites[0])}` : '';
  const auth = token(inv.flags.user, 'operator');
  const res = await api<AnswersResponse>('GET', `/api/runs/${encodeURIComponent(runId)}/answers?filter=${filter}${suite}&limit=500`, auth);
  out(inv.flags, res, () => {
    const mark = (ok: boolean | undefined) => (ok ? 'right' : 'wrong');
    for (const a of res.answers) {
      console.log(`── ${a.suite ? `suite ${a.suite} · ` : ''}${a.key}\n  prompt:     ${a.prompt.replace(/\n/g, '\n              ')}\n  reference:  ${a.reference}`);
      console.log(`  this model: ${a.answer} (${mark(a.correct)}${a.unsafe ? ', unsafe after the output filter' : ''})`);
      if (a.championAnswer !== undefined) console.log(`  serving:    ${a.championAnswer} (${mark(a.championCorrect)})`);
      if (a.baselineAnswer) console.log(`  untrained:  ${a.baselineAnswer}`);
      if (a.judge) {
        const said = (reply: string | null | undefined) => (reply != null ? ` "${reply}"` : '');
        console.log(
          `  judge:      ${a.judge.outcome} (this answer first: ${a.judge.verdictAB ?? 'no verdict'}${said(a.judge.replyAB)}; second: ${a.judge.verdictBA ?? 'no verdict'}${said(a.judge.replyBA)})${a.judge.disagreed ? ', disagreed' : ''}`,
        );
      }
    }
    const { counts } = res;
    console.log(
      `${res.answers.length} shown of ${counts[filter as keyof typeof counts]} (${filter}${suites[0] ? `, suite ${suites[0]}` : ''}); ${counts.all} answers, ${counts.wrong} wrong, ${counts['newly-wrong']} newly wrong against the serving model, ` +
        `${counts['judge-disagreed']} judge-disagreed, ${counts.unsafe} unsafe`,
    );
  });
}

export async function logs(inv: Invocation): Promise<void> {
  const runId = need(inv, 'a run id');
  const auth = token(inv.flags.user, 'operator');
  const { lines } = await api<{ lines: LogLine[] }>('GET', `/api/runs/${runId}/logs?limit=200`, auth);
  if (!inv.flags.follow) return out(inv.flags, lines, () => lines.forEach(printLogLine));
  lines.forEach(printLogLine);
  for await (const event of streamEvents<RunEvents>(`/api/runs/${runId}/events`, auth)) {
    if (event.type === 'logs') event.data.lines.forEach(printLogLine);
    // A run that has already ended ends the stream at once (its snapshot says so).
    if ((event.type === 'snapshot' || event.type === 'run') && isTerminalRunStatus(event.data.run.status)) return;
  }
}
