/** Sign-in, the caller, users and tokens (admin), and the audit log. */
import {
  auditQuery, auditResponse, can, createTokenRequest, createTokenResponse, createUserRequest, createUserResponse, loginRequest, loginResponse, type Me, okResponse,
  type Role, usersResponse, me as meSchema,
} from '@tempered/api-contract';
import type { FastifyInstance } from 'fastify';
import { audit, clearedSessionCookie, createUser, issueToken, sessionCookie } from '../auth';
import type { ApiDeps } from '../deps';
import { HttpError, route } from '../http';

export const meOf = (user: string, role: Role): Me => ({
  username: user,
  role,
  can: { read: true, start: can(role, 'start'), label: can(role, 'label'), approve: can(role, 'approve'), admin: can(role, 'admin') },
});

/** Routes that need no caller: sign-in. */
export function publicRoutes(app: FastifyInstance, { db, auth }: ApiDeps): void {
  route(app, {
    method: 'POST', url: '/api/login', action: 'read', public: true, summary: 'Sign in with a password; sets the session cookie',
    body: loginRequest, response: { 200: loginResponse },
    async handler({ reply, body: { username, password } }) {
      const result = await auth.login(username, password);
      if (result === 'locked') throw new HttpError(429, `too many failed sign-ins for ${username}; wait 5 minutes or ask an admin`);
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
  route(app, {
    method: 'POST', url: '/api/tokens', action: 'read', summary: 'Create an API token for the caller (shown once)', body: createTokenRequest, response: { 201: createTokenResponse },
    async handler({ reply, who, body: { name } }) {
      const { token } = await issueToken(db, who.user, name, 'api');
      await audit(db, { actor: who.user, action: 'token.create', target: `user:${who.user}`, details: { name } });
      reply.code(201);
      return { token, name };
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
