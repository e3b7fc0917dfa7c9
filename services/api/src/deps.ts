/** What every route needs: configuration, the database, Temporal, the artifact store, auth and live events. */
import type { Client } from '@temporalio/client';
import type { ArtifactStore } from '@tempered/artifacts';
import type { Config } from '@tempered/config';
import type { Db } from '@tempered/db';
import type { Authenticator } from './auth';
import type { EventHub } from './events';

export interface ApiDeps {
  cfg: Config;
  db: Db;
  temporal: Client;
  store: ArtifactStore;
  auth: Authenticator;
  hub: EventHub;
}
