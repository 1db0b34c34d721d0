import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { opusStreamDecoderStats } from '../../audio-pipeline/src/opus-stream.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

/*
 * The controller warms its Opus codecs after start (LiveOptions.codecWarmDelayMs), so that a first
 * emergency neither instantiates the file decoder nor waits for V8 to optimise the codecs' wasm. The
 * controller runs in this process, so the stream decoder pool seen here is its own.
 */
let t: TestController;

beforeAll(async () => {
  expect(opusStreamDecoderStats()).toEqual({ instantiated: 0, pooled: 0 });
  t = await startTestController({ live: { codecWarmDelayMs: 0 } });
}, 30_000);

afterAll(async () => {
  await t?.stop();
});

describe('codec warm-up', () => {
  it('leaves a stream decoder made, used and kept for the first file or emergency session', async () => {
    // The decoder is pooled only after the warm-up decoded its packets with it.
    const s = await waitFor(() => { const x = opusStreamDecoderStats(); return x.pooled > 0 ? x : undefined; }, { what: 'a pooled decoder' });
    expect(s).toEqual({ instantiated: 1, pooled: 1 });
  });
});
