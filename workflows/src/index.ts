/** The workflow contract for everything outside workflow code; the workflows live in ./workflows.ts. */
export * from './shared';
