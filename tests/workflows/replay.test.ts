/**
 * Replays every saved history in tests/histories against the current workflow code: a change that breaks
 * determinism (reordered activities, a new timer in the middle, a child where there was none) fails here before
 * it can break runs in flight. The histories are the branches that tests/workflows/record-histories.ts records
 * (`npm run record-histories`: approve, reject, expire, override, sweep, RL, label wait, cancel, stage failure,
 * canary promote, rollback and abort, retrain start and no start), the ones it kept from earlier workflow code,
 * and real runs saved by the end-to-end tests.
 *
 * A change to the workflow sources (workflows/src and whatever the worker bundles with them) also fails here
 * until the branches are recorded again, so the next change is checked against histories of this one.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { quietWorkerLogs } from '../support';
import { HISTORIES_DIR, historyFiles, MANIFEST_FILE, RECORD_COMMAND, readManifest, sourceChanges, type WorkflowCode, workflowCode } from './histories';

quietWorkerLogs();

describe('saved histories replay against the current workflow code', () => {
  const files = historyFiles();
  const manifest = readManifest();
  let code: WorkflowCode;

  before(async () => {
    code = await workflowCode();
  });

  test('the histories and their manifest exist, and every history the manifest lists is still there', () => {
    assert.ok(manifest, `${path.relative(process.cwd(), MANIFEST_FILE)} is missing: run ${RECORD_COMMAND}`);
    const listed = Object.keys(manifest.histories);
    assert.ok(listed.length > 0 && files.length > 0, `no histories in ${HISTORIES_DIR}`);
    const gone = listed.filter((f) => !existsSync(path.join(HISTORIES_DIR, f)));
    assert.deepEqual(gone, [], `histories were deleted; keep them (runs like them may be in flight) or, once none can be, remove them from ${path.basename(MANIFEST_FILE)} too`);
    const unlisted = files.filter((f) => !(f in manifest.histories));
    assert.deepEqual(unlisted, [], `histories not in the manifest: run ${RECORD_COMMAND}, which lists them (and keeps them)`);
  });

  test('the workflow sources are the ones the histories were recorded from', () => {
    assert.ok(manifest);
    const changes = sourceChanges(manifest.sources, code.sources);
    assert.equal(
      code.sha256,
      manifest.workflowSourcesSha256,
      `the workflow code changed since its branches were recorded (${changes.join(', ') || 'digest differs'}). ` +
        `If the replays below fail, an in-flight run would break: guard the new behaviour with patched() from @temporalio/workflow. ` +
        `Then run ${RECORD_COMMAND} against a running stack: it records every branch again and keeps the old histories, so runs in flight stay replayable.`,
    );
  });

  for (const file of files) {
    test(`replays ${file} deterministically`, async () => {
      const history = JSON.parse(readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
      await Worker.runReplayHistory({ workflowBundle: code.bundle, replayName: file }, history, manifest?.histories[file]?.workflowId);
    });
  }
});
