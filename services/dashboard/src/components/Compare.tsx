/**
 * A candidate's test metrics beside the serving model's: the figures an approver weighs. Loss and perplexity
 * are better lower; match rates and accuracies higher; the difference is coloured accordingly. A figure with a
 * bootstrap 95% interval shows it in brackets.
 */
import type { Interval } from '@tempered/api-contract';
import { formatNumber, humanize } from '../format';
import { Table, type Column } from './Table';

const LOWER_IS_BETTER = /loss|perplexity|error|latency/i;
const HIGHER_IS_BETTER = /match|accuracy|reward|score|win/i;
const ORDER = ['classification.accuracy', 'classification.sftAccuracy', 'classification.baselineAccuracy', 'exactMatch', 'baselineExactMatch', 'loss', 'perplexity', 'examples'];

/** A figure's 95% interval in the test summary's `intervals`. */
const INTERVAL_OF: Record<string, string> = { exactMatch: 'exactMatch', 'classification.accuracy': 'accuracy', 'classification.macroF1': 'macroF1' };

/** Numeric figures, one level of nesting flattened (`classification.accuracy`): what can be set side by side. */
function figures(metrics: Record<string, unknown> | null | undefined): Record<string, unknown> | null | undefined {
  if (!metrics) return metrics;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metrics)) {
    // Intervals are shown beside their figures; the answers artifact is a reference, not a figure; the champion
    // comparison and the suites have their own sentence and table (Answers.tsx).
    if (k === 'intervals' || k === 'answers' || k === 'champion' || k === 'suites') continue;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k2, v2] of Object.entries(v)) if (typeof v2 === 'number') out[`${k}.${k2}`] = v2;
    } else out[k] = v;
  }
  return out;
}

export function MetricsCompare({
  candidate: candidateMetrics,
  production: productionMetrics,
  productionLabel,
}: {
  candidate: Record<string, unknown> | null | undefined;
  production?: Record<string, unknown> | null;
  productionLabel?: string;
}) {
  const candidate = figures(candidateMetrics);
  const intervals = candidateMetrics?.intervals as Record<string, Interval | undefined> | undefined;
  const production = productionMetrics === undefined ? undefined : figures(productionMetrics);
  const keys = [...new Set([...Object.keys(candidate ?? {}), ...Object.keys(production ?? {})])]
    .filter((k) => typeof candidate?.[k] === 'number' || typeof production?.[k] === 'number')
    .sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b));
  if (keys.length === 0) return <p className="muted">No test metrics yet.</p>;
  const showProd = production !== undefined;
  const columns: Column[] = ['metric', ['this run', 'num']];
  if (showProd) columns.push([productionLabel ?? 'production', 'num']);
  if (showProd && production) columns.push(['Δ', 'num']);
  return (
    <Table columns={columns} className="compact metrics-compare" testId="metrics-compare">
      {keys.map((k) => {
        const a = candidate?.[k];
        const b = production?.[k];
        let delta: number | undefined;
        let tone = '';
        if (typeof a === 'number' && typeof b === 'number') {
          delta = a - b;
          const better = LOWER_IS_BETTER.test(k) ? delta < 0 : HIGHER_IS_BETTER.test(k) && !/baseline/i.test(k) ? delta > 0 : undefined;
          if (better !== undefined && delta !== 0) tone = better ? 'better' : 'worse';
        }
        return (
          <tr key={k} data-metric={k}>
            <th scope="row" title={k}>
              {humanize(k)}
            </th>
            <td className="num">
              {formatNumber(a)}
              {INTERVAL_OF[k] && intervals?.[INTERVAL_OF[k]] && (
                <span className="muted small" data-testid="interval">
                  {' '}
                  [{intervals[INTERVAL_OF[k]]!.low.toFixed(3)}, {intervals[INTERVAL_OF[k]]!.high.toFixed(3)}]
                </span>
              )}
            </td>
            {showProd && <td className="num">{production ? formatNumber(b) : '—'}</td>}
            {showProd && production && (
              <td className={`num delta ${tone}`}>{delta === undefined ? '—' : `${delta > 0 ? '+' : ''}${formatNumber(delta)}`}</td>
            )}
          </tr>
        );
      })}
    </Table>
  );
}
