/** `npm run bench -- NAME [NAME…]` runs those benchmarks; `npm run bench` runs all of them. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const all = fs.readdirSync(dir).filter((f) => f.endsWith('.ts') && !['run.ts', 'lib.ts'].includes(f)).map((f) => f.replace(/\.ts$/, '')).sort();
const names = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const chosen = names.length ? names : all;
for (const n of chosen) {
  if (!all.includes(n)) {
    console.error(`unknown bench '${n}'; available: ${all.join(', ')}`);
    process.exit(2);
  }
}
for (const n of chosen) {
  console.log(`\n=== bench ${n} ===`);
  const mod = (await import(path.join(dir, `${n}.ts`))) as { run: () => Promise<void> };
  await mod.run();
}
process.exit(0);
