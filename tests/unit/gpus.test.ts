/** GPU slots: one activity per GPU, handed over in turn; a worker without GPUs runs everything on CPU. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GpuSlots } from '../../activities/src/gpus';

test('each holder gets its own GPU, and a waiting one gets the first GPU released', async () => {
  const slots = new GpuSlots(['0', '1']);
  const got: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const a = slots.with(async (g) => (got.push(`a:${g}`), held));
  const b = slots.with(async (g) => (got.push(`b:${g}`), held));
  const c = slots.with(async (g) => void got.push(`c:${g}`));
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ['a:0', 'b:1'], 'the third waits while both GPUs are held');
  release();
  await Promise.all([a, b, c]);
  assert.equal(got[2], 'c:0');
});

test('a worker without GPUs hands out none', async () => {
  assert.equal(await new GpuSlots([]).with(async (g) => g), undefined);
});

test('a failing holder still gives its GPU back', async () => {
  const slots = new GpuSlots(['3']);
  await assert.rejects(slots.with(async () => { throw new Error('trainer crashed'); }));
  assert.equal(await slots.with(async (g) => g), '3');
});
