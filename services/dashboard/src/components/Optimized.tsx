/**
 * The optimize stage's result: each GGUF type beside the model it was exported from, figure by figure, with its
 * size and answer speed; a figure that loses more than the spec's tolerance is marked, and the type llama.cpp
 * serves is named.
 */
import type { OptimizeResult } from '@tempered/api-contract';
import { Table } from './Table';

const f3 = (x: number) => x.toFixed(3);

export function Optimized({ result }: { result: OptimizeResult }) {
  const { forms } = result;
  const first = forms[0];
  if (!first) return null;
  return (
    <section data-testid="optimized">
      <Table columns={['', ['model', 'num'], ...forms.map((f): [string, string] => [f.type, 'num'])]} caption={<caption>GGUF exports against the model (tolerance {result.tolerance})</caption>}>
        <tr>
          <th scope="row">size</th>
          <td />
          {forms.map((f) => (
            <td key={f.type} className="num">{(f.bytes / 1e6).toFixed(1)} MB</td>
          ))}
        </tr>
        <tr>
          <th scope="row">answer tokens/s</th>
          <td />
          {forms.map((f) => (
            <td key={f.type} className="num">{f.tokensPerSec === null ? '—' : f.tokensPerSec.toFixed(1)}</td>
          ))}
        </tr>
        {first.metrics.map((m) => (
          <tr key={`${m.scope}.${m.metric}`}>
            <th scope="row">{m.scope === 'test' ? 'held-out' : m.scope}: {m.metric}</th>
            <td className="num">{f3(m.reference)}</td>
            {forms.map((f) => {
              const x = f.metrics.find((y) => y.scope === m.scope && y.metric === m.metric);
              return (
                <td key={f.type} className={`num${x && !x.within ? ' bad' : ''}`} title={x?.interval ? `95% interval ${f3(x.interval.low)} to ${f3(x.interval.high)}, n = ${x.interval.n}${x.changeInterval ? `; change ${f3(x.change)}, paired interval ${f3(x.changeInterval.low)} to ${f3(x.changeInterval.high)}` : ''}` : undefined}>
                  {x ? `${f3(x.value)}${x.within ? '' : ' ✕'}` : '—'}
                </td>
              );
            })}
          </tr>
        ))}
      </Table>
      {result.deploys && <p>llama.cpp serves {result.deploys}.</p>}
      {(result.skipped ?? []).map((s) => (
        <p key={`${s.scope}.${s.metric}`} className="muted">
          Not rescored: {s.scope} {s.metric} ({s.reason}).
        </p>
      ))}
    </section>
  );
}
