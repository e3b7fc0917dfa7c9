/**
 * Builds the dashboard into dist/, which the API serves at `/` (every non-/api path falls back to index.html).
 * `npm run dev -w @tempered/dashboard` proxies /api to a local stack (TEMPERED_API_URL, default port 8080).
 */
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const api = process.env.TEMPERED_API_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 800 },
  server: { proxy: { '/api': { target: api, changeOrigin: false } } },
});
