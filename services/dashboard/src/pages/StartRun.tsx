/**
 * Starting a run: pick an example spec, or write, paste or upload YAML. The spec is validated as it is typed
 * with the API's own schema, each issue shown on its line; "Start run" stays disabled until the spec is valid.
 * Issues the API finds on submit (a data path it cannot read) are shown the same way.
 */
import { startRunRequest } from '@tempered/api-contract';
import { useMutation } from '@tanstack/react-query';
import { useState, type ChangeEvent } from 'react';
import { ApiFailure, post } from '../api';
import { ErrorBox, Loaded } from '../components/common';
import { ExamplePicker } from '../components/ExamplePicker';
import { SpecEditor, SpecWarnings } from '../components/SpecEditor';
import { Link, navigate, runPath, setSearch, useLocation } from '../router';
import { useMe, whyNot } from '../session';
import { useSpecDraft } from '../spec-draft';
import { locate } from '../spec-check';

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
  const draft = useSpecDraft(mode, STARTER);
  const { example, text, shownText, check } = draft;
  // A problem found before anything is sent (an invalid body, a file too large).
  const [localError, setLocalError] = useState<ApiFailure>();
  const start = useMutation({
    mutationFn: ({ body }: { body: unknown; text: string }) => post<{ runId: string }>('/api/runs', body),
    onMutate: () => setLocalError(undefined),
    onSuccess: (res) => navigate(runPath(res.runId)),
  });
  // The API's issues belong to the text they were found in: they go to its lines until it changes.
  const serverIssues = start.error && start.variables?.text === shownText ? start.error.issues : [];
  const issues = check.issues.length > 0 ? check.issues : serverIssues.length > 0 ? locate(shownText, serverIssues) : [];
  const valid = issues.length === 0 && check.spec !== undefined && (mode === 'yaml' || example !== undefined);
  const busy = start.isPending;
  const error = localError ?? start.error ?? undefined;

  const cannot = whyNot(me, 'start');
  if (cannot) {
    return (
      <main className="page narrow-page">
        <h1>Start a run</h1>
        <p className="callout info">{cannot}</p>
      </main>
    );
  }

  const submit = () => {
    if (!valid || busy) return;
    const body = startRunRequest.safeParse(mode === 'example' ? { example: example!.path } : { spec: text });
    if (!body.success) {
      setLocalError(new ApiFailure(400, body.error.issues.map((i) => i.message).join('; ')));
      return;
    }
    start.mutate({ body: body.data, text: shownText });
  };

  const upload = async (e: ChangeEvent<HTMLInputElement>) => {
    const file = e.target.files?.[0];
    e.target.value = '';
    if (!file) return;
    if (file.size > 1024 * 1024) {
      setLocalError(new ApiFailure(0, `${file.name} is over 1 MiB; a spec is a few lines of YAML`));
      return;
    }
    draft.setText(await file.text());
    setLocalError(undefined);
    start.reset();
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
          <Loaded query={draft.examples} what="examples">
            {({ examples }) =>
              examples.length === 0 ? (
                <p className="muted">No example specs on the server; write one instead.</p>
              ) : (
                <>
                  <ExamplePicker examples={examples} value={draft.examplePath} onChange={draft.setExamplePath} />
                  {example && (
                    <>
                      <p className="muted small">
                        Relative data paths resolve against the example's directory on the server. To change it, copy it to the YAML tab — paths there must
                        be absolute or s3:// URIs.{' '}
                        <button
                          type="button"
                          className="link"
                          onClick={() => {
                            draft.setText(example.yaml);
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
              )
            }
          </Loaded>
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
          <SpecEditor value={text} onChange={draft.setText} issues={issues} label="Pipeline spec (YAML)" onSubmit={submit} />
          <SpecWarnings warnings={draft.warnings} />
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
