/**
 * deploy/ts-register.mjs: how every process of the project runs its TypeScript (controller, agent,
 * fleet and bench workers). Real `node` child processes on fixture sources.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
/** Run a fixture that must fail: its exit code and stderr. */
const runFailing = (file: string) => run(process.execPath, ['--import', REGISTER, path.join(dir, file)], { timeout: 30_000 }).then(() => null, (e: { code: number; stderr: string }) => e);
const REGISTER = path.resolve('deploy/ts-register.mjs');
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ts-register-'));
  fs.writeFileSync(path.join(dir, 'shape.ts'), [
    'export interface Shape { side: number }',
    'export class Square implements Shape {',
    '  constructor(public side: number) {}',
    '  area(): number { return this.side ** 2; }',
    '}',
    // A named closure created per call: esbuild's keepNames would wrap it in __name().
    'export function makeCounter(): () => number { let n = 0; const next = (): number => ++n; return next; }',
    'export function fail(): never { throw new Error("boom"); }',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'main.ts'), [
    "import type { Shape } from './shape.js';",
    "import { Square, makeCounter, fail } from './shape.js';",
    'const s: Shape = new Square(3);',
    'const c = makeCounter(); c();',
    'let line = 0;',
    'try { fail(); } catch (e) { line = Number(/shape\\.ts:(\\d+)/.exec((e as Error).stack ?? "")?.[1] ?? 0); }',
    'console.log(JSON.stringify({ area: (s as Square).area(), count: c(), wrapped: makeCounter.toString().includes("__name"), line }));',
  ].join('\n'));
  // Loads, waits past the idle stop, lists its child processes, then imports a module late.
  fs.writeFileSync(path.join(dir, 'late.ts'), 'export const late: number = 42;\n');
  fs.writeFileSync(path.join(dir, 'idle.ts'), [
    "import { execFileSync } from 'node:child_process';",
    'await new Promise((r) => setTimeout(r, 2500));',
    "const children = execFileSync('ps', ['--ppid', String(process.pid), '-o', 'comm='], { encoding: 'utf8' }).split('\\n').filter((x) => x.trim() && x.trim() !== 'ps');",
    "const { late } = await import('./late.js');",
    'console.log(JSON.stringify({ children, late }));',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'broken.ts'), 'const x: number = ;\n');
  fs.writeFileSync(path.join(dir, 'missing.ts'), "import { nothing } from './nowhere.js';\nconsole.log(nothing);\n");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('deploy/ts-register.mjs', () => {
  it('runs TypeScript with `.js` specifiers, types stripped, no name-keeping wrappers, stack traces on .ts lines', async () => {
    const { stdout } = await run(process.execPath, ['--import', REGISTER, path.join(dir, 'main.ts')], { timeout: 30_000 });
    const out = JSON.parse(stdout.trim()) as { area: number; count: number; wrapped: boolean; line: number };
    expect(out.area).toBe(9);
    expect(out.count).toBe(2);
    // tsx would have wrapped `next` in __name() (esbuild keepNames): the reason this loader exists.
    expect(out.wrapped).toBe(false);
    // The source map points at the throw in shape.ts (line 7), not at the transformed output.
    expect(out.line).toBe(7);
  });

  it('stops its esbuild child once the modules have loaded, and starts it again for a late import', async () => {
    const { stdout } = await run(process.execPath, ['--import', REGISTER, path.join(dir, 'idle.ts')], { timeout: 30_000 });
    const out = JSON.parse(stdout.trim()) as { children: string[]; late: number };
    expect(out.children.filter((c) => c.includes('esbuild'))).toEqual([]);
    expect(out.late).toBe(42);
  });

  it('refuses a file that does not compile, naming the file and position', async () => {
    const err = await runFailing('broken.ts');
    expect(err?.code).toBe(1);
    expect(err?.stderr).toMatch(/cannot compile .*broken\.ts:1:\d+/);
  });

  it('reports a missing module as Node does', async () => {
    const err = await runFailing('missing.ts');
    expect(err?.code).toBe(1);
    expect(err?.stderr).toMatch(/ERR_MODULE_NOT_FOUND|Cannot find module/);
    expect(err?.stderr).toMatch(/nowhere/);
  });
});
