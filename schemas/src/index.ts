export * from './envelope.js';
export * from './priority.js';
export * from './health.js';
export * from './commands.js';
export * from './timesync.js';
export * from './topics.js';
export * from './api.js';
export * from './config.js';
