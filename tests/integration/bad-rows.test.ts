/**
 * One bad row never blocks, and bad client input is the client's 400, not the model version's error. On the
 * test stack's Postgres, with a gateway started here in front of a stand-in model server (a few lines of
 * node:http that count what reaches them and can answer text holding a NUL, as a tokenizer can decode one):
 *   - text Postgres refuses (NUL; a lone surrogate; jsonb's `\u0000` escape) is stored as U+FFFD by the one
 *     sanitizer every query goes through (@tempered/db's createDb), feedback and served answers included;
 *   - a request record the database refuses on its own is set aside and counted, the rest of its batch is
 *     written; while the database is down, records wait as before;
 *   - temperature 1e-320, a lone surrogate, JSON nested 10,000 deep: 400 naming the field, nothing sent
 *     upstream, nothing recorded against the version (what the canary's health reads).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createDb, pgSafeText, setRoutes } from '@tempered/db';
import { createGateway, type Gateway, GatewayMetrics, MAX_JSON_DEPTH, RequestLog, type RequestRecord } from '@tempered/gateway';
import { cfg, db, freePort, uniqueId } from '../support';

/** The value of an unlabelled series in Prometheus text. */
async function counter(metrics: GatewayMetrics, name: string): Promise<number> {
  const line = (await metrics.render()).split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

function record(id: string, over: Partial<RequestRecord> = {}): RequestRecord {
  return { id, model_name: 'bad-rows', model_version_id: 'bad-rows-v1', kind: 'completion', prompt: 'p', response: 'r', status: 200, latency_ms: 1, flagged: false, error: null, ...over };
}

describe('one bad row never blocks', () => {
  const database = db();

  after(async () => {
    await database.destroy();
  });

  test('the Postgres boundary turns NUL, lone surrogates and the escapes jsonb refuses into U+FFFD, and nothing else', async () => {
    assert.equal(pgSafeText('a\u0000b'), 'a\uFFFDb');
    assert.equal(pgSafeText('x\uD800y\uDC00'), 'x\uFFFDy\uFFFD');
    assert.equal(pgSafeText('ok \u{1F600}'), 'ok \u{1F600}'); // a surrogate pair is one character, kept
    // JSON text (bound for jsonb): the escapes become \ufffd; an escaped backslash before "u0000" is text, kept.
    assert.equal(pgSafeText('{"a":"\\u0000","b":"\\\\u0000","c":"\\ud83d\\ude00","d":"\\udc00"}'), '{"a":"\\ufffd","b":"\\\\u0000","c":"\\ud83d\\ude00","d":"\\ufffd"}');
    assert.equal(pgSafeText('printf("\\u0000")'), 'printf("\\u0000")'); // not JSON: a text that mentions the escape
    // Through the real database: a jsonb column and a text column, each written with what Postgres refuses.
    const key = uniqueId('bad-rows-cache');
    await database
      .insertInto('stage_cache')
      .values({ key, stage: 'test', result: JSON.stringify({ text: 'a\u0000b\uD800' }), material: null, run_id: key, hits: 0 })
      .execute();
    const row = await database.selectFrom('stage_cache').select('result').where('key', '=', key).executeTakeFirstOrThrow();
    assert.deepEqual(row.result, { text: 'a\uFFFDb\uFFFD' });
    await database.deleteFrom('stage_cache').where('key', '=', key).execute();
  });

  test('the request log sets aside the one record the database refuses, counts it, and writes the rest of its batch', async () => {
    const metrics = new GatewayMetrics();
    const log = new RequestLog(database, metrics, { intervalMs: 3_600_000, batchSize: 500, maxPending: 50_000 });
    const ids = [uniqueId('bad-rows-a'), uniqueId('bad-rows-poison'), uniqueId('bad-rows-b')];
    log.add(record(ids[0], { response: 'answer with a NUL \u0000 in it' })); // the sanitizer fixes this one
    log.add(record(ids[1], { status: 2 ** 40 })); // out of range for an integer column: nothing can fix it
    log.add(record(ids[2]));
    assert.equal(await log.flush(), true);
    const stored = await database.selectFrom('gateway_requests').select(['id', 'response']).where('id', 'in', ids).orderBy('id').execute();
    assert.deepEqual(
      stored.map((r) => r.id).sort(),
      [ids[0], ids[2]].sort(),
    );
    assert.equal(stored.find((r) => r.id === ids[0])!.response, 'answer with a NUL \uFFFD in it');
    assert.equal(await counter(metrics, 'tempered_gateway_request_log_rejected_total'), 1);
    assert.equal(await counter(metrics, 'tempered_gateway_request_log_pending'), 0);
    for (const id of ids) assert.equal(log.has(id), false, id);
    // Nothing is retried: the next record goes in alone.
    const next = uniqueId('bad-rows-next');
    log.add(record(next));
    assert.equal(await log.flush(), true);
    assert.ok(await database.selectFrom('gateway_requests').select('id').where('id', '=', next).executeTakeFirst());
    await log.drain();
    await database.deleteFrom('gateway_requests').where('id', 'in', [...ids, next]).execute();
  });

  test('while the database is unreachable, records wait for it: none is set aside', async () => {
    const down = createDb(`postgres://nobody:none@127.0.0.1:${await freePort()}/none`, 1);
    const metrics = new GatewayMetrics();
    const log = new RequestLog(down, metrics, { intervalMs: 3_600_000, batchSize: 500, maxPending: 50_000 });
    const id = uniqueId('bad-rows-wait');
    log.add(record(id));
    assert.equal(await log.flush(), false);
    assert.equal(log.has(id), true);
    assert.equal(await counter(metrics, 'tempered_gateway_request_log_rejected_total'), 0);
    assert.equal(await counter(metrics, 'tempered_gateway_request_log_pending'), 1);
    await log.drain(0);
    await down.destroy();
  });
});

describe('bad input at the gateway is a 400, and text Postgres refuses is stored', () => {
  const database = db();
  const name = uniqueId('bad-rows');
  const version = `${name}-v1`;
  /** What the stand-in model server received. */
  const received: Array<Record<string, unknown>> = [];
  let upstream: Server;
  let gateway: Gateway;
  let base: string;
  const started = new Date();

  before(async () => {
    upstream = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(text);
        received.push(body);
        const answer = String(body.prompt ?? '').includes('nul') ? 'a\u0000b' : 'ok';
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ choices: [{ index: 0, text: answer, message: { role: 'assistant', content: answer }, finish_reason: 'stop' }] }));
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    await database
      .insertInto('model_versions')
      .values({ id: version, name, version: 1, run_id: uniqueId('bad-rows-run'), model_uri: 's3://test/none', sha256: 'none', metrics: '{}' })
      .execute();
    await setRoutes(database, name, [{ modelVersionId: version, endpoint: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, weight: 100 }]);
    gateway = createGateway({ cfg: { ...cfg, gateway: { ...cfg.gateway, key: undefined } }, db: createDb(cfg.databaseUrl, 2) });
    await gateway.start();
    await gateway.app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(gateway.server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await gateway.app.close();
    await gateway.close();
    await setRoutes(database, name, []);
    upstream.close();
    await database.destroy();
  });

  async function post(path: string, body: unknown): Promise<{ status: number; body: any; id: string }> {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json(), id: res.headers.get('x-request-id')! };
  }

  test('an answer that decodes to NUL reaches the client as given, is recorded, and can be rated with a NUL in the comment', async () => {
    const served = await post('/v1/completions', { model: name, prompt: 'say nul' });
    assert.equal(served.status, 200, JSON.stringify(served.body));
    assert.equal(served.body.choices[0].text, 'a\u0000b'); // JSON escapes it: the client gets the model's text
    const rated = await post('/v1/feedback', { request_id: served.id, rating: 'down', comment: 'a NUL \u0000 here' });
    assert.equal(rated.status, 201, JSON.stringify(rated.body));
    const row = await database.selectFrom('gateway_requests').select('response').where('id', '=', served.id).executeTakeFirstOrThrow();
    assert.equal(row.response, 'a\uFFFDb');
    const rating = await database.selectFrom('feedback_ratings').select('comment').where('id', '=', rated.body.id).executeTakeFirstOrThrow();
    assert.equal(rating.comment, 'a NUL \uFFFD here');
    const pair = await post('/v1/feedback/pairwise', { prompt: 'say nul', response_a: 'a\u0000b', response_b: 'ok', preferred: 'b', request_ids: [served.id, null] });
    assert.equal(pair.status, 201, JSON.stringify(pair.body));
    const stored = await database.selectFrom('feedback_pairwise').select('response_a').where('id', '=', pair.body.id).executeTakeFirstOrThrow();
    assert.equal(stored.response_a, 'a\uFFFDb');
  });

  test('temperature 1e-320, a lone surrogate and JSON nested 10,000 deep get 400 naming the field; none reaches the model server or counts against it', async () => {
    const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    const cases: Array<[string, string, string, string | null, RegExp]> = [
      ['/v1/completions', `{"model":"${name}","prompt":"hi","temperature":1e-320}`, 'temperature', 'temperature', /^temperature: must be 0 \(greedy\) or a number from 0\.000001 to 2$/],
      ['/v1/completions', `{"model":"${name}","prompt":"hi","temperature":2.5}`, 'temperature 2.5', 'temperature', /^temperature: /],
      ['/v1/completions', `{"model":"${name}","prompt":"hi","temperature":1e400}`, 'temperature Infinity', 'temperature', /^temperature: /],
      ['/v1/chat/completions', `{"model":"${name}","messages":[{"role":"user","content":"hi"}],"top_p":-1}`, 'top_p', 'top_p', /^top_p: must be a number from 0 to 1$/],
      ['/v1/completions', `{"model":"${name}","prompt":"hi","max_tokens":1.5}`, 'max_tokens', 'max_tokens', /^max_tokens: must be a whole number from 1 to \d+$/],
      ['/v1/completions', `{"model":"${name}","prompt":"hi \\ud800"}`, 'lone surrogate', 'prompt', /^prompt: must be well-formed Unicode text/],
      ['/v1/chat/completions', `{"model":"${name}","messages":[{"role":"user","content":[{"type":"text","text":"\\udc00"}]}]}`, 'lone surrogate in a part', 'messages[0].content[0].text', /well-formed/],
      ['/v1/completions', `{"model":"${name}","prompt":"hi","logit_bias":${deep}}`, 'nested 10,000 deep', 'logit_bias', new RegExp(`^logit_bias: is nested deeper than ${MAX_JSON_DEPTH} levels`)],
      ['/v1/chat/completions', deep, 'a body nested 10,000 deep', null, new RegExp(`^the body is nested deeper than ${MAX_JSON_DEPTH} levels`)],
    ];
    const before = received.length;
    for (const [path, body, what, param, message] of cases) {
      const a = await post(path, body);
      assert.equal(a.status, 400, `${what}: ${JSON.stringify(a.body)}`);
      assert.equal(a.body.error.param, param, what);
      assert.equal(a.body.error.type, 'invalid_request_error', what);
      assert.match(a.body.error.message, message, what);
    }
    assert.equal(received.length, before, 'no refused request reached the model server');
    // What the canary's health reads (activities/src/canary.ts): errors are this version's 5xx records since then.
    await gateway.requestLog.drain(2000);
    const { errors } = await database
      .selectFrom('gateway_requests')
      .select((eb) => eb.fn.countAll<number>().as('errors'))
      .where('model_version_id', '=', version)
      .where('at', '>=', started)
      .where('status', '>=', 500)
      .executeTakeFirstOrThrow();
    assert.equal(Number(errors), 0);
    assert.doesNotMatch(await gateway.metrics.render(), new RegExp(`tempered_gateway_errors_total\\{[^}]*version="${version}"`));
  });

  test('the limits let through what OpenAI accepts: temperature 0, 1e-6 and 2, a nesting of 64, forwarded as given', async () => {
    const nested = `${'['.repeat(MAX_JSON_DEPTH - 1)}1${']'.repeat(MAX_JSON_DEPTH - 1)}`;
    for (const temperature of [0, 1e-6, 2]) {
      // A field the gateway does not know (a model server's own extension) goes upstream as given, nesting and all.
      const a = await post('/v1/completions', `{"model":"${name}","prompt":"hi","temperature":${temperature},"vendor_extension":${nested}}`);
      assert.equal(a.status, 200, `${temperature}: ${JSON.stringify(a.body)}`);
      assert.equal(received.at(-1)!.temperature, temperature);
    }
    const brackets = await post('/v1/completions', { model: name, prompt: `${'['.repeat(100)} in a string do not nest` });
    assert.equal(brackets.status, 200, JSON.stringify(brackets.body));
  });
});
