/**
 * The base-model catalog (what a spec's `model.base: {name}` can fine-tune, and which versions came from
 * each), then model versions, newest first: their test metrics, which one is serving, their deployments, and
 * their lineage (dataset version → artifacts → model version → deployment) drawn left to right.
 */
import type { BaseModelsResponse, LineageResponse, ModelEntry, ModelsResponse, RunDetail } from '@tempered/api-contract';
import { useEffect, useMemo, useState } from 'react';
import { useResource } from '../api';
import { ErrorBox, Loading } from '../components/common';
import { MetricsCompare } from '../components/Compare';
import { foldArtifacts, LineageGraph } from '../components/Lineage';
import { formatCount, formatDate } from '../format';
import { datasetPath, Link, runPath } from '../router';

export function ModelsPage() {
  const models = useResource<ModelsResponse>('/api/models');
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
      {models.error ? (
        <ErrorBox error={models.error} retry={models.reload} />
      ) : !models.data ? (
        <Loading what="models" />
      ) : models.data.models.length === 0 ? (
        <p className="muted empty">No model versions yet: a run creates one when its deployment is approved.</p>
      ) : (
        <ul className="model-list" data-testid="models">
          {models.data.models.map((m) => (
            <ModelCard key={m.id} model={m} open={open === m.id} onToggle={() => show(open === m.id ? undefined : m.id)} onModel={show} />
          ))}
        </ul>
      )}
    </main>
  );
}

function BaseModels({ onModel }: { onModel: (id: string) => void }) {
  const catalog = useResource<BaseModelsResponse>('/api/base-models');
  return (
    <section aria-labelledby="base-models-title" data-testid="base-models">
      <h2 id="base-models-title">Base models</h2>
      {catalog.error ? (
        <ErrorBox error={catalog.error} retry={catalog.reload} />
      ) : !catalog.data ? (
        <Loading what="base models" />
      ) : catalog.data.baseModels.length === 0 ? (
        <p className="muted empty">No base models in the catalog: the bootstrap converts them, and the stack registers them when it starts.</p>
      ) : (
        <div className="table-wrap">
          <table className="table compact">
            <caption className="muted small">
              Fine-tune one with <code>model: {'{'}base: {'{'}name: …{'}'}{'}'}</code> in a spec.
            </caption>
            <thead>
              <tr>
                <th scope="col">name</th>
                <th scope="col">architecture</th>
                <th scope="col" className="num">parameters</th>
                <th scope="col" className="num">context</th>
                <th scope="col">licence</th>
                <th scope="col">source</th>
                <th scope="col">sha256</th>
                <th scope="col">fine-tuned versions</th>
              </tr>
            </thead>
            <tbody>
              {catalog.data.baseModels.map((b) => (
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
                    {b.fineTuned.length === 0
                      ? <span className="muted">none yet</span>
                      : b.fineTuned.map((v, i) => (
                          <span key={v.id}>
                            {i > 0 && ', '}
                            <Link to={`/models#${v.id}`} onClick={(e) => (e.preventDefault(), onModel(v.id))}>
                              {v.name} v{v.version}
                            </Link>
                          </span>
                        ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
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
        <div>
          <dt>created</dt>
          <dd>{formatDate(model.created_at)}</dd>
        </div>
        <div>
          <dt>run</dt>
          <dd>
            <Link to={runPath(model.run_id)}>{model.run_id}</Link>
          </dd>
        </div>
        {model.datasetVersionId && (
          <div>
            <dt>dataset</dt>
            <dd>
              <Link to={datasetPath(model.datasetVersionId)} className="mono">
                {model.datasetVersionId.slice(0, 12)}
              </Link>
            </dd>
          </div>
        )}
        <div>
          <dt>sha256</dt>
          <dd className="mono" title={model.sha256}>
            {model.sha256.slice(0, 12)}
          </dd>
        </div>
      </dl>
      <MetricsCompare candidate={model.metrics} />
      {model.deployments.length > 0 && (
        <div className="table-wrap">
          <table className="table compact">
            <caption>Deployments</caption>
            <thead>
              <tr>
                <th scope="col">endpoint</th>
                <th scope="col">status</th>
                <th scope="col">since</th>
              </tr>
            </thead>
            <tbody>
              {model.deployments.map((d) => (
                <tr key={d.id}>
                  <td className="mono">{d.endpoint}</td>
                  <td>{d.status}</td>
                  <td className="nowrap">{formatDate(d.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {open && <ModelLineage model={model} onModel={onModel} />}
    </li>
  );
}

function ModelLineage({ model, onModel }: { model: ModelEntry; onModel: (id: string) => void }) {
  const lineage = useResource<LineageResponse>(`/api/models/${encodeURIComponent(model.id)}/lineage`);
  const run = useResource<RunDetail>(`/api/runs/${encodeURIComponent(model.run_id)}`);
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
      {lineage.error ? <ErrorBox error={lineage.error} /> : !lineage.data ? <Loading what="lineage" /> : <LineageGraph edges={edges} focus={`model_version:${model.id}`} labels={labels} onModel={onModel} />}
    </div>
  );
}
