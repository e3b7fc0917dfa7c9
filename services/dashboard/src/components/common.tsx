/**
 * Small shared pieces: status badges, copy buttons, key/value lists, page and card headings, and the designed
 * loading and error states of a query.
 */
import { isTerminalRunStatus, RUN_STATUSES, type RunStatus, type StageStatus } from '@tempered/api-contract';
import type { UseQueryResult } from '@tanstack/react-query';
import { useState, type ReactNode } from 'react';
import { ApiFailure } from '../api';
import { formatNumber, humanize } from '../format';
import { Link } from '../router';

const RUN_STATUS_TEXT: Record<RunStatus, string> = {
  queued: 'queued',
  running: 'running',
  'waiting-labels': 'waiting for labels',
  'waiting-approval': 'waiting for approval',
  canary: 'canary rollout',
  deployed: 'deployed',
  'rolled-back': 'rolled back',
  rejected: 'rejected',
  expired: 'expired',
  failed: 'failed',
  cancelled: 'cancelled',
};
export { RUN_STATUSES };
export const runStatusText = (s: RunStatus) => RUN_STATUS_TEXT[s] ?? s;
/** Statuses after which nothing more happens to a run (the contract's terminal ones). */
export const isFinished = isTerminalRunStatus;

export function RunStatusBadge({ status }: { status: RunStatus }) {
  return (
    <span className={`badge run-${status}`} data-testid="run-status" data-status={status}>
      {runStatusText(status)}
    </span>
  );
}

export function StageStatusBadge({ status }: { status: StageStatus }) {
  return <span className={`badge stage-${status}`}>{status}</span>;
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Clipboard access needs a secure context; fall back to a hidden textarea.
      const area = document.createElement('textarea');
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand('copy');
      area.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1200);
  };
  return (
    <button type="button" className="icon-button" onClick={copy} aria-label={`${label}: ${text}`} title={copied ? 'Copied' : `${label} ${text}`}>
      {copied ? (
        '✓'
      ) : (
        <svg width="12" height="12" viewBox="0 0 16 16" aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="1.5">
          <rect x="5.5" y="5.5" width="8" height="8" rx="1.5" />
          <path d="M10.5 3.5v-1a1 1 0 0 0-1-1h-6a1 1 0 0 0-1 1v6a1 1 0 0 0 1 1h1" />
        </svg>
      )}
    </button>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted loading" role="status">
      Loading {what}…
    </p>
  );
}

export function ErrorBox({ error, retry }: { error: unknown; retry?: () => void }) {
  const message = error instanceof Error ? error.message : String(error);
  const status = error instanceof ApiFailure ? error.status : undefined;
  return (
    <div className="callout error" role="alert">
      <strong>{status === 404 ? 'Not found' : status === 403 ? 'Not allowed' : 'Something went wrong'}</strong>
      <span>{message}</span>
      {error instanceof ApiFailure && error.issues.length > 0 && (
        <ul>
          {error.issues.map((i) => (
            <li key={`${i.path}:${i.message}`}>
              <code>{i.path || '(root)'}</code>: {i.message}
            </li>
          ))}
        </ul>
      )}
      {retry && (
        <button type="button" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

/**
 * A query's designed states: its failure (with "Try again" unless `retry` is false), "Loading …", then
 * `children` with the data. With `stale`, a failed refresh keeps the data on screen under that warning.
 */
export function Loaded<T>({
  query,
  what,
  retry = true,
  stale,
  children,
}: {
  query: UseQueryResult<T, ApiFailure>;
  what: string;
  retry?: boolean;
  stale?: string;
  children: (data: T) => ReactNode;
}) {
  if (query.error && !(stale && query.data !== undefined)) return <ErrorBox error={query.error} retry={retry ? () => void query.refetch() : undefined} />;
  if (query.data === undefined) return <Loading what={what} />;
  return (
    <>
      {query.error && (
        <p className="error-text small" role="alert">
          {stale}: {query.error.message}
        </p>
      )}
      {children(query.data)}
    </>
  );
}

/** A flat or nested record as a definition list; nested objects indent, arrays of scalars join. */
export function KeyValues({ value, empty = 'Nothing recorded.' }: { value: Record<string, unknown> | null | undefined; empty?: string }) {
  const entries = Object.entries(value ?? {});
  if (entries.length === 0) return <p className="muted">{empty}</p>;
  return (
    <dl className="kv">
      {entries.map(([k, v]) => (
        <div key={k} className="kv-row">
          <dt title={k}>{humanize(k)}</dt>
          <dd>
            {v !== null && typeof v === 'object' && !Array.isArray(v) ? (
              <KeyValues value={v as Record<string, unknown>} empty="—" />
            ) : Array.isArray(v) ? (
              v.every((x) => x === null || typeof x !== 'object') ? (
                v.map(formatNumber).join(', ') || '—'
              ) : (
                <code className="json">{JSON.stringify(v)}</code>
              )
            ) : (
              formatNumber(v)
            )}
          </dd>
        </div>
      ))}
    </dl>
  );
}

export function ProgressBar({ value, max, label, testId }: { value: number; max: number; label: string; testId?: string }) {
  const pct = max > 0 ? Math.min(100, (value / max) * 100) : 0;
  return (
    <div className="progress" data-testid={testId}>
      <div
        className="progress-track"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={max}
        aria-valuenow={value}
        aria-valuetext={`${value} of ${max}`}
      >
        <div className="progress-fill" style={{ width: `${pct}%` }} />
      </div>
      <span className="progress-text">
        {value} / {max}
      </span>
    </div>
  );
}

export function Section({ title, actions, children, id, testId }: { title: ReactNode; actions?: ReactNode; children: ReactNode; id?: string; testId?: string }) {
  return (
    <section className="card" aria-labelledby={id ? `${id}-title` : undefined} data-testid={testId}>
      <header className="card-head">
        <h2 id={id ? `${id}-title` : undefined}>{title}</h2>
        {actions && <div className="card-actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}

/** One term of a `<dl className="facts">`. */
export function Fact({ term, children, className, title, testId }: { term: ReactNode; children: ReactNode; className?: string; title?: string; testId?: string }) {
  return (
    <div>
      <dt>{term}</dt>
      <dd className={className} title={title} data-testid={testId}>
        {children}
      </dd>
    </div>
  );
}

/** The head of a page under another (a run under Runs): the way back, the title, a line under it, actions. */
export function DetailHead({
  parent,
  title,
  sub,
  subClassName = 'muted small',
  actions,
}: {
  parent: { to: string; label: string };
  title: ReactNode;
  sub?: ReactNode;
  subClassName?: string;
  actions?: ReactNode;
}) {
  return (
    <div className="page-head">
      <div className="title-block">
        <div className="crumbs">
          <Link to={parent.to}>{parent.label}</Link> /
        </div>
        <h1>{title}</h1>
        {sub && <div className={subClassName}>{sub}</div>}
      </div>
      {actions}
    </div>
  );
}

export function Kbd({ children }: { children: ReactNode }) {
  return <kbd>{children}</kbd>;
}

const DEPLOYMENT_STATUS_CLASS: Record<string, string> = {
  serving: 'run-deployed',
  canary: 'run-canary',
  'rolled-back': 'run-rolled-back',
  stopped: '',
};

/** A deployment's status (serving, canary, stopped, rolled-back; anything else shown plain). */
export function DeploymentStatusBadge({ status }: { status: string }) {
  return (
    <span className={`badge ${DEPLOYMENT_STATUS_CLASS[status] ?? ''}`} data-testid="deployment-status" data-status={status}>
      {status === 'canary' ? 'canary rollout' : status === 'rolled-back' ? 'rolled back' : status}
    </span>
  );
}

/** A share in percent as a short bar with its number; the number is what assistive technology reads. */
export function ShareBar({ percent, label, testId }: { percent: number; label: string; testId?: string }) {
  const pct = Math.max(0, Math.min(100, percent));
  return (
    <span className="share" data-testid={testId} data-weight={percent} title={`${label}: ${percent}%`}>
      <span className="share-track" aria-hidden="true">
        <span className="share-fill" style={{ width: `${pct}%` }} />
      </span>
      <span className="share-text">
        <span className="sr-only">{label}: </span>
        {percent}%
      </span>
    </span>
  );
}
