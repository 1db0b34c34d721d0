/**
 * Agent side of a live session's transport: validate what arrives on the receive socket, keep RFC 3550
 * reception statistics, and hold the path open (symmetric RTP).
 *
 * - `createRtpReceiver` is pure (no socket): each datagram is classified (RFC 5761 demux), RTP is
 *   checked against the announced source address/port, SSRC and payload types — anything else is
 *   dropped and counted, never thrown — duplicates are dropped by extended sequence number, reordering
 *   is counted (the jitter buffer places packets by timestamp anyway), and A.1/A.3/A.8 statistics feed
 *   the receiver report. SR from the source is remembered for LSR/DLSR; a BYE ends the stream.
 * - `createLiveReceiverEndpoint` owns a UDP socket: it sends the hello (RR + APP token, rtp.ts) to the
 *   controller at start and every `helloIntervalMs` from the socket it receives on, so a NAT/4G path
 *   opens from the inside and stays open; the hello's RR carries loss/jitter back for telemetry.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { pino, type Logger } from 'pino';
import {
  OPUS_RTP_CLOCK_RATE,
  buildHello,
  classifyPacket,
  createReceptionStats,
  parseRtcp,
  parseRtp,
  unwrapSeq,
  type ReceptionSnapshot,
  type ReportBlock,
  type RtcpPacket,
  type RtpPacket,
} from './rtp.js';
import type { SenderTimers, UdpDestination } from './session-sender.js';

export type ReceiveOutcome =
  | 'accepted'
  | 'duplicate'
  | 'rtcp'
  | 'bye'
  | 'malformed'
  | 'wrong-source'
  | 'wrong-ssrc'
  | 'wrong-payload-type'
  /** RFC 3550 A.1 refused it (a wild sequence jump, or the source still on probation). */
  | 'rejected';

export interface RtpReceiverOptions {
  /** The session's SSRC, from the announcement. */
  ssrc: number;
  /** Accepted RTP payload types (Opus, RED). */
  payloadTypes: number[];
  /** Only datagrams from this address:port are accepted; null accepts any source. */
  source: UdpDestination | null;
  clockRate?: number;
  probation?: number;
  onPacket(packet: RtpPacket, arrivalLocalMs: number): void;
  onRtcp?(packets: RtcpPacket[], arrivalLocalMs: number): void;
  onBye?(): void;
}

export interface RtpReceiverStats {
  accepted: number;
  duplicates: number;
  outOfOrder: number;
  malformed: number;
  wrongSource: number;
  wrongSsrc: number;
  wrongPayloadType: number;
  rejected: number;
  rtcp: number;
  bye: boolean;
  reception: ReceptionSnapshot;
}

export interface RtpReceiver {
  handle(msg: Uint8Array, from: { address: string; port: number }, arrivalLocalMs: number): ReceiveOutcome;
  /** Report block on the session's source for an RR (starts a new A.3 interval). */
  report(nowLocalMs: number): ReportBlock;
  stats(): RtpReceiverStats;
}

/** Per packet: the common case (the same string) without the IPv4-mapped normalisation. */
function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const norm = (h: string): string => (h.startsWith('::ffff:') ? h.slice(7) : h);
  return norm(a) === norm(b);
}

const DUP_WINDOW = 1024;

export function createRtpReceiver(o: RtpReceiverOptions): RtpReceiver {
  const reception = createReceptionStats({ clockRate: o.clockRate ?? OPUS_RTP_CLOCK_RATE, probation: o.probation ?? 0 });
  const pts = new Set(o.payloadTypes);
  const ssrc = o.ssrc >>> 0;
  const seen = new Float64Array(DUP_WINDOW).fill(-1);
  let maxExt: number | null = null;
  let bye = false;
  const st = { accepted: 0, duplicates: 0, outOfOrder: 0, malformed: 0, wrongSource: 0, wrongSsrc: 0, wrongPayloadType: 0, rejected: 0, rtcp: 0 };

  const fromSource = (from: { address: string; port: number }): boolean => !o.source || (from.port === o.source.port && sameAddress(from.address, o.source.address));

  return {
    handle(msg, from, arrival) {
      if (!fromSource(from)) {
        st.wrongSource++;
        return 'wrong-source';
      }
      const kind = classifyPacket(msg);
      if (kind === 'invalid') {
        st.malformed++;
        return 'malformed';
      }
      if (kind === 'rtcp') {
        let packets: RtcpPacket[];
        try {
          packets = parseRtcp(msg);
        } catch {
          st.malformed++;
          return 'malformed';
        }
        st.rtcp++;
        let sawBye = false;
        for (const p of packets) {
          if (p.type === 'sr' && p.ssrc === ssrc) reception.senderReport(p.sender.ntpMiddle, arrival);
          if (p.type === 'bye' && p.ssrcs.includes(ssrc)) sawBye = true;
        }
        o.onRtcp?.(packets, arrival);
        if (sawBye && !bye) {
          bye = true;
          o.onBye?.();
        }
        return sawBye ? 'bye' : 'rtcp';
      }
      let p: RtpPacket;
      try {
        p = parseRtp(msg);
      } catch {
        st.malformed++;
        return 'malformed';
      }
      if (p.ssrc !== ssrc) {
        st.wrongSsrc++;
        return 'wrong-ssrc';
      }
      if (!pts.has(p.payloadType)) {
        st.wrongPayloadType++;
        return 'wrong-payload-type';
      }
      const ext = maxExt === null ? p.sequenceNumber : unwrapSeq(p.sequenceNumber, maxExt);
      const slot = ((ext % DUP_WINDOW) + DUP_WINDOW) % DUP_WINDOW;
      if (seen[slot] === ext) {
        st.duplicates++;
        return 'duplicate';
      }
      if (!reception.update(p.sequenceNumber, p.timestamp, arrival)) {
        st.rejected++;
        return 'rejected';
      }
      seen[slot] = ext;
      if (maxExt !== null && ext < maxExt) st.outOfOrder++;
      if (maxExt === null || ext > maxExt) maxExt = ext;
      st.accepted++;
      o.onPacket(p, arrival);
      return 'accepted';
    },
    report: (now) => reception.report(ssrc, now),
    stats: () => ({ ...st, bye, reception: reception.snapshot() }),
  };
}

// ---------------------------------------------------------------------------------------- endpoint

/**
 * A receive socket that outlives sessions: bound once (the agent binds it when it starts), then lent to
 * one session's endpoint after another. A join then costs no socket creation and no bind (an emergency
 * reaches every cluster at once, and each join's CPU adds to the time to first sound), and a NAT/4G
 * mapping the last session opened may still hold. Only the attached endpoint sees datagrams; the next
 * session's SSRC check drops the previous session's stragglers.
 */
export interface LiveReceiveSocket {
  readonly socket: dgram.Socket;
  readonly family: 4 | 6;
  /** Resolves once bound; rejects with the bind error (the socket is then closed, make a new one). */
  bound: Promise<void>;
  /** Hand datagrams to `fn` (replacing whoever had them); the returned detach is a no-op once replaced. */
  attach(fn: (msg: Buffer, rinfo: dgram.RemoteInfo) => void): () => void;
  closed(): boolean;
  close(): Promise<void>;
}

export function createLiveReceiveSocket(o: { bindAddress?: string; bindPort?: number; log?: Logger } = {}): LiveReceiveSocket {
  const family = o.bindAddress?.includes(':') ? 6 : 4;
  const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  let handler: ((msg: Buffer, rinfo: dgram.RemoteInfo) => void) | null = null;
  let isClosed = false;
  socket.on('message', (msg, rinfo) => { if (handler) handler(msg, rinfo); });
  socket.on('close', () => { isClosed = true; });
  const bound = new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => { isClosed = true; try { socket.close(); } catch { /* not bound */ } reject(err); };
    socket.once('error', onError);
    socket.bind(o.bindPort ?? 0, o.bindAddress ?? '0.0.0.0', () => {
      socket.off('error', onError);
      socket.on('error', (err) => (o.log ?? pino({ level: 'silent' })).warn({ err }, 'live receive socket error'));
      resolve();
    });
  });
  bound.catch(() => {});
  return {
    socket, family, bound,
    attach(fn) {
      handler = fn;
      return () => { if (handler === fn) handler = null; };
    },
    closed: () => isClosed,
    async close() {
      handler = null;
      if (isClosed) return;
      isClosed = true;
      await bound.catch(() => {});
      await new Promise<void>((resolve) => { try { socket.close(() => resolve()); } catch { resolve(); } });
    },
  };
}

export interface LiveReceiverEndpointOptions {
  /** Where the controller's RTP socket is (RADIO_PUBLIC_HOST:RADIO_RTP_PORT, or a proxy in tests). */
  controller: { host: string; port: number };
  /** Token from the session announcement, carried by every hello. */
  token: string;
  /** Session SSRC and payload types, from the announcement. */
  ssrc: number;
  payloadTypes: number[];
  /** Our own RTCP SSRC; default random. */
  localSsrc?: number;
  /** Local clock (ms) for arrival stamps; the agent's hardware clock. */
  clock: { now(): number };
  timers?: SenderTimers & { setInterval(fn: () => void, ms: number): NodeJS.Timeout; clearInterval(t: NodeJS.Timeout | undefined): void };
  bindAddress?: string;
  bindPort?: number;
  /**
   * A standing socket to receive on (createLiveReceiveSocket): the endpoint attaches at start and
   * detaches at stop, never closes it. Without one the endpoint binds its own (bindAddress/bindPort).
   */
  shared?: LiveReceiveSocket;
  /** Hello + receiver report period (keeps NAT mappings alive); default 2000 ms. */
  helloIntervalMs?: number;
  onPacket(packet: RtpPacket, arrivalLocalMs: number): void;
  onBye?(): void;
  onRtcp?(packets: RtcpPacket[], arrivalLocalMs: number): void;
  log?: Logger;
}

export interface LiveReceiverEndpoint {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Send a hello (with a receiver report once packets arrived) now. */
  hello(): void;
  address(): { address: string; port: number };
  stats(): RtpReceiverStats & { hellosSent: number; sendErrors: number };
}

const FAST_RETRIES = 8;

export function createLiveReceiverEndpoint(o: LiveReceiverEndpointOptions): LiveReceiverEndpoint {
  // The child logger only when something is logged (a join must be cheap: see LiveReceiveSocket).
  let childLog: Logger | undefined;
  const log = { debug: (obj: object, msg: string) => (childLog ??= (o.log ?? pino({ level: 'silent' })).child({ component: 'live-receiver' })).debug(obj, msg) };
  const localSsrc = (o.localSsrc ?? randomInt(0, 0xffff_ffff)) >>> 0;
  const interval = o.helloIntervalMs ?? 2000;
  const setI = o.timers?.setInterval ?? ((fn: () => void, ms: number) => setInterval(fn, ms));
  const clearI = o.timers?.clearInterval ?? ((t: NodeJS.Timeout | undefined) => clearInterval(t));
  // Own socket: made (and bound) at start.
  let own: LiveReceiveSocket | null = null;
  let rs: LiveReceiveSocket | null = o.shared ?? null;
  let detach: (() => void) | null = null;
  const family = o.shared ? o.shared.family : o.bindAddress?.includes(':') ? 6 : 4;
  let controllerAddress = o.controller.host;
  let receiver: RtpReceiver | null = null;
  let timer: NodeJS.Timeout | undefined;
  let started = false;
  let stopped = false;
  let hellosSent = 0;
  let sendErrors = 0;
  /** Any datagram from the controller's address: our hello got through, no fast retry needed. */
  let heardBack = false;
  let retryTimer: NodeJS.Timeout | undefined;

  const hello = (): void => {
    if (!started || stopped || !receiver) return;
    const s = receiver.stats();
    const reports = s.accepted > 0 ? [receiver.report(o.clock.now())] : [];
    try {
      rs!.socket.send(buildHello({ ssrc: localSsrc, token: o.token, reports }), o.controller.port, controllerAddress, (err) => {
        if (err) {
          sendErrors++;
          log.debug({ err }, 'hello send failed');
        }
      });
      hellosSent++;
    } catch (err) {
      sendErrors++;
      log.debug({ err }, 'hello send threw');
    }
  };

  // Until the controller answers, repeat the hello every 200–400 ms (random: a fleet that joined together
  // must not retry in lockstep), at most FAST_RETRIES times: a hello lost to a full socket buffer or a
  // lossy link otherwise costs a whole interval of the join (the emergency budget is 1 s).
  const retryUntilHeard = (n: number): void => {
    if (heardBack || stopped || n >= FAST_RETRIES) return;
    retryTimer = setTimeout(() => {
      if (heardBack || stopped) return;
      hello();
      retryUntilHeard(n + 1);
    }, 200 + Math.random() * 200);
    retryTimer.unref?.();
  };

  return {
    async start() {
      if (started) return;
      started = true;
      // Resolve a host name once, in the socket's family: we send to and accept from that address only.
      controllerAddress = net.isIP(o.controller.host) ? o.controller.host : (await dns.promises.lookup(o.controller.host, { family })).address;
      receiver = createRtpReceiver({
        ssrc: o.ssrc,
        payloadTypes: o.payloadTypes,
        source: { address: controllerAddress, port: o.controller.port },
        onPacket: o.onPacket,
        ...(o.onBye ? { onBye: o.onBye } : {}),
        ...(o.onRtcp ? { onRtcp: o.onRtcp } : {}),
      });
      const r = receiver;
      if (!rs) {
        own = createLiveReceiveSocket({ ...(o.bindAddress ? { bindAddress: o.bindAddress } : {}), ...(o.bindPort !== undefined ? { bindPort: o.bindPort } : {}), ...(o.log ? { log: o.log } : {}) });
        rs = own;
      }
      await rs.bound;
      if (stopped) return;
      if (rs.closed()) throw new Error('the receive socket is closed');
      detach = rs.attach((msg, rinfo) => {
        if (!heardBack && rinfo.port === o.controller.port && rinfo.address === controllerAddress) heardBack = true;
        r.handle(msg, rinfo, o.clock.now());
      });
      hello();
      timer = setI(hello, interval);
      timer.unref?.();
      retryUntilHeard(0);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearI(timer);
      clearTimeout(retryTimer);
      detach?.();
      detach = null;
      if (own) await own.close();
    },
    hello,
    address() {
      if (!rs) throw new Error('the endpoint is not started');
      const a = rs.socket.address();
      return { address: a.address, port: a.port };
    },
    stats() {
      const s = receiver?.stats() ?? {
        accepted: 0, duplicates: 0, outOfOrder: 0, malformed: 0, wrongSource: 0, wrongSsrc: 0, wrongPayloadType: 0, rejected: 0, rtcp: 0, bye: false,
        reception: { received: 0, expected: 0, cumulativeLost: 0, extendedHighestSeq: 0, jitter: 0, jitterMs: 0, restarts: 0 },
      };
      return { ...s, hellosSent, sendErrors };
    },
  };
}
