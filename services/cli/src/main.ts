/**
 * `tempered`: the command line, a thin client of the HTTP API.
 *
 *   npm run tempered -- --help
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '@tempered/config';

const HELP = `tempered: run and steer model life cycles

Usage: tempered <command> [options]

Commands:
  run SPEC.yaml [--follow]        start a run of a pipeline spec; --follow shows its progress live
  runs                            list runs, newest first
  show RUN                        a run's stages, metrics, artifacts, approvals and deployment
  follow RUN | status RUN         show a run's progress live until it waits at the gate or ends
  logs RUN [--follow]             the run's log (trainer output, canary decisions); --follow streams it
  models                          model versions, their metrics and which one serves
  base-models                     the base-model catalog (model.base: {name} in a spec) and the versions
                                  fine-tuned from each
  deployments                     what serves each model, its traffic share, live canary state
  deployments promote RUN | abort RUN [--comment TEXT]
                                  end a running canary by hand (an approver): all traffic to the new
                                  version, or back to the previous one
  approve RUN [--comment TEXT] [--override]
                                  approve the deployment gate (as an approver who did not start the run);
                                  --override deploys a challenger that lost to the serving model
  reject RUN [--comment TEXT]     reject it: the run ends undeployed
  schedules SUBCOMMAND            pipelines on a clock and triggered retrains: create, list, show, pause,
                                  resume, trigger, backfill, delete (tempered schedules --help)

Options:
  --user NAME    act as this user of the local stack (operator, approver, admin; from credentials.json
                 in the data directory). TEMPERED_API_TOKEN overrides it.
  --json         machine-readable output
  --help         this text

Environment: TEMPERED_API_URL (default http://127.0.0.1:8080), TEMPERED_API_TOKEN, TEMPERED_DATA_DIR.

Examples:
  tempered run examples/demo/pipeline.yaml --follow
  tempered approve demo-reverse-m1abc-123456 --user approver --comment "metrics look right"
  tempered schedules create nightly examples/demo/pipeline.yaml --cron "0 3 * * *"`;

const SCHEDULES_HELP: Record<string, string> = {
  '': `tempered schedules: pipelines on a clock (Temporal Schedules), and retrains triggered by new data or feedback

Usage: tempered schedules <subcommand> [options]      (tempered schedules <subcommand> --help for each)

Subcommands:
  create ID SPEC.yaml [--cron EXPR | --every INTERVAL] [--mode run|trigger] [--overlap POLICY] [--paused]
  list                        every schedule: timing, paused or not, next action
  show ID                     one schedule: next times, recent actions, paused note, trigger state
  pause ID                    take no action until resumed
  resume ID                   take actions again (missed times are not taken: backfill them)
  trigger ID                  take one action now, paused or not
  backfill ID --from ISO --to ISO [--overlap POLICY]
                              take now the actions of a past window
  delete ID                   delete it (runs it started go on)

Every change takes --comment TEXT, recorded in the audit log with who did it. Managing schedules needs an
operator or admin (--user, default operator); anyone may list and show. --json prints what the API returns.`,
  create: `Usage: tempered schedules create ID SPEC.yaml [options]

Creates schedule ID for the pipeline in SPEC.yaml (validated now; every action uses this spec as it is now).
ID: lower-case letters, digits and dashes.

  --cron EXPR         when, as cron in UTC: "0 3 * * *" (03:00 every day), "@hourly", "*/15 * * * *"
  --every INTERVAL    or every INTERVAL: 30s, 15m, 6h, 1d
                      (neither: the spec's retrain.schedule in run mode, retrain.checkEvery in trigger mode)
  --mode run          every action starts a run, requested by schedule:ID
  --mode trigger      every action checks the spec's retrain.watch (new objects under an S3 prefix) and
                      retrain.feedback (new ratings and preferences) and starts a run, requested by
                      trigger:ID, only when a threshold passes (default when the spec has either)
  --overlap POLICY    when a time comes while the previous run is still going: SKIP (default), BUFFER_ONE,
                      BUFFER_ALL, CANCEL_OTHER, TERMINATE_OTHER, ALLOW_ALL
  --paused            create it paused
  --comment TEXT      why (audit log)

Example:
  tempered schedules create nightly examples/demo/pipeline.yaml --cron "0 3 * * *" --comment "nightly retrain"`,
  list: `Usage: tempered schedules list [--json]

Every schedule with its pipeline, mode, timing, paused state and next action time.`,
  show: `Usage: tempered schedules show ID [--json]

One schedule: timing and overlap policy, paused state and its note, the next action times, recent actions
(the runs or checks they started), actions taken and skipped, and for a trigger what it last checked.`,
  pause: `Usage: tempered schedules pause ID [--comment TEXT]

Pauses the schedule: it takes no action (a manual trigger still does) until resumed.`,
  resume: `Usage: tempered schedules resume ID [--comment TEXT]

Resumes a paused schedule. Times missed while paused are not taken; backfill them if they should be.`,
  trigger: `Usage: tempered schedules trigger ID [--comment TEXT] [--overlap POLICY]

Takes one action now, paused or not: a run (run mode) or a check (trigger mode). By default it starts even
while another is running (--overlap ALLOW_ALL).`,
  backfill: `Usage: tempered schedules backfill ID --from ISO --to ISO [--overlap POLICY] [--comment TEXT]

Takes now every action the schedule would have taken between --from and --to (ISO 8601, e.g.
2030-01-01T00:00:00Z). By default all of them start at once (--overlap ALLOW_ALL; SKIP would start only the
first while it runs, BUFFER_ALL one after another).`,
  delete: `Usage: tempered schedules delete ID [--comment TEXT]

Deletes the schedule. Runs it started go on; a trigger forgets what it last saw.`,
};

type Json = any;

class CliError extends Error {}

function token(user: string | undefined, defaultUser: string): string {
  const cfg = loadConfig();
  if (cfg.api.token && !user) return cfg.api.token;
  const file = path.join(cfg.dataDir, 'credentials.json');
  if (!existsSync(file)) throw new CliError(`no API token: set TEMPERED_API_TOKEN, or start the local stack (npm start) which writes ${file}`);
  const creds = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { token: string }>;
  const name = user ?? defaultUser;
  if (!creds[name]) throw new CliError(`no user "${name}" in ${file}; known: ${Object.keys(creds).join(', ')}`);
  return creds[name].token;
}

async function api(method: string, route: string, auth: string, body?: unknown): Promise<Json> {
  const url = `${loadConfig().api.url}${route}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${auth}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new CliError(`cannot reach the API at ${url}: is the stack up? (npm start, or set TEMPERED_API_URL)`);
  }
  const payload: Json = await res.json().catch(() => ({}));
  if (!res.ok) {
    const issues = (payload.issues ?? []) as Array<{ path: string; message: string }>;
    throw new CliError(issues.length && !String(payload.error).includes(issues[0].message) ? `${payload.error}\n${issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n')}` : String(payload.error ?? `HTTP ${res.status}`));
  }
  return payload;
}

const STAGE_ORDER = ['ingest', 'clean', 'tokenize', 'split', 'train', 'validate', 'rlhf', 'test', 'deploy'];
const ICON: Record<string, string> = { pending: '·', running: '▶', completed: '✔', failed: '✘', skipped: '–', cancelled: '✘' };

/** `input 2305 · kept 2300 · loss 0.0172`: a stage summary for people; numbers to four significant digits. */
function formatSummary(summary: Record<string, unknown> | undefined): string {
  if (!summary) return '';
  const parts = Object.entries(summary).map(([k, v]) => {
    const value = typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : v;
    return `${k} ${typeof value === 'object' ? JSON.stringify(value) : value}`;
  });
  return ` ${parts.join(' · ')}`;
}

function bar(fraction: number, width = 24): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** Polls the run until it waits at the gate or ends; prints a line per stage change and a live training bar. */
async function follow(runId: string, auth: string, until: 'gate' | 'end'): Promise<Json> {
  const tty = process.stdout.isTTY;
  const seen = new Map<string, string>();
  let lastBar = '';
  let lastTenth = -1; // without a terminal, one progress line per tenth of training
  for (;;) {
    const detail = await api('GET', `/api/runs/${runId}`, auth);
    const stages: Record<string, Json> = detail.progress ?? Object.fromEntries(detail.stages.map((s: Json) => [s.name, s]));
    for (const name of STAGE_ORDER) {
      const s = stages[name];
      if (!s || seen.get(name) === s.status) continue;
      seen.set(name, s.status);
      if (s.status === 'pending') continue;
      if (lastBar && tty) process.stdout.write('\n');
      lastBar = '';
      console.log(`  ${ICON[s.status] ?? '?'} ${name.padEnd(9)} ${s.status}${s.error ? `: ${s.error}` : formatSummary(s.summary)}`);
    }
    const steps = detail.metrics['train.loss'] as Array<[number, number]> | undefined;
    if (stages.train?.status === 'running' && steps?.length) {
      const [step, loss] = steps[steps.length - 1];
      const total = detail.run.spec.train.steps;
      const line = `    train ${bar(step / total)} step ${step}/${total} loss ${loss.toFixed(4)}`;
      if (line !== lastBar) {
        const tenth = Math.floor((10 * step) / total);
        if (tty) process.stdout.write(`\r${line}`);
        else if (tenth > lastTenth) console.log(line);
        lastTenth = tenth;
        lastBar = line;
      }
    }
    const status = detail.run.status as string;
    if (until === 'gate' && status === 'waiting-approval') return detail;
    if (['deployed', 'rejected', 'expired', 'failed', 'cancelled'].includes(status)) return detail;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function printGateHelp(runId: string, detail: Json): void {
  const url = loadConfig().api.url;
  const t = detail.stages.find((s: Json) => s.name === 'test')?.summary;
  console.log(`\nRun ${runId} is waiting at the deployment gate${detail.gate?.deadline ? ` (expires ${detail.gate.deadline})` : ''}.`);
  if (t) console.log(`  test exact match ${Number(t.exactMatch).toFixed(3)} (untrained: ${Number(t.baselineExactMatch).toFixed(3)}), test loss ${Number(t.loss).toFixed(4)}`);
  const c = t?.classification;
  if (c) {
    const sft = c.sftAccuracy === undefined ? '' : `, after SFT ${Number(c.sftAccuracy).toFixed(3)}`;
    console.log(`  test accuracy ${Number(c.accuracy).toFixed(3)} on ${c.examples} records (base model zero-shot ${Number(c.baselineAccuracy).toFixed(3)}${sft}), macro-F1 ${Number(c.macroF1).toFixed(3)}`);
  }
  console.log(`Approve it in the dashboard, ${url}/approvals, signed in as approver (not the user who started it),`);
  console.log(`or with the CLI:`);
  console.log(`  npm run tempered -- approve ${runId} --user approver --comment "looks good"`);
  console.log(`or through the API:`);
  console.log(`  curl -X POST ${url}/api/runs/${runId}/approval -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"decision":"approve","comment":"looks good"}'`);
  console.log(`  (the approver's password and token are in ${path.join(loadConfig().dataDir, 'credentials.json')})`);
}

/** `tempered schedules …`: a thin shell over /api/schedules. */
async function schedules(args: string[], values: Record<string, string | boolean | undefined>): Promise<void> {
  const [sub, id, file] = args;
  if (!sub || values.help || !(sub in SCHEDULES_HELP)) {
    if (sub && !(sub in SCHEDULES_HELP)) throw new CliError(`unknown subcommand "schedules ${sub}"; see tempered schedules --help`);
    return void console.log(SCHEDULES_HELP[sub ?? ''] ?? SCHEDULES_HELP['']);
  }
  const user = values.user as string | undefined;
  const comment = values.comment as string | undefined;
  const out = (value: Json, human: () => void) => (values.json ? console.log(JSON.stringify(value, null, 2)) : human());
  const needId = () => {
    if (!id) throw new CliError(`schedules ${sub} needs a schedule id; see tempered schedules ${sub} --help`);
    return encodeURIComponent(id);
  };
  const timing = (s: Json) => (s.cron ? `cron ${s.cron}` : `every ${s.every}`);
  const showOne = (d: Json) => {
    console.log(`${d.id}  ${d.paused ? 'PAUSED' : 'active'}  ${d.mode} ${d.pipeline}  ${timing(d)}  overlap ${d.overlap}`);
    if (d.note) console.log(`  note: ${d.note}`);
    console.log(`  created by ${d.createdBy ?? '?'} at ${d.createdAt}${d.comment ? `: ${d.comment}` : ''}`);
    console.log(`  actions taken ${d.actionsTaken}, skipped for overlap ${d.skippedOverlap}, missed ${d.missedCatchupWindow}`);
    if (d.nextActionTimes.length) console.log(`  next: ${d.paused ? '(paused) ' : ''}${d.nextActionTimes.slice(0, 3).join(', ')}`);
    for (const a of d.recentActions.slice(-10)) console.log(`  took ${a.scheduledAt}: ${a.workflowId}${d.running.includes(a.workflowId) ? ' (running)' : ''}`);
    if (d.trigger) {
      console.log(`  trigger: last checked ${d.trigger.lastCheckedAt ?? 'never'}: ${d.trigger.lastCheck ?? ''}`);
      if (d.trigger.lastRunId) console.log(`  last retrain: ${d.trigger.lastRunId}`);
    }
  };
  const auth = () => token(user, 'operator');

  switch (sub) {
    case 'create': {
      if (!id || !file) throw new CliError('schedules create needs an id and a spec file; see tempered schedules create --help');
      const specFile = path.resolve(file);
      if (!existsSync(specFile)) throw new CliError(`spec file ${specFile} not found`);
      const body = {
        id,
        spec: readFileSync(specFile, 'utf8'),
        specDir: path.dirname(specFile),
        ...(values.cron !== undefined ? { cron: values.cron } : {}),
        ...(values.every !== undefined ? { every: values.every } : {}),
        ...(values.mode !== undefined ? { mode: values.mode } : {}),
        ...(values.overlap !== undefined ? { overlap: values.overlap } : {}),
        ...(values.paused ? { paused: true } : {}),
        ...(comment !== undefined ? { comment } : {}),
      };
      const d = await api('POST', '/api/schedules', auth(), body);
      return out(d, () => {
        console.log(`created schedule ${d.id}`);
        showOne(d);
      });
    }
    case 'list': {
      const { schedules: list } = await api('GET', '/api/schedules', auth());
      return out(list, () => {
        for (const s of list) {
          console.log(`${s.id.padEnd(24)} ${(s.paused ? 'paused' : 'active').padEnd(7)} ${s.mode.padEnd(8)} ${s.pipeline.padEnd(20)} ${timing(s).padEnd(22)} next ${s.paused ? '-' : (s.nextActionTimes[0] ?? '-')}`);
        }
        if (list.length === 0) console.log('no schedules yet: tempered schedules create --help');
      });
    }
    case 'show': {
      const d = await api('GET', `/api/schedules/${needId()}`, auth());
      return out(d, () => showOne(d));
    }
    case 'pause':
    case 'resume': {
      const d = await api('POST', `/api/schedules/${needId()}/${sub}`, auth(), comment !== undefined ? { comment } : {});
      return out(d, () => console.log(`${sub === 'pause' ? 'paused' : 'resumed'} ${d.id}${d.paused || sub === 'pause' ? '' : `; next: ${d.nextActionTimes[0] ?? '-'}`}`));
    }
    case 'trigger': {
      const r = await api('POST', `/api/schedules/${needId()}/trigger`, auth(), { ...(comment !== undefined ? { comment } : {}), ...(values.overlap ? { overlap: values.overlap } : {}) });
      return out(r, () => console.log(`triggered ${id}: one action starts now (tempered schedules show ${id})`));
    }
    case 'backfill': {
      if (!values.from || !values.to) throw new CliError('schedules backfill needs --from and --to (ISO 8601); see tempered schedules backfill --help');
      const r = await api('POST', `/api/schedules/${needId()}/backfill`, auth(), {
        from: values.from, to: values.to, ...(values.overlap ? { overlap: values.overlap } : {}), ...(comment !== undefined ? { comment } : {}),
      });
      return out(r, () => console.log(`backfilling ${id} from ${r.from} to ${r.to} (overlap ${r.overlap})`));
    }
    case 'delete': {
      const r = await api('DELETE', `/api/schedules/${needId()}${comment ? `?comment=${encodeURIComponent(comment)}` : ''}`, auth());
      return out(r, () => console.log(`deleted schedule ${id}`));
    }
  }
}

function printLogLine(l: Json): void {
  console.log(`${String(l.at).slice(11, 19)} ${String(l.stage).padEnd(8)} ${l.line}`);
}

/** Server-sent events of an API stream, parsed: `{type, data}` per event. */
async function* streamEvents(route: string, auth: string): AsyncGenerator<{ type: string; data: Json }> {
  const res = await fetch(`${loadConfig().api.url}${route}`, { headers: { authorization: `Bearer ${auth}` } });
  if (!res.ok || !res.body) throw new CliError(`${route}: HTTP ${res.status}`);
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const type = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (type && data) yield { type, data: JSON.parse(data) };
    }
  }
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      user: { type: 'string' },
      json: { type: 'boolean' },
      follow: { type: 'boolean' },
      comment: { type: 'string' },
      override: { type: 'boolean' },
      cron: { type: 'string' },
      every: { type: 'string' },
      mode: { type: 'string' },
      overlap: { type: 'string' },
      paused: { type: 'boolean' },
      from: { type: 'string' },
      to: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, arg] = positionals;
  if (command === 'schedules') return schedules(positionals.slice(1), values);
  if (values.help || !command) return void console.log(HELP);
  const out = (value: Json, human: () => void) => (values.json ? console.log(JSON.stringify(value, null, 2)) : human());
  const need = (what: string) => {
    if (!arg) throw new CliError(`${command} needs ${what}; see tempered --help`);
    return arg;
  };

  switch (command) {
    case 'run': {
      const file = path.resolve(need('a spec file'));
      if (!existsSync(file)) throw new CliError(`spec file ${file} not found`);
      const auth = token(values.user, 'operator');
      const started = await api('POST', '/api/runs', auth, { spec: readFileSync(file, 'utf8'), specDir: path.dirname(file) });
      if (!values.follow) return out(started, () => console.log(`started run ${started.runId}`));
      console.log(`started run ${started.runId} (${started.name}, as ${started.requestedBy})`);
      const detail = await follow(started.runId, auth, 'gate');
      if (values.json) return void console.log(JSON.stringify(detail, null, 2));
      if (detail.run.status === 'waiting-approval') printGateHelp(started.runId, detail);
      else {
        console.log(`\nrun ${started.runId} ended: ${detail.run.status}${detail.run.error ? `: ${detail.run.error}` : ''}`);
        process.exitCode = 1;
      }
      return;
    }
    case 'runs': {
      const { runs } = await api('GET', '/api/runs', token(values.user, 'operator'));
      return out(runs, () => {
        for (const r of runs) console.log(`${r.id.padEnd(40)} ${r.status.padEnd(17)} ${r.requested_by.padEnd(10)} ${r.created_at}`);
        if (runs.length === 0) console.log('no runs yet: tempered run examples/demo/pipeline.yaml --follow');
      });
    }
    case 'show': {
      const d = await api('GET', `/api/runs/${need('a run id')}`, token(values.user, 'operator'));
      return out(d, () => {
        console.log(`${d.run.id}  ${d.run.status}  (started by ${d.run.requested_by} at ${d.run.created_at})`);
        for (const name of STAGE_ORDER) {
          const s = d.stages.find((x: Json) => x.name === name);
          if (s) console.log(`  ${ICON[s.status] ?? '?'} ${name.padEnd(9)} ${s.status} (attempt ${s.attempts})${s.error ? `: ${s.error}` : formatSummary(s.summary)}`);
        }
        console.log(`artifacts:`);
        for (const a of d.artifacts) console.log(`  ${a.stage.padEnd(9)} ${a.kind.padEnd(13)} ${String(a.bytes).padStart(10)} B  ${a.sha256.slice(0, 12)}  ${a.uri}`);
        for (const a of d.approvals) console.log(`approval: ${a.decision} by ${a.approver ?? '(timer)'} at ${a.decided_at}${a.comment ? `: ${a.comment}` : ''}`);
        if (d.modelVersion) console.log(`model version: ${d.modelVersion.id} (${d.modelVersion.model_uri})`);
        if (d.deployment) console.log(`deployment: ${d.deployment.id} ${d.deployment.status} at ${d.deployment.endpoint}/v1/completions`);
      });
    }
    case 'logs': {
      const runId = need('a run id');
      const auth = token(values.user, 'operator');
      const { lines } = await api('GET', `/api/runs/${runId}/logs?limit=200`, auth);
      if (!values.follow) return out(lines, () => lines.forEach(printLogLine));
      lines.forEach(printLogLine);
      // Then live: the run's event stream, printing each batch of new lines as it arrives.
      for await (const event of streamEvents(`/api/runs/${runId}/events`, auth)) {
        if (event.type === 'logs') (event.data.lines as Json[]).forEach(printLogLine);
        if (event.type === 'run' && ['deployed', 'rolled-back', 'rejected', 'expired', 'failed', 'cancelled'].includes(event.data.run.status)) return;
      }
      return;
    }
    case 'models': {
      const { models } = await api('GET', '/api/models', token(values.user, 'operator'));
      return out(models, () => {
        for (const m of models) {
          const em = (m.metrics as Json)?.exactMatch;
          console.log(`${m.id.padEnd(32)} ${m.serving ? 'serving ' : '        '} exact match ${em === undefined ? '   -' : Number(em).toFixed(3)}  run ${m.run_id}  ${m.created_at}`);
        }
        if (models.length === 0) console.log('no model versions yet: approve a run at its gate');
      });
    }
    case 'base-models': {
      const { baseModels } = await api('GET', '/api/base-models', token(values.user, 'operator'));
      return out(baseModels, () => {
        for (const b of baseModels) {
          const versions = (b.fineTuned as Json[]).map((v) => `${v.name} v${v.version}`).join(', ') || 'none yet';
          console.log(`${b.name.padEnd(28)} ${b.architecture.padEnd(20)} ${`${(b.parameters / 1e6).toFixed(1)}M`.padStart(8)} params  ${b.license}  ${b.sha256.slice(0, 12)}`);
          console.log(`${''.padEnd(28)} source ${b.source}; fine-tuned: ${versions}`);
        }
        if (baseModels.length === 0) console.log('no base models registered: the bootstrap converts them and `npm start` registers them');
      });
    }
    case 'deployments': {
      if (arg === 'promote' || arg === 'abort') {
        const runId = positionals[2];
        if (!runId) throw new CliError(`deployments ${arg} needs a run id; see tempered --help`);
        const sent = await api('POST', `/api/runs/${runId}/canary`, token(values.user, 'approver'), { action: arg, comment: values.comment ?? '' });
        return out(sent, () => console.log(`${arg === 'promote' ? 'promotion' : 'abort'} sent to the canary of ${runId}`));
      }
      if (arg) throw new CliError(`unknown deployments subcommand "${arg}": promote RUN or abort RUN`);
      const { deployments } = await api('GET', '/api/deployments', token(values.user, 'operator'));
      return out(deployments, () => {
        for (const d of deployments) {
          const canary = d.canary ? `  canary step ${d.canary.step} at ${d.canary.weight}%${d.canary.health ? `, ${d.canary.health.requests} requests, ${d.canary.health.errors} errors` : ''}` : '';
          console.log(`${`${d.model_name} v${d.version}`.padEnd(28)} ${d.status.padEnd(11)} ${String(d.weight).padStart(3)}% of traffic  ${d.endpoint}${canary}`);
        }
        if (deployments.length === 0) console.log('nothing deployed yet');
      });
    }
    case 'status':
    case 'follow': {
      const auth = token(values.user, 'operator');
      const detail = await follow(need('a run id'), auth, 'gate');
      if (detail.run.status === 'waiting-approval') printGateHelp(arg!, detail);
      return;
    }
    case 'approve':
    case 'reject': {
      const runId = need('a run id');
      const auth = token(values.user, 'approver');
      const receipt = await api('POST', `/api/runs/${runId}/approval`, auth, { decision: command, comment: values.comment ?? '', ...(values.override ? { override: true } : {}) });
      if (values.json && command === 'reject') return void console.log(JSON.stringify(receipt));
      console.log(`${command === 'approve' ? (receipt.override ? 'approved by override' : 'approved') : 'rejected'} by ${receipt.approver} at ${receipt.decidedAt}`);
      if (command === 'reject') return;
      console.log('deploying…');
      const detail = await follow(runId, auth, 'end');
      if (values.json) return void console.log(JSON.stringify(detail, null, 2));
      if (detail.deployment) {
        const gateway = loadConfig().gateway.url;
        console.log(`\nModel ${detail.modelVersion.id} is serving (its server: ${detail.deployment.endpoint}). Ask it through the gateway:`);
        // The spec's own smoke prompt: a question this model was trained to answer, asked as a chat.
        const question = detail.run.spec?.deploy?.smokePrompt ?? 'Hello';
        const body = JSON.stringify({ model: detail.modelVersion.name, messages: [{ role: 'user', content: question }], max_tokens: 24 });
        console.log(`  curl -s ${gateway}/v1/chat/completions -H 'content-type: application/json' -d '${body.replace(/'/g, "'\\''")}'`);
      } else {
        console.log(`run ended ${detail.run.status}${detail.run.error ? `: ${detail.run.error}` : ''}`);
        process.exitCode = 1;
      }
      return;
    }
    default:
      throw new CliError(`unknown command "${command}"; see tempered --help`);
  }
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err instanceof CliError || (err as Error)?.name === 'TypeError' ? `error: ${(err as Error).message}` : err);
  process.exit(1);
});
