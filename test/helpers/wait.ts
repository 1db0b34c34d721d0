/**
 * Poll `cond` until it returns a truthy value or the deadline passes. For state that has no event to
 * await (a row in SQLite, a counter); prefer awaiting an event where one exists.
 */
export async function waitFor<T>(cond: () => T | Promise<T>, { timeoutMs = 15_000, intervalMs = 20, what = 'condition' } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v as NonNullable<T>;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Resolve with the first event for which `match` holds. */
export function nextEvent<T>(subscribe: (cb: (v: T) => void) => () => void, match: (v: T) => boolean = () => true, timeoutMs = 15_000, what = 'event'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)); }, timeoutMs);
    const off = subscribe((v) => { if (match(v)) { clearTimeout(timer); off(); resolve(v); } });
  });
}
