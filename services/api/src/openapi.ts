/**
 * The OpenAPI description, generated from the route table: every route's method, path, summary, required
 * role and request schema (the contract's zod schemas, as JSON Schema). Response shapes are named after the
 * contract's TypeScript types (packages/api-contract).
 */
import { z } from 'zod';
import type { Action } from '@tempered/api-contract';
import { specJsonSchema } from '@tempered/spec';
import type { Route } from './http';

const ROLE_OF: Record<Action, string> = {
  read: 'any signed-in user',
  start: 'operator or admin',
  label: 'operator or admin',
  approve: 'approver or admin (not the run\'s requester)',
  admin: 'admin',
};

/** `/^\/api\/runs\/([A-Za-z0-9._-]{1,128})\/events$/` → `/api/runs/{id}/events`. */
function pathOf(re: RegExp): string {
  let n = 0;
  return re.source
    .replace(/^\^|\$$/g, '')
    .replace(/\([^)]*\)/g, () => (n++ === 0 ? '{id}' : `{p${n}}`))
    .replace(/\\\//g, '/');
}

export function openApi(routes: Route[], publicRoutes: Route[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of [...publicRoutes, ...routes]) {
    const p = pathOf(r.path);
    const isPublic = publicRoutes.includes(r);
    paths[p] ??= {};
    paths[p][r.method.toLowerCase()] = {
      summary: r.summary,
      description: isPublic ? 'No authentication.' : `Allowed: ${ROLE_OF[r.action]}.`,
      ...(p.includes('{id}') ? { parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }] } : {}),
      ...(r.request ? { requestBody: { required: true, content: { 'application/json': { schema: z.toJSONSchema(r.request, { io: 'input', unrepresentable: 'any' }) } } } } : {}),
      responses: {
        '200': { description: r.response ?? 'OK' },
        '400': { description: 'ApiError: the offending fields in `issues`' },
        ...(isPublic ? {} : { '401': { description: 'not signed in' }, '403': { description: 'role does not allow it' } }),
      },
      ...(isPublic ? { security: [] } : {}),
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Tempered API', version: '0.2.0', description: 'Runs, gates, labels, models and datasets of the Tempered platform.' },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer' },
        session: { type: 'apiKey', in: 'cookie', name: 'tempered_session' },
      },
      schemas: { PipelineSpec: specJsonSchema() },
    },
    security: [{ bearer: [] }, { session: [] }],
    paths,
  };
}
