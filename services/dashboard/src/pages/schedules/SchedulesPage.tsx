/**
 * Schedules: pipelines on a clock (a Temporal Schedule each). The list shows each one's mode, timing, paused
 * state, next and recent actions; operators create one from an example or checked YAML (ScheduleForm), and
 * pause, resume, trigger, backfill or delete it (ScheduleActions, in each row's panel: ScheduleRows), each
 * with a comment for the audit log. Schedules send no events of their own: the list is fetched again when a
 * run a schedule started changes (live.tsx), and after every change made here.
 */
import type { ScheduleInfo } from '@tempered/api-contract';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Loaded } from '../../components/common';
import { Table, unnamed, type Column } from '../../components/Table';
import { useNow } from '../../format';
import { invalidateSoon, queries } from '../../queries';
import { setSearch, useLocation } from '../../router';
import { useMe, whyNot } from '../../session';
import { ScheduleForm } from './ScheduleForm';
import { ScheduleRows } from './ScheduleRows';

const COLUMNS: Column[] = ['schedule', ['mode', 'hide-narrow'], 'timing', 'state', 'next action', ['recent actions', 'hide-narrow'], ['note', 'hide-narrow'], unnamed('details and actions')];

/** The listed schedules and those created here that the list does not have yet, by id. */
function withCreated(listed: ScheduleInfo[], created: ScheduleInfo[]): ScheduleInfo[] {
  const extra = created.filter((s) => !listed.some((l) => l.id === s.id));
  return [...listed, ...extra].sort((a, b) => a.id.localeCompare(b.id));
}

export function SchedulesPage() {
  const me = useMe();
  const { search } = useLocation();
  const cannot = whyNot(me, 'start', 'manage schedules');
  const creating = search.get('new') === '1' && !cannot;
  const client = useQueryClient();
  const list = useQuery(queries.schedules);
  const reloadSoon = () => invalidateSoon(client, queries.schedules.queryKey, 500);
  // Temporal lists schedules from its visibility store, which lags a create by a moment: a schedule created
  // here is shown from the create's answer until the list has it.
  const [created, setCreated] = useState<ScheduleInfo[]>([]);
  const [open, setOpen] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const now = useNow(30_000);

  const listed = list.data?.schedules;
  useEffect(() => {
    if (listed) setCreated((c) => (c.some((s) => listed.some((l) => l.id === s.id)) ? c.filter((s) => !listed.some((l) => l.id === s.id)) : c));
  }, [listed]);

  const setListed = (update: (schedules: ScheduleInfo[]) => ScheduleInfo[]) =>
    client.setQueryData(queries.schedules.queryKey, (old) => old && { schedules: update(old.schedules) });
  const replace = (info: ScheduleInfo) => {
    setListed((all) => all.map((s) => (s.id === info.id ? info : s)));
    setCreated((c) => c.map((s) => (s.id === info.id ? info : s)));
  };
  const remove = (id: string) => {
    setListed((all) => all.filter((s) => s.id !== id));
    setCreated((c) => c.filter((s) => s.id !== id));
    setOpen(undefined);
    setNotice(`Deleted schedule ${id}. Runs it started go on.`);
  };

  return (
    <main className="page">
      <div className="page-head">
        <h1>Schedules</h1>
        {cannot ? (
          <span className="muted small" data-testid="cannot-manage">
            {cannot}
          </span>
        ) : (
          !creating && (
            <button type="button" className="primary" onClick={() => setSearch({ new: '1' })} data-testid="new-schedule">
              New schedule
            </button>
          )
        )}
      </div>
      <p className="muted small intro">
        A pipeline on a clock. In <strong>run</strong> mode each action starts a run; in <strong>trigger</strong> mode each action checks the spec's{' '}
        <code>retrain.watch</code> / <code>retrain.feedback</code> and starts a run only when one passes its threshold.
      </p>
      {creating && (
        <ScheduleForm
          onCancel={() => setSearch({ new: undefined })}
          onCreated={(d) => {
            setCreated((c) => [...c.filter((s) => s.id !== d.id), d]);
            setSearch({ new: undefined });
            setNotice(`Created schedule ${d.id}${d.paused ? ' (paused)' : ''}.`);
          }}
        />
      )}
      {notice && (
        <p className="callout ok" role="status" data-testid="schedules-notice">
          {notice}
          <button type="button" className="link" onClick={() => setNotice(undefined)}>
            Dismiss
          </button>
        </p>
      )}
      <Loaded query={list} what="schedules" stale="Could not refresh the list">
        {({ schedules }) => {
          const rows = withCreated(schedules, created);
          return rows.length === 0 ? (
            <div className="empty" data-testid="schedules-empty">
              <p>
                No schedules yet.
                {!cannot && !creating && (
                  <>
                    {' '}
                    <button type="button" className="link" onClick={() => setSearch({ new: '1' })}>
                      Create one
                    </button>{' '}
                    from an example spec.
                  </>
                )}
              </p>
            </div>
          ) : (
            <Table columns={COLUMNS} className="schedules" testId="schedules-table">
              {rows.map((s) => (
                <ScheduleRows
                  key={s.id}
                  schedule={s}
                  now={now}
                  open={open === s.id}
                  onToggle={() => setOpen(open === s.id ? undefined : s.id)}
                  cannot={cannot}
                  onChanged={replace}
                  onDeleted={remove}
                  onTriggered={reloadSoon}
                />
              ))}
            </Table>
          );
        }}
      </Loaded>
    </main>
  );
}
