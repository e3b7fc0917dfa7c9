/**
 * The base-model catalog (what a spec's `model.base: {name}` can fine-tune, and which versions came from
 * each), then model versions, newest first: their test metrics, which one is serving, their deployments, and
 * their lineage (dataset version → artifacts → model version → deployment) drawn left to right.
 */
import type { ModelEntry } from '@tempered/api-contract';
import { useQuery } from '@tanstack/react-query';
import { useEffect, useMemo, useState } from 'react';
import { Fact, Loaded } from '../components/common';
import { SuitesTable } from '../components/Answers';
import { MetricsCompare } from '../components/Compare';
import { foldArtifacts, LineageGraph } from '../components/Lineage';
import { Table } from '../components/Table';
import { formatCount, formatDate } from '../format';
import { queries } from '../queries';
import { datasetPath, Link, runPath } from '../router';

export function ModelsPage() {
  const models = useQuery(queries.models);
  const [open, setOpen] = useState<string | undefined>(() => window.location.hash.slice(1) || undefined);

  const show = (id: string | undefined) => {
    window.history.replaceState(null, '', id ? `/models#${id}` : '/models');
    setOpen(id);
  };
  useEffect(() => {
    if (!open || !models.data) return;
    document.getElementById(`model-${open}`)?.scrollIntoView({ block: 'start' });
  }, [open, models.data]);
  useEffect(() => {
    const onHash = () => setOpen(window.location.hash.slice(1) || undefined);
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  return (
    <main className="page">
      <div className="page-head">
        <h1>Models</h1>
        <span className="muted small">Every model version a run produced; the serving one is marked.</span>
      </div>
      <BaseModels onModel={show} />
      <h2>Model versions</h2>
      <Loaded query={models} what="models">
        {({ models: list }) =>
          list.length === 0 ? (
            <p className="muted empty">No model versions yet: a run creates one when its deployment is approved.</p>
          ) : (
            <ul className="model-list" data-testid="models">
              {list.map((m) => (
                <ModelCard key={m.id} model={m} open={open === m.id} onToggle={() => show(open === m.id ? undefined : m.id)} onModel={show} />
              ))}
            </ul>
          )
        }
      </Loaded>
    </main>
  );
}

function BaseModels({ onModel }: { onModel: (id: string) => void }) {
  const catalog = useQuery(queries.baseModels);
  return (
    <section aria-labelledby="base-models-title" data-testid="base-models">
      <h2 id="base-models-title">Base models</h2>
      <Loaded query={catalog} what="base models">
        {({ baseModels }) =>
          baseModels.length === 0 ? (
            <p className="muted empty">No base models in the catalog: the bootstrap converts them, and the stack registers them when it starts.</p>
          ) : (
            <Table
              columns={['name', 'architecture', ['parameters', 'num'], ['context', 'num'], 'licence', 'source', 'sha256', 'fine-tuned versions']}
              className="compact"
              caption={
                <caption className="muted small">
                  Fine-tune one with <code>model: {'{'}base: {'{'}name: …{'}'}{'}'}</code> in a spec.
                </caption>
              }
            >
              {baseModels.map((b) => (
                <tr key={b.name} data-testid="base-model" data-name={b.name}>
                  <th scope="row" className="mono nowrap">
                    {b.name}
                  </th>
                  <td title={b.model_type}>{b.architecture}</td>
                  <td className="num" title={b.parameters.toLocaleString()}>
                    {formatCount(b.parameters)}
                  </td>
                  <td className="num">{b.context_length.toLocaleString()}</td>
                  <td>{b.license}</td>
                  <td>{b.source}</td>
                  <td className="mono" title={b.sha256}>
                    {b.sha256.slice(0, 12)}
                  </td>
                  <td>
                    {b.fineTuned.length === 0 ? (
                      <span className="muted">none yet</span>
                    ) : (
                      b.fineTuned.map((v, i) => (
                        <span key={v.id}>
                          {i > 0 && ', '}
                          <Link to={`/models#${v.id}`} onClick={(e) => (e.preventDefault(), onModel(v.id))}>
                            {v.name} v{v.version}
                          </Link>
                        </span>
                      ))
                    )}
                  </td>
                </tr>
              ))}
            </Table>
          )
        }
      </Loaded>
    </section>
  );
}

function ModelCard({ model, open, onToggle, onModel }: { model: ModelEntry; open: boolean; onToggle: () => void; onModel: (id: string) => void }) {
  return (
    <li className={`card model${model.serving ? ' serving' : ''}`} id={`model-${model.id}`} data-testid="model" data-serving={model.serving}>
      <header className="card-head">
        <h2>
          {model.name} <span className="version">v{model.version}</span>{' '}
          {model.serving && (
            <span className="badge run-deployed" data-testid="serving">
              serving
            </span>
          )}
        </h2>
        <button type="button" onClick={onToggle} aria-expanded={open} aria-controls={`lineage-${model.id}`}>
          {open ? 'Hide lineage' : 'Lineage'}
        </button>
      </header>
      <dl className="facts">
        <Fact term="created">{formatDate(model.created_at)}</Fact>
        <Fact term="run">
          <Link to={runPath(model.run_id)}>{model.run_id}</Link>
        </Fact>
        {model.datasetVersionId && (
          <Fact term="dataset">
            <Link to={datasetPath(model.datasetVersionId)} className="mono">
              {model.datasetVersionId.slice(0, 12)}
            </Link>
          </Fact>
        )}
        <Fact term="sha256" className="mono" title={model.sha256}>
          {model.sha256.slice(0, 12)}
        </Fact>
        <Fact term="report">
          <a href={`/api/models/${encodeURIComponent(model.id)}/card`} target="_blank" rel="noreferrer" data-testid="model-card">
            Model card
          </a>
        </Fact>
      </dl>
      <MetricsCompare candidate={model.metrics} />
      {model.deployments.length > 0 && (
        <Table columns={['endpoint', 'status', 'since']} className="compact" caption={<caption>Deployments</caption>}>
          {model.deployments.map((d) => (
            <tr key={d.id}>
              <td className="mono">{d.endpoint}</td>
              <td>{d.status}</td>
              <td className="nowrap">{formatDate(d.created_at)}</td>
            </tr>
          ))}
        </Table>
      )}
      {open && <ModelLineage model={model} onModel={onModel} />}
      {open && <ModelEvaluations model={model} />}
    </li>
  );
}

/** The version's test suites run again since it was tested (`tempered eval`, drift schedules), newest first. */
function ModelEvaluations({ model }: { model: ModelEntry }) {
  const evaluations = useQuery(queries.evaluations(model.id));
  return (
    <div className="lineage-section" data-testid="evaluations">
      <h3>Evaluations since</h3>
      <Loaded query={evaluations} what="evaluations" retry={false}>
        {({ evaluations: list }) =>
          list.length === 0 ? (
            <p className="muted small">
              None yet: <code>tempered eval {model.id}</code> runs its test suites again.
            </p>
          ) : (
            <ul className="plain">
              {list.map((e) => (
                <li key={e.id} data-testid="evaluation" data-status={e.status}>
                  <p className="small">
                    {formatDate(e.createdAt)} · {e.status} · requested by {e.requestedBy} · {e.suites.join(', ')}
                    {e.error && <span className="error"> · {e.error}</span>}
                  </p>
                  {e.results && <SuitesTable suites={e.results} />}
                  {e.breaches?.map((b) => (
                    <p key={b} className="error small">
                      {b}
                    </p>
                  ))}
                </li>
              ))}
            </ul>
          )
        }
      </Loaded>
    </div>
  );
}

function ModelLineage({ model, onModel }: { model: ModelEntry; onModel: (id: string) => void }) {
  const lineage = useQuery(queries.lineage(model.id));
  const run = useQuery(queries.run(model.run_id));
  const [all, setAll] = useState(false);
  // Artifacts are named by id in the lineage; the run's artifact list gives them their kinds.
  const labels = useMemo(() => Object.fromEntries((run.data?.artifacts ?? []).map((a) => [`artifact:${a.id}`, `${a.kind} #${a.id}`])), [run.data]);
  const edges = useMemo(() => (lineage.data ? (all ? lineage.data.edges : foldArtifacts(lineage.data.edges)) : []), [lineage.data, all]);
  return (
    <div id={`lineage-${model.id}`} className="lineage-section">
      <div className="toolbar">
        <h3>Lineage</h3>
        <label className="inline-check">
          <input type="checkbox" checked={all} onChange={(e) => setAll(e.target.checked)} /> show intermediate artifacts
        </label>
      </div>
      <Loaded query={lineage} what="lineage" retry={false}>
        {() => <LineageGraph edges={edges} focus={`model_version:${model.id}`} labels={labels} onModel={onModel} />}
      </Loaded>
    </div>
  );
}
