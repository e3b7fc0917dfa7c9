/**
 * The routing table: the `routes` rows held in memory, reloaded every second and at once when a writer
 * announces a change on ROUTES_CHANNEL (LISTEN/NOTIFY), so a request never waits for the database.
 *
 * A request names a model (routed by weight) or one version by its id (pinned). The split is sticky: the
 * client's key is hashed to a point u in [0, 1) and the versions, oldest first, take consecutive slices of
 * [0, 1) in proportion to their weights. The same key lands on the same version while weights are unchanged;
 * and because the newest version takes the last slice, raising a canary's weight only moves clients from the
 * old version to the new one, never back and forth.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { type Db, listRoutes, type Route, ROUTES_CHANNEL } from '@tempered/db';

export interface ModelRoutes {
  name: string;
  routes: Route[];
  /** Sum of the weights, > 0 for every model in the table. */
  total: number;
}

/** A key's point in [0, 1): the first 48 bits of sha256(model name, key). */
export function stickyPoint(modelName: string, clientKey: string): number {
  const digest = createHash('sha256').update(modelName).update('\0').update(clientKey).digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

/** The route whose slice of [0, 1) holds `u`. */
export function pickRoute(model: ModelRoutes, u: number): Route {
  let edge = 0;
  for (const r of model.routes) {
    edge += r.weight / model.total;
    if (r.weight > 0 && u < edge) return r;
  }
  // Rounding can leave u just above the last edge: the last version with weight takes it.
  return model.routes.filter((r) => r.weight > 0).at(-1)!;
}

export class RouteTable {
  private models = new Map<string, ModelRoutes>();
  private versions = new Map<string, Route>();
  private signature = '';
  private timer: NodeJS.Timeout | undefined;
  private listener: pg.Client | undefined;
  private reconnect: NodeJS.Timeout | undefined;
  private loading: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly databaseUrl: string,
    private readonly onChange: (table: RouteTable) => void = () => {},
    private readonly pollMs = 1000,
  ) {}

  /** Loads the table once (so the gateway starts with routes), then keeps it fresh. */
  async start(): Promise<void> {
    await this.reload();
    this.timer = setInterval(() => void this.reload().catch((e) => console.error(`routes: reload failed: ${(e as Error).message}`)), this.pollMs);
    this.timer.unref();
    await this.listen();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.reconnect);
    await this.listener?.end().catch(() => {});
  }

  /** Reads the routes; overlapping calls collapse into one more read after the current one. */
  reload(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      try {
        do {
          this.again = false;
          this.apply(await listRoutes(this.db));
        } while (this.again);
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  private apply(rows: Route[]): void {
    const signature = JSON.stringify(rows.map((r) => [r.modelName, r.modelVersionId, r.endpoint, r.weight]));
    if (signature === this.signature) return;
    const models = new Map<string, ModelRoutes>();
    const versions = new Map<string, Route>();
    for (const r of rows) {
      const m = models.get(r.modelName) ?? { name: r.modelName, routes: [], total: 0 };
      m.routes.push(r);
      m.total += r.weight;
      models.set(r.modelName, m);
      versions.set(r.modelVersionId, r);
    }
    for (const [name, m] of models) if (!(m.total > 0)) models.delete(name);
    this.models = models;
    this.versions = versions;
    this.signature = signature;
    console.log(`routes: ${rows.length ? rows.map((r) => `${r.modelName}→${r.modelVersionId}@${r.weight}`).join(', ') : 'none'}`);
    this.onChange(this);
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.databaseUrl });
    const retry = () => {
      if (this.closed || this.listener !== client) return;
      this.listener = undefined;
      client.end().catch(() => {});
      this.reconnect = setTimeout(() => void this.listen(), 1000);
      this.reconnect.unref();
    };
    this.listener = client;
    client.on('error', retry);
    client.on('end', retry);
    client.on('notification', () => void this.reload().catch(() => {}));
    try {
      await client.connect();
      await client.query(`LISTEN ${ROUTES_CHANNEL}`);
      // A change between the first load and LISTEN would otherwise wait for the next poll.
      await this.reload();
    } catch {
      retry();
    }
  }

  /** The model's routes by name, or the single route of a version id (pinned), or undefined. */
  resolve(model: string): { model: ModelRoutes; pinned?: Route } | undefined {
    const byName = this.models.get(model);
    if (byName) return { model: byName };
    const version = this.versions.get(model);
    if (version) return { model: { name: version.modelName, routes: [version], total: 1 }, pinned: version };
    return undefined;
  }

  pick(model: string, clientKey: string): Route | undefined {
    const found = this.resolve(model);
    if (!found) return undefined;
    return found.pinned ?? pickRoute(found.model, stickyPoint(found.model.name, clientKey));
  }

  modelNames(): string[] {
    return [...this.models.keys()].sort();
  }

  allModels(): ModelRoutes[] {
    return [...this.models.values()];
  }
}
