/**
 * One schedule in the list: its row (pipeline, mode, timing, state, next and recent actions, note) and, when
 * opened, the panel under it with the rest of its facts and, for those who may, its actions.
 */
import type { ScheduleAction, ScheduleInfo, ScheduleMode } from '@tempered/api-contract';
import { Fact } from '../../components/common';
import { formatAgo, formatDate } from '../../format';
import { Link, runPath } from '../../router';
import { MODE_TEXT, newestFirst, OVERLAP_TEXT, timingOf } from './describe';
import { ScheduleActions } from './ScheduleActions';

function ActionLink({ action, mode, now }: { action: ScheduleAction; mode: ScheduleMode; now: number }) {
  const when = formatAgo(action.takenAt, now);
  // In run mode the workflow an action starts is the run (its id is the run id); in trigger mode it is a check.
  return mode === 'run' ? (
    <Link to={runPath(action.workflowId)} title={`${action.workflowId}, ${formatDate(action.takenAt)}`}>
      {when}
    </Link>
  ) : (
    <span title={`check ${action.workflowId}, ${formatDate(action.takenAt)}`}>check {when}</span>
  );
}

export function ScheduleRows({
  schedule: s,
  now,
  open,
  onToggle,
  cannot,
  onChanged,
  onDeleted,
  onTriggered,
}: {
  schedule: ScheduleInfo;
  now: number;
  open: boolean;
  onToggle: () => void;
  /** Why the signed-in role may not change schedules; undefined when it may. */
  cannot: string | undefined;
  onChanged: (s: ScheduleInfo) => void;
  onDeleted: (id: string) => void;
  onTriggered: () => void;
}) {
  const panelId = `schedule-panel-${s.id}`;
  const recent = newestFirst(s.recentActions);
  const next = s.nextActionTimes[0];
  return (
    <>
      <tr data-schedule-id={s.id} data-paused={s.paused} className={open ? 'expanded' : undefined}>
        <td>
          <strong className="mono">{s.id}</strong>
          <div className="muted small ellipsis" title={`pipeline ${s.pipeline}`}>
            {s.pipeline}
          </div>
        </td>
        <td className="hide-narrow">
          <span className={`badge mode-${s.mode}`} data-testid="schedule-mode">
            {s.mode}
          </span>
        </td>
        <td>
          <code className="nowrap">{timingOf(s)}</code>
        </td>
        <td>
          {s.paused ? (
            <span className="badge run-waiting-approval" data-testid="schedule-state" data-state="paused">
              paused
            </span>
          ) : (
            <span className="badge run-deployed" data-testid="schedule-state" data-state="active">
              active
            </span>
          )}
        </td>
        <td className="nowrap" title={next ? formatDate(next) : undefined}>
          {s.paused ? <span className="muted">—</span> : next ? formatAgo(next, now) : '—'}
        </td>
        <td className="hide-narrow">
          {recent.length === 0 ? (
            <span className="muted">none yet</span>
          ) : (
            <ul className="plain compact-list">
              {recent.slice(0, 3).map((a) => (
                <li key={a.workflowId}>
                  <ActionLink action={a} mode={s.mode} now={now} />
                </li>
              ))}
            </ul>
          )}
        </td>
        <td className="hide-narrow note-cell">
          {s.note ? (
            <span className="small clamp" title={s.note}>
              {s.note}
            </span>
          ) : (
            <span className="muted">—</span>
          )}
        </td>
        <td className="num">
          <button type="button" onClick={onToggle} aria-expanded={open} aria-controls={panelId} data-testid="schedule-manage">
            {open ? 'Close' : cannot ? 'Details' : 'Manage'}
          </button>
        </td>
      </tr>
      {open && (
        <tr className="panel-row">
          <td colSpan={8} id={panelId}>
            <div className="schedule-panel" data-testid="schedule-panel">
              <dl className="facts">
                <Fact term="mode">{MODE_TEXT[s.mode]}</Fact>
                <Fact term="overlap" title={OVERLAP_TEXT[s.overlap]}>
                  {s.overlap} <span className="muted small">({OVERLAP_TEXT[s.overlap]})</span>
                </Fact>
                <Fact term="created by">{s.createdBy ?? '—'}</Fact>
                {s.comment && <Fact term="comment">{s.comment}</Fact>}
                {s.note && <Fact term="note">{s.note}</Fact>}
                <Fact term="next actions">{s.paused ? 'none while paused' : s.nextActionTimes.slice(0, 3).map(formatDate).join(' · ') || '—'}</Fact>
                <Fact term="recent actions">
                  {recent.length === 0
                    ? 'none yet'
                    : recent.map((a, i) => (
                        <span key={a.workflowId}>
                          {i > 0 && ' · '}
                          <ActionLink action={a} mode={s.mode} now={now} />
                        </span>
                      ))}
                </Fact>
              </dl>
              {cannot ? (
                <p className="muted small" data-testid="cannot-manage">
                  {cannot}
                </p>
              ) : (
                <ScheduleActions schedule={s} onChanged={onChanged} onDeleted={onDeleted} onTriggered={onTriggered} />
              )}
            </div>
          </td>
        </tr>
      )}
    </>
  );
}
