/**
 * What runs produced: the approvals inbox, model versions with lineage and deployments, the base-model
 * catalog they fine-tune from, dataset versions with their quarantine and cleaning reports, and artifact
 * downloads. Downloads go only through rows of the artifacts table, so a client can name an artifact but never
 * a path or key of its own; a model version is downloadable as its Hugging Face directory (model.tar), its LoRA
 * adapter (adapter.tar, PEFT's format) and its GGUF files, each one such row.
 */
import { approvalsResponse, baseModelsResponse, can, datasetDetail, datasetsResponse, lineageResponse, modelsResponse } from '@tempered/api-contract';
import { ancestors, type Db, descendants, ggufArtifacts, node } from '@tempered/db';
import { GGUF_TYPES } from '@tempered/spec';
import { z } from 'zod';
import type { ApiDeps } from '../deps';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { badField, HttpError, idParam, numberParam, route } from '../http';
import { modelCardOf, renderModelCard } from '../model-card';
import { answersOf, downloadUrl } from '../views';

/** Answers the approvals inbox shows per gate. */
const SAMPLE_ANSWERS = 3;

const PREVIEW_BYTES = 256 * 1024;

/** The model version behind the newest serving deployment (of one model name, when given), if any. */
async function production(db: Db, name?: string) {
  let q = db
    .selectFrom('deployments')
    .innerJoin('model_versions', 'model_versions.id', 'deployments.model_version_id')
    .selectAll('model_versions')
    .select('deployments.id as deploymentId')
    .where('deployments.status', '=', 'serving');
  if (name !== undefined) q = q.where('model_versions.name', '=', name);
  return q.orderBy('deployments.created_at', 'desc').executeTakeFirst();
}

const summaryOf = (rows: Array<{ name: string; summary: unknown }>, stage: string) =>
  (rows.find((r) => r.name === stage)?.summary ?? null) as Record<string, unknown> | null;

interface StoredFile {
  uri: string;
  sha256: string;
  bytes?: number;
}

const DOWNLOAD_FORMATS = ['hf', 'adapter', 'gguf'] as const;
const downloadQuery = z.object({
  format: z.enum(DOWNLOAD_FORMATS).default('hf'),
  quantization: z.enum(GGUF_TYPES).optional(),
});

/** What a model version's download in `format` is (an artifacts row, or the version's own model.tar), or why there is none (a 404's message). */
async function versionDownload(db: Db, id: string, format: (typeof DOWNLOAD_FORMATS)[number], quantization: string | undefined): Promise<number | StoredFile | string> {
  const version = await db.selectFrom('model_versions').select(['id', 'run_id', 'model_uri', 'sha256']).where('id', '=', id).executeTakeFirst();
  if (!version) return `no model version ${id}`;
  if (format === 'gguf') {
    const files = await ggufArtifacts(db, id);
    const type = quantization ?? 'q8_0';
    if (files[type]) return files[type].id;
    const have = Object.keys(files);
    return have.length
      ? `model version ${id} has no ${type} GGUF file; it has ${have.join(', ')}`
      : `model version ${id} was never exported to GGUF; a run with an optimize stage, or a deployment with deploy.engine llamacpp, exports every type (${GGUF_TYPES.join(', ')})`;
  }
  const rows = await db.selectFrom('artifacts').select(['id', 'uri', 'kind', 'stage']).where('run_id', '=', version.run_id).where('kind', 'in', ['model', 'adapter']).orderBy('id').execute();
  const model = rows.find((r) => r.uri === version.model_uri);
  // The version's model.tar is what model_versions names, whether or not a stage recorded it as an artifact.
  if (format === 'hf') return model ? model.id : { uri: version.model_uri, sha256: version.sha256 };
  const adapter = rows.find((r) => r.kind === 'adapter');
  if (!adapter) return `model version ${id} was not trained with LoRA (train.lora): it has no adapter`;
  // The adapter is the validate stage's; a model RLHF trained further is no longer base + that adapter.
  const merged = rows.find((r) => r.kind === 'model' && r.stage === adapter.stage);
  if (merged?.uri !== version.model_uri) return `model version ${id} was trained further after its LoRA stage (RLHF): its adapter is not this model; download format hf`;
  return adapter.id;
}

export function catalogRoutes(app: FastifyInstance, { db, store }: ApiDeps): void {
  /** A stored file's bytes as a download: an artifacts row (by id) or a file the database names. */
  async function sendArtifact(reply: FastifyReply, which: number | StoredFile) {
    const row = typeof which === 'number' ? await db.selectFrom('artifacts').select(['uri', 'bytes', 'sha256']).where('id', '=', which).executeTakeFirst() : which;
    if (!row) throw new HttpError(404, `no artifact ${which}`);
    const body = await store.open(row.uri); // keyOf refuses any URI outside the bucket and prefix
    const name = row.uri.split('/').pop()!.replace(/[^A-Za-z0-9._-]/g, '_');
    return reply
      .code(200)
      .headers({
        'content-type': 'application/octet-stream',
        ...(row.bytes !== undefined ? { 'content-length': String(row.bytes) } : {}),
        'content-disposition': `attachment; filename="${name}"`,
        etag: `"${row.sha256}"`,
      })
      .send(body);
  }

  route(app, {
      method: 'GET', url: '/api/approvals', action: 'read', summary: 'Pending deployment gates with test metrics beside production; recent decisions', response: { 200: approvalsResponse },
      async handler({ who }) {
        const [waiting, recent] = await Promise.all([
          db.selectFrom('runs').select(['id', 'name', 'requested_by']).where('status', '=', 'waiting-approval').orderBy('created_at').execute(),
          db.selectFrom('approvals').innerJoin('runs', 'runs.id', 'approvals.run_id').selectAll('approvals').select('runs.name').orderBy('approvals.id', 'desc').limit(20).execute(),
        ]);
        const stages = waiting.length
          ? await db.selectFrom('stages').select(['run_id', 'name', 'summary']).where('run_id', 'in', waiting.map((w) => w.id)).where('name', 'in', ['test', 'deploy']).execute()
          : [];
        // Each gate is compared with the serving version of its own model name.
        const servingByName = new Map(await Promise.all([...new Set(waiting.map((w) => w.name))].map(async (n) => [n, await production(db, n)] as const)));
        // A few answers to read before deciding: the ones the serving model gets right and this model not, else wrong ones.
        const samples = new Map(
          await Promise.all(
            waiting.map(async (w) => {
              const newly = await answersOf(db, w.id, 'newly-wrong', 0, SAMPLE_ANSWERS);
              const sample = newly.length ? { filter: 'newly-wrong' as const, answers: newly } : { filter: 'wrong' as const, answers: await answersOf(db, w.id, 'wrong', 0, SAMPLE_ANSWERS) };
              return [w.id, sample] as const;
            }),
          ),
        );
        const pending = waiting.map((r) => {
          const prod = servingByName.get(r.name);
          const mine = stages.filter((s) => s.run_id === r.id);
          const reason = !can(who.role, 'approve')
            ? `${who.role}s cannot decide gates; an approver or admin can`
            : r.requested_by === who.user
              ? 'you started this run; another approver must decide'
              : undefined;
          return {
            runId: r.id,
            name: r.name,
            requestedBy: r.requested_by,
            deadline: (summaryOf(mine, 'deploy')?.deadline as string | undefined) ?? null,
            test: summaryOf(mine, 'test'),
            production: prod ?? null,
            sampleAnswers: samples.get(r.id)!,
            canDecide: reason === undefined,
            ...(reason ? { reason } : {}),
          };
        });
        return { pending, recent };
      },
  });
  route(app, {
      method: 'GET', url: '/api/models', action: 'read', summary: 'Model versions with metrics, dataset version and deployments', response: { 200: modelsResponse },
      async handler() {
        const [models, deployments, ingests, prod] = await Promise.all([
          db.selectFrom('model_versions').selectAll().orderBy('created_at', 'desc').limit(200).execute(),
          db.selectFrom('deployments').select(['id', 'model_version_id', 'run_id', 'endpoint', 'status', 'created_at']).orderBy('created_at', 'desc').execute(),
          db.selectFrom('stages').select(['run_id', 'summary']).where('name', '=', 'ingest').execute(),
          production(db),
        ]);
        const entries = models.map((m) => ({
          ...m,
          datasetVersionId: ((ingests.find((i) => i.run_id === m.run_id)?.summary as { datasetVersionId?: string } | null)?.datasetVersionId) ?? null,
          deployments: deployments.filter((d) => d.model_version_id === m.id),
          serving: prod?.id === m.id,
        }));
        return { models: entries };
      },
  });
  route(app, {
      method: 'GET', url: '/api/models/:id/card', action: 'read',
      summary: "A model version's model card: Hugging Face's README.md format with its metadata block (base model, data, training, each test figure with its 95% interval, the comparison with the serving model, the approval)",
      params: idParam, response: { stream: 'text/markdown', description: 'The model card (README.md)' },
      async handler({ params: { id }, reply }) {
        const input = await modelCardOf(db, id);
        if (!input) throw new HttpError(404, `no model version ${id}`);
        const name = `${input.model.name}-v${input.model.version}-README.md`.replace(/[^A-Za-z0-9._-]/g, '_');
        return reply.code(200).headers({ 'content-type': 'text/markdown; charset=utf-8', 'content-disposition': `inline; filename="${name}"` }).send(renderModelCard(input));
      },
  });
  route(app, {
      method: 'GET', url: '/api/models/:id/lineage', action: 'read', summary: "A model version's lineage: its ancestors (artifacts, dataset version) and its deployments",
      params: idParam, response: { 200: lineageResponse },
      async handler({ params: { id } }) {
        const self = node.modelVersion(id);
        const [up, down] = await Promise.all([
          ancestors(db, self),
          db.selectFrom('lineage_edges').select(['parent', 'child', 'relation']).where('parent', '=', self).execute(),
        ]);
        if (up.length === 0 && down.length === 0) throw new HttpError(404, `no lineage for model version ${id}`);
        return { edges: [...up, ...down] };
      },
  });
  route(app, {
      method: 'GET', url: '/api/base-models', action: 'read', summary: 'The base-model catalog, each with the model versions fine-tuned from it', response: { 200: baseModelsResponse },
      async handler() {
        const rows = await db.selectFrom('base_models').selectAll().orderBy('name').execute();
        const versionPrefix = node.modelVersion('');
        const baseModels = await Promise.all(
          rows.map(async ({ manifest: _manifest, updated_at: _updated, ...b }) => {
            // Lineage is the one record of what came from what: the model versions anywhere below the catalog
            // entry, or below its model.tar (a run that gave the same tar by URI).
            const below = await descendants(db, [node.baseModel(b.name), node.artifact(b)]);
            const ids = below.filter((n) => n.startsWith(versionPrefix)).map((n) => n.slice(versionPrefix.length));
            const fineTuned = ids.length
              ? await db.selectFrom('model_versions').select(['id', 'name', 'version', 'run_id', 'created_at']).where('id', 'in', ids).orderBy('created_at', 'desc').execute()
              : [];
            return { ...b, fineTuned };
          }),
        );
        return { baseModels };
      },
  });
  route(app, {
      method: 'GET', url: '/api/datasets', action: 'read', summary: 'Dataset versions with counts', response: { 200: datasetsResponse },
      async handler() {
        const rows = await db.selectFrom('dataset_versions').selectAll().orderBy('created_at', 'desc').limit(200).execute();
        const cleans = rows.length
          ? await db.selectFrom('stages').select(['run_id', 'summary']).where('name', '=', 'clean').where('run_id', 'in', rows.map((r) => r.run_id)).execute()
          : [];
        return ({
          datasets: rows.map((r) => ({ ...r, clean: (cleans.find((c) => c.run_id === r.run_id)?.summary as Record<string, unknown>) ?? null })),
        });
      },
  });
  route(app, {
      method: 'GET', url: '/api/datasets/:id', action: 'read', summary: 'A dataset version: quarantined records with reasons, the cleaning report, artifacts',
      params: idParam, response: { 200: datasetDetail },
      async handler({ params: { id } }) {
        const ds = await db.selectFrom('dataset_versions').selectAll().where('id', '=', id).executeTakeFirst();
        if (!ds) throw new HttpError(404, `no dataset version ${id}`);
        const [clean, artifacts] = await Promise.all([
          db.selectFrom('stages').select('summary').where('run_id', '=', ds.run_id).where('name', '=', 'clean').executeTakeFirst(),
          db.selectFrom('artifacts').select(['id', 'stage', 'uri', 'sha256', 'bytes', 'kind']).where('run_id', '=', ds.run_id).where('stage', 'in', ['ingest', 'clean']).orderBy('id').execute(),
        ]);
        const quarantineText = (await store.getBytes(ds.quarantine_uri)).subarray(0, PREVIEW_BYTES).toString('utf8');
        const quarantine = quarantineText
          .split('\n')
          .slice(0, 200)
          .filter((l) => l.trim())
          .flatMap((l) => {
            try {
              return [JSON.parse(l) as Record<string, unknown>];
            } catch {
              return []; // the preview cut a line short
            }
          });
        const reportRow = artifacts.find((a) => a.kind === 'clean-report');
        const cleanReport = reportRow ? (JSON.parse((await store.getBytes(reportRow.uri)).toString('utf8')) as Record<string, unknown>) : null;
        return {
          dataset: { ...ds, clean: (clean?.summary as Record<string, unknown>) ?? null },
          quarantine,
          cleanReport,
          artifacts: artifacts.map((a) => ({ ...a, download: downloadUrl(a.id) })),
        };
      },
  });
  route(app, {
      method: 'GET', url: '/api/artifacts/:id', action: 'read', summary: "Download an artifact's bytes (verified against its digest by the store on upload)",
      params: numberParam, response: { stream: 'application/octet-stream', description: "The artifact's bytes" },
      async handler({ params: { id }, reply }) {
        return sendArtifact(reply, Number(id));
      },
  });
  route(app, {
      method: 'GET', url: '/api/models/:id/download', action: 'read',
      summary: 'Download a model version: format hf (its Hugging Face directory as model.tar, the default), adapter (its LoRA adapter, PEFT format, as adapter.tar) or gguf (quantization f16, q8_0 (the default) or q4_k_m)',
      params: idParam, querystring: downloadQuery, response: { stream: 'application/octet-stream', description: "The file's bytes" },
      async handler({ params: { id }, query, reply }) {
        if (query.quantization !== undefined && query.format !== 'gguf') throw badField('quantization', `goes with format gguf only; format is ${query.format}`);
        const found = await versionDownload(db, id, query.format, query.quantization);
        if (typeof found === 'string') throw new HttpError(404, found);
        return sendArtifact(reply, found);
      },
  });
}
