/**
 * A run's metric series as small multiples: first the loss curves (training loss and validation loss on one
 * step axis, one line per sweep candidate), then every other series grouped per stage and metric. Series
 * keys are `<stage>.<name>`; a sweep candidate prefixes the name (`train.lr=0.003/loss`).
 */
import { useMemo, useState } from 'react';
import { humanize } from '../format';
import { STAGES } from '../stages';
import { LineChart, type Series } from './LineChart';

interface Chart {
  id: string;
  title: string;
  series: Series[];
}

/** Not a curve over training steps (the step each attempt resumed from, keyed by attempt). */
const NOT_CURVES = new Set(['start_step']);

export function groupSeries(metrics: Record<string, Array<[number, number]>>): Chart[] {
  const loss: Chart = { id: 'loss', title: 'Loss: training and validation', series: [] };
  const others = new Map<string, Chart>();
  for (const key of Object.keys(metrics).sort()) {
    const points = metrics[key];
    // A single point (the test stage's figures, at step 0) is a number, not a curve: the stage summary shows it.
    if (!points || points.length < 2) continue;
    const dot = key.indexOf('.');
    const stage = dot < 0 ? 'other' : key.slice(0, dot);
    const name = dot < 0 ? key : key.slice(dot + 1);
    const slash = name.lastIndexOf('/');
    const candidate = slash < 0 ? '' : name.slice(0, slash);
    const base = slash < 0 ? name : name.slice(slash + 1);
    if (NOT_CURVES.has(base)) continue;
    if ((stage === 'train' && base === 'loss') || (stage === 'validate' && /loss/.test(base))) {
      const who = stage === 'train' ? 'train loss' : `validation ${humanize(base).replace(/^val /, '')}`;
      loss.series.push({ label: candidate ? `${who} (${candidate})` : who, points });
      continue;
    }
    const id = `${stage}.${base}`;
    const chart = others.get(id) ?? { id, title: `${stage} · ${humanize(base)}`, series: [] };
    chart.series.push({ label: candidate || humanize(base), points });
    others.set(id, chart);
  }
  const order = (c: Chart) => {
    const i = STAGES.indexOf(c.id.split('.')[0] as (typeof STAGES)[number]);
    return i < 0 ? STAGES.length : i;
  };
  const rest = [...others.values()].sort((a, b) => order(a) - order(b) || a.title.localeCompare(b.title));
  return loss.series.length > 0 ? [loss, ...rest] : rest;
}

export function MetricsPanel({ metrics }: { metrics: Record<string, Array<[number, number]>> }) {
  const charts = useMemo(() => groupSeries(metrics), [metrics]);
  const [log, setLog] = useState(false);
  if (charts.length === 0) return <p className="muted">No metrics yet: training writes its loss curve as it runs.</p>;
  return (
    <>
      <label className="inline-check">
        <input type="checkbox" checked={log} onChange={(e) => setLog(e.target.checked)} /> log scale
      </label>
      <div className="charts">
        {charts.map((c) => (
          <LineChart key={c.id} title={c.title} series={c.series} log={log} testId={`chart-${c.id}`} />
        ))}
      </div>
    </>
  );
}
