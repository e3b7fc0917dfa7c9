/**
 * The gateway's blocklist over a streamed answer (processing.ts StreamFilter): however the answer is cut into
 * pieces, the filtered pieces put together are exactly the blocklist's filter of the whole answer, and what is
 * held back is no more than a blocked entry could still be forming in; entries in scripts without spaces (Chinese,
 * Japanese) match as substrings, and the packaged lists of TEMPERED_BLOCKLIST_LANGUAGES stream the same way.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Blocklist } from '@tempered/gateway';

const blocklist = new Blocklist(['ass', 'bad word', 'Straße', 'x', '他妈的', 'アナル']);
const texts = [
  'a class act, not an ass',
  'ASS at the start and ass.',
  'a bad   word, a bad\nword and a badword',
  'the straße, STRASSE and straßen',
  'x marks x-ray and xx and 🦀x',
  'nothing here at all',
  '这个他妈的酒店，他妈的!他妈',
  'これはアナルでアナ ル',
  'bad',
  '',
];

/** A small deterministic generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

test('streamed pieces put together are the filter of the whole text, for any cut into pieces', () => {
  const random = rng(42);
  for (const text of texts) {
    const whole = blocklist.filter(text);
    for (let round = 0; round < 200; round++) {
      const f = blocklist.stream();
      let out = '';
      const chars = [...text];
      for (let i = 0; i < chars.length; ) {
        const n = 1 + Math.floor(random() * 5);
        out += f.push(chars.slice(i, i + n).join(''));
        i += n;
      }
      out += f.end();
      assert.equal(out, whole.text, `${JSON.stringify(text)} round ${round}`);
      assert.equal(f.flagged, whole.flagged);
    }
  }
});

test('the packaged Japanese and Chinese lists stream as they filter the whole answer', () => {
  const packaged = Blocklist.load([], undefined, ['en', 'ja', 'zh']);
  const answer = '服务员他妈的态度很差, what a load of bullshit, 牛乳はおいしい、アナルセックス';
  const whole = packaged.filter(answer);
  assert.equal(whole.text, '服务员[BLOCKED]态度很差, what a load of [BLOCKED], 牛乳はおいしい、[BLOCKED][BLOCKED]'); // アナル and セックス are two entries
  const random = rng(7);
  for (let round = 0; round < 100; round++) {
    const f = packaged.stream();
    const chars = [...answer];
    let out = '';
    for (let i = 0; i < chars.length; ) {
      const n = 1 + Math.floor(random() * 4);
      out += f.push(chars.slice(i, i + n).join(''));
      i += n;
    }
    assert.equal(out + f.end(), whole.text);
  }
});

test('the filter holds back only what a blocked entry could still be forming in', () => {
  const f = blocklist.stream();
  // "bad word" is the longest entry (8 code points): a piece is released once 9 more have followed it.
  assert.equal(f.push('hello there, my friend'), 'hello there, ');
  assert.equal(f.push(' how are you'), 'my friend ho');
  assert.equal(f.end(), 'w are you');
  const none = new Blocklist([]).stream();
  assert.equal(none.push('ass'), 'ass', 'without a blocklist nothing is held back');
});
