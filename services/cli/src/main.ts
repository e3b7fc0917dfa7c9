/**
 * `tempered`: the command line, a thin client of the HTTP API.
 *
 *   npm run tempered -- --help
 *
 * This file only dispatches. The parts, by role:
 *   args.ts       flags and positional arguments, CliError
 *   help.ts       the --help texts
 *   client.ts     the API: token, typed requests (api<T>()), server-sent event streams
 *   output.ts     --json or lines for people: stage lines, summaries, log lines
 *   wait.ts       waiting for a run (to its gate or its end) on its event stream, with live progress
 *   commands/     runs.ts (run, runs, show, logs, answers, follow, status), approvals.ts (approve, reject),
 *                 deployments.ts (deployments, canary promote/abort), models.ts (models, base-models),
 *                 evaluations.ts (eval, evaluations),
 *                 schedules.ts (schedules …), people.ts (users …, tokens …)
 */
import { CliError, parseCommandLine } from './args';
import { decide } from './commands/approvals';
import { deployments } from './commands/deployments';
import { evaluate, evaluations } from './commands/evaluations';
import { baseModels, models } from './commands/models';
import { answers, follow, logs, run, runs, show } from './commands/runs';
import { tokens, users } from './commands/people';
import { schedules } from './commands/schedules';
import { HELP } from './help';

/** Runs one command line; resolves to the exit code (a CliError thrown means exit 1). */
async function main(argv: string[]): Promise<number | void> {
  const inv = parseCommandLine(argv);
  const { command, flags } = inv;
  if (command === 'schedules') return schedules(inv.positionals.slice(1), flags);
  if (command === 'users') return users(inv.positionals.slice(1), flags);
  if (command === 'tokens') return tokens(inv.positionals.slice(1), flags);
  if (flags.help || !command) return void console.log(HELP);
  switch (command) {
    case 'run':
      return run(inv);
    case 'runs':
      return runs(inv);
    case 'show':
      return show(inv);
    case 'logs':
      return logs(inv);
    case 'answers':
      return answers(inv);
    case 'models':
      return models(inv);
    case 'base-models':
      return baseModels(inv);
    case 'eval':
      return evaluate(inv);
    case 'evaluations':
      return evaluations(inv);
    case 'deployments':
      return deployments(inv);
    case 'status':
    case 'follow':
      return follow(inv);
    case 'approve':
    case 'reject':
      return decide(inv, command);
    default:
      throw new CliError(`unknown command "${command}"; see tempered --help`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code) process.exitCode = code;
  },
  (err) => {
    console.error(err instanceof CliError || (err as Error)?.name === 'TypeError' ? `error: ${(err as Error).message}` : err);
    process.exit(1);
  },
);
