import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { createController } from './controller.js';

/** `npm start`: the controller on its embedded defaults (env RADIO_* overrides; see README). */
const log = pino({
  level: process.env.RADIO_LOG_LEVEL ?? 'info',
  ...(process.stdout.isTTY ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
});

try {
  const ctl = await createController({ log });
  await ctl.start();
  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'fatal error, shutting down');
    else log.info({ signal }, 'shutting down');
    await ctl.stop();
  });
} catch (e) {
  log.fatal({ err: e }, (e as Error).message);
  process.exit(1);
}
