/**
 * Locates the programs the Linux hardware backend runs. Each comes from its env variable when set,
 * otherwise from PATH; a missing one fails with a message naming the Debian package (ARCHITECTURE.md:
 * "a missing one gives a clear message naming the package").
 */
import { locateExecutable } from '../../audio-pipeline/src/binaries.js';

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

/** Absolute path of `name` from its env variable or PATH; throws LinuxBinaryMissingError. */
export function resolveLinuxBinary(name: LinuxBinary, env: NodeJS.ProcessEnv = process.env): string {
  const info = LINUX_BINARIES[name];
  const r = locateExecutable(name, info, env);
  if ('path' in r) return r.path;
  throw new LinuxBinaryMissingError(name, info.debianPackage, r.message);
}

/** Like resolveLinuxBinary, but null when absent (for optional helpers such as mmcli). */
export function findLinuxBinary(name: LinuxBinary, env: NodeJS.ProcessEnv = process.env): string | null {
  try {
    return resolveLinuxBinary(name, env);
  } catch {
    return null;
  }
}
