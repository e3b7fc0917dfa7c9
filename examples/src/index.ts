/**
 * The demo pipeline: its spec (examples/demo/pipeline.yaml) and the generator of its data, for the CLI's
 * quick start and for end-to-end tests.
 */
export { DEMO_DATA_DIR, DEMO_SPEC_PATH, generateDemoData, prng, type DemoDataSummary, type GenerateOptions } from './generate';
