/**
 * Sign-in, the caller, users (admin: create, role, disable, unlock), passwords (admin, or one's own), API tokens
 * (one's own, or any for an admin: create with an expiry, list, revoke), and the audit log. Every change is
 * audited and takes effect at once in this process (the authenticator's cache forgets the user).
 */
import {
  auditQuery, auditResponse, can, changePasswordRequest, createTokenRequest, createTokenResponse, createUserRequest, createUserResponse, loginRequest, loginResponse,
  type Me, okResponse, passwordChangedResponse, revokedResponse, type Role, TOKEN_DAYS, tokenIdParam, tokensQuery, tokensResponse, unlockedResponse,
  updateUserRequest, usernameParam, userResponse, usersResponse, me as meSchema,
} from '@tempered/api-contract';
import { sql } from '@tempered/db';
import type { FastifyInstance } from 'fastify';
import { audit, clearedSessionCookie, createUser, hashPassword, issueToken, type Principal, sessionCookie, verifyPassword } from '../auth';
import type { ApiDeps } from '../deps';
import { HttpError, route } from '../http';

export const meOf = (user: string, role: Role): Me => ({
  username: user,
  role,
  can: { read: true, start: can(role, 'start'), label: can(role, 'label'), approve: can(role, 'approve'), use: can(role, 'use'), admin: can(role, 'admin') },
});

/** Routes that need no caller: sign-in. */
export function publicRoutes(app: FastifyInstance, { db, auth }: ApiDeps): void {
  route(app, {
    method: 'POST', url: '/api/login', action: 'read', public: true, summary: 'Sign in with a password; sets the session cookie',
    body: loginRequest, response: { 200: loginResponse },
    async handler({ req, reply, body: { username, password } }) {
      const result = await auth.login(username, password, req.ip);
      if (result === 'locked') throw new HttpError(429, `too many failed sign-ins for ${username} from this client; wait 5 minutes or ask an admin to unlock (tempered users unlock ${username})`);
      if (!result) {
        await audit(db, { actor: username, action: 'login.failed', target: `user:${username}` });
        throw new HttpError(401, 'wrong username or password');
      }
      reply.header('set-cookie', sessionCookie(result.token, result.expiresAt));
      return { token: result.token, expiresAt: result.expiresAt, user: meOf(username, result.role) };
    },
  });
}

export function peopleRoutes(app: FastifyInstance, { db, auth }: ApiDeps): void {
  route(app, {
    method: 'POST', url: '/api/logout', action: 'read', summary: 'Sign out: revokes the session', response: { 200: okResponse },
    async handler({ req, reply }) {
      await auth.logout(req.raw);
      reply.header('set-cookie', clearedSessionCookie);
      return { ok: true };
    },
  });
  route(app, {
    method: 'GET', url: '/api/me', action: 'read', summary: 'The caller and what their role allows', response: { 200: meSchema },
    handler: async ({ who }) => meOf(who.user, who.role),
  });
  route(app, {
    method: 'GET', url: '/api/users', action: 'admin', summary: 'Users (admin)', response: { 200: usersResponse },
    handler: async () => ({ users: await db.selectFrom('users').select(['username', 'role', 'created_at', 'disabled_at']).orderBy('username').execute() }),
  });
  route(app, {
    method: 'POST', url: '/api/users', action: 'admin', summary: 'Create a user (admin)', body: createUserRequest, response: { 201: createUserResponse },
    async handler({ reply, who, body }) {
      const exists = await db.selectFrom('users').select('username').where('username', '=', body.username).executeTakeFirst();
      if (exists) throw new HttpError(409, `username: ${body.username} exists`, { issues: [{ path: 'username', message: 'already taken' }] });
      await createUser(db, body.username, body.role, body.password);
      await audit(db, { actor: who.user, action: 'user.create', target: `user:${body.username}`, details: { role: body.role } });
      reply.code(201);
      return { username: body.username, role: body.role };
    },
  });
  /** The user row, or 404. */
  async function userNamed(username: string) {
    const user = await db.selectFrom('users').select(['username', 'role', 'disabled_at']).where('username', '=', username).executeTakeFirst();
    if (!user) throw new HttpError(404, `no user ${username}; GET /api/users lists them`);
    return user;
  }
  const isAdmin = (who: Principal) => can(who.role, 'admin');

  route(app, {
    method: 'PATCH', url: '/api/users/:username', action: 'admin', summary: "Change a user's role or disable (re-enable) them (admin)",
    params: usernameParam, body: updateUserRequest, response: { 200: userResponse },
    async handler({ who, params: { username }, body }) {
      const user = await userNamed(username);
      const losesAdmin = user.role === 'admin' && user.disabled_at === null && ((body.role !== undefined && body.role !== 'admin') || body.disabled === true);
      if (losesAdmin) {
        const { n } = await db.selectFrom('users').select(sql<string>`count(*)`.as('n')).where('role', '=', 'admin').where('disabled_at', 'is', null).executeTakeFirstOrThrow();
        if (Number(n) <= 1) throw new HttpError(409, `${username} is the last enabled admin; make another admin first`, { issues: [{ path: body.disabled === true ? 'disabled' : 'role', message: 'would leave no admin' }] });
      }
      const changes = {
        ...(body.role !== undefined ? { role: body.role } : {}),
        ...(body.disabled !== undefined ? { disabled_at: body.disabled ? (user.disabled_at ?? new Date()) : null } : {}),
      };
      const updated = await db.updateTable('users').set(changes).where('username', '=', username).returning(['username', 'role', 'disabled_at']).executeTakeFirstOrThrow();
      auth.forgetUser(username);
      if (body.role !== undefined && body.role !== user.role) {
        await audit(db, { actor: who.user, action: 'user.role', target: `user:${username}`, comment: body.comment, details: { from: user.role, to: body.role } });
      }
      if (body.disabled !== undefined && body.disabled !== (user.disabled_at !== null)) {
        await audit(db, { actor: who.user, action: body.disabled ? 'user.disable' : 'user.enable', target: `user:${username}`, comment: body.comment });
      }
      return { ...updated, role: updated.role as Role };
    },
  });
  route(app, {
    method: 'POST', url: '/api/users/:username/password', action: 'read',
    summary: "Set a user's password (admin; or one's own, with currentPassword); revokes their dashboard sessions",
    params: usernameParam, body: changePasswordRequest, response: { 200: passwordChangedResponse },
    async handler({ who, params: { username }, body }) {
      const self = who.user === username;
      if (!self && !isAdmin(who)) throw new HttpError(403, `${who.user} (${who.role}) may set only their own password; an admin may set others'`);
      await userNamed(username);
      if (self) {
        // A stolen session or token alone must not be enough to take the account over.
        const row = await db.selectFrom('users').select('password_hash').where('username', '=', username).executeTakeFirstOrThrow();
        if (body.currentPassword === undefined) throw new HttpError(400, 'currentPassword: required to change your own password', { issues: [{ path: 'currentPassword', message: 'required' }] });
        if (!(await verifyPassword(body.currentPassword, row.password_hash))) throw new HttpError(403, 'currentPassword: wrong password', { issues: [{ path: 'currentPassword', message: 'wrong password' }] });
      }
      await db.updateTable('users').set({ password_hash: await hashPassword(body.password) }).where('username', '=', username).execute();
      const revoked = await db.updateTable('api_tokens').set({ revoked_at: sql`now()` }).where('username', '=', username).where('kind', '=', 'session').where('revoked_at', 'is', null).executeTakeFirst();
      auth.forgetUser(username);
      const sessionsRevoked = Number(revoked.numUpdatedRows);
      await audit(db, { actor: who.user, action: 'user.password', target: `user:${username}`, details: { sessionsRevoked } });
      return { username, sessionsRevoked };
    },
  });
  route(app, {
    method: 'POST', url: '/api/users/:username/unlock', action: 'admin', summary: "Clear a user's sign-in lockout (admin)",
    params: usernameParam, response: { 200: unlockedResponse },
    async handler({ who, params: { username } }) {
      await userNamed(username);
      const unlocked = auth.unlock(username);
      await audit(db, { actor: who.user, action: 'user.unlock', target: `user:${username}`, details: { unlocked } });
      return { username, unlocked };
    },
  });
  route(app, {
    method: 'POST', url: '/api/tokens', action: 'read',
    summary: `Create an API token for the caller (shown once); expiresInDays: ${TOKEN_DAYS.default} by default, at most ${TOKEN_DAYS.maxDays}, or ${TOKEN_DAYS.fromSessionMaxDays} when signed in with a session`,
    body: createTokenRequest, response: { 201: createTokenResponse },
    async handler({ reply, who, body: { name, expiresInDays } }) {
      const max = who.via === 'session' ? TOKEN_DAYS.fromSessionMaxDays : TOKEN_DAYS.maxDays;
      if (expiresInDays !== undefined && expiresInDays > max) {
        throw new HttpError(400, `expiresInDays: at most ${max} for a token created from a dashboard session; create longer-lived ones with an API token`, {
          issues: [{ path: 'expiresInDays', message: `at most ${max}` }],
        });
      }
      const days = expiresInDays ?? Math.min(TOKEN_DAYS.default, max);
      const { token, id, expiresAt } = await issueToken(db, who.user, name, 'api', new Date(Date.now() + days * 86_400_000));
      await audit(db, { actor: who.user, action: 'token.create', target: `user:${who.user}`, details: { name, id, expiresAt: expiresAt!.toISOString(), via: who.via } });
      reply.code(201);
      return { token, id, name, expiresAt: expiresAt! };
    },
  });
  route(app, {
    method: 'GET', url: '/api/tokens', action: 'read', summary: "The caller's live tokens and sessions; ?user=<name> for another's (admin)",
    querystring: tokensQuery, response: { 200: tokensResponse },
    async handler({ who, query }) {
      const user = query.user ?? who.user;
      if (user !== who.user && !isAdmin(who)) throw new HttpError(403, `${who.user} (${who.role}) may list only their own tokens; an admin may list others'`);
      const rows = await db
        .selectFrom('api_tokens')
        .select(['id', 'username', 'name', 'kind', 'created_at', 'expires_at', 'last_used_at'])
        .where('username', '=', user)
        .where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', sql<Date>`now()`)]))
        .orderBy('id')
        .execute();
      return { tokens: rows.map((r) => ({ ...r, id: String(r.id), kind: r.kind as 'api' | 'session' })) };
    },
  });
  route(app, {
    method: 'DELETE', url: '/api/tokens/:id', action: 'read', summary: 'Revoke a token or session: one\'s own, or anyone\'s (admin); at once',
    params: tokenIdParam, response: { 200: revokedResponse },
    async handler({ who, params: { id } }) {
      const row = await db.selectFrom('api_tokens').select(['username', 'name', 'kind', 'revoked_at']).where('id', '=', Number(id)).executeTakeFirst();
      // Another user's token is as unknown as a missing one to a non-admin.
      if (!row || (row.username !== who.user && !isAdmin(who)) || row.revoked_at !== null) throw new HttpError(404, `no live token ${id} of yours; GET /api/tokens lists them`);
      await db.updateTable('api_tokens').set({ revoked_at: sql`now()` }).where('id', '=', Number(id)).execute();
      auth.forgetUser(row.username);
      await audit(db, { actor: who.user, action: 'token.revoke', target: `user:${row.username}`, details: { id, name: row.name, kind: row.kind } });
      return { id, revoked: true as const };
    },
  });
  route(app, {
    method: 'GET', url: '/api/audit', action: 'read', summary: 'The audit log, newest first; ?target=run:<id> &limit=', querystring: auditQuery, response: { 200: auditResponse },
    async handler({ query }) {
      let q = db.selectFrom('audit_log').selectAll();
      if (query.target) q = q.where('target', '=', query.target);
      return { entries: await q.orderBy('id', 'desc').limit(query.limit).execute() };
    },
  });
}
