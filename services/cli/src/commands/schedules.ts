/** `tempered schedules …`: a thin shell over /api/schedules (pipelines on a clock, triggered retrains). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type {
  BackfillScheduleRequest, CreateScheduleRequest, ScheduleDetail, ScheduleInfo, ScheduleMode, ScheduleOverlap, SchedulesResponse,
} from '@tempered/api-contract';
import { CliError, type Flags } from '../args';
import { api, token } from '../client';
import { SCHEDULES_HELP } from '../help';
import { out } from '../output';

const timing = (s: ScheduleInfo) => (s.cron ? `cron ${s.cron}` : `every ${s.every}`);

function showOne(d: ScheduleDetail): void {
  console.log(`${d.id}  ${d.paused ? 'PAUSED' : 'active'}  ${d.mode} ${d.pipeline}  ${timing(d)}  overlap ${d.overlap}`);
  if (d.note) console.log(`  note: ${d.note}`);
  console.log(`  created by ${d.createdBy ?? '?'} at ${d.createdAt}${d.comment ? `: ${d.comment}` : ''}`);
  console.log(`  actions taken ${d.actionsTaken}, skipped for overlap ${d.skippedOverlap}, missed ${d.missedCatchupWindow}`);
  if (d.nextActionTimes.length) console.log(`  next: ${d.paused ? '(paused) ' : ''}${d.nextActionTimes.slice(0, 3).join(', ')}`);
  for (const a of d.recentActions.slice(-10)) console.log(`  took ${a.scheduledAt}: ${a.workflowId}${d.running.includes(a.workflowId) ? ' (running)' : ''}`);
  if (d.trigger) {
    console.log(`  trigger: last checked ${d.trigger.lastCheckedAt ?? 'never'}: ${d.trigger.lastCheck ?? ''}`);
    if (d.trigger.lastRunId) console.log(`  last retrain: ${d.trigger.lastRunId}`);
  }
}

/** `tempered schedules SUBCOMMAND …` (args: what follows `schedules`). */
export async function schedules(args: string[], flags: Flags): Promise<void> {
  const [sub, id, file] = args;
  if (!sub || flags.help || !(sub in SCHEDULES_HELP)) {
    if (sub && !(sub in SCHEDULES_HELP)) throw new CliError(`unknown subcommand "schedules ${sub}"; see tempered schedules --help`);
    return void console.log(SCHEDULES_HELP[sub ?? ''] ?? SCHEDULES_HELP['']);
  }
  const { comment } = flags;
  // The API checks the values of --mode and --overlap (and says which are allowed).
  const overlap = flags.overlap as ScheduleOverlap | undefined;
  const needId = () => {
    if (!id) throw new CliError(`schedules ${sub} needs a schedule id; see tempered schedules ${sub} --help`);
    return encodeURIComponent(id);
  };
  const auth = () => token(flags.user, 'operator');

  switch (sub) {
    case 'create': {
      if (!id || !file) throw new CliError('schedules create needs an id and a spec file; see tempered schedules create --help');
      const specFile = path.resolve(file);
      if (!existsSync(specFile)) throw new CliError(`spec file ${specFile} not found`);
      const body: CreateScheduleRequest = {
        id,
        spec: readFileSync(specFile, 'utf8'),
        specDir: path.dirname(specFile),
        ...(flags.cron !== undefined ? { cron: flags.cron } : {}),
        ...(flags.every !== undefined ? { every: flags.every } : {}),
        ...(flags.mode !== undefined ? { mode: flags.mode as ScheduleMode } : {}),
        ...(overlap !== undefined ? { overlap } : {}),
        ...(flags.paused ? { paused: true } : {}),
        ...(comment !== undefined ? { comment } : {}),
      };
      const d = await api<ScheduleDetail>('POST', '/api/schedules', auth(), body);
      return out(flags, d, () => {
        console.log(`created schedule ${d.id}`);
        showOne(d);
      });
    }
    case 'list': {
      const { schedules: list } = await api<SchedulesResponse>('GET', '/api/schedules', auth());
      return out(flags, list, () => {
        for (const s of list) {
          console.log(`${s.id.padEnd(24)} ${(s.paused ? 'paused' : 'active').padEnd(7)} ${s.mode.padEnd(8)} ${s.pipeline.padEnd(20)} ${timing(s).padEnd(22)} next ${s.paused ? '-' : (s.nextActionTimes[0] ?? '-')}`);
        }
        if (list.length === 0) console.log('no schedules yet: tempered schedules create --help');
      });
    }
    case 'show': {
      const d = await api<ScheduleDetail>('GET', `/api/schedules/${needId()}`, auth());
      return out(flags, d, () => showOne(d));
    }
    case 'pause':
    case 'resume': {
      const d = await api<ScheduleDetail>('POST', `/api/schedules/${needId()}/${sub}`, auth(), comment !== undefined ? { comment } : {});
      return out(flags, d, () => console.log(`${sub === 'pause' ? 'paused' : 'resumed'} ${d.id}${d.paused || sub === 'pause' ? '' : `; next: ${d.nextActionTimes[0] ?? '-'}`}`));
    }
    case 'trigger': {
      const r = await api<{ triggered: true }>('POST', `/api/schedules/${needId()}/trigger`, auth(), { ...(comment !== undefined ? { comment } : {}), ...(overlap ? { overlap } : {}) });
      return out(flags, r, () => console.log(`triggered ${id}: one action starts now (tempered schedules show ${id})`));
    }
    case 'backfill': {
      if (!flags.from || !flags.to) throw new CliError('schedules backfill needs --from and --to (ISO 8601); see tempered schedules backfill --help');
      const body: BackfillScheduleRequest = { from: flags.from, to: flags.to, ...(overlap ? { overlap } : {}), ...(comment !== undefined ? { comment } : {}) };
      const r = await api<{ backfilled: true; from: string; to: string; overlap: ScheduleOverlap }>('POST', `/api/schedules/${needId()}/backfill`, auth(), body);
      return out(flags, r, () => console.log(`backfilling ${id} from ${r.from} to ${r.to} (overlap ${r.overlap})`));
    }
    case 'delete': {
      const r = await api<{ deleted: true }>('DELETE', `/api/schedules/${needId()}${comment ? `?comment=${encodeURIComponent(comment)}` : ''}`, auth());
      return out(flags, r, () => console.log(`deleted schedule ${id}`));
    }
  }
}
