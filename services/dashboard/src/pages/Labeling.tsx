/**
 * Pairwise preference labeling. The queue lists runs waiting for labels; a run's page shows one prompt with
 * two sampled responses side by side and takes A, B or Tie by button or key (1 / ← / A, 2 / → / B,
 * 3 / T; S skips one), then moves to the next pair by itself until the run has the labels it needs.
 */
import { labelRequest, type LabelingQueue, type LabelProgress, type NextPair, type PreferencePair } from '@tempered/api-contract';
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, ApiFailure, post, useDebounced, useResource } from '../api';
import { ErrorBox, Kbd, Loading, ProgressBar, Section } from '../components/common';
import { useRunChanges } from '../live';
import { Link, labelPath, runPath } from '../router';
import { useMe, whyNot } from '../session';

type Choice = 'a' | 'b' | 'tie';
const KEYS: Record<string, Choice> = { '1': 'a', ArrowLeft: 'a', a: 'a', A: 'a', '2': 'b', ArrowRight: 'b', b: 'b', B: 'b', '3': 'tie', t: 'tie', T: 'tie' };

export function LabelingQueuePage() {
  const me = useMe();
  const queue = useResource<LabelingQueue>('/api/labeling');
  const reloadSoon = useDebounced(queue.reload, 300);
  useRunChanges((e) => {
    if (e.type === 'resync') return reloadSoon();
    const listed = queue.data?.runs.some((r) => r.runId === e.run.id) ?? false;
    if (listed || e.run.status === 'waiting-labels') reloadSoon();
  });
  const cannot = whyNot(me, 'label');

  return (
    <main className="page">
      <div className="page-head">
        <h1>Labeling</h1>
        <span className="muted small">Runs whose RLHF stage waits for people to say which of two responses is better.</span>
      </div>
      {cannot && <p className="callout info">{cannot}</p>}
      {queue.error ? (
        <ErrorBox error={queue.error} retry={queue.reload} />
      ) : !queue.data ? (
        <Loading what="the labeling queue" />
      ) : queue.data.runs.length === 0 ? (
        <p className="muted empty" data-testid="labeling-empty">
          No run waits for labels. A run with <code>rlhf.source: labels</code> appears here once it has trained.
        </p>
      ) : (
        <ul className="queue" data-testid="labeling-queue">
          {queue.data.runs.map((r) => (
            <li key={r.runId} className="card queue-item">
              <div>
                <Link to={labelPath(r.runId)} className="run-name" data-testid="label-run">
                  {r.name}
                </Link>
                <div className="muted small mono">{r.runId}</div>
              </div>
              <ProgressBar value={r.labeled} max={r.required} label={`Labels for ${r.name}`} />
              <Link to={labelPath(r.runId)} className="button primary">
                {cannot ? 'View pairs' : 'Label'}
              </Link>
            </li>
          ))}
        </ul>
      )}
    </main>
  );
}

export function LabelPage({ runId }: { runId: string }) {
  const me = useMe();
  const cannot = whyNot(me, 'label');
  const [pair, setPair] = useState<PreferencePair | null>();
  const [progress, setProgress] = useState<LabelProgress>();
  const [error, setError] = useState<ApiFailure>();
  const [busy, setBusy] = useState(false);
  const [chosen, setChosen] = useState<Choice>();
  const [said, setSaid] = useState('');
  const busyRef = useRef(false);

  const next = useCallback(async (skip?: number) => {
    try {
      const r = await api<NextPair>(`/api/runs/${encodeURIComponent(runId)}/pairs/next${skip ? `?skip=${skip}` : ''}`);
      setPair(r.pair);
      setProgress(r.progress);
      setChosen(undefined);
      setError(undefined);
    } catch (err) {
      setError(err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));
    }
  }, [runId]);
  useEffect(() => {
    setPair(undefined);
    setProgress(undefined);
    void next();
  }, [next]);

  const done = progress !== undefined && progress.labeled >= progress.required;

  const label = useCallback(
    async (choice: Choice) => {
      if (!pair || busyRef.current || cannot || done) return;
      busyRef.current = true;
      setBusy(true);
      setChosen(choice);
      try {
        const r = await post<{ progress: LabelProgress }>(`/api/pairs/${pair.id}/label`, labelRequest.parse({ label: choice }));
        setProgress(r.progress);
        setSaid(`Pair ${pair.id} labeled ${choice === 'tie' ? 'a tie' : choice.toUpperCase()}. ${r.progress.labeled} of ${r.progress.required}.`);
        if (r.progress.labeled < r.progress.required) await next();
      } catch (err) {
        const failure = err instanceof ApiFailure ? err : new ApiFailure(0, String(err));
        // Someone else labeled it, or the run moved on: show the next pair rather than an error.
        if (failure.status === 409) await next();
        else setError(failure);
        setChosen(undefined);
      } finally {
        busyRef.current = false;
        setBusy(false);
      }
    },
    [pair, cannot, done, next],
  );

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target as HTMLElement;
      if (t.closest('input, textarea, select, [contenteditable]')) return;
      if ((e.key === 's' || e.key === 'S') && pair && !busyRef.current) {
        e.preventDefault();
        void next(pair.id);
        return;
      }
      const choice = KEYS[e.key];
      if (!choice) return;
      e.preventDefault();
      void label(choice);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [label, next, pair]);

  return (
    <main className="page label-page">
      <div className="page-head">
        <div className="title-block">
          <div className="crumbs">
            <Link to="/labeling">Labeling</Link> /
          </div>
          <h1>Which response is better?</h1>
          <div className="muted small">
            for run <Link to={runPath(runId)}>{runId}</Link>
          </div>
        </div>
      </div>
      {progress && <ProgressBar value={progress.labeled} max={progress.required} label="Labels" testId="label-progress" />}
      <p className="sr-only" aria-live="polite">
        {said}
      </p>
      {cannot && (
        <p className="callout info" data-testid="cannot-label">
          {cannot}
        </p>
      )}
      {error && <ErrorBox error={error} retry={() => void next()} />}
      {done ? (
        <div className="callout ok done" data-testid="labeling-done" role="status">
          <strong>Done: {progress.labeled} labels, the run continues.</strong>
          <span>RLHF trains on these preferences next; the run then goes through its tests to the deployment gate.</span>
          <Link to={runPath(runId)} className="button primary">
            Watch the run
          </Link>
        </div>
      ) : pair === undefined && !error ? (
        <Loading what="the next pair" />
      ) : pair === null ? (
        <div className="callout info">
          <span>No unlabeled pair is left right now; others may be labeling the rest.</span>
          <button type="button" onClick={() => void next()}>
            Check again
          </button>
        </div>
      ) : pair ? (
        <Section title={<span className="muted small">pair #{pair.id}</span>} id="pair">
          <div className="prompt" data-testid="pair-prompt">
            <span className="label-tag">Prompt</span>
            <pre>{pair.prompt}</pre>
          </div>
          <div className="responses">
            {(['a', 'b'] as const).map((side) => (
              <div key={side} className={`response${chosen === side ? ' chosen' : ''}`} data-testid={`response-${side}`}>
                <span className="label-tag">Response {side.toUpperCase()}</span>
                <pre>{(side === 'a' ? pair.responseA : pair.responseB) || <span className="muted">(empty response)</span>}</pre>
              </div>
            ))}
          </div>
          {!cannot && (
            <div className="label-buttons" role="group" aria-label="Your preference">
              <button type="button" className="primary" onClick={() => void label('a')} disabled={busy} data-testid="label-a" aria-keyshortcuts="1 ArrowLeft a">
                A is better <span className="hint"><Kbd>1</Kbd> <Kbd>←</Kbd></span>
              </button>
              <span className="middle-buttons">
                <button type="button" onClick={() => void label('tie')} disabled={busy} data-testid="label-tie" aria-keyshortcuts="3 t">
                  Tie <span className="hint"><Kbd>3</Kbd> <Kbd>T</Kbd></span>
                </button>
                <button type="button" onClick={() => void next(pair.id)} disabled={busy} data-testid="label-skip" aria-keyshortcuts="s" title="Show another pair; this one stays unlabeled">
                  Skip <span className="hint"><Kbd>S</Kbd></span>
                </button>
              </span>
              <button type="button" className="primary" onClick={() => void label('b')} disabled={busy} data-testid="label-b" aria-keyshortcuts="2 ArrowRight b">
                B is better <span className="hint"><Kbd>2</Kbd> <Kbd>→</Kbd></span>
              </button>
            </div>
          )}
        </Section>
      ) : null}
    </main>
  );
}
