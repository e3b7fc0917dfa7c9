/**
 * The dashboard's data table: a head row of column names (some hidden in a narrow window, some only for
 * screen readers) over the rows the caller renders, in a wrapper that scrolls sideways when it must.
 */
import type { ReactElement, ReactNode } from 'react';

/** A column's name, or its name and the class of its head cell (`num`, `hide-narrow`). */
export type Column = string | ReactElement | [label: ReactNode, className: string];

/** A column without a visible name (its cells are buttons or links): `label` is for screen readers. */
export const unnamed = (label: string): Column => <span className="sr-only">{label}</span>;

export function Table({
  columns,
  className,
  testId,
  caption,
  wrap = true,
  children,
}: {
  columns: Column[];
  /** Classes besides `table`. */
  className?: string;
  testId?: string;
  caption?: ReactNode;
  /** In its own sideways-scrolling wrapper (default), or bare inside the caller's. */
  wrap?: boolean;
  children: ReactNode;
}) {
  const table = (
    <table className={className ? `table ${className}` : 'table'} data-testid={testId}>
      {caption}
      <thead>
        <tr>
          {columns.map((c, i) => {
            const [label, className] = Array.isArray(c) ? c : [c, undefined];
            return (
              <th key={i} scope="col" className={className}>
                {label}
              </th>
            );
          })}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
  return wrap ? <div className="table-wrap">{table}</div> : table;
}
