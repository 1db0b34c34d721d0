import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services.js';
import { who } from '../app.js';

/** WebSocket stream of node status changes, alarms, command replies and job progress for the console. */
export async function eventRoutes(app: FastifyInstance, svc: Services) {
  app.get('/events', { websocket: true, schema: { tags: ['events'] } }, (socket, req) => {
    const communeId = who(req).communeId;
    socket.send(JSON.stringify({ type: 'hello', ts: svc.now() }));
    const off = svc.bus.on((c, ev) => {
      if (c !== communeId || socket.readyState !== socket.OPEN) return;
      // A console that cannot keep up must not grow the controller's memory without bound.
      if (socket.bufferedAmount > 4 * 1024 * 1024) { socket.close(1013, 'too slow'); return; }
      socket.send(JSON.stringify(ev));
    });
    socket.on('close', off);
    socket.on('message', () => { /* the stream is one-way; ignore client chatter */ });
  });
}
