/**
 * `deploy.engine: llamacpp` on the real stack: a tiny model of the demo task is trained and exported by the Python
 * trainer, and the deploy activity exports it to GGUF (f16, q8_0, q4_k_m, kept as artifacts) and starts llama.cpp's
 * server (llama-cpp-python's `llama_cpp.server`) on the q8_0 file as the deployment's model server. Through the
 * stack's gateway, with the official `openai` client: chats and completions, streamed and not. The server killed
 * comes back by the worker's supervisor as llama.cpp's again. The version downloads as GGUF, as its Hugging Face
 * directory, and not as an adapter it does not have; a model llama.cpp cannot convert is refused at deploy.engine,
 * and a quantization without the engine at the spec's field.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities, isModelServer, TrainerSlots } from '@tempered/activities';
import type { DeployResult } from '@tempered/contract';
import { ggufArtifacts, setRoutes } from '@tempered/db';
import type { PipelineSpec } from '@tempered/spec';
import OpenAI from 'openai';
import { apiCall, cfg, db, demoSpec, reversalRecords, store, trainerCommand, trainerServer, trainTinyModel, uniqueId, waitFor } from '../support';

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

describe('a deployment served by llama.cpp from its GGUF export', () => {
  const database = db();
  const name = uniqueId('lcpp');
  const dir = mkdtempSync(path.join(tmpdir(), 'tempered-llamacpp-'));
  const activities = createActivities({ cfg, db: database, store: store(), slots: TrainerSlots.unlimited(), trainerServer });
  const openai = new OpenAI({ baseURL: `${cfg.gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const deployed: DeployResult[] = [];
  let trainedTar: string;
  let rewardTar: string;

  /** The spec a run was started with, recorded as the API records it (the supervisor reads the engine there). */
  async function runOf(spec: PipelineSpec): Promise<string> {
    const runId = uniqueId('lcpp-run');
    await database.insertInto('runs').values({ id: runId, name: spec.name, spec: JSON.stringify(spec), status: 'running', requested_by: 'llamacpp-test' }).execute();
    return runId;
  }

  async function deploy(spec: PipelineSpec, modelTar: string): Promise<DeployResult> {
    const model = await store().putFile(modelTar, 'model', 'model.tar');
    const runId = await runOf(spec);
    const result = await new MockActivityEnvironment({ heartbeatTimeoutMs: 120_000 }).run(activities.deploy, {
      runId, spec, model, datasetVersionId: 'ds-llamacpp-test', metrics: { loss: 1, perplexity: 2.7, exactMatch: 0, baselineExactMatch: 0, examples: 0 }, approver: 'llamacpp-test',
    }) as DeployResult;
    deployed.push(result);
    return result;
  }

  const llamaSpec = (): PipelineSpec => {
    const spec = demoSpec();
    spec.name = name;
    spec.deploy = { ...spec.deploy, engine: 'llamacpp', quantization: 'q8_0', smokePrompt: 'reverse 1 2 3' };
    return spec;
  };

  before(async () => {
    const sft = await trainTinyModel(dir, { n_layer: 1, n_head: 2, n_embd: 64, context_length: 32 });
    trainedTar = (await trainerCommand('export', { checkpoint: sft.checkpoints.at(-1), output_dir: path.join(dir, 'trained') }, dir)).model_tar;
    // A reward model: a GPT-2 with a score head, which llama.cpp's converter has no class for.
    const prefs = reversalRecords(32).map((r) => JSON.stringify({ prompt: r.prompt, chosen: r.response, rejected: '0' }));
    writeFileSync(path.join(dir, 'prefs.jsonl'), `${prefs.join('\n')}\n`);
    rewardTar = (await trainerCommand('reward', {
      preferences: path.join(dir, 'prefs.jsonl'), output_dir: path.join(dir, 'reward'), base_model: trainedTar, steps: 2, batch_size: 8, learning_rate: 0.001, seed: 0, device: 'cpu',
    }, dir)).model_tar;
  });

  after(async () => {
    await setRoutes(database, name, []).catch(() => {});
    for (const d of deployed) {
      const row = await database.selectFrom('deployments').select('pid').where('id', '=', d.deploymentId).executeTakeFirst();
      await database.updateTable('deployments').set({ status: 'stopped' }).where('id', '=', d.deploymentId).execute();
      if (row?.pid && isModelServer(row.pid)) process.kill(-row.pid, 'SIGTERM');
    }
    await database.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the deploy activity exports every GGUF type and serves the asked one with llama.cpp\'s server', { timeout: 300_000 }, async () => {
    const d = await deploy(llamaSpec(), trainedTar);
    const row = await database.selectFrom('deployments').selectAll().where('id', '=', d.deploymentId).executeTakeFirstOrThrow();
    assert.equal(row.status, 'serving');
    const args = cmdline(row.pid!);
    assert.deepEqual(args.slice(1, 3), ['-m', 'llama_cpp.server'], args.join(' '));
    assert.ok(args[args.indexOf('--model') + 1].endsWith('model-q8_0.gguf'), args.join(' '));
    assert.equal(args[args.indexOf('--chat_format') + 1], 'chat_template.default');
    const files = await ggufArtifacts(database, d.modelVersionId);
    assert.deepEqual(Object.keys(files).sort(), ['f16', 'q4_k_m', 'q8_0']);
    assert.ok(files.q8_0.bytes < files.f16.bytes, JSON.stringify(files));
    // The server names the model by its version, as the trainer's server does.
    const models = (await (await fetch(`${d.endpoint}/v1/models`)).json()) as any;
    assert.equal(models.data[0].id, d.modelVersionId);
  });

  test('through the gateway with the OpenAI client: chats and completions, streamed pieces adding up to the whole', { timeout: 120_000 }, async () => {
    const [d] = deployed;
    await waitFor('the gateway to list the model', 15_000, async () => ((await openai.models.list()).data.some((m) => m.id === name) ? true : undefined), 200);
    const messages = [{ role: 'user' as const, content: 'reverse 4 5 6' }];
    const chat = await openai.chat.completions.create({ model: name, messages, max_tokens: 12, temperature: 0 });
    const direct: any = await (await fetch(`${d.endpoint}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages, max_tokens: 12, temperature: 0 }) })).json();
    assert.equal(chat.choices[0].message.content, direct.choices[0].message.content, 'the gateway answers what the llama.cpp server answers');
    assert.ok(chat.choices[0].message.content!.trim().length > 0, JSON.stringify(chat));
    assert.ok(!chat.choices[0].message.content!.includes('<|endoftext|>'), 'generation stops at the end token');
    assert.ok(chat.usage!.completion_tokens > 0);
    let streamed = '';
    let finish: string | null = null;
    for await (const chunk of await openai.chat.completions.create({ model: name, messages, max_tokens: 12, temperature: 0, stream: true })) {
      streamed += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(streamed, chat.choices[0].message.content);
    assert.equal(finish, chat.choices[0].finish_reason);

    // A completion is llama.cpp's: the prompt continued as raw text (no chat template).
    const prompt = 'reverse 4 5 6';
    const whole = await openai.completions.create({ model: name, prompt, max_tokens: 12, temperature: 0 });
    assert.equal(whole.object, 'text_completion');
    assert.ok(whole.choices[0].text.length > 0 && whole.usage!.completion_tokens > 0, JSON.stringify(whole));
    let pieces = '';
    for await (const chunk of await openai.completions.create({ model: name, prompt, max_tokens: 12, temperature: 0, stream: true })) pieces += chunk.choices[0]?.text ?? '';
    assert.equal(pieces, whole.choices[0].text);
  });

  test('a killed llama.cpp server is started again by the supervisor, as llama.cpp\'s, on the same endpoint', { timeout: 120_000 }, async () => {
    const [d] = deployed;
    const before = await database.selectFrom('deployments').selectAll().where('id', '=', d.deploymentId).executeTakeFirstOrThrow();
    process.kill(-before.pid!, 'SIGKILL');
    const now = await waitFor('the supervisor to start it again', 90_000, async () => {
      const row = await database.selectFrom('deployments').selectAll().where('id', '=', d.deploymentId).executeTakeFirstOrThrow();
      return row.pid && row.pid !== before.pid && isModelServer(row.pid) ? row : undefined;
    }, 500);
    assert.equal(now.endpoint, before.endpoint);
    assert.ok(cmdline(now.pid!).includes('llama_cpp.server'), cmdline(now.pid!).join(' '));
    const chat = await openai.chat.completions.create({ model: name, messages: [{ role: 'user', content: 'reverse 1 2' }], max_tokens: 8, temperature: 0 });
    assert.ok(chat.choices[0].message.content!.trim().length > 0);
  });

  test('a version downloads as GGUF of each type and as its Hugging Face directory; a missing adapter and bad fields are refused', { timeout: 60_000 }, async () => {
    const [d] = deployed;
    const files = await ggufArtifacts(database, d.modelVersionId);
    const download = async (query: string) => fetch(`${cfg.api.url}/api/models/${d.modelVersionId}/download?${query}`, { headers: { authorization: `Bearer ${JSON.parse(readFileSync(path.join(cfg.dataDir, 'credentials.json'), 'utf8')).operator.token}` } });
    for (const type of ['f16', 'q8_0', 'q4_k_m'] as const) {
      const res = await download(`format=gguf&quantization=${type}`);
      assert.equal(res.status, 200);
      const bytes = Buffer.from(await res.arrayBuffer());
      assert.equal(bytes.subarray(0, 4).toString(), 'GGUF');
      assert.equal(createHash('sha256').update(bytes).digest('hex'), files[type].sha256);
      assert.match(res.headers.get('content-disposition')!, new RegExp(`model-${type}\\.gguf`));
    }
    const hf = await download('format=hf');
    assert.equal(hf.status, 200);
    assert.equal(createHash('sha256').update(Buffer.from(await hf.arrayBuffer())).digest('hex'), createHash('sha256').update(readFileSync(trainedTar)).digest('hex'));
    const adapter = await download('format=adapter');
    assert.equal(adapter.status, 404);
    assert.match(((await adapter.json()) as any).error, /not trained with LoRA/);
    const bad = await apiCall('GET', `/api/models/${d.modelVersionId}/download?format=hf&quantization=f16`, 'operator');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.issues[0].path, 'quantization');
    const unknown = await apiCall('GET', `/api/models/${d.modelVersionId}/download?format=gguf&quantization=q5_1`, 'operator');
    assert.equal(unknown.status, 400, JSON.stringify(unknown.body));
  });

  test('a model llama.cpp cannot convert fails the deploy at deploy.engine; a quantization without the engine is refused at submit', { timeout: 180_000 }, async () => {
    const spec = llamaSpec();
    spec.name = `${name}-reward`;
    await assert.rejects(deploy(spec, rewardTar), (err: any) => {
      assert.equal(err.type, 'BadInput');
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /field 'deploy\.engine'/);
      assert.match(err.message, /GPT2ForSequenceClassification is not supported/);
      return true;
    });
    const plain = demoSpec() as any;
    plain.deploy = { quantization: 'q4_k_m' };
    const refused = await apiCall('POST', '/api/runs', 'operator', { spec: plain });
    assert.equal(refused.status, 400);
    assert.ok(refused.body.issues.some((i: any) => i.path === 'deploy.quantization'), JSON.stringify(refused.body));
    plain.deploy = { engine: 'vllm' };
    const engine = await apiCall('POST', '/api/runs', 'operator', { spec: plain });
    assert.ok(engine.status === 400 && engine.body.issues.some((i: any) => i.path === 'deploy.engine'), JSON.stringify(engine.body));
  });
});
