/**
 * The stages of a run as a strip of nodes (a column in a narrow window), each with its live status,
 * duration, attempts and error; selecting one shows its details. Statuses merge the database rows (attempts,
 * times) with the workflow's live progress, which is newer when both exist.
 */
import type { OptimizeResult, RunDetail, StageStatus } from '@tempered/api-contract';
import { between, formatDate, formatDuration } from '../format';
import { STAGES, STAGE_TITLES } from '../stages';
import { Fact, KeyValues, StageStatusBadge } from './common';
import { Optimized } from './Optimized';

export interface StageView {
  name: string;
  status: StageStatus;
  attempts: number;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  summary: Record<string, unknown> | null;
  /** What the stage waits for, when it waits for people. */
  waiting?: string;
}

export function stageViews(detail: RunDetail): StageView[] {
  const rows = new Map(detail.stages.map((s) => [s.name, s]));
  const names = [...STAGES, ...detail.stages.map((s) => s.name).filter((n) => !(STAGES as readonly string[]).includes(n))];
  return names.map((name) => {
    const row = rows.get(name);
    const live = detail.progress?.[name];
    // A run from before the optimize stage existed has no row for it; once it is past the gate, it skipped it.
    const never = name === 'optimize' && !row && !live && rows.has('deploy');
    const status = live?.status ?? row?.status ?? (never ? 'skipped' : 'pending');
    let waiting: string | undefined;
    if (status === 'running' && name === 'rlhf' && detail.run.status === 'waiting-labels') waiting = 'waiting for labels';
    if (status === 'running' && name === 'deploy' && detail.run.status === 'waiting-approval') waiting = 'waiting for approval';
    return {
      name,
      status,
      attempts: row?.attempts ?? (status === 'pending' ? 0 : 1),
      startedAt: live?.startedAt ?? row?.started_at ?? null,
      finishedAt: live?.finishedAt ?? row?.finished_at ?? null,
      error: live?.error ?? row?.error ?? null,
      summary: live?.summary ?? row?.summary ?? null,
      waiting,
    };
  });
}

const ICON: Record<StageStatus, string> = { pending: '○', running: '◐', completed: '✓', failed: '✕', skipped: '–', cancelled: '■' };

export function Pipeline({ stages, selected, onSelect, now }: { stages: StageView[]; selected?: string; onSelect: (name: string) => void; now: number }) {
  return (
    <ol className="pipeline" aria-label="Stages">
      {stages.map((s) => {
        const ms = between(s.startedAt, s.finishedAt, now);
        return (
          <li key={s.name} className="pipeline-item">
            <button
              type="button"
              className={`stage stage-${s.status}${s.waiting ? ' stage-waiting' : ''}${selected === s.name ? ' selected' : ''}`}
              data-testid={`stage-${s.name}`}
              data-status={s.status}
              aria-pressed={selected === s.name}
              aria-label={`${STAGE_TITLES[s.name] ?? s.name}: ${s.waiting ?? s.status}${ms !== undefined ? `, ${formatDuration(ms)}` : ''}${s.attempts > 1 ? `, ${s.attempts} attempts` : ''}`}
              onClick={() => onSelect(s.name)}
              title={s.error ?? undefined}
            >
              <span className="stage-icon" aria-hidden="true">
                {ICON[s.status] ?? '?'}
              </span>
              <span className="stage-name">{STAGE_TITLES[s.name] ?? s.name}</span>
              <span className="stage-meta">
                {s.waiting ?? (ms !== undefined ? formatDuration(ms) : s.status)}
                {s.attempts > 1 && <span className="attempts"> · {s.attempts} attempts</span>}
              </span>
              {s.error && <span className="stage-error">{s.error}</span>}
            </button>
          </li>
        );
      })}
    </ol>
  );
}

export function StageDetail({ stage, now }: { stage: StageView; now: number }) {
  const ms = between(stage.startedAt, stage.finishedAt, now);
  return (
    <div className="stage-detail" data-testid="stage-detail">
      <div className="stage-detail-head">
        <h3>{STAGE_TITLES[stage.name] ?? stage.name}</h3>
        <StageStatusBadge status={stage.status} />
        {stage.waiting && <span className="badge waiting">{stage.waiting}</span>}
      </div>
      <dl className="facts">
        <Fact term="started">{formatDate(stage.startedAt)}</Fact>
        <Fact term="finished">{formatDate(stage.finishedAt)}</Fact>
        <Fact term="duration">{ms !== undefined ? formatDuration(ms) : '—'}</Fact>
        <Fact term="attempts">{stage.attempts || '—'}</Fact>
      </dl>
      {stage.error && (
        <pre className="callout error stage-error-full" role="alert">
          {stage.error}
        </pre>
      )}
      {stage.name === 'optimize' && Array.isArray(stage.summary?.forms) ? (
        <Optimized result={stage.summary as unknown as OptimizeResult} />
      ) : (
        <KeyValues value={stage.summary} empty={stage.status === 'pending' ? 'Not started yet.' : 'No summary yet.'} />
      )}
    </div>
  );
}
