module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'vmlb-cache-server',
  rootDir: __dirname,
  testMatch: ['<rootDir>/src/**/*.spec.ts'],
  // Real HTTP and real files; the 256 MiB streaming spec sets its own, longer timeout.
  testTimeout: 30_000,
};
