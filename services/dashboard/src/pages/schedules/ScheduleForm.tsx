/**
 * Creating a schedule: its id, mode, timing and overlap policy, paused or not, and its spec from an example or
 * pasted YAML (checked as it changes, each issue on its line). The request is checked in the browser with
 * the API's own schema, each problem shown at its field once it has a value or a submit was tried; problems
 * the API finds go to the same places.
 */
import { createScheduleRequest, SCHEDULE_OVERLAPS, type ScheduleDetail, type ScheduleMode, type ScheduleOverlap } from '@tempered/api-contract';
import { useMutation } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { post } from '../../api';
import { ErrorBox, Loaded } from '../../components/common';
import { ExamplePicker } from '../../components/ExamplePicker';
import { CommentInput, describedBy, Field, FieldIssues, issuesAt, TermInput, unplaced, zodIssues, type Issue } from '../../components/form';
import { SpecEditor, SpecWarnings } from '../../components/SpecEditor';
import { locate } from '../../spec-check';
import { useSpecDraft, type SpecSource } from '../../spec-draft';
import { automaticMode, MODE_TEXT, OVERLAP_TEXT, specTiming } from './describe';

type TimingChoice = 'every' | 'cron' | 'spec';
/** The fields of the create form that show their own issues, in the order a reader meets them. */
const FORM_FIELDS = ['id', 'example', 'mode', 'every', 'cron', 'overlap', 'comment'] as const;

export function ScheduleForm({ onCreated, onCancel }: { onCreated: (d: ScheduleDetail) => void; onCancel: () => void }) {
  const uid = useId();
  const [source, setSource] = useState<SpecSource>('example');
  const draft = useSpecDraft(source);
  const { example, examplePath, text, shownText, check } = draft;
  const [id, setId] = useState('');
  const [mode, setMode] = useState<'' | ScheduleMode>('');
  const [timing, setTiming] = useState<TimingChoice>('every');
  const [every, setEvery] = useState('');
  const [cron, setCron] = useState('');
  const [overlap, setOverlap] = useState<ScheduleOverlap>('SKIP');
  const [paused, setPaused] = useState(false);
  const [comment, setComment] = useState('');
  const [attempted, setAttempted] = useState(false);
  const create = useMutation({
    mutationFn: ({ body }: { body: unknown; text: string }) => post<ScheduleDetail>('/api/schedules', body),
    onSuccess: onCreated,
    onError: (error) => {
      const first = FORM_FIELDS.find((f) => issuesAt(error.issues, f).length > 0);
      if (first) document.getElementById(`${uid}-${first}`)?.focus();
    },
  });
  const busy = create.isPending;
  const failure = create.error ? { error: create.error, text: create.variables?.text } : undefined;

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
  const clientIssues: Issue[] = parsed.success ? [] : zodIssues(parsed.error);
  // Issues of a field show once it has a value or a submit was tried, not while the form is still blank.
  const typed: Record<string, boolean> = { id: id !== '', every: every !== '', cron: cron !== '' };
  const shownClient = clientIssues.filter((i) => attempted || typed[i.path.split('.')[0]]);
  const at = (field: string) => [...issuesAt(shownClient, field), ...issuesAt(serverIssues, field)];

  const effectiveMode: ScheduleMode = mode || automaticMode(check.spec);
  const fromSpec = specTiming(check.spec, effectiveMode);

  const submit = () => {
    setAttempted(true);
    if (busy) return;
    if (!parsed.success || !check.spec) {
      const first = FORM_FIELDS.find((f) => issuesAt(clientIssues, f).length > 0);
      document.getElementById(first ? `${uid}-${first}` : `${uid}-spec`)?.focus();
      return;
    }
    create.mutate({ body: parsed.data, text: shownText });
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
        submit();
      }}
    >
      <header className="card-head">
        <h2 id={`${uid}-title`}>New schedule</h2>
      </header>
      <div className="form-grid">
        <Field id={`${uid}-id`} label="Id" hint="lower-case letters, digits and dashes; runs it starts are named after it" issues={at('id')}>
          <TermInput {...describedBy(`${uid}-id`, at('id'), true)} value={id} onChange={setId} placeholder="nightly-retrain" required data-testid="schedule-id" />
        </Field>
        <Field
          id={`${uid}-mode`}
          label="Mode"
          hint={mode ? undefined : `automatic: ${effectiveMode}${check.spec ? (effectiveMode === 'trigger' ? ' (the spec watches data or feedback)' : ' (the spec has no retrain.watch or retrain.feedback)') : ''}`}
          issues={at('mode')}
        >
          <select {...describedBy(`${uid}-mode`, at('mode'), !mode)} value={mode} onChange={(e) => setMode(e.target.value as '' | ScheduleMode)} data-testid="schedule-mode-input">
            <option value="">automatic</option>
            <option value="run">{MODE_TEXT.run}</option>
            <option value="trigger">{MODE_TEXT.trigger}</option>
            <option value="eval">{MODE_TEXT.eval}</option>
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
            <TermInput {...describedBy(`${uid}-every`, at('every'), true)} value={every} onChange={setEvery} placeholder="6h" data-testid="schedule-every" />
          </Field>
        ) : timing === 'cron' ? (
          <Field id={`${uid}-cron`} label="Cron" hint='minute hour day-of-month month day-of-week, such as "0 3 * * *", or "@daily"' issues={at('cron')}>
            <TermInput {...describedBy(`${uid}-cron`, at('cron'), true)} value={cron} onChange={setCron} placeholder="0 3 * * *" className="mono" data-testid="schedule-cron" />
          </Field>
        ) : (
          <Field id={`${uid}-every`} label="From the spec" issues={[...at('every'), ...at('cron')]}>
            <output id={`${uid}-every`} tabIndex={-1} className={fromSpec ? 'mono' : 'warn-text small'}>
              {fromSpec ?? (effectiveMode === 'run' ? 'the spec has no retrain.schedule: choose every or cron' : 'the spec has no retrain section')}
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
            <Loaded query={draft.examples} what="examples">
              {({ examples }) =>
                examples.length === 0 ? (
                  <p className="muted">No example specs on the server; paste one instead.</p>
                ) : (
                  <>
                    <ExamplePicker examples={examples} value={examplePath} onChange={draft.setExamplePath} name="schedule-example" />
                    <FieldIssues id={`${uid}-example-issues`} messages={at('example')} />
                    {example && (
                      <>
                        <p className="muted small">
                          Relative data paths resolve against the example's directory on the server.{' '}
                          <button
                            type="button"
                            className="link"
                            onClick={() => {
                              draft.setText(example.yaml);
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
              }
            </Loaded>
          ) : (
            <>
              <SpecEditor value={text} onChange={draft.setText} issues={specIssues} label="Pipeline spec (YAML)" onSubmit={submit} />
              <SpecWarnings warnings={draft.warnings} />
            </>
          )}
        </div>
      </div>

      <Field id={`${uid}-comment`} label="Comment (optional, recorded in the audit log)" issues={at('comment')}>
        <CommentInput
          {...describedBy(`${uid}-comment`, at('comment'))}
          value={comment}
          onChange={setComment}
          placeholder="Why this pipeline runs on a clock"
          testId="schedule-create-comment"
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
