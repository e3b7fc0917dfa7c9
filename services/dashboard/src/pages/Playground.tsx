/**
 * The playground: chat with a serving model through the gateway, streamed, with a system prompt and sampling
 * settings, and rate each answer; or ask two models (or two versions) the same thing side by side and say which
 * answered better. Ratings and preferences go to the gateway's feedback tables through the API, the same channel
 * API clients use, so they reach the next RLHF run. A model name is routed as the gateway routes it (canary
 * weights included, sticky per user); a version is pinned.
 */
import type { DeploymentEntry, PlaygroundChatRequest, PlaygroundFeedbackResponse } from '@tempered/api-contract';
import { type KeyboardEvent, useRef, useState } from 'react';
import { ApiFailure, asFailure, type ChatAnswer, post, streamChat } from '../api';
import { useDeployments } from '../components/Canary';
import { ErrorBox, Loaded, Section } from '../components/common';
import { useMe, whyNot } from '../session';

interface Target {
  value: string;
  label: string;
}

/** What the page can talk to: every model name that serves (routed) and each of its serving versions (pinned). */
function targetsOf(deployments: DeploymentEntry[]): Target[] {
  const live = deployments.filter((d) => d.status === 'serving' || d.status === 'canary');
  const names = [...new Set(live.map((d) => d.model_name))].sort();
  return names.flatMap((name) => [
    { value: name, label: `${name} (as the gateway routes it)` },
    ...live.filter((d) => d.model_name === name).map((d) => ({ value: d.model_version_id, label: `${name} v${d.version} only` })),
  ]);
}

interface Settings {
  system: string;
  temperature: number;
  topP: number;
  maxTokens: number;
  seed: string;
}
const DEFAULTS: Settings = { system: '', temperature: 0.7, topP: 1, maxTokens: 128, seed: '' };

type Message = PlaygroundChatRequest['messages'][number];

/** The request for `messages` under `settings` (the system prompt first, when there is one). */
function chatRequest(model: string, settings: Settings, messages: Message[]): PlaygroundChatRequest {
  const seed = settings.seed.trim() === '' ? undefined : Number(settings.seed);
  return {
    model,
    messages: settings.system.trim() ? [{ role: 'system', content: settings.system }, ...messages] : messages,
    temperature: settings.temperature,
    top_p: settings.topP,
    max_tokens: settings.maxTokens,
    ...(seed !== undefined && Number.isInteger(seed) ? { seed } : {}),
  };
}

/** One answer as it streams in, and how it ended. */
interface Reply {
  text: string;
  done?: ChatAnswer;
  error?: ApiFailure;
}

/** Streams one answer into `set`; aborting the signal stops it (the API then frees the model server). */
async function ask(request: PlaygroundChatRequest, set: (r: Reply) => void, signal: AbortSignal): Promise<Reply> {
  let reply: Reply = { text: '' };
  try {
    const done = await streamChat(request, (text) => set((reply = { text })), signal);
    reply = { text: done.text, done };
  } catch (err) {
    if ((err as Error).name === 'AbortError') reply = { ...reply, error: new ApiFailure(0, 'Stopped.') };
    else reply = { ...reply, error: asFailure(err) };
  }
  set(reply);
  return reply;
}

export function PlaygroundPage() {
  const me = useMe();
  const cannot = whyNot(me, 'use', 'chat with serving models and rate their answers');
  const list = useDeployments(() => false);
  return (
    <main className="page" data-testid="playground">
      <div className="page-head">
        <h1>Playground</h1>
        <span className="muted small">Chat with a serving model through the gateway and rate its answers; ratings reach the next RLHF run.</span>
      </div>
      {cannot ? (
        <p className="callout info" data-testid="playground-cannot">
          {cannot}
        </p>
      ) : (
        <Loaded query={list} what="serving models">
          {({ deployments }) => {
            const targets = targetsOf(deployments);
            return targets.length === 0 ? (
              <div className="empty" data-testid="playground-empty">
                <p>No model serves yet: a run deploys its model once an approver approves its gate.</p>
              </div>
            ) : (
              <Playground targets={targets} />
            );
          }}
        </Loaded>
      )}
    </main>
  );
}

function Playground({ targets }: { targets: Target[] }) {
  const [mode, setMode] = useState<'chat' | 'compare'>('chat');
  const [settings, setSettings] = useState(DEFAULTS);
  const [modelA, setModelA] = useState(targets[0].value);
  const [modelB, setModelB] = useState((targets[1] ?? targets[0]).value);
  const set = <K extends keyof Settings>(key: K, value: Settings[K]) => setSettings((s) => ({ ...s, [key]: value }));
  return (
    <>
      <Section title="Settings" id="playground-settings">
        <div className="toolbar" role="radiogroup" aria-label="Mode">
          <label>
            <input type="radio" name="mode" checked={mode === 'chat'} onChange={() => setMode('chat')} /> Chat
          </label>
          <label>
            <input type="radio" name="mode" checked={mode === 'compare'} onChange={() => setMode('compare')} data-testid="mode-compare" /> Compare two side by side
          </label>
        </div>
        <div className="two-col">
          <ModelPick id="model-a" label={mode === 'chat' ? 'Model' : 'Model A'} targets={targets} value={modelA} onChange={setModelA} />
          {mode === 'compare' && <ModelPick id="model-b" label="Model B" targets={targets} value={modelB} onChange={setModelB} />}
        </div>
        <label className="field" htmlFor="system">
          <span>System prompt</span>
          <textarea id="system" rows={2} value={settings.system} onChange={(e) => set('system', e.target.value)} placeholder="Optional: how the model should behave" />
        </label>
        <div className="two-col playground-sampling">
          <NumberField id="temperature" label="Temperature" hint="0 is greedy" min={0} max={2} step={0.1} value={settings.temperature} onChange={(v) => set('temperature', v)} />
          <NumberField id="top-p" label="Top p" min={0.05} max={1} step={0.05} value={settings.topP} onChange={(v) => set('topP', v)} />
          <NumberField id="max-tokens" label="Max tokens" min={1} max={4096} step={1} value={settings.maxTokens} onChange={(v) => set('maxTokens', v)} />
          <label className="field" htmlFor="seed">
            <span>Seed</span>
            <input id="seed" inputMode="numeric" value={settings.seed} onChange={(e) => set('seed', e.target.value)} placeholder="random" />
          </label>
        </div>
      </Section>
      {mode === 'chat' ? <Chat key={modelA} model={modelA} settings={settings} /> : <Compare models={[modelA, modelB]} settings={settings} />}
    </>
  );
}

function ModelPick({ id, label, targets, value, onChange }: { id: string; label: string; targets: Target[]; value: string; onChange: (v: string) => void }) {
  return (
    <label className="field" htmlFor={id}>
      <span>{label}</span>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
        {targets.map((t) => (
          <option key={t.value} value={t.value}>
            {t.label}
          </option>
        ))}
      </select>
    </label>
  );
}

function NumberField({ id, label, hint, value, onChange, ...range }: { id: string; label: string; hint?: string; value: number; min: number; max: number; step: number; onChange: (v: number) => void }) {
  return (
    <label className="field" htmlFor={id}>
      <span>
        {label} {hint && <span className="muted small">({hint})</span>}
      </span>
      <input id={id} type="number" {...range} value={value} onChange={(e) => e.target.value !== '' && onChange(Number(e.target.value))} />
    </label>
  );
}

/** The message box: Enter sends, Shift+Enter starts a new line. */
function Composer({ busy, onSend, onStop, label }: { busy: boolean; onSend: (text: string) => void; onStop: () => void; label: string }) {
  const [text, setText] = useState('');
  const send = () => {
    if (busy || text.trim() === '') return;
    onSend(text);
    setText('');
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey) (e.preventDefault(), send());
  };
  return (
    <div className="composer">
      <textarea aria-label={label} rows={2} value={text} onChange={(e) => setText(e.target.value)} onKeyDown={onKey} placeholder={`${label} (Enter sends, Shift+Enter for a new line)`} data-testid="chat-input" />
      {busy ? (
        <button type="button" onClick={onStop} data-testid="stop">
          Stop
        </button>
      ) : (
        <button type="button" className="primary" onClick={send} disabled={text.trim() === ''} data-testid="send">
          Send
        </button>
      )}
    </div>
  );
}

interface Turn {
  user: string;
  reply: Reply;
}

function Chat({ model, settings }: { model: string; settings: Settings }) {
  const [turns, setTurns] = useState<Turn[]>([]);
  const [busy, setBusy] = useState(false);
  const stop = useRef<AbortController>(undefined);

  const send = async (text: string) => {
    // The conversation so far, without answers that failed (the model never said them).
    const history: Message[] = turns.flatMap((t) => (t.reply.error ? [] : [{ role: 'user', content: t.user }, { role: 'assistant', content: t.reply.text }] as Message[]));
    const at = turns.length;
    setTurns((ts) => [...ts, { user: text, reply: { text: '' } }]);
    const put = (reply: Reply) => setTurns((ts) => ts.map((t, i) => (i === at ? { ...t, reply } : t)));
    stop.current = new AbortController();
    setBusy(true);
    await ask(chatRequest(model, settings, [...history, { role: 'user', content: text }]), put, stop.current.signal);
    setBusy(false);
  };

  return (
    <Section title="Conversation" id="conversation" actions={turns.length > 0 && !busy && <button type="button" className="link" onClick={() => setTurns([])}>New conversation</button>}>
      <ol className="chat" aria-live="polite">
        {turns.map((t, i) => (
          <li key={i}>
            <div className="bubble user">
              <span className="label-tag">You</span>
              <pre>{t.user}</pre>
            </div>
            <Answer reply={t.reply} />
          </li>
        ))}
      </ol>
      <Composer busy={busy} onSend={send} onStop={() => stop.current?.abort()} label="Your message" />
    </Section>
  );
}

/** An answer as it streams, then what it cost and its thumbs. */
function Answer({ reply, label = 'Model' }: { reply: Reply; label?: string }) {
  const { done, error } = reply;
  return (
    <div className="bubble assistant" data-testid="assistant-turn" data-done={done ? 'true' : 'false'} data-request-id={done?.requestId ?? undefined}>
      <span className="label-tag">{label}</span>
      <pre>{reply.text || (done ? <span className="muted">(empty answer)</span> : !error && <span className="muted">…</span>)}</pre>
      {error && <ErrorBox error={error} />}
      {done && (
        <div className="answer-foot muted small">
          <span>
            {done.usage ? `${done.usage.completion_tokens} tokens` : ''}
            {done.finishReason === 'length' ? ' · cut at max tokens' : ''}
          </span>
          {done.requestId && <Thumbs requestId={done.requestId} />}
        </div>
      )}
    </div>
  );
}

function Thumbs({ requestId }: { requestId: string }) {
  const [rated, setRated] = useState<'up' | 'down'>();
  const [error, setError] = useState<ApiFailure>();
  const rate = async (rating: 'up' | 'down') => {
    setError(undefined);
    try {
      await post<PlaygroundFeedbackResponse>('/api/playground/rating', { requestId, rating });
      setRated(rating);
    } catch (err) {
      setError(asFailure(err));
    }
  };
  if (error) return <span className="error-text">{error.message}</span>;
  if (rated) return <span data-testid="rated" data-rating={rated}>Rated {rated === 'up' ? '👍' : '👎'}, kept for the next RLHF run</span>;
  return (
    <span className="thumbs" role="group" aria-label="Rate this answer">
      <button type="button" className="link" onClick={() => rate('up')} aria-label="Good answer" data-testid="rate-up">
        👍
      </button>
      <button type="button" className="link" onClick={() => rate('down')} aria-label="Bad answer" data-testid="rate-down">
        👎
      </button>
    </span>
  );
}

function Compare({ models, settings }: { models: [string, string]; settings: Settings }) {
  const [prompt, setPrompt] = useState<string>();
  const [replies, setReplies] = useState<[Reply, Reply]>([{ text: '' }, { text: '' }]);
  const [busy, setBusy] = useState(false);
  const [stored, setStored] = useState<'a' | 'b' | 'tie'>();
  const [error, setError] = useState<ApiFailure>();
  const stop = useRef<AbortController>(undefined);

  const send = async (text: string) => {
    setPrompt(text);
    setStored(undefined);
    setError(undefined);
    setReplies([{ text: '' }, { text: '' }]);
    stop.current = new AbortController();
    setBusy(true);
    const put = (side: 0 | 1) => (r: Reply) => setReplies((rs) => (side === 0 ? [r, rs[1]] : [rs[0], r]));
    const messages: Message[] = [{ role: 'user', content: text }];
    await Promise.all([0, 1].map((side) => ask(chatRequest(models[side], settings, messages), put(side as 0 | 1), stop.current!.signal)));
    setBusy(false);
  };
  const [a, b] = replies;
  const bothDone = !!(a.done?.requestId && b.done?.requestId);
  const prefer = async (preferred: 'a' | 'b' | 'tie') => {
    setError(undefined);
    try {
      await post<PlaygroundFeedbackResponse>('/api/playground/preference', {
        prompt: prompt!, responseA: a.text, responseB: b.text, requestIds: [a.done!.requestId!, b.done!.requestId!], preferred,
      });
      setStored(preferred);
    } catch (err) {
      setError(asFailure(err));
    }
  };

  return (
    <Section title="Side by side" id="compare">
      {prompt !== undefined && (
        <>
          <div className="prompt">
            <span className="label-tag">Prompt</span>
            <pre>{prompt}</pre>
          </div>
          <div className="responses">
            <Answer reply={a} label="A" />
            <Answer reply={b} label="B" />
          </div>
          {error && <ErrorBox error={error} />}
          {stored ? (
            <p className="callout ok" role="status" data-testid="preference-stored">
              {stored === 'tie' ? 'A tie' : `${stored.toUpperCase()} is better`}: kept as a preference for the next RLHF run.
            </p>
          ) : (
            bothDone && (
              <div className="label-buttons" role="group" aria-label="Which answer is better">
                <button type="button" className="primary" onClick={() => prefer('a')} data-testid="prefer-a">
                  A is better
                </button>
                <button type="button" onClick={() => prefer('tie')} data-testid="prefer-tie">
                  Tie
                </button>
                <button type="button" className="primary" onClick={() => prefer('b')} data-testid="prefer-b">
                  B is better
                </button>
              </div>
            )
          )}
        </>
      )}
      <Composer busy={busy} onSend={send} onStop={() => stop.current?.abort()} label="Ask both" />
    </Section>
  );
}
