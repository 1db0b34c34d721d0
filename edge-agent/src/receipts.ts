import fs from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { Receipt, type ReceiptState } from '../../schemas/src/index.js';
import { systemClock, systemTimers, type Clock, type Timers } from './clock.js';

/**
 * Proof of play, queued ON DISK until the controller acknowledges it after its database commit.
 *
 * Journal: `receipts.jsonl`, append-only JSON lines, each written and fdatasync'ed before the receipt
 * counts as recorded: `{"add":{receipt}}` and `{"ack":[ids]}`. Replaying the journal gives the queue
 * (adds not acked). A torn last line (power cut mid-write) is skipped. When the queue empties or the
 * journal grows past `compactLines`, the live entries are rewritten to a temp file and renamed over it.
 *
 * Ledger: `airings.json`, the last state of each airing and how many times each state was reported,
 * so receipt ids stay deterministic (`${airingId}:${state}`, then `:2`, `:3` for a restarted airing)
 * across restarts, and an airing that already finished is not played twice after a crash.
 */
export interface AiringLedgerEntry {
  state: ReceiptState;
  at: number;
  counts: Partial<Record<ReceiptState, number>>;
  /** Local clock reading of the last start (for a resume after a crash). */
  startedAt?: number;
}

export interface ReceiptQueueOptions {
  /** Directory for the journal and ledger; undefined keeps everything in memory (tests, fleets without disk). */
  dir?: string;
  /** Publish one batch; returns false when not connected (the batch stays queued). */
  send: (receipts: Receipt[]) => boolean;
  log?: Logger;
  timers?: Timers;
  /** Monotonic-enough clock for resend pacing; default the system clock. */
  clock?: Clock;
  /** Unacked receipts are sent again after this; default 30 s. */
  resendMs?: number;
  compactLines?: number;
  /** Ledger entries older than this (by `at`, controller time) are forgotten; default 3 days. */
  ledgerRetentionMs?: number;
  /** Batch size (the schema allows 200). */
  batchSize?: number;
}

export function createReceiptQueue(o: ReceiptQueueOptions) {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'receipts' });
  const timers = o.timers ?? systemTimers;
  const clock = o.clock ?? systemClock;
  const resendMs = o.resendMs ?? 30_000;
  const compactLines = o.compactLines ?? 2000;
  const batchSize = Math.min(200, o.batchSize ?? 200);
  const retention = o.ledgerRetentionMs ?? 3 * 86_400_000;
  const journalPath = o.dir ? path.join(o.dir, 'receipts.jsonl') : undefined;
  const ledgerPath = o.dir ? path.join(o.dir, 'airings.json') : undefined;

  /** Pending receipts in the order recorded, with the local time each was last sent. */
  const pending = new Map<string, { r: Receipt; sentAt: number }>();
  const ledger = new Map<string, AiringLedgerEntry>();
  let fd: number | undefined;
  let lines = 0;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let loaded = false;
  let ledgerDirty = false;

  function load() {
    if (loaded) return;
    loaded = true;
    if (!o.dir) return;
    fs.mkdirSync(o.dir, { recursive: true });
    try {
      const raw = JSON.parse(fs.readFileSync(ledgerPath!, 'utf8')) as Record<string, AiringLedgerEntry>;
      for (const [k, v] of Object.entries(raw)) ledger.set(k, v);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err: (e as Error).message }, 'receipt ledger unreadable; starting a new one');
    }
    let text = '';
    try { text = fs.readFileSync(journalPath!, 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      lines++;
      let rec: { add?: unknown; ack?: unknown };
      try { rec = JSON.parse(line) as typeof rec; } catch { log.warn('torn receipt journal line skipped'); continue; }
      if (rec.add) {
        const r = Receipt.safeParse(rec.add);
        if (!r.success) continue;
        pending.set(r.data.id, { r: r.data, sentAt: -Infinity });
        // The ledger write may have been lost in a crash after the journal append: the journal wins.
        noteLedger(r.data, undefined, true);
      } else if (Array.isArray(rec.ack)) {
        for (const id of rec.ack) pending.delete(String(id));
      }
    }
    if (ledgerDirty) saveLedger();
    compact();
  }

  function openJournal() {
    if (!journalPath || fd !== undefined) return;
    fd = fs.openSync(journalPath, 'a');
  }

  function append(obj: unknown) {
    if (!journalPath) return;
    openJournal();
    fs.writeSync(fd!, JSON.stringify(obj) + '\n');
    // A receipt is evidence: it must survive a power cut once we say it is recorded.
    fs.fdatasyncSync(fd!);
    lines++;
  }

  function compact() {
    if (!journalPath) return;
    if (fd !== undefined) { fs.closeSync(fd); fd = undefined; }
    const tmp = `${journalPath}.tmp`;
    const body = [...pending.values()].map((p) => JSON.stringify({ add: p.r }) + '\n').join('');
    const tfd = fs.openSync(tmp, 'w');
    fs.writeSync(tfd, body);
    fs.fsyncSync(tfd);
    fs.closeSync(tfd);
    fs.renameSync(tmp, journalPath);
    lines = pending.size;
  }

  function noteLedger(r: Receipt, startedLocal: number | undefined, fromJournal = false) {
    const cur = ledger.get(r.airingId) ?? { state: r.state, at: r.at, counts: {} };
    const n = receiptOrdinal(r);
    if (fromJournal && (cur.counts[r.state] ?? 0) >= n) return;
    cur.counts[r.state] = Math.max(cur.counts[r.state] ?? 0, n);
    cur.state = r.state;
    cur.at = r.at;
    if (startedLocal !== undefined) cur.startedAt = startedLocal;
    ledger.set(r.airingId, cur);
    ledgerDirty = true;
  }

  function saveLedger() {
    if (!ledgerPath || !ledgerDirty) return;
    ledgerDirty = false;
    const cutoff = Math.max(0, ...[...ledger.values()].map((e) => e.at)) - retention;
    for (const [k, v] of ledger) if (v.at < cutoff) ledger.delete(k);
    const tmp = `${ledgerPath}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(Object.fromEntries(ledger)));
    fs.renameSync(tmp, ledgerPath);
  }

  function armTimer() {
    if (!running || timer || pending.size === 0) return;
    timer = timers.setTimeout(() => { timer = undefined; flush(); armTimer(); }, resendMs);
    timer.unref?.();
  }

  /** Send what is pending and was not sent within resendMs (all of it when `force`). */
  function flush(force = false) {
    if (!running) return;
    const nowMs = clock.now();
    const due = [...pending.values()].filter((p) => force || nowMs - p.sentAt >= resendMs);
    for (let i = 0; i < due.length; i += batchSize) {
      const chunk = due.slice(i, i + batchSize);
      if (!o.send(chunk.map((p) => p.r))) break;
      for (const p of chunk) p.sentAt = nowMs;
    }
    armTimer();
  }

  return {
    /**
     * Record a receipt: id assigned from the ledger, journaled (fsync) before this returns, then sent
     * if connected. Returns the receipt as queued.
     */
    record(r: Omit<Receipt, 'id'>, opts: { startedLocal?: number } = {}): Receipt {
      load();
      const prev = ledger.get(r.airingId)?.counts[r.state] ?? 0;
      const n = prev + 1;
      const id = n === 1 ? `${r.airingId}:${r.state}` : `${r.airingId}:${r.state}:${n}`;
      const parsed = Receipt.parse({ ...r, id, at: Math.max(0, Math.floor(r.at)), ...(r.playedMs !== undefined ? { playedMs: Math.max(0, Math.round(r.playedMs)) } : {}) });
      append({ add: parsed });
      pending.set(id, { r: parsed, sentAt: -Infinity });
      noteLedger(parsed, opts.startedLocal);
      saveLedger();
      log.info({ id, reason: parsed.reason, startErrorMs: parsed.startErrorMs }, 'receipt recorded');
      if (running) flush();
      return parsed;
    },
    /** The controller committed these: drop them from the queue (journaled). */
    onAck(ids: string[]) {
      load();
      const known = ids.filter((id) => pending.has(id));
      if (known.length === 0) return 0;
      for (const id of known) pending.delete(id);
      if (pending.size === 0 || lines >= compactLines) compact();
      else append({ ack: known });
      if (pending.size === 0 && timer) { timers.clearTimeout(timer); timer = undefined; }
      return known.length;
    },
    /** (Re)connected: send everything pending now. */
    onConnect() { flush(true); },
    flush,
    pending: (): Receipt[] => { load(); return [...pending.values()].map((p) => p.r); },
    ledger: (airingId: string): AiringLedgerEntry | undefined => { load(); return ledger.get(airingId); },
    start() {
      if (running) return;
      load();
      running = true;
      flush(true);
    },
    stop() {
      running = false;
      timers.clearTimeout(timer);
      timer = undefined;
      if (fd !== undefined) { fs.closeSync(fd); fd = undefined; }
    },
  };
}
export type ReceiptQueue = ReturnType<typeof createReceiptQueue>;

/** 1 for `${airing}:${state}`, n for `${airing}:${state}:${n}`. */
function receiptOrdinal(r: Receipt): number {
  const m = /:(\d+)$/.exec(r.id.slice(r.airingId.length + 1 + r.state.length));
  return m ? Number(m[1]) : 1;
}
