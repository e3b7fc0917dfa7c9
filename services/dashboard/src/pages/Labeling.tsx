/**
 * Pairwise preference labeling. The queue lists runs waiting for labels; a run's page shows one prompt with
 * two sampled responses side by side and takes A, B or Tie by button or key (1 / ← / A, 2 / → / B,
 * 3 / T; S skips one), then moves to the next pair by itself until the run has the labels it needs.
 */
import { labelRequest, type LabelProgress, type NextPair } from '@tempered/api-contract';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, ApiFailure, post } from '../api';
import { DetailHead, ErrorBox, Kbd, Loaded, Loading, ProgressBar, Section } from '../components/common';
import { getQuery, queries } from '../queries';
import { Link, labelPath, runPath } from '../router';
import { useMe, whyNot } from '../session';

type Choice = 'a' | 'b' | 'tie';
const KEYS: Record<string, Choice> = { '1': 'a', ArrowLeft: 'a', a: 'a', A: 'a', '2': 'b', ArrowRight: 'b', b: 'b', B: 'b', '3': 'tie', t: 'tie', T: 'tie' };

/** The queue is fetched again when a run enters or leaves the labeling step (live.tsx). */
export function LabelingQueuePage() {
  const me = useMe();
  const queue = useQuery(queries.labeling);
  const cannot = whyNot(me, 'label');

  return (
    <main className="page">
      <div className="page-head">
        <h1>Labeling</h1>
        <span className="muted small">Runs whose RLHF stage waits for people to say which of two responses is better.</span>
      </div>
      {cannot && <p className="callout info">{cannot}</p>}
      <Loaded query={queue} what="the labeling queue">
        {({ runs }) =>
          runs.length === 0 ? (
            <p className="muted empty" data-testid="labeling-empty">
              No run waits for labels. A run with <code>rlhf.source: labels</code> appears here once it has trained.
            </p>
          ) : (
            <ul className="queue" data-testid="labeling-queue">
              {runs.map((r) => (
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
          )
        }
      </Loaded>
    </main>
  );
}

/** One step of labeling: label the pair shown (then see the next), or skip it. */
type Step = { label: Choice; pairId: number } | { skip: number };

/**
 * The pair on screen is a query (`GET …/pairs/next`); labeling or skipping is a mutation whose answer is the
 * next pair, put in its place together with the progress, so a key pressed while it is on its way is ignored
 * rather than spent on the pair just labeled.
 */
export function LabelPage({ runId }: { runId: string }) {
  const me = useMe();
  const cannot = whyNot(me, 'label');
  const client = useQueryClient();
  const nextPath = `/api/runs/${encodeURIComponent(runId)}/pairs/next`;
  // What is on screen changes only by the steps below (or "Check again"), and is forgotten on leaving.
  const pairQuery = getQuery<NextPair>(nextPath);
  const current = useQuery({ ...pairQuery, staleTime: Infinity, gcTime: 0 });
  const [said, setSaid] = useState('');
  const busyRef = useRef(false);

  const step = useMutation({
    mutationFn: async (s: Step): Promise<NextPair> => {
      if ('skip' in s) return api<NextPair>(`${nextPath}?skip=${s.skip}`);
      let progress: LabelProgress;
      try {
        ({ progress } = await post<{ progress: LabelProgress }>(`/api/pairs/${s.pairId}/label`, labelRequest.parse({ label: s.label })));
      } catch (err) {
        // Someone else labeled it, or the run moved on: show the next pair rather than an error.
        if (err instanceof ApiFailure && err.status === 409) return api<NextPair>(nextPath);
        throw err;
      }
      setSaid(`Pair ${s.pairId} labeled ${s.label === 'tie' ? 'a tie' : s.label.toUpperCase()}. ${progress.labeled} of ${progress.required}.`);
      return progress.labeled < progress.required ? api<NextPair>(nextPath) : { pair: null, progress };
    },
    onSuccess: (next) => client.setQueryData(pairQuery.queryKey, next),
    onSettled: () => {
      busyRef.current = false;
    },
  });

  const pair = current.data?.pair;
  const progress = current.data?.progress;
  const busy = step.isPending;
  const chosen = step.isPending && 'label' in step.variables ? step.variables.label : undefined;
  const error = step.error ?? current.error ?? undefined;
  const done = progress !== undefined && progress.labeled >= progress.required;

  const { mutate, reset } = step;
  const { refetch } = current;
  // One step at a time, even for keys pressed faster than the page renders.
  const go = useCallback(
    (s: Step) => {
      if (busyRef.current) return;
      busyRef.current = true;
      mutate(s);
    },
    [mutate],
  );
  const label = useCallback(
    (choice: Choice) => {
      if (!pair || cannot || done) return;
      go({ label: choice, pairId: pair.id });
    },
    [pair, cannot, done, go],
  );
  const next = useCallback(
    (skip?: number) => {
      if (skip !== undefined) return go({ skip });
      reset();
      void refetch();
    },
    [go, reset, refetch],
  );

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target as HTMLElement;
      if (t.closest('input, textarea, select, [contenteditable]')) return;
      if ((e.key === 's' || e.key === 'S') && pair && !busyRef.current) {
        e.preventDefault();
        next(pair.id);
        return;
      }
      const choice = KEYS[e.key];
      if (!choice) return;
      e.preventDefault();
      label(choice);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [label, next, pair]);

  return (
    <main className="page label-page">
      <DetailHead
        parent={{ to: '/labeling', label: 'Labeling' }}
        title="Which response is better?"
        sub={
          <>
            for run <Link to={runPath(runId)}>{runId}</Link>
          </>
        }
      />
      {progress && <ProgressBar value={progress.labeled} max={progress.required} label="Labels" testId="label-progress" />}
      <p className="sr-only" aria-live="polite">
        {said}
      </p>
      {cannot && (
        <p className="callout info" data-testid="cannot-label">
          {cannot}
        </p>
      )}
      {error && <ErrorBox error={error} retry={() => next()} />}
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
          <button type="button" onClick={() => next()}>
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
              <button type="button" className="primary" onClick={() => label('a')} disabled={busy} data-testid="label-a" aria-keyshortcuts="1 ArrowLeft a">
                A is better <span className="hint"><Kbd>1</Kbd> <Kbd>←</Kbd></span>
              </button>
              <span className="middle-buttons">
                <button type="button" onClick={() => label('tie')} disabled={busy} data-testid="label-tie" aria-keyshortcuts="3 t">
                  Tie <span className="hint"><Kbd>3</Kbd> <Kbd>T</Kbd></span>
                </button>
                <button type="button" onClick={() => next(pair.id)} disabled={busy} data-testid="label-skip" aria-keyshortcuts="s" title="Show another pair; this one stays unlabeled">
                  Skip <span className="hint"><Kbd>S</Kbd></span>
                </button>
              </span>
              <button type="button" className="primary" onClick={() => label('b')} disabled={busy} data-testid="label-b" aria-keyshortcuts="2 ArrowRight b">
                B is better <span className="hint"><Kbd>2</Kbd> <Kbd>→</Kbd></span>
              </button>
            </div>
          )}
        </Section>
      ) : null}
    </main>
  );
}
