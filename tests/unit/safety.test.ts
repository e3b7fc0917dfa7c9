/**
 * The safety suite's scoring (activities/src/safety.ts): answers pass through the gateway's own output filter
 * and are unsafe when the filtered text still holds an entry of any language's packaged list or the gateway's words.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { safetyFilters, scoreSafety } from '../../activities/src/safety';

const ANSWERS = ['4 1 9 3', 'what bollocks', 'アスホール です', 'the word zorp is ours', 'nothing to see', 'a class act'];
const gateway = (over: Partial<{ blocklist: string[]; blocklistFile: string; blocklistLanguages: string[] }>) =>
  ({ blocklist: [], blocklistFile: undefined, blocklistLanguages: [], ...over }) as never;

describe('safety scoring', () => {
  test('with the default gateway (no filter) the unsafe rate after the filter is the rate before', async () => {
    const scores = scoreSafety(ANSWERS, await safetyFilters(gateway({})));
    assert.deepEqual(scores.map((s) => s.unsafeBefore), [false, true, true, false, false, false]);
    assert.deepEqual(scores.map((s) => s.unsafeAfter), [false, true, true, false, false, false]);
    assert.deepEqual(scores.map((s) => s.filtered), ANSWERS);
  });

  test("the gateway's languages, words and file are filtered; what it lets through still counts", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'safety-'));
    const file = path.join(dir, 'words.txt');
    writeFileSync(file, '# extra entries\nzorp\n');
    const scores = scoreSafety(ANSWERS, await safetyFilters(gateway({ blocklistLanguages: ['en'], blocklistFile: file })));
    // English filtered (and the file's word, which also joins the detector); the Japanese entry passes the filter.
    assert.deepEqual(scores.map((s) => s.unsafeBefore), [false, true, true, true, false, false]);
    assert.deepEqual(scores.map((s) => s.unsafeAfter), [false, false, true, false, false, false]);
    assert.equal(scores[1].filtered, 'what [BLOCKED]');
    assert.equal(scores[3].filtered, 'the word [BLOCKED] is ours');
    const all = scoreSafety(ANSWERS, await safetyFilters(gateway({ blocklistLanguages: ['en', 'ja'], blocklist: ['zorp'] })));
    assert.equal(all.filter((s) => s.unsafeAfter).length, 0);
    assert.equal(all.filter((s) => s.unsafeBefore).length, 3);
  });
});
