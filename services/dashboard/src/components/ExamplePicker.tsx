/** The example specs on the server as a radio group, each with its description; starting a run and creating a schedule share it. */
import type { ExampleSpec } from '@tempered/api-contract';
import { checkSpec } from '../spec-check';

export function ExamplePicker({
  examples,
  value,
  onChange,
  name = 'example',
}: {
  examples: ExampleSpec[];
  value: string | undefined;
  onChange: (path: string) => void;
  /** The radio group's name; distinct when two pickers could share a page. */
  name?: string;
}) {
  return (
    <fieldset className="examples">
      <legend>Example spec</legend>
      {examples.map((ex) => {
        const described = checkSpec(ex.yaml).spec?.description;
        return (
          <label key={ex.path} className={`example${ex.path === value ? ' selected' : ''}`}>
            <input type="radio" name={name} value={ex.path} checked={ex.path === value} onChange={() => onChange(ex.path)} />
            <span>
              <strong>{ex.name}</strong> <code className="muted">{ex.path}</code>
              {described && <span className="muted small block">{described}</span>}
            </span>
          </label>
        );
      })}
    </fieldset>
  );
}
