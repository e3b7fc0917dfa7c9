/**
 * The spec a form is about to send, from one of two sources: an example on the server (the first one until
 * another is picked) or YAML the person writes. Either way it is checked as it changes, with the API's own
 * schema; YAML also gets warnings for relative data paths. Starting a run and creating a schedule share it.
 */
import { useQuery } from '@tanstack/react-query';
import { useMemo, useState } from 'react';
import { queries } from './queries';
import { checkSpec, relativePathWarnings } from './spec-check';

export type SpecSource = 'example' | 'yaml';

export function useSpecDraft(source: SpecSource, initialText = '') {
  const examples = useQuery(queries.examples);
  const [picked, setExamplePath] = useState<string>();
  const examplePath = picked ?? examples.data?.examples[0]?.path;
  const example = examples.data?.examples.find((e) => e.path === examplePath);
  const [text, setText] = useState(initialText);

  const shownText = source === 'example' ? (example?.yaml ?? '') : text;
  const check = useMemo(() => checkSpec(shownText), [shownText]);
  const warnings = useMemo(() => (source === 'yaml' && check.spec ? relativePathWarnings(text, check.spec) : []), [source, check.spec, text]);
  return { examples, examplePath, setExamplePath, example, text, setText, shownText, check, warnings };
}
