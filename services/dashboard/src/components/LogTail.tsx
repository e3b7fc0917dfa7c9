/**
 * The tail of a run's log, newest at the bottom. It follows new lines while scrolled to the bottom, and stops
 * following (offering a jump back) once the reader scrolls up to read something.
 */
import type { LogLine } from '@tempered/api-contract';
import { useEffect, useLayoutEffect, useRef, useState } from 'react';

const time = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

export function LogTail({ lines, stage }: { lines: LogLine[]; stage?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [follow, setFollow] = useState(true);
  const shown = stage ? lines.filter((l) => l.stage === stage) : lines;
  const last = shown.length > 0 ? shown[shown.length - 1].id : 0;

  useLayoutEffect(() => {
    const el = box.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [last, follow, stage]);
  useEffect(() => setFollow(true), [stage]);

  const onScroll = () => {
    const el = box.current;
    if (!el) return;
    setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < 24);
  };

  return (
    <div className="log-wrap">
      <div ref={box} className="log" onScroll={onScroll} tabIndex={0} role="log" aria-live="off" aria-label="Run log" data-testid="log">
        {shown.length === 0 ? (
          <div className="muted">No log lines{stage ? ` from ${stage}` : ''} yet.</div>
        ) : (
          shown.map((l) => (
            <div key={l.id} className="log-line">
              <span className="log-time">{time.format(new Date(l.at))}</span>
              {!stage && <span className="log-stage">{l.stage}</span>}
              <span className="log-text">{l.line}</span>
            </div>
          ))
        )}
      </div>
      {!follow && (
        <button type="button" className="jump" onClick={() => setFollow(true)}>
          ↓ Follow new lines
        </button>
      )}
    </div>
  );
}
