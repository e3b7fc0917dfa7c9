/** The command line: its flags, the positional arguments, and the error a command reports to the user. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A mistake the user can fix (a missing argument, an unreachable API, a refused request): printed as `error: …`, exit 1. */
export class CliError extends Error {}

const OPTIONS = {
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
  days: { type: 'string' },
  for: { type: 'string' },
  filter: { type: 'string' },
  reason: { type: 'string' },
  suite: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** Every flag of every command (see help.ts for which command reads which). */
export type Flags = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>>['values'];

/** What a command gets: `tempered <command> <arg> …` and the flags. */
export interface Invocation {
  command: string | undefined;
  arg: string | undefined;
  /** All positional arguments, the command first. */
  positionals: string[];
  flags: Flags;
}

export function parseCommandLine(argv: string[]): Invocation {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  const [command, arg] = positionals;
  return { command, arg, positionals, flags: values };
}

/** The command's first argument, or an error naming what it needs. */
export function need(inv: Invocation, what: string): string {
  if (!inv.arg) throw new CliError(`${inv.command} needs ${what}; see tempered --help`);
  return inv.arg;
}
