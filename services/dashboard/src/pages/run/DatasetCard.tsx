/** The run's dataset version on its page: the counts, the cleaning report, and the way to its quarantine. */
import type { RunDetail } from '@tempered/api-contract';
import { useQuery } from '@tanstack/react-query';
import { useEffect, useRef } from 'react';
import { Loaded } from '../../components/common';
import { CleanReportView, DatasetCounts, removedByClean } from '../../components/DataQuality';
import { queries } from '../../queries';
import { datasetPath, Link } from '../../router';

export function DatasetCard({ id, fallback, cleaned }: { id: string; fallback: NonNullable<RunDetail['datasetVersion']>; cleaned: boolean }) {
  const detail = useQuery(queries.dataset(id));
  // The dataset appears after ingest, its cleaning report only once clean completes: fetch again then.
  const { refetch } = detail;
  const wasCleaned = useRef(cleaned);
  useEffect(() => {
    if (cleaned && !wasCleaned.current) void refetch();
    wasCleaned.current = cleaned;
  }, [cleaned, refetch]);
  const dataset = detail.data?.dataset ?? fallback;
  return (
    <div data-testid="dataset-card">
      <p>
        <Link to={datasetPath(dataset.id)}>{dataset.name}</Link> <span className="muted small mono">{dataset.id}</span>
      </p>
      <DatasetCounts dataset={dataset} removedByClean={removedByClean(detail.data?.dataset.clean)} />
      <h3>Cleaning report</h3>
      <Loaded query={detail} what="the cleaning report" retry={false}>
        {(d) => <CleanReportView report={d.cleanReport} />}
      </Loaded>
      {detail.data && detail.data.quarantine.length > 0 && (
        <p className="small">
          <Link to={datasetPath(dataset.id)}>See the {dataset.quarantined_count} quarantined records and why →</Link>
        </p>
      )}
    </div>
  );
}
