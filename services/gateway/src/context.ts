/**
 * What the routes share: the gateway's parts (config, database, route table, metrics, request log, blocklist)
 * and what a request carries from routing to its response (the version that served it, the record to log).
 */
import type { Config } from '@tempered/config';
import type { Db } from '@tempered/db';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayMetrics } from './metrics';
import type { Blocklist } from './processing';
import type { RequestLog, RequestRecord } from './request-log';
import type { RouteTable } from './routing';

export interface GatewayContext {
  cfg: Config;
  db: Db;
  routes: RouteTable;
  metrics: GatewayMetrics;
  requestLog: RequestLog;
  blocklist: Blocklist;
  /** Counts, records and logs a request once (app.ts); routes call it for a stream whose client went away. */
  settle: (req: FastifyRequest, reply: FastifyReply) => void;
}

/** A request's progress, filled in as it is routed and served. */
export interface Served {
  /** The path without query string or trailing slashes. */
  path: string;
  /** Set once the request is routed. */
  model?: string;
  version?: string;
  /** Set when the request reached the point of calling a model server: it is then recorded. */
  record?: Omit<RequestRecord, 'latency_ms' | 'status' | 'id'>;
  /**
   * The status to count and record when it is not the response's: a stream has sent its 200 before it can
   * fail. 502 when the model server broke the stream off (the model's failure), 499 when the client went away
   * (nginx's "client closed request": the client's doing, never counted against the model version).
   */
  status?: number;
  /** Set once the request was counted and recorded. */
  settled?: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    served: Served;
  }
}
