/**
 * What ingest and clean did to a dataset: counts as a bar (kept / quarantined / removed by cleaning), the
 * cleaning report (records removed by reason, records changed by rule, languages and quality heuristics when those
 * rules ran, before/after samples) and the
 * quarantined records with their reasons. The report's shape is the clean stage's `CleanReport`; fields this
 * page does not know are still shown as plain values.
 */
import type { DatasetVersion } from '@tempered/api-contract';
import { formatNumber, humanize } from '../format';
import { KeyValues } from './common';
import { Table, unnamed } from './Table';

const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** How many records the clean stage removed, from a dataset version's `clean` summary; undefined before it ran. */
export const removedByClean = (clean: Record<string, unknown> | null | undefined) => (typeof clean?.removed === 'number' ? clean.removed : undefined);

export function DatasetCounts({ dataset, removedByClean }: { dataset: DatasetVersion; removedByClean?: number }) {
  const input = dataset.input_count;
  const kept = removedByClean !== undefined ? dataset.kept_count - removedByClean : dataset.kept_count;
  const parts = [
    { key: 'kept', label: removedByClean !== undefined ? 'kept after cleaning' : 'kept', n: kept },
    ...(removedByClean !== undefined ? [{ key: 'removed', label: 'removed by cleaning', n: removedByClean }] : []),
    { key: 'quarantined', label: 'quarantined at ingest', n: dataset.quarantined_count },
  ];
  return (
    <div className="counts">
      <div className="stacked" role="img" aria-label={parts.map((p) => `${p.n} ${p.label}`).join(', ') + ` of ${input} input records`}>
        {parts.map((p) => (
          <span key={p.key} className={`seg seg-${p.key}`} style={{ flexGrow: input > 0 ? p.n : 0 }} />
        ))}
      </div>
      <ul className="legend">
        <li>
          <strong>{formatNumber(input)}</strong> input
        </li>
        {parts.map((p) => (
          <li key={p.key}>
            <span className={`dot seg-${p.key}`} aria-hidden="true" />
            <strong data-testid={`count-${p.key}`}>{formatNumber(p.n)}</strong> {p.label}
          </li>
        ))}
      </ul>
    </div>
  );
}

function CountTable({ title, counts, total }: { title: string; counts: Record<string, unknown>; total?: number }) {
  const rows = Object.entries(counts).filter(([, v]) => num(v) !== undefined) as Array<[string, number]>;
  const max = Math.max(1, ...rows.map(([, v]) => v));
  return (
    <Table columns={['rule', ['records', 'num'], [unnamed('share'), 'hide-narrow']]} className="compact" caption={<caption>{title}</caption>} wrap={false}>
      {rows.map(([rule, n]) => (
          <tr key={rule}>
            <td>{humanize(rule)}</td>
            <td className="num">
              {formatNumber(n)}
              {total ? <span className="muted"> ({((n / total) * 100).toFixed(1)}%)</span> : null}
            </td>
            <td className="hide-narrow bar-cell">
              <span className="bar" style={{ width: `${(n / max) * 100}%` }} />
            </td>
          </tr>
        ))}
    </Table>
  );
}

export function CleanReportView({ report }: { report: Record<string, unknown> | null | undefined }) {
  if (!report) return <p className="muted">No cleaning report: the clean stage has not finished for this dataset.</p>;
  const { input, kept, removed, changed, changedRecords, examples, languages, quality, ...rest } = report;
  const total = num(input);
  const samples = asRecord(examples);
  return (
    <div className="clean-report" data-testid="clean-report">
      <p>
        {total !== undefined && (
          <>
            <strong>{formatNumber(total)}</strong> records in, <strong>{formatNumber(kept)}</strong> kept
          </>
        )}
        {num(changedRecords) !== undefined && (
          <>
            , <strong>{formatNumber(changedRecords)}</strong> changed by at least one rule
          </>
        )}
        .
      </p>
      <div className="two-col">
        {asRecord(removed) && <CountTable title="Removed, by reason" counts={asRecord(removed)!} total={total} />}
        {asRecord(changed) && <CountTable title="Changed, by rule" counts={asRecord(changed)!} total={total} />}
        {asRecord(languages) && <CountTable title="Languages detected" counts={asRecord(languages)!} total={total} />}
        {asRecord(quality) && <CountTable title="Removed by quality heuristic" counts={asRecord(quality)!} total={total} />}
      </div>
      {samples && Object.values(samples).some((s) => Array.isArray(s) && s.length > 0) && (
        <details className="samples">
          <summary>Before / after samples</summary>
          {Object.entries(samples).map(([rule, list]) =>
            Array.isArray(list) && list.length > 0 ? (
              <div key={rule} className="sample-group">
                <h4>{humanize(rule)}</h4>
                {list.map((s, i) => {
                  const r = asRecord(s) ?? {};
                  return (
                    <div key={i} className="sample">
                      <div>
                        <span className="muted">before</span> <code>{String(r.before ?? '')}</code>
                      </div>
                      <div>
                        <span className="muted">after</span> <code>{String(r.after ?? '')}</code>
                      </div>
                    </div>
                  );
                })}
              </div>
            ) : null,
          )}
        </details>
      )}
      {Object.keys(rest).length > 0 && <KeyValues value={rest} />}
    </div>
  );
}

export function QuarantineTable({ records, total }: { records: Array<Record<string, unknown>>; total: number }) {
  if (records.length === 0) return <p className="muted">No record was quarantined.</p>;
  const known = ['source', 'line', 'reason', 'raw'];
  return (
    <>
      <p className="muted">
        {records.length < total ? `The first ${records.length} of ${formatNumber(total)} quarantined records.` : `${formatNumber(total)} quarantined records.`}
      </p>
      <Table columns={['reason', 'source', ['line', 'num'], 'record']} className="compact" testId="quarantine">
        {records.map((r, i) => {
          const extra = Object.fromEntries(Object.entries(r).filter(([k]) => !known.includes(k)));
          const source = String(r.source ?? '');
          return (
            <tr key={`${source}:${String(r.line)}:${i}`}>
              <td className="reason">{String(r.reason ?? '—')}</td>
              <td title={source} className="ellipsis">
                {source.split('/').pop() || '—'}
              </td>
              <td className="num">{formatNumber(r.line)}</td>
              <td>
                <code className="raw">{String(r.raw ?? (Object.keys(extra).length ? JSON.stringify(extra) : ''))}</code>
              </td>
            </tr>
          );
        })}
      </Table>
    </>
  );
}
