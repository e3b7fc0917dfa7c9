/** A run's (or dataset's) artifacts: kind, stage, size, digest (copyable) and an authenticated download. */
import type { ArtifactInfo } from '@tempered/api-contract';
import { formatBytes, shortSha } from '../format';
import { STAGES } from '../stages';
import { CopyButton } from './common';
import { Table, unnamed } from './Table';

const stageOrder = (s: string) => {
  const i = (STAGES as readonly string[]).indexOf(s);
  return i < 0 ? STAGES.length : i;
};

export function ArtifactsTable({ artifacts }: { artifacts: ArtifactInfo[] }) {
  if (artifacts.length === 0) return <p className="muted">No artifacts yet: each stage stores its outputs as it completes.</p>;
  const sorted = [...artifacts].sort((a, b) => stageOrder(a.stage) - stageOrder(b.stage) || a.id - b.id);
  return (
    <Table columns={['kind', 'stage', ['size', 'num'], ['sha256', 'hide-narrow'], unnamed('download')]} testId="artifacts">
      {sorted.map((a) => (
        <tr key={a.id}>
          <td title={a.uri}>
            <code>{a.kind}</code>
          </td>
          <td>{a.stage}</td>
          <td className="num" title={`${a.bytes.toLocaleString()} bytes`}>
            {formatBytes(a.bytes)}
          </td>
          <td className="hide-narrow nowrap">
            <code title={a.sha256}>{shortSha(a.sha256)}</code> <CopyButton text={a.sha256} label="Copy sha256" />
          </td>
          <td>
            <a href={a.download} download aria-label={`Download ${a.kind} (${formatBytes(a.bytes)})`}>
              Download
            </a>
          </td>
        </tr>
      ))}
    </Table>
  );
}
