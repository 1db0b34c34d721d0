import { EventEmitter } from 'node:events';
import type { ServerEvent } from '../../schemas/src/index.js';

/** In-process bus: domain services emit ServerEvents; the WebSocket and webhooks subscribe. */
export interface EventBus {
  emit(communeId: string, ev: ServerEvent): void;
  on(listener: (communeId: string, ev: ServerEvent) => void): () => void;
}

export function createEventBus(): EventBus {
  const ee = new EventEmitter();
  ee.setMaxListeners(0);
  return {
    emit(communeId, ev) { ee.emit('ev', communeId, ev); },
    on(listener) {
      ee.on('ev', listener);
      return () => ee.off('ev', listener);
    },
  };
}
