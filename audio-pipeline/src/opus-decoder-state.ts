/**
 * Reuse of `opus-decoder` instances. Each instance is one wasm instance with its own memory, and making
 * one is the expensive part of a decoder: a few ms of CPU, and V8 counts the wasm memory as external
 * memory, so a few instantiations in a row trigger a full garbage collection (tens of ms on a
 * controller's heap, more than a second on an agent process hosting hundreds of simulated clusters).
 * A live session start is exactly where that must not happen.
 *
 * `resetOpusDecoderState` recreates only libopus's decoder state inside the existing instance
 * (opus_frame_decoder_destroy + _create, what opus-decoder's own init does after instantiating), which
 * decodes exactly like a new instance (test/unit/live-opus.test.ts). opus-decoder's reset() would
 * instantiate anew. These are opus-decoder 0.7 internals (not in its typings); the version is pinned.
 */
import type { OpusDecoder } from 'opus-decoder';

/** The parts of opus-decoder 0.7's OpusDecoder that a state reset uses. */
interface OpusDecoderInternals {
  _common: { wasm: Record<string, (...a: number[]) => number>; allocateTypedArray(n: number, t: Uint8ArrayConstructor): { ptr: number; buf: Uint8Array } };
  _decoder: number;
  _sampleRate: number; _channels: number; _streamCount: number; _coupledStreamCount: number;
  _channelMappingTable: Uint8Array | number[]; _preSkip: number; _forceStereo: number;
}

/** The channel mapping copied into each instance's wasm memory once (libopus copies it into its state at create). */
const mappingPtrs = new WeakMap<object, number>();

/** Back to the state of a new decoder with the same configuration, in the same wasm instance. */
export function resetOpusDecoderState(dec: OpusDecoder<48000> | OpusDecoder<undefined>): void {
  const d = dec as unknown as OpusDecoderInternals;
  const w = d._common.wasm;
  let mappingPtr = mappingPtrs.get(d);
  if (mappingPtr === undefined) {
    const m = d._common.allocateTypedArray(d._channels, Uint8Array);
    m.buf.set(d._channelMappingTable);
    mappingPtr = m.ptr;
    mappingPtrs.set(d, mappingPtr);
  }
  w.opus_frame_decoder_destroy!(d._decoder);
  w.free!(d._decoder);
  d._decoder = w.opus_frame_decoder_create!(d._sampleRate, d._channels, d._streamCount, d._coupledStreamCount, mappingPtr, d._preSkip, d._forceStereo);
}
