/**
 * Schedules: pipelines on a clock (a Temporal Schedule each). The list shows each one's mode, timing, paused
 * state, next and recent actions; operators create one from an example or checked YAML, and pause, resume,
 * trigger, backfill or delete it, each with a comment for the audit log. Schedules send no events of their
 * own: the list is fetched again when a run a schedule started changes, and after every change made here.
 */
import {
  backfillScheduleRequest,
  createScheduleRequest,
  SCHEDULE_OVERLAPS,
  type ExampleSpec,
  type ScheduleAction,
  type ScheduleDetail,
  type ScheduleInfo,
  type ScheduleMode,
  type ScheduleOverlap,
  type SchedulesResponse,
} from '@tempered/api-contract';
import { useEffect, useId, useMemo, useState, type ReactNode } from 'react';
import { ApiFailure, asFailure, del, post, useDebounced, useResource } from '../api';
import { ErrorBox, FieldIssues, Loading } from '../components/common';
import { ExamplePicker } from '../components/ExamplePicker';
import { SpecEditor } from '../components/SpecEditor';
import { formatAgo, formatDate, useNow } from '../format';
import { useRunChanges } from '../live';
import { Link, runPath, setSearch, useLocation } from '../router';
import { useMe, whyNot } from '../session';
import { checkSpec, locate, relativePathWarnings } from '../spec-check';

type Issue = { path: string; message: string };

const OVERLAP_TEXT: Record<ScheduleOverlap, string> = {
  SKIP: 'skip the new action',
  BUFFER_ONE: 'start it once the running one ends (one waits at most)',
  BUFFER_ALL: 'start each once the one before ends',
  CANCEL_OTHER: 'cancel the running one, then start',
  TERMINATE_OTHER: 'terminate the running one, then start',
  ALLOW_ALL: 'run both at once',
};

/** The issues that name `field` (the first segment of their path). */
const issuesAt = (issues: Issue[], field: string) => issues.filter((i) => (i.path.split('.')[0] || '') === field).map((i) => i.message);

/** A failure without the issues already shown at their fields, for the error box under a form. */
function unplaced(failure: ApiFailure, placed: (i: Issue) => boolean): ApiFailure {
  return new ApiFailure(failure.status, failure.message, failure.issues.filter((i) => !placed(i)));
}

/** The aria attributes that tie an input to its hint and its issues. */
function describedBy(id: string, issues: string[], hint?: boolean) {
  const ids = [hint ? `${id}-hint` : '', issues.length > 0 ? `${id}-issues` : ''].filter(Boolean).join(' ');
  return { id, 'aria-invalid': issues.length > 0 || undefined, 'aria-describedby': ids || undefined };
}

function Field({ id, label, hint, issues, children, className = '' }: { id: string; label: string; hint?: ReactNode; issues: string[]; children: ReactNode; className?: string }) {
  return (
    <div className={`field ${className}`}>
      <label htmlFor={id}>{label}</label>
      {children}
      {hint && (
        <span className="hint" id={`${id}-hint`}>
          {hint}
        </span>
      )}
      <FieldIssues id={`${id}-issues`} messages={issues} />
    </div>
  );
}

const timingOf = (s: Pick<ScheduleInfo, 'cron' | 'every'>) => (s.cron ? `cron ${s.cron}` : s.every ? `every ${s.every}` : '—');

export function SchedulesPage() {
  const me = useMe();
  const { search } = useLocation();
  const cannot = whyNot(me, 'start', 'manage schedules');
  const creating = search.get('new') === '1' && !cannot;
  const list = useResource<SchedulesResponse>('/api/schedules');
  const reloadSoon = useDebounced(list.reload, 500);
  // Temporal lists schedules from its visibility store, which lags a create by a moment: a schedule created
  // here is shown from the create's answer until the list has it.
  const [created, setCreated] = useState<ScheduleInfo[]>([]);
  const [open, setOpen] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const now = useNow(30_000);

  useRunChanges((e) => {
    if (e.type === 'resync') return reloadSoon();
    if (/^(schedule|trigger):/.test(e.run.requested_by)) reloadSoon();
  });

  const listed = list.data?.schedules;
  useEffect(() => {
    if (listed) setCreated((c) => (c.some((s) => listed.some((l) => l.id === s.id)) ? c.filter((s) => !listed.some((l) => l.id === s.id)) : c));
  }, [listed]);
  const rows = useMemo(() => {
    if (!listed) return undefined;
    const extra = created.filter((s) => !listed.some((l) => l.id === s.id));
    return [...listed, ...extra].sort((a, b) => a.id.localeCompare(b.id));
  }, [listed, created]);

  const replace = (info: ScheduleInfo) => {
    list.setData((old) => old && { schedules: old.schedules.map((s) => (s.id === info.id ? info : s)) });
    setCreated((c) => c.map((s) => (s.id === info.id ? info : s)));
  };
  const remove = (id: string) => {
    list.setData((old) => old && { schedules: old.schedules.filter((s) => s.id !== id) });
    setCreated((c) => c.filter((s) => s.id !== id));
    setOpen(undefined);
    setNotice(`Deleted schedule ${id}. Runs it started go on.`);
  };

  return (
    <main className="page">
      <div className="page-head">
        <h1>Schedules</h1>
        {cannot ? (
          <span className="muted small" data-testid="cannot-manage">
            {cannot}
          </span>
        ) : (
          !creating && (
            <button type="button" className="primary" onClick={() => setSearch({ new: '1' })} data-testid="new-schedule">
              New schedule
            </button>
          )
        )}
      </div>
      <p className="muted small intro">
        A pipeline on a clock. In <strong>run</strong> mode each action starts a run; in <strong>trigger</strong> mode each action checks the spec's{' '}
        <code>retrain.watch</code> / <code>retrain.feedback</code> and starts a run only when one passes its threshold.
      </p>
      {creating && (
        <ScheduleForm
          onCancel={() => setSearch({ new: undefined })}
          onCreated={(d) => {
            setCreated((c) => [...c.filter((s) => s.id !== d.id), d]);
            setSearch({ new: undefined });
            setNotice(`Created schedule ${d.id}${d.paused ? ' (paused)' : ''}.`);
          }}
        />
      )}
      {notice && (
        <p className="callout ok" role="status" data-testid="schedules-notice">
          {notice}
          <button type="button" className="link" onClick={() => setNotice(undefined)}>
            Dismiss
          </button>
        </p>
      )}
      {!rows ? (
        list.error ? (
          <ErrorBox error={list.error} retry={list.reload} />
        ) : (
          <Loading what="schedules" />
        )
      ) : (
        <>
          {list.error && (
            <p className="error-text small" role="alert">
              Could not refresh the list: {list.error.message}
            </p>
          )}
          {rows.length === 0 ? (
            <div className="empty" data-testid="schedules-empty">
              <p>
                No schedules yet.
                {!cannot && !creating && (
                  <>
                    {' '}
                    <button type="button" className="link" onClick={() => setSearch({ new: '1' })}>
                      Create one
                    </button>{' '}
                    from an example spec.
                  </>
                )}
              </p>
            </div>
          ) : (
            <div className="table-wrap">
              <table className="table schedules" data-testid="schedules-table">
                <thead>
                  <tr>
                    <th scope="col">schedule</th>
                    <th scope="col" className="hide-narrow">
                      mode
                    </th>
                    <th scope="col">timing</th>
                    <th scope="col">state</th>
                    <th scope="col">next action</th>
                    <th scope="col" className="hide-narrow">
                      recent actions
                    </th>
                    <th scope="col" className="hide-narrow">
                      note
                    </th>
                    <th scope="col">
                      <span className="sr-only">details and actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((s) => (
                    <ScheduleRows
                      key={s.id}
                      schedule={s}
                      now={now}
                      open={open === s.id}
                      onToggle={() => setOpen(open === s.id ? undefined : s.id)}
                      cannot={cannot}
                      onChanged={replace}
                      onDeleted={remove}
                      onTriggered={reloadSoon}
                    />
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </main>
  );
}

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

const newestFirst = (actions: ScheduleAction[]) => [...actions].sort((a, b) => b.takenAt.localeCompare(a.takenAt));

function ScheduleRows({
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
                <div>
                  <dt>mode</dt>
                  <dd>{s.mode === 'run' ? 'run: every action starts a run' : 'trigger: every action checks, and may start a run'}</dd>
                </div>
                <div>
                  <dt>overlap</dt>
                  <dd title={OVERLAP_TEXT[s.overlap]}>
                    {s.overlap} <span className="muted small">({OVERLAP_TEXT[s.overlap]})</span>
                  </dd>
                </div>
                <div>
                  <dt>created by</dt>
                  <dd>{s.createdBy ?? '—'}</dd>
                </div>
                {s.comment && (
                  <div>
                    <dt>comment</dt>
                    <dd>{s.comment}</dd>
                  </div>
                )}
                {s.note && (
                  <div>
                    <dt>note</dt>
                    <dd>{s.note}</dd>
                  </div>
                )}
                <div>
                  <dt>next actions</dt>
                  <dd>{s.paused ? 'none while paused' : s.nextActionTimes.slice(0, 3).map(formatDate).join(' · ') || '—'}</dd>
                </div>
                <div>
                  <dt>recent actions</dt>
                  <dd>
                    {recent.length === 0
                      ? 'none yet'
                      : recent.map((a, i) => (
                          <span key={a.workflowId}>
                            {i > 0 && ' · '}
                            <ActionLink action={a} mode={s.mode} now={now} />
                          </span>
                        ))}
                  </dd>
                </div>
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

/** A `datetime-local` value (the reader's local time) as ISO 8601 in UTC; '' when it is not a time. */
function isoOf(local: string): string {
  const t = Date.parse(local);
  return Number.isFinite(t) ? new Date(t).toISOString() : '';
}

function ScheduleActions({
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
  const [busy, setBusy] = useState<string>();
  const [error, setError] = useState<ApiFailure>();
  const [done, setDone] = useState<string>();
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [backfillIssues, setBackfillIssues] = useState<Issue[]>([]);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const base = `/api/schedules/${encodeURIComponent(schedule.id)}`;
  const note = comment.trim() || undefined;

  const act = async (what: string, run: () => Promise<string>) => {
    setBusy(what);
    setError(undefined);
    setDone(undefined);
    try {
      const message = await run();
      setDone(message);
      setComment('');
    } catch (err) {
      setError(asFailure(err));
    } finally {
      setBusy(undefined);
    }
  };

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
    if (!from) issues.push({ path: 'from', message: 'required' });
    if (!to) issues.push({ path: 'to', message: 'required' });
    const body = backfillScheduleRequest.safeParse({ from: isoOf(from), to: isoOf(to), comment: note });
    if (issues.length === 0 && !body.success) issues.push(...body.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })));
    setBackfillIssues(issues);
    if (issues.length > 0 || !body.success) return;
    void act('backfill', async () => {
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
  const fromIssues = issuesAt(allIssues, 'from');
  const toIssues = issuesAt(allIssues, 'to');

  return (
    <div className="schedule-actions" role="group" aria-label={`Manage schedule ${schedule.id}`}>
      <Field id={`${uid}-comment`} label="Comment (optional, recorded in the audit log with the action)" issues={issuesAt(error?.issues ?? [], 'comment')}>
        <textarea
          {...describedBy(`${uid}-comment`, issuesAt(error?.issues ?? [], 'comment'))}
          rows={2}
          maxLength={2000}
          value={comment}
          onChange={(e) => setComment(e.target.value)}
          placeholder="Why: a data outage, a release freeze, a missed night…"
          data-testid="schedule-comment"
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
          <Field id={`${uid}-from`} label="From" issues={fromIssues}>
            <input
              type="datetime-local"
              {...describedBy(`${uid}-from`, fromIssues)}
              value={from}
              onChange={(e) => {
                setFrom(e.target.value);
                setBackfillIssues([]);
              }}
              data-testid="backfill-from"
            />
          </Field>
          <Field id={`${uid}-to`} label="To" issues={toIssues}>
            <input
              type="datetime-local"
              {...describedBy(`${uid}-to`, toIssues)}
              value={to}
              onChange={(e) => {
                setTo(e.target.value);
                setBackfillIssues([]);
              }}
              data-testid="backfill-to"
            />
          </Field>
          <button type="button" onClick={backfill} disabled={busy !== undefined} data-testid="schedule-backfill">
            {busy === 'backfill' ? 'Backfilling…' : 'Backfill'}
          </button>
        </div>
        <p className="muted small">Takes now every action the schedule would have taken in the window, all at once.</p>
      </fieldset>
      {done && (
        <p className="callout ok" role="status" data-testid="schedule-action-done">
          {done}
        </p>
      )}
      {error && <ErrorBox error={unplaced(error, (i) => ['from', 'to', 'comment'].includes(i.path))} />}
    </div>
  );
}

type TimingChoice = 'every' | 'cron' | 'spec';
/** The fields of the create form that show their own issues, in the order a reader meets them. */
const FORM_FIELDS = ['id', 'example', 'mode', 'every', 'cron', 'overlap', 'comment'] as const;

function ScheduleForm({ onCreated, onCancel }: { onCreated: (d: ScheduleDetail) => void; onCancel: () => void }) {
  const uid = useId();
  const examples = useResource<{ examples: ExampleSpec[] }>('/api/examples');
  const [source, setSource] = useState<'example' | 'yaml'>('example');
  const [examplePath, setExamplePath] = useState<string>();
  const [text, setText] = useState('');
  const [id, setId] = useState('');
  const [mode, setMode] = useState<'' | ScheduleMode>('');
  const [timing, setTiming] = useState<TimingChoice>('every');
  const [every, setEvery] = useState('');
  const [cron, setCron] = useState('');
  const [overlap, setOverlap] = useState<ScheduleOverlap>('SKIP');
  const [paused, setPaused] = useState(false);
  const [comment, setComment] = useState('');
  const [attempted, setAttempted] = useState(false);
  const [failure, setFailure] = useState<{ error: ApiFailure; text: string }>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!examplePath && examples.data?.examples.length) setExamplePath(examples.data.examples[0].path);
  }, [examples.data, examplePath]);
  const example = examples.data?.examples.find((e) => e.path === examplePath);

  const shownText = source === 'example' ? (example?.yaml ?? '') : text;
  const check = useMemo(() => checkSpec(shownText), [shownText]);
  const warnings = useMemo(() => (source === 'yaml' && check.spec ? relativePathWarnings(text, check.spec) : []), [source, check.spec, text]);
  // The API names spec issues `spec.<field>`; on the text they were found in, they go to their lines.
  const serverIssues = failure?.error.issues ?? [];
  const specIssues =
    check.issues.length > 0
      ? check.issues
      : failure?.text === shownText
        ? locate(
            shownText,
            serverIssues.filter((i) => i.path === 'spec' || i.path.startsWith('spec.')).map((i) => ({ ...i, path: i.path.replace(/^spec\.?/, '') })),
          )
        : [];

  const body = {
    id: id.trim(),
    ...(source === 'example' ? { example: examplePath } : { spec: text }),
    ...(mode ? { mode } : {}),
    ...(timing === 'every' ? { every: every.trim() } : timing === 'cron' ? { cron: cron.trim() } : {}),
    overlap,
    paused,
    ...(comment.trim() ? { comment: comment.trim() } : {}),
  };
  const parsed = createScheduleRequest.safeParse(body);
  const clientIssues: Issue[] = parsed.success ? [] : parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
  // Issues of a field show once it has a value or a submit was tried, not while the form is still blank.
  const typed: Record<string, boolean> = { id: id !== '', every: every !== '', cron: cron !== '' };
  const shownClient = clientIssues.filter((i) => attempted || typed[i.path.split('.')[0]]);
  const at = (field: string) => [...issuesAt(shownClient, field), ...issuesAt(serverIssues, field)];

  // What the spec's own retrain section would give as timing, for the "from the spec" choice.
  const retrain = check.spec?.retrain;
  const effectiveMode: ScheduleMode = mode || (retrain?.watch || retrain?.feedback ? 'trigger' : 'run');
  const specTiming =
    effectiveMode === 'run'
      ? retrain?.schedule?.cron
        ? `cron ${retrain.schedule.cron}`
        : retrain?.schedule?.every
          ? `every ${retrain.schedule.every}`
          : undefined
      : retrain?.checkEvery
        ? `every ${retrain.checkEvery}`
        : undefined;

  const submit = async () => {
    setAttempted(true);
    if (busy) return;
    if (!parsed.success || !check.spec) {
      const first = FORM_FIELDS.find((f) => issuesAt(clientIssues, f).length > 0);
      document.getElementById(first ? `${uid}-${first}` : `${uid}-spec`)?.focus();
      return;
    }
    setBusy(true);
    setFailure(undefined);
    try {
      onCreated(await post<ScheduleDetail>('/api/schedules', parsed.data));
    } catch (err) {
      const error = asFailure(err);
      setFailure({ error, text: shownText });
      const first = FORM_FIELDS.find((f) => issuesAt(error.issues, f).length > 0);
      if (first) document.getElementById(`${uid}-${first}`)?.focus();
    } finally {
      setBusy(false);
    }
  };

  const placed = (i: Issue) => {
    const field = i.path.split('.')[0];
    return (FORM_FIELDS as readonly string[]).includes(field) || (field === 'spec' && failure?.text === shownText && i.path !== 'spec');
  };
  const specBlocked = check.issues.length > 0;

  return (
    <form
      className="card schedule-form"
      aria-labelledby={`${uid}-title`}
      data-testid="schedule-form"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <header className="card-head">
        <h2 id={`${uid}-title`}>New schedule</h2>
      </header>
      <div className="form-grid">
        <Field id={`${uid}-id`} label="Id" hint="lower-case letters, digits and dashes; runs it starts are named after it" issues={at('id')}>
          <input
            {...describedBy(`${uid}-id`, at('id'), true)}
            value={id}
            onChange={(e) => setId(e.target.value)}
            autoComplete="off"
            spellCheck={false}
            placeholder="nightly-retrain"
            required
            data-testid="schedule-id"
          />
        </Field>
        <Field
          id={`${uid}-mode`}
          label="Mode"
          hint={mode ? undefined : `automatic: ${effectiveMode}${check.spec ? (effectiveMode === 'trigger' ? ' (the spec watches data or feedback)' : ' (the spec has no retrain.watch or retrain.feedback)') : ''}`}
          issues={at('mode')}
        >
          <select {...describedBy(`${uid}-mode`, at('mode'), !mode)} value={mode} onChange={(e) => setMode(e.target.value as '' | ScheduleMode)} data-testid="schedule-mode-input">
            <option value="">automatic</option>
            <option value="run">run: every action starts a run</option>
            <option value="trigger">trigger: every action checks, and may start a run</option>
          </select>
        </Field>
        <Field id={`${uid}-timing`} label="Timing" issues={[]}>
          <select id={`${uid}-timing`} value={timing} onChange={(e) => setTiming(e.target.value as TimingChoice)} data-testid="schedule-timing">
            <option value="every">every (an interval)</option>
            <option value="cron">cron expression (UTC)</option>
            <option value="spec">from the spec's retrain section</option>
          </select>
        </Field>
        {timing === 'every' ? (
          <Field id={`${uid}-every`} label="Every" hint='such as "30m", "6h" or "1d"' issues={at('every')}>
            <input
              {...describedBy(`${uid}-every`, at('every'), true)}
              value={every}
              onChange={(e) => setEvery(e.target.value)}
              autoComplete="off"
              spellCheck={false}
              placeholder="6h"
              data-testid="schedule-every"
            />
          </Field>
        ) : timing === 'cron' ? (
          <Field id={`${uid}-cron`} label="Cron" hint='minute hour day-of-month month day-of-week, such as "0 3 * * *", or "@daily"' issues={at('cron')}>
            <input
              {...describedBy(`${uid}-cron`, at('cron'), true)}
              value={cron}
              onChange={(e) => setCron(e.target.value)}
              autoComplete="off"
              spellCheck={false}
              placeholder="0 3 * * *"
              className="mono"
              data-testid="schedule-cron"
            />
          </Field>
        ) : (
          <Field id={`${uid}-every`} label="From the spec" issues={[...at('every'), ...at('cron')]}>
            <output id={`${uid}-every`} tabIndex={-1} className={specTiming ? 'mono' : 'warn-text small'}>
              {specTiming ?? (effectiveMode === 'run' ? 'the spec has no retrain.schedule: choose every or cron' : 'the spec has no retrain section')}
            </output>
          </Field>
        )}
        <Field id={`${uid}-overlap`} label="If the previous action still runs" hint={OVERLAP_TEXT[overlap]} issues={at('overlap')}>
          <select {...describedBy(`${uid}-overlap`, at('overlap'), true)} value={overlap} onChange={(e) => setOverlap(e.target.value as ScheduleOverlap)} data-testid="schedule-overlap">
            {SCHEDULE_OVERLAPS.map((o) => (
              <option key={o} value={o}>
                {o}
              </option>
            ))}
          </select>
        </Field>
        <div className="field">
          <span className="field-label" aria-hidden="true">
            State
          </span>
          <label className="inline-check">
            <input type="checkbox" checked={paused} onChange={(e) => setPaused(e.target.checked)} data-testid="schedule-start-paused" /> start paused
          </label>
        </div>
      </div>

      <div className="spec-source">
        <div className="tabs" role="tablist" aria-label="Spec source">
          <button type="button" role="tab" aria-selected={source === 'example'} onClick={() => setSource('example')}>
            From an example
          </button>
          <button type="button" role="tab" aria-selected={source === 'yaml'} onClick={() => setSource('yaml')} data-testid="schedule-tab-yaml">
            Paste YAML
          </button>
        </div>
        <div role="tabpanel" id={`${uid}-spec`} tabIndex={-1}>
          {source === 'example' ? (
            examples.error ? (
              <ErrorBox error={examples.error} retry={examples.reload} />
            ) : !examples.data ? (
              <Loading what="examples" />
            ) : examples.data.examples.length === 0 ? (
              <p className="muted">No example specs on the server; paste one instead.</p>
            ) : (
              <>
                <ExamplePicker examples={examples.data.examples} value={examplePath} onChange={setExamplePath} name="schedule-example" />
                <FieldIssues id={`${uid}-example-issues`} messages={at('example')} />
                {example && (
                  <>
                    <p className="muted small">
                      Relative data paths resolve against the example's directory on the server.{' '}
                      <button
                        type="button"
                        className="link"
                        onClick={() => {
                          setText(example.yaml);
                          setSource('yaml');
                        }}
                      >
                        Copy to the YAML tab
                      </button>{' '}
                      to change it.
                    </p>
                    <SpecEditor value={example.yaml} issues={specIssues} readOnly label={`Spec ${example.path}`} onSubmit={submit} />
                  </>
                )}
              </>
            )
          ) : (
            <>
              <SpecEditor value={text} onChange={setText} issues={specIssues} label="Pipeline spec (YAML)" onSubmit={submit} />
              {warnings.length > 0 && (
                <ul className="warnings" data-testid="spec-warnings">
                  {warnings.map((w) => (
                    <li key={w.path}>
                      line {w.line} <code>{w.path}</code> {w.message}
                    </li>
                  ))}
                </ul>
              )}
            </>
          )}
        </div>
      </div>

      <Field id={`${uid}-comment`} label="Comment (optional, recorded in the audit log)" issues={at('comment')}>
        <textarea
          {...describedBy(`${uid}-comment`, at('comment'))}
          rows={2}
          maxLength={2000}
          value={comment}
          onChange={(e) => setComment(e.target.value)}
          placeholder="Why this pipeline runs on a clock"
          data-testid="schedule-create-comment"
        />
      </Field>
      {failure && <ErrorBox error={unplaced(failure.error, placed)} />}
      <div className="actions">
        <button type="submit" className="primary" disabled={busy || specBlocked} data-testid="create-schedule">
          {busy ? 'Creating…' : paused ? 'Create paused schedule' : 'Create schedule'}
        </button>
        <button type="button" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
        {specBlocked && !busy && (
          <span className="muted small">
            Fix {check.issues.length} spec issue{check.issues.length > 1 ? 's' : ''} first.
          </span>
        )}
      </div>
    </form>
  );
}
