import { preempts, type Claim } from '../../schemas/src/index.js';
import type { AudioSink, PcmSource } from './hardware.js';

/**
 * A program the player can run: fills `out` (starting at hardware-clock `presentationTime`) and returns
 * frames written; `ended()` true once it has nothing more to give.
 */
export interface Program extends PcmSource {
  readonly id: string;
  readonly kind: 'airing' | 'live' | 'test_tone';
  ended(): boolean;
}

export interface Playing { program: Program; claim: Claim; startedAt: number; onEnd: (why: 'finished' | 'preempted' | 'stopped') => void }

/**
 * The one PcmSource attached to the sink. It holds at most one program; a challenger replaces it only if
 * it preempts by the schemas' priority rules. Gain is applied here (software volume on top of the amp).
 */
export function createPlayer({ sink, now }: { sink: AudioSink; now: () => number }) {
  let current: Playing | undefined;
  let gain = 1;
  // The sink runs only while a program is loaded (as aplay opens the device): an idle fleet of
  // thousands of simulated clusters then costs no DAC ticks.
  let sinkRunning = false;
  const startSink = () => { if (!sinkRunning) { sinkRunning = true; sink.start(); } };
  const stopSink = () => { if (sinkRunning) { sinkRunning = false; sink.stop(); } };

  const source: PcmSource = {
    read(out, presentationTime) {
      const p = current;
      if (!p) { out.fill(0); return out.length; }
      const n = p.program.read(out, presentationTime);
      if (n < out.length) out.fill(0, n);
      if (gain !== 1) for (let i = 0; i < n; i++) out[i]! *= gain;
      if (p.program.ended()) {
        current = undefined;
        queueMicrotask(() => { if (!current) stopSink(); p.onEnd('finished'); });
      }
      // Silence after a program ends is not an underrun: the player always fills the buffer.
      return out.length;
    },
  };
  sink.attach(source);

  return {
    /** Try to start `program`; false if the current one keeps the speakers. */
    play(program: Program, claim: Claim, onEnd: Playing['onEnd'] = () => {}): boolean {
      const cur = current;
      if (cur && !cur.program.ended() && !preempts(claim, cur.claim)) return false;
      current = { program, claim, startedAt: now(), onEnd };
      startSink();
      if (cur) cur.onEnd('preempted');
      return true;
    },
    stop(id?: string) {
      const cur = current;
      if (!cur || (id !== undefined && cur.program.id !== id)) return;
      current = undefined;
      stopSink();
      cur.onEnd('stopped');
    },
    setGain(g: number) { gain = Math.max(0, Math.min(1, g)); },
    playing: () => current,
    detach() { stopSink(); sink.attach(null); },
  };
}
export type Player = ReturnType<typeof createPlayer>;

/** A sine test tone of fixed length with 10 ms fades (no clicks). */
export function toneProgram(id: string, frequencyHz: number, durationMs: number, sampleRate: number): Program {
  const total = Math.round((durationMs / 1000) * sampleRate);
  const fade = Math.round(0.01 * sampleRate);
  let pos = 0;
  return {
    id, kind: 'test_tone',
    read(out) {
      const n = Math.min(out.length, total - pos);
      for (let i = 0; i < n; i++) {
        const k = pos + i;
        const env = Math.min(1, k / fade, (total - k) / fade);
        out[i] = 0.5 * env * Math.sin((2 * Math.PI * frequencyHz * k) / sampleRate);
      }
      pos += n;
      return n;
    },
    ended: () => pos >= total,
  };
}
