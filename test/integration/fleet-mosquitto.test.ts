import { describe, it } from 'vitest';
import { hasMosquitto, mosquittoUnavailableReason, startMosquitto, type MosquittoHandle } from '../helpers/mosquitto.js';
import { fleetSuite } from './fleet-suite.js';

// CI installs mosquitto; only a developer machine without it skips, and says why.
if (!hasMosquitto() && !process.env.CI) {
  describe('fleet on an external Mosquitto', () => {
    it.skip(`skipped: ${mosquittoUnavailableReason()}`, () => {});
  });
} else {
  let m: MosquittoHandle;
  fleetSuite('an external Mosquitto with dynamic security', {
    controller: async () => {
      m = await startMosquitto();
      return { env: { RADIO_MQTT_URL: m.controllerUrl! } };
    },
    brokerPort: () => m.port,
    closesOnForbiddenPublish: false,
    teardown: async () => { await m?.stop(); },
  });
}
