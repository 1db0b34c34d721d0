/**
 * Module hooks that run the project's TypeScript sources directly on Node 20 (registered by
 * ts-register.mjs, which explains why this exists instead of tsx).
 *
 * - resolve: a relative or file: specifier ending in `.js` that names no file resolves to the `.ts`
 *   beside it (the sources import `./x.js`, as NodeNext resolution requires).
 * - load: a `.ts`/`.mts` file is transformed by esbuild, one file at a time (type-only syntax removed,
 *   nothing else rewritten: no bundling, no renaming, no `keepNames`), with an inline source map.
 *
 * esbuild transforms in a child process of its own. Once the modules have loaded (no transform for
 * IDLE_STOP_MS) it is stopped: an agent on a small board should not keep a compiler resident. A later
 * dynamic import starts it again.
 */
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stop, transform } from 'esbuild';

const tsconfigUrl = new URL('../tsconfig.json', import.meta.url);
/** The compiler options esbuild honours per file (verbatimModuleSyntax, useDefineForClassFields, …). */
const tsconfigRaw = { compilerOptions: JSON.parse(readFileSync(tsconfigUrl, 'utf8')).compilerOptions ?? {} };
const target = `node${process.versions.node}`;

const IDLE_STOP_MS = 1000;
let idle;
let inFlight = 0;
const stopWhenIdle = () => {
  clearTimeout(idle);
  if (inFlight > 0) return;
  idle = setTimeout(() => { void stop(); }, IDLE_STOP_MS);
  idle.unref();
};

const isTs = (url) => url.startsWith('file:') && /\.m?ts$/.test(url.split('?')[0]);

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (e) {
    const local = specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('file:');
    if (!local || !specifier.endsWith('.js') || e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
    return next(`${specifier.slice(0, -3)}.ts`, context);
  }
}

export async function load(url, context, next) {
  if (!isTs(url)) return next(url, context);
  const file = fileURLToPath(url);
  const source = await readFile(file, 'utf8');
  let out;
  clearTimeout(idle);
  inFlight++;
  try {
    out = await transform(source, { loader: 'ts', format: 'esm', target, sourcemap: 'inline', sourcesContent: false, sourcefile: file, tsconfigRaw });
  } catch (e) {
    const first = e?.errors?.[0];
    const where = first?.location ? `${file}:${first.location.line}:${first.location.column}` : file;
    throw new SyntaxError(`cannot compile ${where}: ${first?.text ?? e?.message ?? e}`);
  } finally {
    inFlight--;
    stopWhenIdle();
  }
  return { format: 'module', source: out.code, shortCircuit: true };
}
