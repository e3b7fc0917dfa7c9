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

test('a distributed job takes its GPUs all at once, in turn: a later small job does not overtake it', async () => {
  const slots = new GpuSlots(['0', '1', '2']);
  const got: string[] = [];
  let releaseA!: () => void;
  const a = slots.with(async (g) => (got.push(`a:${g}`), new Promise<void>((r) => (releaseA = r))));
  // b needs all three: it waits for a, holding none meanwhile (holding two would starve a job needing two more).
  const b = slots.withSeveral(3, async (g) => void got.push(`b:${g.join(',')}`));
  const c = slots.with(async (g) => void got.push(`c:${g}`));
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, ['a:0'], 'b waits for all three, and c waits behind b though two GPUs are free');
  releaseA();
  await Promise.all([a, b, c]);
  assert.deepEqual(got, ['a:0', 'b:1,2,0', 'c:1']);
});

test('more GPUs than the worker has is refused at once; a worker without GPUs hands a job of several none', async () => {
  await assert.rejects(new GpuSlots(['0', '1']).withSeveral(3, async () => 'ran'), /3 GPUs asked of a worker with 2/);
  assert.deepEqual(await new GpuSlots([]).withSeveral(4, async (g) => g), []);
});
