/**
 * Locates the programs the Linux hardware backend runs. Each comes from its env variable when set,
 * otherwise from PATH; a missing one fails with a message naming the Debian package (ARCHITECTURE.md:
 * "a missing one gives a clear message naming the package").
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

export type LinuxBinary = 'aplay' | 'gpioset' | 'amixer' | 'mmcli';

export const LINUX_BINARIES: Readonly<Record<LinuxBinary, { envVar: string; debianPackage: string }>> = {
  aplay: { envVar: 'RADIO_APLAY_PATH', debianPackage: 'alsa-utils' },
  gpioset: { envVar: 'RADIO_GPIOSET_PATH', debianPackage: 'gpiod' },
  amixer: { envVar: 'RADIO_AMIXER_PATH', debianPackage: 'alsa-utils' },
  mmcli: { envVar: 'RADIO_MMCLI_PATH', debianPackage: 'modemmanager' },
};

export class LinuxBinaryMissingError extends Error {
  readonly code = 'BINARY_MISSING';
  constructor(readonly binary: LinuxBinary, readonly debianPackage: string, message: string) {
    super(message);
    this.name = 'LinuxBinaryMissingError';
  }
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

/** Absolute path of `name` from its env variable or PATH; throws LinuxBinaryMissingError. */
export function resolveLinuxBinary(name: LinuxBinary, env: NodeJS.ProcessEnv = process.env): string {
  const info = LINUX_BINARIES[name];
  const hint = `install the Debian package '${info.debianPackage}' (apt-get install ${info.debianPackage})`;
  const fromEnv = env[info.envVar];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (isExecutableFile(fromEnv)) return fromEnv;
    throw new LinuxBinaryMissingError(name, info.debianPackage, `${name}: ${info.envVar}=${fromEnv} is not an executable file; fix the variable or ${hint}`);
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  throw new LinuxBinaryMissingError(name, info.debianPackage, `${name} not found on PATH: ${hint}, or set ${info.envVar} to its full path`);
}

/** Like resolveLinuxBinary, but null when absent (for optional helpers such as mmcli). */
export function findLinuxBinary(name: LinuxBinary, env: NodeJS.ProcessEnv = process.env): string | null {
  try {
    return resolveLinuxBinary(name, env);
  } catch {
    return null;
  }
}
