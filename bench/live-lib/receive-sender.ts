/**
 * Child of bench/live-receive.ts: the controller's real session sender (paced, Opus + RED) on its own
 * UDP socket, fed a 440 Hz tone in real time, sending to every port the parent names.
 */
import dgram from 'node:dgram';
import { createSessionSender } from '../../audio-pipeline/src/live/index.js';

const sock = dgram.createSocket('udp4');
sock.bind(0, '127.0.0.1', () => {
  const sender = createSessionSender({ socket: sock, clock: { now: () => Date.now() }, mode: 'paced' });
  process.send!({ port: sock.address().port });
  process.on('message', (m: { ports?: number[]; stop?: boolean }) => {
    if (m.ports) {
      for (const port of m.ports) sender.addDestination({ address: '127.0.0.1', port });
      sender.start(Date.now());
      process.send!({ desc: sender.description() });
      let t = 0;
      const feed = () => {
        for (;;) {
          const b = new Float32Array(960);
          for (let i = 0; i < 960; i++) b[i] = 0.3 * Math.sin((t++ * 2 * Math.PI * 440) / 48_000);
          if (!sender.write(b)) break;
        }
      };
      sender.on('drain', feed);
      feed();
    }
    if (m.stop) {
      sender.stop();
      setTimeout(() => process.exit(0), 100);
    }
  });
});
