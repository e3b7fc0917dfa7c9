/**
 * Unit tests of the configuration (packages/config): the environment a Python child inherits carries no
 * platform secret, and the switches other modules used to read from process.env themselves are parsed here.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { childEnv, loadConfig } from '@tempered/config';

const SECRETS = {
  AWS_ACCESS_KEY_ID: 'key-id-secret',
  AWS_SECRET_ACCESS_KEY: 'secret-access-key',
  TEMPERED_API_TOKEN: 'api-token-secret',
  TEMPERED_GATEWAY_KEY: 'gateway-key-secret',
  DATABASE_URL: 'postgres://u:pw-secret@db/tempered',
};

describe("a trainer or model server's environment", () => {
  const cfg = loadConfig({ ...SECRETS, PATH: '/usr/bin:/bin', HOME: '/home/t', LANG: 'C.UTF-8', TEMPERED_NUM_THREADS: '3', OMP_NUM_THREADS: '3' });
  const env = childEnv(cfg, { CUDA_VISIBLE_DEVICES: '1' });

  test('holds no credential, whatever the parent holds', () => {
    for (const [name, value] of Object.entries(SECRETS)) {
      assert.equal(env[name], undefined, name);
      assert.ok(!Object.values(env).some((v) => v.includes(value)), `${name}'s value leaked`);
    }
  });

  test('keeps the system variables, the thread count and the extras, and sets the trainer up offline', () => {
    assert.deepEqual(env, {
      PATH: '/usr/bin:/bin',
      HOME: '/home/t',
      LANG: 'C.UTF-8',
      OMP_NUM_THREADS: '3',
      PYTHONPATH: cfg.trainerDir,
      PYTHONUNBUFFERED: '1',
      HF_HUB_OFFLINE: '1',
      TRANSFORMERS_OFFLINE: '1',
      PYTORCH_NVML_BASED_CUDA_CHECK: '1',
      TEMPERED_NUM_THREADS: '3',
      CUDA_VISIBLE_DEVICES: '1',
    });
  });
});

describe('switches parsed once', () => {
  test('parts given from outside are known by their settings', () => {
    assert.deepEqual(loadConfig({}).external, { temporal: false, postgres: false, s3: false });
    assert.deepEqual(loadConfig({ TEMPORAL_ADDRESS: 'temporal:7233', S3_ENDPOINT: 'aws' }).external, { temporal: true, postgres: false, s3: true });
  });

  test('the stage cache and the pre-started trainer are on unless switched off', () => {
    assert.equal(loadConfig({}).stageCache, true);
    assert.equal(loadConfig({}).trainer.prefork, true);
    assert.equal(loadConfig({ TEMPERED_STAGE_CACHE: 'off' }).stageCache, false);
    assert.equal(loadConfig({ TEMPERED_TRAINER_PREFORK: 'false' }).trainer.prefork, false);
  });

  test('a bad thread count is refused with the variable named', () => {
    assert.throws(() => loadConfig({ TEMPERED_NUM_THREADS: 'many' }), /TEMPERED_NUM_THREADS=many is not a whole number/);
    assert.equal(loadConfig({}).trainer.threads, undefined);
  });

  test('trainer slots come from TEMPERED_TRAINER_SLOTS, unset by default (the worker derives them), a bad count refused', () => {
    assert.equal(loadConfig({}).trainer.slots, undefined);
    assert.equal(loadConfig({ TEMPERED_TRAINER_SLOTS: '3' }).trainer.slots, 3);
    assert.throws(() => loadConfig({ TEMPERED_TRAINER_SLOTS: '1.5' }), /TEMPERED_TRAINER_SLOTS=1.5 is not a whole number/);
  });
});
