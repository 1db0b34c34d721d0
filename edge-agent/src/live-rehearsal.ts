/**
 * A rehearsal of the live join, run once per process when the agent starts: so that the first emergency
 * after a boot joins as fast as the second.
 *
 * A cold process pays for its first live session on the critical path: V8 runs code it has never run in
 * its interpreter, with no type feedback, and optimises it only after many runs; zod compiles a schema at
 * its first parse. In the emergency bench at 1,000 clusters the first call's joins cost about twice the
 * CPU of the second call's (the receiver endpoint, the RTP/RTCP parsers, the jitter buffer and the
 * decode path were all several times slower), and the first call missed the 1 s target while the second met it.
 *
 * The rehearsal is a real session on loopback, with nothing shared with a real one: a UDP socket of its
 * own stands in for the controller and answers the hello with a sender report and real Opus/RED packets
 * (encoded here once, one of them left out for RED to repair); the agent side is the same code a join runs: receiver endpoint, hello, RTP
 * receiver, jitter buffer on the agent's clock estimate, decode. It uses its own decoder and sockets,
 * touches neither the speakers nor the broker, and takes tens of milliseconds of CPU at start.
 */
import dgram from 'node:dgram';
import { pino, type Logger } from 'pino';
import {
  buildSenderReport, classifyPacket, createJitterBuffer, createLiveReceiveSocket, createLiveReceiverEndpoint, createOpusDecoder, createPacketizer,
  DEFAULT_OPUS_PAYLOAD_TYPE, DEFAULT_RED_PAYLOAD_TYPE, helloToken, parseRtcp, type FrameDecoder,
} from '../../audio-pipeline/src/live/index.js';
import { systemClock, type Clock } from './clock.js';
import { warmLiveValidation } from './live.js';

export interface RehearsalResult {
  rounds: number;
  /** RTP packets the rehearsal endpoints accepted (rounds × (frames − 1) when all went well: one is left out). */
  packets: number;
  /** Decoded samples that were not silent (proves the decode path ran). */
  audibleSamples: number;
  /** Frames repaired from RED (one a round when all went well). */
  recoveredByRed: number;
  ms: number;
}

const FRAMES = 8;
const FRAME = 960;
const TOKEN = 'rehearsal';
/** The packet the rehearsal's controller leaves out. */
const LOST = 3;

let once: Promise<RehearsalResult | null> | undefined;

/**
 * Rehearse once per process (later calls get the first one's promise). Never rejects: a rehearsal that
 * cannot run (no loopback, a socket refused) is logged and resolves null, and the agent works as before.
 */
export function rehearseLiveJoin(o: { rounds?: number; log?: Logger; clock?: Clock } = {}): Promise<RehearsalResult | null> {
  once ??= rehearse(o.rounds ?? 40, o.log ?? pino({ level: 'silent' }), o.clock ?? systemClock).catch((e: Error) => {
    (o.log ?? pino({ level: 'silent' })).warn({ err: e.message }, 'live join rehearsal failed (the first session joins cold)');
    return null;
  });
  return once;
}

async function rehearse(rounds: number, log: Logger, clock: Clock): Promise<RehearsalResult> {
  const t0 = clock.now();
  warmLiveValidation();
  // The "controller": a tone encoded once, the same bytes answered to every hello.
  const pz = createPacketizer({ payloadType: DEFAULT_OPUS_PAYLOAD_TYPE, redPayloadType: DEFAULT_RED_PAYLOAD_TYPE, encoder: { application: 'restricted-lowdelay' } });
  const packets: Uint8Array[] = [];
  const pcm = new Float32Array(FRAME);
  for (let f = 0; f < FRAMES; f++) {
    for (let i = 0; i < FRAME; i++) pcm[i] = 0.3 * Math.sin((2 * Math.PI * 440 * (f * FRAME + i)) / 48_000);
    packets.push(pz.packetize(pcm).bytes);
  }
  const ssrc = pz.ssrc;
  const ctl = dgram.createSocket('udp4');
  const rx = createLiveReceiveSocket({ bindAddress: '127.0.0.1', log });
  let decoder: FrameDecoder | undefined;
  try {
    await new Promise<void>((resolve, reject) => { ctl.once('error', reject); ctl.bind(0, '127.0.0.1', () => { ctl.off('error', reject); resolve(); }); });
    await rx.bound;
    const port = ctl.address().port;
    ctl.on('message', (msg, rinfo) => {
      if (classifyPacket(msg) !== 'rtcp') return;
      let hello = false;
      try { hello = parseRtcp(msg).some((p) => helloToken(p)?.token === TOKEN); } catch { return; }
      if (!hello) return;
      const now = clock.now();
      ctl.send(buildSenderReport(ssrc, { ntpMs: now, rtpTimestamp: pz.initialTimestamp, packetCount: 0, octetCount: 0 }), rinfo.port, rinfo.address);
      // One packet left out: the next one's RED block repairs it (the loss path runs too).
      packets.forEach((p, k) => { if (k !== LOST) ctl.send(p, rinfo.port, rinfo.address); });
    });
    const d = await createOpusDecoder();
    decoder = d;
    // Lent to each round's buffer, whose close() resets it (as the agent's kept decoder).
    const lent: FrameDecoder = { samplesOf: (p) => d.samplesOf(p), decode: (p) => d.decode(p), conceal: (n) => d.conceal(n), reset: () => d.reset(), close: () => d.reset() };
    // The agent's own clock stands in for the controller's (offset 0).
    const toController = { toController: (ms: number) => ms };
    const out = new Float32Array(FRAME);
    let accepted = 0;
    let audible = 0;
    let recovered = 0;
    for (let r = 0; r < rounds; r++) {
      const base = clock.now();
      const jb = createJitterBuffer({
        decoder: lent, timing: pz.timing(base), delayMs: 200, clock: toController, payloadType: DEFAULT_OPUS_PAYLOAD_TYPE, redPayloadType: DEFAULT_RED_PAYLOAD_TYPE, log,
      });
      let n = 0;
      let heard = false;
      let arrived!: () => void;
      const all = new Promise<void>((resolve) => { arrived = resolve; });
      const endpoint = createLiveReceiverEndpoint({
        controller: { host: '127.0.0.1', port }, token: TOKEN, ssrc, payloadTypes: [DEFAULT_OPUS_PAYLOAD_TYPE, DEFAULT_RED_PAYLOAD_TYPE],
        clock, helloIntervalMs: 1000, shared: rx,
        onPacket: (p, at) => { if (jb.push(p, at) === 'accepted') accepted++; if (++n === FRAMES - 1) arrived(); },
        onRtcp: (ps) => { if (ps.some((p) => p.type === 'sr' && p.ssrc === ssrc)) heard = true; },
        log,
      });
      try {
        await endpoint.start();
        const timeout = new Promise<never>((_, reject) => { const t = setTimeout(() => reject(new Error('no answer on loopback within 1 s')), 1000); t.unref?.(); void all.then(() => clearTimeout(t)); });
        await Promise.race([all, timeout]);
        if (!heard) throw new Error('the sender report did not arrive before the audio');
        // The DAC's pulls: one before the stream (silence), then every frame at its presentation time (capture + D).
        jb.read(out, base + 200 - 40);
        for (let f = 0; f < FRAMES; f++) {
          const got = jb.read(out, base + 200 + f * 20);
          for (let i = 0; i < got; i++) if (out[i] !== 0) audible++;
        }
        recovered += jb.stats().recoveredByRed;
        endpoint.stats();
      } finally {
        await endpoint.stop();
        jb.close();
      }
    }
    const ms = clock.now() - t0;
    log.debug({ rounds, packets: accepted, ms: Math.round(ms) }, 'live join rehearsed');
    return { rounds, packets: accepted, audibleSamples: audible, recoveredByRed: recovered, ms };
  } finally {
    pz.close();
    decoder?.close();
    ctl.close();
    await rx.close();
  }
}
