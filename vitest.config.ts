import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // 2 cores: integration suites start brokers, fleets and ffmpeg; keep files from starving each other.
    maxWorkers: 2,
    fileParallelism: true,
    reporters: ['default'],
  },
});
