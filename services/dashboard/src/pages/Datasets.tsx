/**
 * Dataset versions (one per ingest): how many records came in, were kept and were quarantined; and one
 * version's detail: the quarantined records with their reasons, the cleaning report, its artifacts.
 */
import type { DatasetDetail, DatasetsResponse } from '@tempered/api-contract';
import { useResource } from '../api';
import { ArtifactsTable } from '../components/Artifacts';
import { ErrorBox, Loading, Section } from '../components/common';
import { CleanReportView, DatasetCounts, QuarantineTable } from '../components/DataQuality';
import { formatDate, formatNumber } from '../format';
import { datasetPath, Link, navigate, runPath } from '../router';

const removedOf = (clean: Record<string, unknown> | null) => (typeof clean?.removed === 'number' ? clean.removed : undefined);

export function DatasetsPage() {
  const datasets = useResource<DatasetsResponse>('/api/datasets');
  return (
    <main className="page">
      <div className="page-head">
        <h1>Datasets</h1>
        <span className="muted small">One version per ingest: a snapshot of the records kept, and a quarantine of those that could not be read.</span>
      </div>
      {datasets.error ? (
        <ErrorBox error={datasets.error} retry={datasets.reload} />
      ) : !datasets.data ? (
        <Loading what="datasets" />
      ) : datasets.data.datasets.length === 0 ? (
        <p className="muted empty">No dataset versions yet: each run's ingest stage makes one.</p>
      ) : (
        <div className="table-wrap">
          <table className="table" data-testid="datasets">
            <thead>
              <tr>
                <th scope="col">dataset</th>
                <th scope="col" className="num">
                  input
                </th>
                <th scope="col" className="num">
                  kept
                </th>
                <th scope="col" className="num">
                  quarantined
                </th>
                <th scope="col" className="num hide-narrow">
                  removed by cleaning
                </th>
                <th scope="col" className="hide-narrow">
                  created
                </th>
              </tr>
            </thead>
            <tbody>
              {datasets.data.datasets.map((d) => (
                <tr key={d.id} className="clickable" onClick={(e) => !(e.target as HTMLElement).closest('a') && navigate(datasetPath(d.id))}>
                  <td>
                    <Link to={datasetPath(d.id)}>{d.name}</Link>
                    <div className="muted small mono ellipsis">{d.id}</div>
                  </td>
                  <td className="num">{formatNumber(d.input_count)}</td>
                  <td className="num">{formatNumber(d.kept_count)}</td>
                  <td className={`num${d.quarantined_count > 0 ? ' warn-text' : ''}`}>{formatNumber(d.quarantined_count)}</td>
                  <td className="num hide-narrow">{formatNumber(removedOf(d.clean))}</td>
                  <td className="hide-narrow nowrap">{formatDate(d.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </main>
  );
}

export function DatasetPage({ id }: { id: string }) {
  const detail = useResource<DatasetDetail>(`/api/datasets/${encodeURIComponent(id)}`);
  if (detail.error) return <main className="page"><ErrorBox error={detail.error} retry={detail.reload} /></main>;
  if (!detail.data) return <main className="page"><Loading what="the dataset" /></main>;
  const { dataset, quarantine, cleanReport, artifacts } = detail.data;
  return (
    <main className="page">
      <div className="page-head">
        <div className="title-block">
          <div className="crumbs">
            <Link to="/datasets">Datasets</Link> /
          </div>
          <h1>{dataset.name}</h1>
          <div className="muted small mono">{dataset.id}</div>
        </div>
      </div>
      <dl className="facts">
        <div>
          <dt>created</dt>
          <dd>{formatDate(dataset.created_at)}</dd>
        </div>
        <div>
          <dt>by run</dt>
          <dd>
            <Link to={runPath(dataset.run_id)}>{dataset.run_id}</Link>
          </dd>
        </div>
        <div>
          <dt>snapshot sha256</dt>
          <dd className="mono" title={dataset.sha256}>
            {dataset.sha256.slice(0, 12)}
          </dd>
        </div>
      </dl>
      <Section title="Records" id="counts">
        <DatasetCounts dataset={dataset} removedByClean={removedOf(dataset.clean)} />
      </Section>
      <Section title="Cleaning report" id="clean">
        <CleanReportView report={cleanReport} />
      </Section>
      <Section title={`Quarantined at ingest (${formatNumber(dataset.quarantined_count)})`} id="quarantine">
        <QuarantineTable records={quarantine} total={dataset.quarantined_count} />
      </Section>
      <Section title="Artifacts" id="artifacts">
        <ArtifactsTable artifacts={artifacts} />
      </Section>
    </main>
  );
}
