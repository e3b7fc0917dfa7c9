/**
 * Replays saved histories of lifecyclePipeline against the current workflow code: a change that breaks
 * determinism (reordered activities, a new timer in the middle) fails here before it can break runs in
 * flight. Histories come from the workflow tests (RECORD_HISTORIES=1) and from a real demo run.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { quietWorkerLogs, repoRoot } from '../support';

quietWorkerLogs();

const dir = path.join(repoRoot, 'tests', 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

test('saved histories exist', () => assert.ok(files.length > 0, `no histories in ${dir}`));

for (const file of files) {
  test(`replays ${file} deterministically`, async () => {
    const history = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
    await Worker.runReplayHistory({ workflowsPath: require.resolve('@tempered/workflows/workflows'), replayName: file }, history);
  });
}
