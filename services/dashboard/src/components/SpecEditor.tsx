/**
 * A YAML editor for pipeline specs: a plain textarea over a backdrop that numbers the lines, tints the lines
 * with issues and writes each issue's message at the end of its line; below, the same issues as a list that
 * jumps to the line. No editor library: a textarea keeps native undo, IME input and accessibility.
 */
import { useMemo, useRef, type KeyboardEvent } from 'react';
import type { LocatedIssue } from '../spec-check';

export function SpecEditor({
  value,
  onChange,
  issues,
  readOnly = false,
  label,
  onSubmit,
}: {
  value: string;
  onChange?: (text: string) => void;
  issues: LocatedIssue[];
  readOnly?: boolean;
  label: string;
  onSubmit?: () => void;
}) {
  const area = useRef<HTMLTextAreaElement>(null);
  const backdrop = useRef<HTMLDivElement>(null);
  const gutter = useRef<HTMLDivElement>(null);
  const lines = useMemo(() => value.split('\n'), [value]);
  const byLine = useMemo(() => {
    const m = new Map<number, LocatedIssue[]>();
    for (const i of issues) m.set(i.line, [...(m.get(i.line) ?? []), i]);
    return m;
  }, [issues]);

  const syncScroll = () => {
    const a = area.current;
    if (!a) return;
    if (backdrop.current) {
      backdrop.current.scrollTop = a.scrollTop;
      backdrop.current.scrollLeft = a.scrollLeft;
    }
    if (gutter.current) gutter.current.scrollTop = a.scrollTop;
  };

  const jumpTo = (line: number) => {
    const a = area.current;
    if (!a) return;
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    a.focus();
    a.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
    const lineHeight = parseFloat(getComputedStyle(a).lineHeight) || 20;
    a.scrollTop = Math.max(0, (line - 3) * lineHeight);
    syncScroll();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && onSubmit) {
      e.preventDefault();
      onSubmit();
    }
  };

  return (
    <div className="spec-editor">
      <div className={`editor${readOnly ? ' read-only' : ''}`}>
        <div className="gutter" ref={gutter} aria-hidden="true">
          {lines.map((_, i) => (
            <div key={i} className={byLine.has(i + 1) ? 'gutter-line has-issue' : 'gutter-line'} title={byLine.get(i + 1)?.map((x) => x.message).join('\n')}>
              {i + 1}
            </div>
          ))}
        </div>
        <div className="editor-body">
          <div className="backdrop" ref={backdrop} aria-hidden="true">
            {lines.map((text, i) => {
              const here = byLine.get(i + 1);
              return (
                <div key={i} className={here ? 'bl has-issue' : 'bl'}>
                  <span className="bl-text">{text || ' '}</span>
                  {here && <span className="lens">{here.map((x) => `${x.path ? `${x.path}: ` : ''}${x.message}`).join(' · ')}</span>}
                </div>
              );
            })}
          </div>
          <textarea
            ref={area}
            aria-label={label}
            data-testid="spec-yaml"
            value={value}
            readOnly={readOnly}
            spellCheck={false}
            autoCapitalize="off"
            autoComplete="off"
            autoCorrect="off"
            wrap="off"
            onChange={(e) => onChange?.(e.target.value)}
            onScroll={syncScroll}
            onKeyDown={onKeyDown}
            aria-invalid={issues.length > 0}
            aria-describedby="spec-issues"
          />
        </div>
      </div>
      <div id="spec-issues" aria-live="polite">
        {issues.length === 0 ? (
          <p className="valid" data-testid="spec-valid">
            ✓ Valid spec
          </p>
        ) : (
          <ul className="issues" data-testid="spec-issues">
            {issues.map((i, n) => (
              <li key={`${i.line}:${i.path}:${n}`}>
                <button type="button" className="link" onClick={() => jumpTo(i.line)}>
                  line {i.line}
                </button>{' '}
                {i.path && <code>{i.path}</code>} {i.message}
              </li>
            ))}
          </ul>
        )}
      </div>
    </div>
  );
}

/** Warnings about a spec (not errors: it may still be sent), each at its line. */
export function SpecWarnings({ warnings }: { warnings: LocatedIssue[] }) {
  if (warnings.length === 0) return null;
  return (
    <ul className="warnings" data-testid="spec-warnings">
      {warnings.map((w) => (
        <li key={w.path}>
          line {w.line} <code>{w.path}</code> {w.message}
        </li>
      ))}
    </ul>
  );
}
