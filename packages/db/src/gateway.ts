/**
 * The gateway's side of the metadata database: which model versions serve a model name and with what share of
 * its traffic (routes), and the preference pairs that people's feedback on served answers amounts to.
 *
 * `setRoutes` is the one way routes change: the deploy activity calls it with one version at weight 100, a
 * canary rollout with two versions and its current step's weights. Every change is announced on
 * ROUTES_CHANNEL, so running gateways reload at once instead of at their next poll. `sendAllTraffic` is the
 * end of every change of who serves a name (a deploy without canary, a canary's end, a rollback by hand).
 */
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { Database } from './schema';

type Db = Kysely<Database>;

/** The Postgres channel on which route changes are announced (payload: the model name). */
export const ROUTES_CHANNEL = 'tempered_routes';

export interface RouteInput {
  modelVersionId: string;
  /** Base URL of an OpenAI-compatible server that knows the version by its id (e.g. http://127.0.0.1:8090). */
  endpoint: string;
  /** Share of the model's traffic, relative to the other routes' weights; 0 keeps the version addressable by its id only. */
  weight: number;
}

export interface Route extends RouteInput {
  modelName: string;
  /** The version's number (model_versions.version): routes are ordered by it, oldest first. */
  version: number;
  updatedAt: Date;
}

export class RouteError extends Error {}

/**
 * Replaces every route of `modelName` with `routes`, in one transaction, and tells the gateways. An empty
 * list takes the model off the gateway. Each version must be a registered version of `modelName`.
 */
export async function setRoutes(db: Db, modelName: string, routes: RouteInput[]): Promise<void> {
  if (!modelName) throw new RouteError('setRoutes: modelName must be a non-empty string');
  const seen = new Set<string>();
  for (const [i, r] of routes.entries()) {
    if (!Number.isFinite(r.weight) || r.weight < 0) throw new RouteError(`setRoutes: routes[${i}].weight must be a number >= 0, got ${r.weight}`);
    if (seen.has(r.modelVersionId)) throw new RouteError(`setRoutes: ${r.modelVersionId} appears twice`);
    seen.add(r.modelVersionId);
    let url: URL;
    try {
      url = new URL(r.endpoint);
    } catch {
      throw new RouteError(`setRoutes: routes[${i}].endpoint is not a URL: ${r.endpoint}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RouteError(`setRoutes: routes[${i}].endpoint must be http(s): ${r.endpoint}`);
  }
  if (routes.length > 0 && routes.every((r) => r.weight === 0)) {
    throw new RouteError(`setRoutes: at least one route of ${modelName} needs a weight above 0`);
  }
  await db.transaction().execute(async (trx) => {
    if (routes.length > 0) {
      const versions = await trx
        .selectFrom('model_versions')
        .select(['id', 'name'])
        .where('id', 'in', routes.map((r) => r.modelVersionId))
        .execute();
      const nameOf = new Map(versions.map((v) => [v.id, v.name]));
      for (const r of routes) {
        const name = nameOf.get(r.modelVersionId);
        if (name === undefined) throw new RouteError(`setRoutes: no model version ${r.modelVersionId}`);
        if (name !== modelName) throw new RouteError(`setRoutes: ${r.modelVersionId} is a version of ${name}, not of ${modelName}`);
      }
    }
    await trx.deleteFrom('routes').where('model_name', '=', modelName).execute();
    if (routes.length > 0) {
      await trx
        .insertInto('routes')
        .values(routes.map((r) => ({ model_name: modelName, model_version_id: r.modelVersionId, endpoint: r.endpoint.replace(/\/+$/, ''), weight: r.weight })))
        .execute();
    }
    // Delivered when the transaction commits, so a gateway that hears it reads the new routes.
    await sql`select pg_notify(${ROUTES_CHANNEL}, ${modelName})`.execute(trx);
  });
}

export interface ServingTarget {
  deploymentId: string;
  modelVersionId: string;
  endpoint: string;
}

/**
 * All of `modelName`'s traffic to one deployment: the routes name it alone, it is `serving`, and every other
 * serving or canary deployment of the name becomes `othersStatus`. Returns those others: their model servers are
 * stopped by whoever runs them (the worker's activities at once; else the worker's model-server supervisor).
 */
export async function sendAllTraffic(
  db: Db,
  modelName: string,
  to: ServingTarget,
  othersStatus: 'stopped' | 'rolled-back',
): Promise<Array<{ id: string; model_version_id: string }>> {
  await setRoutes(db, modelName, [{ modelVersionId: to.modelVersionId, endpoint: to.endpoint, weight: 100 }]);
  await db.updateTable('deployments').set({ status: 'serving' }).where('id', '=', to.deploymentId).execute();
  return db
    .updateTable('deployments')
    .set({ status: othersStatus })
    .where('id', '!=', to.deploymentId)
    .where('status', 'in', ['serving', 'canary'])
    .where('model_version_id', 'in', (eb) => eb.selectFrom('model_versions').select('id').where('name', '=', modelName))
    .returning(['id', 'model_version_id'])
    .execute();
}

/** Every route (or one model's), by model name, then version number: newer versions come last. */
export async function listRoutes(db: Db, modelName?: string): Promise<Route[]> {
  let q = db
    .selectFrom('routes')
    .innerJoin('model_versions', 'model_versions.id', 'routes.model_version_id')
    .select(['routes.model_name', 'routes.model_version_id', 'routes.endpoint', 'routes.weight', 'routes.updated_at', 'model_versions.version']);
  if (modelName !== undefined) q = q.where('routes.model_name', '=', modelName);
  const rows = await q.orderBy('routes.model_name').orderBy('model_versions.version').orderBy('routes.model_version_id').execute();
  return rows.map((r) => ({
    modelName: r.model_name,
    modelVersionId: r.model_version_id,
    endpoint: r.endpoint,
    weight: Number(r.weight),
    version: r.version,
    updatedAt: r.updated_at,
  }));
}

export interface PreferencePair {
  prompt: string;
  chosen: string;
  rejected: string;
}

/**
 * Preference pairs (the `dpo` and `reward` trainers' `{prompt, chosen, rejected}`) from production feedback:
 *   - every pairwise judgement that is not a tie: the preferred response is chosen, the other rejected;
 *   - thumbs on the same prompt: each response rated up, against each response rated down (at most
 *     `maxPairsPerPrompt` of them per prompt, oldest feedback first). A request rated more than once counts with
 *     its latest rating; a text rated both up and down (on different requests) is left out, as is an up-rated
 *     response the blocklist had to filter.
 * Prompts are the gateway's normalized ones, so the same question asked twice matches; responses are the text
 * the client saw. Identical pairs appear once. `modelName` keeps feedback on that model's answers; `since` keeps feedback given at or after it.
 */
export async function feedbackPreferencePairs(
  db: Db,
  opts: { modelName?: string; since?: Date; maxPairsPerPrompt?: number } = {},
): Promise<PreferencePair[]> {
  const cap = opts.maxPairsPerPrompt ?? 16;
  let pairwise = db
    .selectFrom('feedback_pairwise')
    .select(['prompt', 'response_a', 'response_b', 'preferred'])
    .where('preferred', 'in', ['a', 'b']);
  if (opts.modelName !== undefined) pairwise = pairwise.where('model_name', '=', opts.modelName);
  if (opts.since !== undefined) pairwise = pairwise.where('created_at', '>=', opts.since);

  let ratings = db
    .selectFrom('feedback_ratings as f')
    .innerJoin('gateway_requests as g', 'g.id', 'f.request_id')
    .select(['f.request_id', 'f.rating', 'g.prompt', 'g.response', 'g.flagged'])
    .where('g.response', 'is not', null);
  if (opts.modelName !== undefined) ratings = ratings.where('g.model_name', '=', opts.modelName);
  if (opts.since !== undefined) ratings = ratings.where('f.created_at', '>=', opts.since);

  const [judged, rated] = await Promise.all([pairwise.orderBy('id').execute(), ratings.orderBy('f.id').execute()]);

  const out: PreferencePair[] = [];
  const seen = new Set<string>();
  const add = (p: PreferencePair) => {
    if (p.chosen === p.rejected) return;
    const key = JSON.stringify([p.prompt, p.chosen, p.rejected]);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(p);
  };

  for (const j of judged) {
    const [chosen, rejected] = j.preferred === 'a' ? [j.response_a, j.response_b] : [j.response_b, j.response_a];
    add({ prompt: j.prompt, chosen, rejected });
  }

  const latest = new Map<string, (typeof rated)[number]>();
  for (const r of rated) {
    latest.delete(r.request_id); // re-insert so that iteration order follows each request's latest rating
    latest.set(r.request_id, r);
  }
  const byPrompt = new Map<string, { up: Map<string, boolean>; down: Set<string> }>();
  for (const r of latest.values()) {
    const entry = byPrompt.get(r.prompt) ?? { up: new Map(), down: new Set() };
    byPrompt.set(r.prompt, entry);
    if (r.rating === 'up') entry.up.set(r.response!, (entry.up.get(r.response!) ?? false) || r.flagged);
    else entry.down.add(r.response!);
  }
  for (const [prompt, { up, down }] of byPrompt) {
    const chosen = [...up].filter(([text, flagged]) => !flagged && !down.has(text)).map(([text]) => text);
    const rejected = [...down].filter((text) => !up.has(text));
    let n = 0;
    for (const c of chosen) {
      for (const r of rejected) {
        if (n++ >= cap) break;
        add({ prompt, chosen: c, rejected: r });
      }
    }
  }
  return out;
}
