import { fleetSuite } from './fleet-suite.js';

fleetSuite('the embedded aedes broker', {
  controller: async () => ({}),
  brokerPort: (t) => t.ctl.broker!.port,
  closesOnForbiddenPublish: true,
});
