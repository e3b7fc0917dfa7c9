/** `tempered users …` and `tempered tokens …`: thin shells over /api/users and /api/tokens. */
import type { Me, Role, UpdateUserRequest } from '@tempered/api-contract';
import { CliError, type Flags } from '../args';
import { api, token } from '../client';
import { TOKENS_HELP, USERS_HELP } from '../help';
import { out } from '../output';

const USERS_SUBCOMMANDS = ['list', 'create', 'role', 'disable', 'enable', 'unlock', 'password'];
const TOKENS_SUBCOMMANDS = ['list', 'create', 'revoke'];

/** Lines of stdin (passwords never go on the command line, which every local user can read). */
async function stdinLines(n: number, what: string): Promise<string[]> {
  if (process.stdin.isTTY) console.error(`${what} (${n === 1 ? 'one line' : `${n} lines`}), then Enter:`);
  let text = '';
  for await (const chunk of process.stdin) {
    text += chunk;
    if (text.split('\n').length > n) break;
  }
  const lines = text.split(/\r?\n/).slice(0, n);
  if (lines.length < n || lines.some((l) => l === '')) throw new CliError(`expected ${what} on stdin`);
  return lines;
}

type UserRow = { username: string; role: Role; disabled_at: string | null };

export async function users(args: string[], flags: Flags): Promise<void> {
  const [sub, name, role] = args;
  if (!sub || flags.help || !USERS_SUBCOMMANDS.includes(sub)) {
    if (sub && !flags.help && !USERS_SUBCOMMANDS.includes(sub)) throw new CliError(`unknown subcommand "users ${sub}"; see tempered users --help`);
    return void console.log(USERS_HELP);
  }
  const auth = token(flags.user, 'admin');
  if (sub === 'list') {
    const { users: list } = await api<{ users: UserRow[] }>('GET', '/api/users', auth);
    return out(flags, list, () => {
      for (const u of list) console.log(`${u.username.padEnd(24)} ${u.role.padEnd(9)} ${u.disabled_at ? `disabled ${u.disabled_at}` : 'enabled'}`);
    });
  }
  if (!name) throw new CliError(`users ${sub} needs a username; see tempered users --help`);
  const who = encodeURIComponent(name);
  const comment = flags.comment !== undefined ? { comment: flags.comment } : {};
  switch (sub) {
    case 'create': {
      if (!role) throw new CliError('users create needs a username and a role; see tempered users --help');
      const [password] = await stdinLines(1, `the password for ${name}`);
      const r = await api<{ username: string; role: Role }>('POST', '/api/users', auth, { username: name, role, password });
      return out(flags, r, () => console.log(`created ${r.username} (${r.role})`));
    }
    case 'role':
    case 'disable':
    case 'enable': {
      if (sub === 'role' && !role) throw new CliError('users role needs a username and a role; see tempered users --help');
      const body: UpdateUserRequest = sub === 'role' ? { role: role as Role, ...comment } : { disabled: sub === 'disable', ...comment };
      const u = await api<UserRow>('PATCH', `/api/users/${who}`, auth, body);
      return out(flags, u, () => console.log(`${u.username}: ${u.role}, ${u.disabled_at ? 'disabled' : 'enabled'}`));
    }
    case 'unlock': {
      const r = await api<{ username: string; unlocked: number }>('POST', `/api/users/${who}/unlock`, auth);
      return out(flags, r, () => console.log(`unlocked ${r.username} (${r.unlocked} locked client${r.unlocked === 1 ? '' : 's'} cleared)`));
    }
    case 'password': {
      const me = await api<Me>('GET', '/api/me', auth);
      const own = me.username === name;
      const lines = await stdinLines(own ? 2 : 1, own ? 'your current password, then the new one' : `the new password for ${name}`);
      const body = own ? { currentPassword: lines[0], password: lines[1] } : { password: lines[0] };
      const r = await api<{ username: string; sessionsRevoked: number }>('POST', `/api/users/${who}/password`, auth, body);
      return out(flags, r, () => console.log(`password of ${r.username} changed; ${r.sessionsRevoked} dashboard session(s) revoked`));
    }
  }
}

type TokenRow = { id: string; username: string; name: string; kind: string; created_at: string; expires_at: string | null; last_used_at: string | null };

export async function tokens(args: string[], flags: Flags): Promise<void> {
  const [sub, arg] = args;
  if (!sub || flags.help || !TOKENS_SUBCOMMANDS.includes(sub)) {
    if (sub && !flags.help && !TOKENS_SUBCOMMANDS.includes(sub)) throw new CliError(`unknown subcommand "tokens ${sub}"; see tempered tokens --help`);
    return void console.log(TOKENS_HELP);
  }
  const auth = token(flags.user, 'operator');
  switch (sub) {
    case 'list': {
      const { tokens: list } = await api<{ tokens: TokenRow[] }>('GET', `/api/tokens${flags.for ? `?user=${encodeURIComponent(flags.for)}` : ''}`, auth);
      return out(flags, list, () => {
        for (const t of list) console.log(`${t.id.padStart(6)}  ${t.kind.padEnd(7)} ${t.name.padEnd(24)} expires ${t.expires_at ?? 'never'}  last used ${t.last_used_at ?? 'never'}`);
        if (list.length === 0) console.log('no live tokens');
      });
    }
    case 'create': {
      if (!arg) throw new CliError('tokens create needs a name; see tempered tokens --help');
      const days = flags.days !== undefined ? Number(flags.days) : undefined;
      if (days !== undefined && !Number.isInteger(days)) throw new CliError(`--days ${flags.days} is not a whole number of days`);
      const r = await api<{ token: string; id: string; name: string; expiresAt: string }>('POST', '/api/tokens', auth, { name: arg, ...(days !== undefined ? { expiresInDays: days } : {}) });
      return out(flags, r, () => console.log(`${r.token}\n(token ${r.id} "${r.name}", expires ${r.expiresAt}; shown once: keep it in a secrets manager)`));
    }
    case 'revoke': {
      if (!arg) throw new CliError('tokens revoke needs a token id (tempered tokens list)');
      const r = await api<{ id: string; revoked: true }>('DELETE', `/api/tokens/${encodeURIComponent(arg)}`, auth);
      return out(flags, r, () => console.log(`revoked token ${r.id}`));
    }
  }
}
