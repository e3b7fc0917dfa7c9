/**
 * Starting a run: pick an example spec, or write, paste or upload YAML. The spec is validated as it is typed
 * with the API's own schema, each issue shown on its line; "Start run" stays disabled until the spec is valid.
 * Issues the API finds on submit (a data path it cannot read) are shown the same way.
 */
import { startRunRequest, type ExampleSpec } from '@tempered/api-contract';
import { useEffect, useMemo, useState, type ChangeEvent } from 'react';
import { ApiFailure, post, useResource } from '../api';
import { ErrorBox, Loading } from '../components/common';
import { ExamplePicker } from '../components/ExamplePicker';
import { SpecEditor } from '../components/SpecEditor';
import { Link, navigate, runPath, setSearch, useLocation } from '../router';
import { useMe, whyNot } from '../session';
import { checkSpec, locate, relativePathWarnings, type LocatedIssue } from '../spec-check';

const STARTER = `apiVersion: tempered/v1
name: my-run
data:
  sources:
    - uri: s3://bucket/path/train.jsonl
rlhf:
  method: none
`;

export function StartRunPage() {
  const me = useMe();
  const { search } = useLocation();
  const mode = search.get('from') === 'yaml' ? 'yaml' : 'example';
  const examples = useResource<{ examples: ExampleSpec[] }>('/api/examples');
  const [examplePath, setExamplePath] = useState<string>();
  const [text, setText] = useState(STARTER);
  const [serverIssues, setServerIssues] = useState<{ text: string; issues: LocatedIssue[] }>();
  const [error, setError] = useState<ApiFailure>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!examplePath && examples.data?.examples.length) setExamplePath(examples.data.examples[0].path);
  }, [examples.data, examplePath]);
  const example = examples.data?.examples.find((e) => e.path === examplePath);

  const shownText = mode === 'example' ? (example?.yaml ?? '') : text;
  const check = useMemo(() => checkSpec(shownText), [shownText]);
  const issues = check.issues.length > 0 ? check.issues : serverIssues?.text === shownText ? serverIssues.issues : [];
  const warnings = useMemo(() => (mode === 'yaml' && check.spec ? relativePathWarnings(text, check.spec) : []), [mode, check.spec, text]);
  const valid = issues.length === 0 && check.spec !== undefined && (mode === 'yaml' || example !== undefined);

  const cannot = whyNot(me, 'start');
  if (cannot) {
    return (
      <main className="page narrow-page">
        <h1>Start a run</h1>
        <p className="callout info">{cannot}</p>
      </main>
    );
  }

  const submit = async () => {
    if (!valid || busy) return;
    const body = startRunRequest.safeParse(mode === 'example' ? { example: example!.path } : { spec: text });
    if (!body.success) {
      setError(new ApiFailure(400, body.error.issues.map((i) => i.message).join('; ')));
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      const res = await post<{ runId: string }>('/api/runs', body.data);
      navigate(runPath(res.runId));
    } catch (err) {
      const failure = err instanceof ApiFailure ? err : new ApiFailure(0, String(err));
      if (failure.issues.length > 0) setServerIssues({ text: shownText, issues: locate(shownText, failure.issues) });
      setError(failure);
    } finally {
      setBusy(false);
    }
  };

  const upload = async (e: ChangeEvent<HTMLInputElement>) => {
    const file = e.target.files?.[0];
    e.target.value = '';
    if (!file) return;
    if (file.size > 1024 * 1024) {
      setError(new ApiFailure(0, `${file.name} is over 1 MiB; a spec is a few lines of YAML`));
      return;
    }
    setText(await file.text());
    setError(undefined);
  };

  return (
    <main className="page">
      <div className="page-head">
        <h1>Start a run</h1>
        <Link to="/runs">Back to runs</Link>
      </div>
      <div className="tabs" role="tablist" aria-label="Spec source">
        <button type="button" role="tab" aria-selected={mode === 'example'} onClick={() => setSearch({ from: undefined })}>
          From an example
        </button>
        <button type="button" role="tab" aria-selected={mode === 'yaml'} onClick={() => setSearch({ from: 'yaml' })} data-testid="tab-yaml">
          Write or upload YAML
        </button>
      </div>
      {mode === 'example' ? (
        <section className="card" role="tabpanel">
          {examples.error ? (
            <ErrorBox error={examples.error} retry={examples.reload} />
          ) : !examples.data ? (
            <Loading what="examples" />
          ) : examples.data.examples.length === 0 ? (
            <p className="muted">No example specs on the server; write one instead.</p>
          ) : (
            <>
              <ExamplePicker examples={examples.data.examples} value={examplePath} onChange={setExamplePath} />
              {example && (
                <>
                  <p className="muted small">
                    Relative data paths resolve against the example's directory on the server. To change it, copy it to the YAML tab — paths there must be
                    absolute or s3:// URIs.{' '}
                    <button
                      type="button"
                      className="link"
                      onClick={() => {
                        setText(example.yaml);
                        setSearch({ from: 'yaml' });
                      }}
                    >
                      Copy to the YAML tab
                    </button>
                  </p>
                  <SpecEditor value={example.yaml} issues={issues} readOnly label={`Spec ${example.path}`} onSubmit={submit} />
                </>
              )}
            </>
          )}
        </section>
      ) : (
        <section className="card" role="tabpanel">
          <div className="toolbar">
            <label className="button">
              Upload a .yaml file
              <input type="file" accept=".yaml,.yml,text/yaml,application/yaml,text/plain" onChange={upload} className="sr-only" data-testid="spec-file" />
            </label>
            <span className="muted small">
              or paste it below · <kbd>Ctrl</kbd>+<kbd>Enter</kbd> starts the run · field docs: <a href="/api/spec-schema">JSON Schema</a>
            </span>
          </div>
          <SpecEditor value={text} onChange={setText} issues={issues} label="Pipeline spec (YAML)" onSubmit={submit} />
          {warnings.length > 0 && (
            <ul className="warnings" data-testid="spec-warnings">
              {warnings.map((w) => (
                <li key={w.path}>
                  line {w.line} <code>{w.path}</code> {w.message}
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
      {error && <ErrorBox error={error} />}
      <div className="actions">
        <button type="button" className="primary" disabled={!valid || busy} onClick={submit} data-testid="submit-run">
          {busy ? 'Starting…' : 'Start run'}
        </button>
        {!valid && !busy && <span className="muted small">{issues.length > 0 ? `Fix ${issues.length} issue${issues.length > 1 ? 's' : ''} first.` : ''}</span>}
      </div>
    </main>
  );
}
