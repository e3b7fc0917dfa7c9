/**
 * Form pieces: a labelled field with its hint and its problems under it (tied to the input for assistive
 * technology), the comment box every audited action has, and the helpers that put the problems the browser
 * or the API found at the fields they name.
 */
import type { ChangeEvent, InputHTMLAttributes, ReactNode } from 'react';
import { ApiFailure } from '../api';

/** A problem with a request, at a dotted `path` (`every`, `spec.train.steps`, '' for the whole). */
export type Issue = { path: string; message: string };

/** A zod error's issues, their paths dotted the way the API reports them. */
export const zodIssues = (error: { issues: Array<{ path: PropertyKey[]; message: string }> }): Issue[] =>
  error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));

/** The messages of the issues that name `field` (the first segment of their path). */
export const issuesAt = (issues: Issue[], field: string) => issues.filter((i) => (i.path.split('.')[0] || '') === field).map((i) => i.message);

/** A failure without the issues already shown at their fields, for the error box under a form. */
export function unplaced(failure: ApiFailure, placed: (i: Issue) => boolean): ApiFailure {
  return new ApiFailure(failure.status, failure.message, failure.issues.filter((i) => !placed(i)));
}

/** The aria attributes that tie an input to its hint and its issues. */
export function describedBy(id: string, issues: string[], hint?: boolean) {
  const ids = [hint ? `${id}-hint` : '', issues.length > 0 ? `${id}-issues` : ''].filter(Boolean).join(' ');
  return { id, 'aria-invalid': issues.length > 0 || undefined, 'aria-describedby': ids || undefined };
}

/** The problems of one form field, under it; `id` is what the field's aria-describedby names. */
export function FieldIssues({ id, messages }: { id: string; messages: string[] }) {
  if (messages.length === 0) return null;
  return (
    <span className="field-error" id={id} data-testid="field-error">
      {messages.join('; ')}
    </span>
  );
}

export function Field({ id, label, hint, issues, children, className = '' }: { id: string; label: string; hint?: ReactNode; issues: string[]; children: ReactNode; className?: string }) {
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

/** The comment recorded in the audit log with an action (a decision, a canary's end, a schedule change). */
export function CommentInput({
  value,
  onChange,
  placeholder,
  testId,
  ...aria
}: {
  value: string;
  onChange: (value: string) => void;
  placeholder: string;
  testId: string;
  id: string;
  'aria-invalid'?: boolean;
  'aria-describedby'?: string;
}) {
  return (
    <textarea
      {...aria}
      rows={2}
      maxLength={2000}
      value={value}
      onChange={(e: ChangeEvent<HTMLTextAreaElement>) => onChange(e.target.value)}
      placeholder={placeholder}
      data-testid={testId}
    />
  );
}

/** A one-line input for an id or an expression (`6h`, `0 3 * * *`): no autocomplete, no spell check. */
export function TermInput({ onChange, ...rest }: Omit<InputHTMLAttributes<HTMLInputElement>, 'onChange'> & { value: string; onChange: (value: string) => void }) {
  return <input {...rest} onChange={(e) => onChange(e.target.value)} autoComplete="off" spellCheck={false} />;
}
