/**
 * Imported first: zod compiles fast parsers with `new Function` unless told not to, and the API's
 * Content-Security-Policy (no 'unsafe-eval') reports even its guarded probe as a violation in the console.
 * This must run before any schema (from @tempered/api-contract or @tempered/spec) is created.
 */
import { config } from 'zod';

config({ jitless: true });
