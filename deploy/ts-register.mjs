/**
 * `node --import ./deploy/ts-register.mjs controller/src/server.ts`: how every process of this project
 * runs its TypeScript (controller, edge agent, simulated fleet, bench workers) on Node 20, which cannot
 * strip types itself.
 *
 * Why not tsx: tsx transforms with esbuild's `keepNames` on, which wraps EVERY function and closure
 * creation in a `__name()` call (an Object.defineProperty on the new function). The live path creates
 * many closures per join (RTP receiver, jitter buffer, endpoint), and in CPU profiles of the emergency
 * bench those wrappers and their side effects took a large share of an agent's join (see bench/README.md,
 * "emergency joins"). Names need no keeping here: nothing is minified. The hooks (ts-hooks.mjs) do
 * only what the project needs: `.js` specifiers that name `.ts` sources, and a per-file esbuild
 * transform with the project's tsconfig and an inline source map (stack traces point into the .ts).
 */
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./ts-hooks.mjs', import.meta.url);
