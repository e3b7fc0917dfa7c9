/**
 * What an operator does to one schedule, each with an optional comment for the audit log: pause or resume
 * it, trigger an action now, delete it (after a confirmation), or backfill a past window.
 */
import { backfillScheduleRequest, type ScheduleDetail, type ScheduleInfo } from '@tempered/api-contract';
import { useMutation } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { del, post } from '../../api';
import { ErrorBox } from '../../components/common';
import { CommentInput, describedBy, Field, issuesAt, unplaced, zodIssues, type Issue } from '../../components/form';
import { formatDate } from '../../format';

/** A `datetime-local` value (the reader's local time) as ISO 8601 in UTC; '' when it is not a time. */
function isoOf(local: string): string {
  const t = Date.parse(local);
  return Number.isFinite(t) ? new Date(t).toISOString() : '';
}

/** One action at a time: its name while it runs, and what it says once done. */
interface Action {
  what: 'pause' | 'resume' | 'trigger' | 'backfill' | 'delete';
  run: () => Promise<string>;
}

export function ScheduleActions({
  schedule,
  onChanged,
  onDeleted,
  onTriggered,
}: {
  schedule: ScheduleInfo;
  onChanged: (s: ScheduleInfo) => void;
  onDeleted: (id: string) => void;
  onTriggered: () => void;
}) {
  const uid = useId();
  const [comment, setComment] = useState('');
  const [range, setRange] = useState({ from: '', to: '' });
  const [backfillIssues, setBackfillIssues] = useState<Issue[]>([]);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const action = useMutation({ mutationFn: (a: Action) => a.run(), onSuccess: () => setComment('') });
  const busy = action.isPending ? action.variables.what : undefined;
  const error = action.error ?? undefined;
  const base = `/api/schedules/${encodeURIComponent(schedule.id)}`;
  const note = comment.trim() || undefined;
  const act = (what: Action['what'], run: Action['run']) => action.mutate({ what, run });

  const pauseOrResume = () =>
    act(schedule.paused ? 'resume' : 'pause', async () => {
      const d = await post<ScheduleDetail>(`${base}/${schedule.paused ? 'resume' : 'pause'}`, { comment: note });
      onChanged(d);
      return d.paused ? 'Paused: no actions until it is resumed.' : 'Resumed. Times missed while paused are not taken; backfill them if they matter.';
    });
  const trigger = () =>
    act('trigger', async () => {
      await post(`${base}/trigger`, { comment: note });
      onTriggered();
      return schedule.mode === 'run' ? 'Triggered: a run starts in a moment.' : 'Triggered: a check runs in a moment.';
    });
  const backfill = () => {
    const issues: Issue[] = [];
    if (!range.from) issues.push({ path: 'from', message: 'required' });
    if (!range.to) issues.push({ path: 'to', message: 'required' });
    const body = backfillScheduleRequest.safeParse({ from: isoOf(range.from), to: isoOf(range.to), comment: note });
    if (issues.length === 0 && !body.success) issues.push(...zodIssues(body.error));
    setBackfillIssues(issues);
    if (issues.length > 0 || !body.success) return;
    act('backfill', async () => {
      const r = await post<{ from: string; to: string }>(`${base}/backfill`, body.data);
      onTriggered();
      return `Backfilling ${formatDate(r.from)} – ${formatDate(r.to)}: the actions of that window start now.`;
    });
  };
  const remove = () =>
    act('delete', async () => {
      await del(`${base}${note ? `?comment=${encodeURIComponent(note)}` : ''}`);
      onDeleted(schedule.id);
      return 'Deleted.';
    });

  const allIssues = [...backfillIssues, ...(error?.issues ?? [])];
  const commentIssues = issuesAt(error?.issues ?? [], 'comment');

  return (
    <div className="schedule-actions" role="group" aria-label={`Manage schedule ${schedule.id}`}>
      <Field id={`${uid}-comment`} label="Comment (optional, recorded in the audit log with the action)" issues={commentIssues}>
        <CommentInput
          {...describedBy(`${uid}-comment`, commentIssues)}
          value={comment}
          onChange={setComment}
          placeholder="Why: a data outage, a release freeze, a missed night…"
          testId="schedule-comment"
        />
      </Field>
      <div className="buttons">
        <button type="button" onClick={pauseOrResume} disabled={busy !== undefined} data-testid={schedule.paused ? 'schedule-resume' : 'schedule-pause'}>
          {busy === 'pause' ? 'Pausing…' : busy === 'resume' ? 'Resuming…' : schedule.paused ? 'Resume' : 'Pause'}
        </button>
        <button
          type="button"
          onClick={trigger}
          disabled={busy !== undefined}
          data-testid="schedule-trigger"
          title={schedule.mode === 'run' ? 'Start a run now, paused or not' : 'Check the triggers now, paused or not'}
        >
          {busy === 'trigger' ? 'Triggering…' : 'Trigger now'}
        </button>
        {confirmDelete ? (
          <span className="confirm" role="group" aria-label="Confirm deletion">
            <span>Delete {schedule.id}? Runs it started go on.</span>
            <button type="button" className="danger" onClick={remove} disabled={busy !== undefined} autoFocus data-testid="schedule-delete-confirm">
              {busy === 'delete' ? 'Deleting…' : 'Yes, delete'}
            </button>
            <button type="button" onClick={() => setConfirmDelete(false)} disabled={busy !== undefined}>
              Keep it
            </button>
          </span>
        ) : (
          <button type="button" className="danger" onClick={() => setConfirmDelete(true)} disabled={busy !== undefined} data-testid="schedule-delete">
            Delete…
          </button>
        )}
      </div>
      <fieldset className="backfill">
        <legend>Backfill a past window (your local time)</legend>
        <div className="backfill-fields">
          {(['from', 'to'] as const).map((end) => {
            const issues = issuesAt(allIssues, end);
            return (
              <Field key={end} id={`${uid}-${end}`} label={end === 'from' ? 'From' : 'To'} issues={issues}>
                <input
                  type="datetime-local"
                  {...describedBy(`${uid}-${end}`, issues)}
                  value={range[end]}
                  onChange={(e) => {
                    setRange({ ...range, [end]: e.target.value });
                    setBackfillIssues([]);
                  }}
                  data-testid={`backfill-${end}`}
                />
              </Field>
            );
          })}
          <button type="button" onClick={backfill} disabled={busy !== undefined} data-testid="schedule-backfill">
            {busy === 'backfill' ? 'Backfilling…' : 'Backfill'}
          </button>
        </div>
        <p className="muted small">Takes now every action the schedule would have taken in the window, all at once.</p>
      </fieldset>
      {action.isSuccess && (
        <p className="callout ok" role="status" data-testid="schedule-action-done">
          {action.data}
        </p>
      )}
      {error && <ErrorBox error={unplaced(error, (i) => ['from', 'to', 'comment'].includes(i.path))} />}
    </div>
  );
}
