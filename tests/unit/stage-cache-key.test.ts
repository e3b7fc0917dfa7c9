/**
 * Unit tests of the stage cache's key (activities/src/cache.ts): one canonical text per value, whatever the
 * key order, so equal configurations always meet; any changed setting, input digest or code version is a
 * different key; and the switches that turn the cache off.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '@tempered/config';
import { canonicalJson, keyOf, stageCacheEnabled, STAGE_CODE_VERSIONS } from '../../activities/src/cache';

describe('the stage cache key', () => {
  const material = (over: Record<string, unknown> = {}) => ({
    format: 1,
    stage: 'clean',
    code: STAGE_CODE_VERSIONS.clean,
    config: { nfkc: true, maxChars: 4000, minChars: 1 },
    inputs: { dataset: 'a'.repeat(64) },
    ...over,
  });

  test('canonical JSON sorts keys at every level and drops undefined members', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { z: 0, y: undefined }], c: null } }), '{"a":{"c":null,"d":[1,{"z":0}]},"b":1}');
    assert.equal(canonicalJson({ x: 1, y: undefined }), canonicalJson({ x: 1 }));
    assert.throws(() => canonicalJson({ lr: Number.NaN }), /non-finite/);
  });

  test('equal material in any key order gives the same key; any change gives another', () => {
    const k = keyOf(material());
    assert.match(k, /^[0-9a-f]{64}$/);
    assert.equal(keyOf({ inputs: { dataset: 'a'.repeat(64) }, config: { minChars: 1, maxChars: 4000, nfkc: true }, code: STAGE_CODE_VERSIONS.clean, stage: 'clean', format: 1 }), k);
    const changed = [
      material({ config: { nfkc: false, maxChars: 4000, minChars: 1 } }),
      material({ inputs: { dataset: 'b'.repeat(64) } }),
      material({ code: STAGE_CODE_VERSIONS.clean + 1 }),
      material({ stage: 'split' }),
      material({ trainer: '0123456789abcdef' }),
    ];
    const keys = new Set([k, ...changed.map(keyOf)]);
    assert.equal(keys.size, changed.length + 1);
  });

  test('input order matters (sources, checkpoints are ordered lists)', () => {
    assert.notEqual(keyOf(material({ inputs: { sources: ['a', 'b'] } })), keyOf(material({ inputs: { sources: ['b', 'a'] } })));
  });
});

describe('turning the cache off', () => {
  const on = { cfg: loadConfig({}) };
  test('on by default; off by TEMPERED_STAGE_CACHE=off, by the deps, or by cache: false in the spec', () => {
    assert.equal(on.cfg.stageCache, true);
    assert.equal(stageCacheEnabled(on), true);
    assert.equal(stageCacheEnabled(on, { name: 'x' }), true);
    assert.equal(stageCacheEnabled(on, { cache: false }), false);
    assert.equal(stageCacheEnabled({ ...on, stageCache: false }), false);
    for (const v of ['off', 'OFF', '0', 'false', ' no ']) {
      assert.equal(stageCacheEnabled({ cfg: loadConfig({ TEMPERED_STAGE_CACHE: v }) }), false, v);
    }
    assert.equal(stageCacheEnabled({ cfg: loadConfig({ TEMPERED_STAGE_CACHE: 'on' }) }), true);
    assert.equal(stageCacheEnabled({ cfg: loadConfig({ TEMPERED_STAGE_CACHE: 'off' }), stageCache: true }), true, 'the deps win over the config');
    assert.equal(stageCacheEnabled({ ...on, stageCache: true }, { cache: false }), false, 'the spec wins');
  });
});
