/**
 * A line chart of metric series by step (uPlot: small, fast, canvas). Series may have different steps (the
 * training loss every step, the validation loss per checkpoint): they share one step axis and lines span the
 * gaps. The chart is updated in place as points stream in, and resizes with its container.
 */
import { useEffect, useMemo, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatNumber } from '../format';

export interface Series {
  label: string;
  points: Array<[number, number]>;
}

const PALETTE = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#db2777', '#0891b2', '#ca8a04', '#4b5563'];

function align(series: Series[]): uPlot.AlignedData {
  const steps = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const ys = series.map((s) => {
    const y: Array<number | null> = new Array(steps.length).fill(null);
    for (const [step, value] of s.points) y[index.get(step)!] = Number.isFinite(value) ? value : null;
    return y;
  });
  return [steps, ...ys];
}

function countValues(ys: ArrayLike<number | null | undefined>, from: number, to: number): number {
  let n = 0;
  for (let i = from; i <= to; i++) if (ys[i] !== null && ys[i] !== undefined) n++;
  return n;
}

export function LineChart({ title, series, log = false, height = 220, testId }: { title: string; series: Series[]; log?: boolean; height?: number; testId?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = useMemo(() => align(series), [series]);
  const shape = series.map((s) => s.label).join('\u0000') + (log ? ':log' : '');
  const dataRef = useRef(data);
  dataRef.current = data;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const muted = getComputedStyle(el).getPropertyValue('--fg-muted').trim() || '#6b7280';
    const grid = getComputedStyle(el).getPropertyValue('--border').trim() || '#e5e7eb';
    const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [
        { ...axis, label: 'step', labelSize: 18, size: 36 },
        { ...axis, size: 56, values: (_u, ticks) => ticks.map((t) => formatNumber(t)) },
      ],
      series: [
        { label: 'step' },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          // Markers only where they help: sparse series (validation per checkpoint) or a zoomed-in range.
          points: { show: (u: uPlot, si: number, i0: number, i1: number) => countValues(u.data[si], i0, i1) < 40 },
          value: (_u: uPlot, v: number | null) => (v === null ? '—' : formatNumber(v)),
        })),
      ],
    };
    const u = new uPlot(opts, dataRef.current, el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = Math.max(200, el.clientWidth);
      if (w !== u.width) u.setSize({ width: w, height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // The chart is rebuilt only when its series or scale change; new points go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  const summary = series
    .map((s) => {
      const last = s.points[s.points.length - 1];
      return last ? `${s.label}: ${formatNumber(last[1])} at step ${last[0]}` : `${s.label}: no points`;
    })
    .join('; ');
  return (
    <figure className="chart" data-testid={testId} aria-label={`${title}. ${summary}`}>
      <figcaption>{title}</figcaption>
      <div ref={box} className="chart-canvas" role="img" aria-label={summary} />
    </figure>
  );
}
