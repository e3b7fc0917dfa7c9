/**
 * A lineage graph laid out left to right: each node in the column of its longest path from a root, edges as
 * curves. Nodes are named `<type>:<id>`. By default the artifacts between the dataset version and the model
 * are folded away so the chain reads dataset → model → deployment; they can be shown.
 */
import type { LineageResponse } from '@tempered/api-contract';
import { useMemo } from 'react';
import { datasetPath, navigate } from '../router';

type Edge = LineageResponse['edges'][number];

const TYPE_LABEL: Record<string, string> = {
  base_model: 'base model',
  dataset_version: 'dataset version',
  artifact: 'artifact',
  model_version: 'model version',
  deployment: 'deployment',
};

/** Edges between the nodes that are not artifacts, joining them through any chain of artifacts. */
export function foldArtifacts(edges: Edge[]): Edge[] {
  const isArtifact = (n: string) => n.startsWith('artifact:');
  const children = new Map<string, Edge[]>();
  for (const e of edges) children.set(e.parent, [...(children.get(e.parent) ?? []), e]);
  const out = new Map<string, Edge>();
  for (const start of new Set(edges.map((e) => e.parent).filter((n) => !isArtifact(n)))) {
    const seen = new Set<string>();
    const stack = [...(children.get(start) ?? [])].map((e) => ({ node: e.child, relation: e.relation, hops: 0 }));
    while (stack.length) {
      const { node, relation, hops } = stack.pop()!;
      if (seen.has(node)) continue;
      seen.add(node);
      if (!isArtifact(node)) {
        out.set(`${start}>${node}`, { parent: start, child: node, relation: hops > 0 ? `via ${hops} artifact${hops > 1 ? 's' : ''}` : relation });
        continue;
      }
      for (const e of children.get(node) ?? []) stack.push({ node: e.child, relation: e.relation, hops: hops + 1 });
    }
  }
  return [...out.values()];
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

const W = 168;
const H = 46;
const GAP_X = 56;
const GAP_Y = 14;

export function LineageGraph({ edges, focus, labels = {}, onModel }: { edges: Edge[]; focus?: string; labels?: Record<string, string>; onModel?: (id: string) => void }) {
  const layout = useMemo(() => {
    const nodes = [...new Set(edges.flatMap((e) => [e.parent, e.child]))];
    const parents = new Map<string, string[]>();
    for (const e of edges) parents.set(e.child, [...(parents.get(e.child) ?? []), e.parent]);
    const depth = new Map<string, number>();
    const visiting = new Set<string>();
    const depthOf = (n: string): number => {
      if (depth.has(n)) return depth.get(n)!;
      if (visiting.has(n)) return 0; // a cycle would be a bug upstream; do not loop on it
      visiting.add(n);
      const d = Math.max(-1, ...(parents.get(n) ?? []).map(depthOf)) + 1;
      visiting.delete(n);
      depth.set(n, d);
      return d;
    };
    nodes.forEach(depthOf);
    const columns: string[][] = [];
    for (const n of nodes.sort()) (columns[depth.get(n)!] ??= []).push(n);
    const pos = new Map<string, { x: number; y: number }>();
    const tallest = Math.max(1, ...columns.map((c) => c?.length ?? 0));
    const height = tallest * (H + GAP_Y) - GAP_Y;
    columns.forEach((col, i) => {
      const top = (height - (col.length * (H + GAP_Y) - GAP_Y)) / 2;
      col.forEach((n, j) => pos.set(n, { x: i * (W + GAP_X), y: top + j * (H + GAP_Y) }));
    });
    return { nodes, pos, width: columns.length * (W + GAP_X) - GAP_X, height };
  }, [edges]);

  if (edges.length === 0) return <p className="muted">No lineage recorded.</p>;
  const open = (node: string) => {
    const [type, ...rest] = node.split(':');
    const id = rest.join(':');
    if (type === 'dataset_version') navigate(datasetPath(id));
    if (type === 'model_version') onModel?.(id);
  };
  return (
    <div className="lineage-wrap">
      <svg className="lineage" width={layout.width + 2} height={layout.height + 2} viewBox={`-1 -1 ${layout.width + 2} ${layout.height + 2}`} role="img" aria-label={`Lineage: ${edges.map((e) => `${e.parent} → ${e.child}`).join(', ')}`} data-testid="lineage">
        <defs>
          <marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto">
            <path d="M0,0 L8,4 L0,8 z" className="lineage-arrow" />
          </marker>
        </defs>
        {edges.map((e) => {
          const a = layout.pos.get(e.parent)!;
          const b = layout.pos.get(e.child)!;
          const x1 = a.x + W;
          const y1 = a.y + H / 2;
          const x2 = b.x;
          const y2 = b.y + H / 2;
          const mx = (x1 + x2) / 2;
          return (
            <g key={`${e.parent}>${e.child}`}>
              <path d={`M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 1},${y2}`} className="lineage-edge" markerEnd="url(#arrow)">
                <title>{e.relation}</title>
              </path>
            </g>
          );
        })}
        {layout.nodes.map((n) => {
          const p = layout.pos.get(n)!;
          const [type, ...rest] = n.split(':');
          const id = rest.join(':');
          const clickable = type === 'dataset_version' || (type === 'model_version' && onModel);
          return (
            <g
              key={n}
              transform={`translate(${p.x},${p.y})`}
              className={`lineage-node type-${type}${n === focus ? ' focus' : ''}${clickable ? ' clickable' : ''}`}
              onClick={clickable ? () => open(n) : undefined}
              onKeyDown={clickable ? (e) => (e.key === 'Enter' || e.key === ' ') && open(n) : undefined}
              tabIndex={clickable ? 0 : undefined}
              role={clickable ? 'link' : undefined}
              aria-label={`${TYPE_LABEL[type] ?? type} ${labels[n] ?? id}`}
              data-node={n}
            >
              <title>{n}</title>
              <rect width={W} height={H} rx={6} />
              <text x={10} y={18} className="lineage-type">
                {TYPE_LABEL[type] ?? type}
              </text>
              <text x={10} y={35} className="lineage-id">
                {clip(labels[n] ?? id, 20)}
              </text>
            </g>
          );
        })}
      </svg>
    </div>
  );
}
