/**
 * Locates the external programs the pipeline runs. Each is taken from its env variable when set,
 * otherwise from PATH; a missing one fails with BINARY_MISSING and a message naming the Debian
 * package to install (ARCHITECTURE.md: "a missing one gives a clear message naming the package").
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { MediaError } from './errors.js';

export type BinaryName = 'ffmpeg' | 'ffprobe' | 'espeak-ng';

export interface BinaryInfo {
  envVar: string;
  debianPackage: string;
}

export const BINARIES: Readonly<Record<BinaryName, BinaryInfo>> = {
  ffmpeg: { envVar: 'RADIO_FFMPEG_PATH', debianPackage: 'ffmpeg' },
  ffprobe: { envVar: 'RADIO_FFPROBE_PATH', debianPackage: 'ffmpeg' },
  'espeak-ng': { envVar: 'RADIO_ESPEAK_PATH', debianPackage: 'espeak-ng' },
};

export function isBinaryName(s: string): s is BinaryName {
  return Object.prototype.hasOwnProperty.call(BINARIES, s);
}

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Find the program `name`: its env variable when set (which must then name an executable file),
 * otherwise the first executable `name` on PATH. Shared with the agent's Linux backend
 * (edge-agent/src/linux-binaries.ts), which wraps the message in its own error type.
 */
export function locateExecutable(name: string, info: BinaryInfo, env: NodeJS.ProcessEnv = process.env): { path: string } | { message: string } {
  const hint = `install the Debian package '${info.debianPackage}' (apt-get install ${info.debianPackage})`;
  const fromEnv = env[info.envVar];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (isExecutableFile(fromEnv)) return { path: fromEnv };
    return { message: `${name}: ${info.envVar}=${fromEnv} is not an executable file; fix the variable or ${hint}` };
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return { path: candidate };
  }
  return { message: `${name} not found on PATH: ${hint}, or set ${info.envVar} to its full path` };
}

export class BinaryMissingError extends MediaError {
  readonly binary: BinaryName;
  constructor(binary: BinaryName, message: string) {
    super('BINARY_MISSING', message, { details: { binary, package: BINARIES[binary].debianPackage } });
    this.binary = binary;
  }
}

/** Absolute path of `name`, from its env variable or PATH; throws BinaryMissingError. */
export function resolveBinary(name: BinaryName, env: NodeJS.ProcessEnv = process.env): string {
  const r = locateExecutable(name, BINARIES[name], env);
  if ('path' in r) return r.path;
  throw new BinaryMissingError(name, r.message);
}

export interface BinaryResolver {
  /** Resolved path (cached per resolver after the first success). */
  path(name: BinaryName): string;
}

/** A caching resolver over one environment (no module-level cache: tests can inject env). */
export function createBinaryResolver(env: NodeJS.ProcessEnv = process.env): BinaryResolver {
  const cache = new Map<BinaryName, string>();
  return {
    path(name) {
      const hit = cache.get(name);
      if (hit !== undefined) return hit;
      const p = resolveBinary(name, env);
      cache.set(name, p);
      return p;
    },
  };
}
