/** Sign-in, the caller, users and tokens (admin), and the audit log. */
import { can, createTokenRequest, createUserRequest, loginRequest, type Me, type Role } from '@tempered/api-contract';
import { audit, clearedSessionCookie, createUser, issueToken, sessionCookie } from '../auth';
import type { ApiDeps } from '../deps';
import { bodyOf, HttpError, ok, type Route } from '../http';

export const meOf = (user: string, role: Role): Me => ({
  username: user,
  role,
  can: { read: true, start: can(role, 'start'), label: can(role, 'label'), approve: can(role, 'approve'), admin: can(role, 'admin') },
});

/** Routes that need no caller: sign-in. */
export function publicRoutes({ db, auth }: ApiDeps): Route[] {
  return [
    {
      method: 'POST', path: /^\/api\/login$/, action: 'read', summary: 'Sign in with a password; sets the session cookie', request: loginRequest, response: 'LoginResponse',
      async handler({ req }) {
        const { username, password } = await bodyOf(req, loginRequest);
        const result = await auth.login(username, password);
        if (result === 'locked') throw new HttpError(429, `too many failed sign-ins for ${username}; wait 5 minutes or ask an admin`);
        if (!result) {
          await audit(db, { actor: username, action: 'login.failed', target: `user:${username}` });
          throw new HttpError(401, 'wrong username or password');
        }
        return {
          status: 200,
          body: { token: result.token, expiresAt: result.expiresAt.toISOString(), user: meOf(username, result.role) },
          headers: { 'set-cookie': sessionCookie(result.token, result.expiresAt) },
        };
      },
    },
  ];
}

export function peopleRoutes({ db, auth }: ApiDeps): Route[] {
  return [
    {
      method: 'POST', path: /^\/api\/logout$/, action: 'read', summary: 'Sign out: revokes the session', response: '{ok: true}',
      async handler({ req }) {
        await auth.logout(req);
        return { status: 200, body: { ok: true }, headers: { 'set-cookie': clearedSessionCookie } };
      },
    },
    {
      method: 'GET', path: /^\/api\/me$/, action: 'read', summary: 'The caller and what their role allows', response: 'Me',
      handler: async ({ who }) => ok(meOf(who.user, who.role)),
    },
    {
      method: 'GET', path: /^\/api\/users$/, action: 'admin', summary: 'Users (admin)', response: '{users}',
      handler: async () =>
        ok({ users: await db.selectFrom('users').select(['username', 'role', 'created_at', 'disabled_at']).orderBy('username').execute() }),
    },
    {
      method: 'POST', path: /^\/api\/users$/, action: 'admin', summary: 'Create a user (admin)', request: createUserRequest, response: '{username, role}',
      async handler({ req, who }) {
        const body = await bodyOf(req, createUserRequest);
        const exists = await db.selectFrom('users').select('username').where('username', '=', body.username).executeTakeFirst();
        if (exists) throw new HttpError(409, `username: ${body.username} exists`, { issues: [{ path: 'username', message: 'already taken' }] });
        await createUser(db, body.username, body.role, body.password);
        await audit(db, { actor: who.user, action: 'user.create', target: `user:${body.username}`, details: { role: body.role } });
        return ok({ username: body.username, role: body.role }, 201);
      },
    },
    {
      method: 'POST', path: /^\/api\/tokens$/, action: 'read', summary: "Create an API token for the caller (shown once)", request: createTokenRequest, response: '{token}',
      async handler({ req, who }) {
        const { name } = await bodyOf(req, createTokenRequest);
        const { token } = await issueToken(db, who.user, name, 'api');
        await audit(db, { actor: who.user, action: 'token.create', target: `user:${who.user}`, details: { name } });
        return ok({ token, name }, 201);
      },
    },
    {
      method: 'GET', path: /^\/api\/audit$/, action: 'read', summary: 'The audit log, newest first; ?target=run:<id> &limit=', response: '{entries: AuditEntry[]}',
      async handler({ url }) {
        const limit = Math.min(Number(url.searchParams.get('limit') ?? 100) || 100, 1000);
        let q = db.selectFrom('audit_log').selectAll();
        const target = url.searchParams.get('target');
        if (target) q = q.where('target', '=', target);
        return ok({ entries: await q.orderBy('id', 'desc').limit(limit).execute() });
      },
    },
  ];
}
