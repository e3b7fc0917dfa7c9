/**
 * The pipeline's stages in order, for the pipeline strip. The API reports stages by name; a stage it reports
 * that is not listed here is shown after these.
 */
export { STAGES } from '@tempered/api-contract';

export const STAGE_TITLES: Record<string, string> = {
  ingest: 'Ingest',
  clean: 'Clean',
  tokenize: 'Tokenize',
  split: 'Split',
  train: 'Train',
  validate: 'Validate',
  rlhf: 'RLHF',
  test: 'Test',
  optimize: 'Optimize',
  deploy: 'Deploy',
};
