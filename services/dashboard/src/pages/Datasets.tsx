/**
 * Dataset versions (one per ingest): how many records came in, were kept and were quarantined; and one
 * version's detail: the quarantined records with their reasons, the cleaning report, its artifacts.
 */
import { useQuery } from '@tanstack/react-query';
import { ArtifactsTable } from '../components/Artifacts';
import { DetailHead, Fact, Loaded, Section } from '../components/common';
import { CleanReportView, DatasetCounts, QuarantineTable, removedByClean } from '../components/DataQuality';
import { Table } from '../components/Table';
import { formatDate, formatNumber } from '../format';
import { queries } from '../queries';
import { datasetPath, Link, navigate, runPath } from '../router';

export function DatasetsPage() {
  const datasets = useQuery(queries.datasets);
  return (
    <main className="page">
      <div className="page-head">
        <h1>Datasets</h1>
        <span className="muted small">One version per ingest: a snapshot of the records kept, and a quarantine of those that could not be read.</span>
      </div>
      <Loaded query={datasets} what="datasets">
        {({ datasets: list }) =>
          list.length === 0 ? (
            <p className="muted empty">No dataset versions yet: each run's ingest stage makes one.</p>
          ) : (
            <Table
              columns={['dataset', ['input', 'num'], ['kept', 'num'], ['quarantined', 'num'], ['removed by cleaning', 'num hide-narrow'], ['created', 'hide-narrow']]}
              testId="datasets"
            >
              {list.map((d) => (
                <tr key={d.id} className="clickable" onClick={(e) => !(e.target as HTMLElement).closest('a') && navigate(datasetPath(d.id))}>
                  <td>
                    <Link to={datasetPath(d.id)}>{d.name}</Link>
                    <div className="muted small mono ellipsis">{d.id}</div>
                  </td>
                  <td className="num">{formatNumber(d.input_count)}</td>
                  <td className="num">{formatNumber(d.kept_count)}</td>
                  <td className={`num${d.quarantined_count > 0 ? ' warn-text' : ''}`}>{formatNumber(d.quarantined_count)}</td>
                  <td className="num hide-narrow">{formatNumber(removedByClean(d.clean))}</td>
                  <td className="hide-narrow nowrap">{formatDate(d.created_at)}</td>
                </tr>
              ))}
            </Table>
          )
        }
      </Loaded>
    </main>
  );
}

export function DatasetPage({ id }: { id: string }) {
  const detail = useQuery(queries.dataset(id));
  return (
    <main className="page">
      <Loaded query={detail} what="the dataset">
        {({ dataset, quarantine, cleanReport, artifacts }) => (
          <>
            <DetailHead parent={{ to: '/datasets', label: 'Datasets' }} title={dataset.name} sub={dataset.id} subClassName="muted small mono" />
            <dl className="facts">
              <Fact term="created">{formatDate(dataset.created_at)}</Fact>
              <Fact term="by run">
                <Link to={runPath(dataset.run_id)}>{dataset.run_id}</Link>
              </Fact>
              <Fact term="snapshot sha256" className="mono" title={dataset.sha256}>
                {dataset.sha256.slice(0, 12)}
              </Fact>
            </dl>
            <Section title="Records" id="counts">
              <DatasetCounts dataset={dataset} removedByClean={removedByClean(dataset.clean)} />
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
          </>
        )}
      </Loaded>
    </main>
  );
}
