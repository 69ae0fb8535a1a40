module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'vmlb-cache-server',
  rootDir: __dirname,
  testMatch: ['<rootDir>/src/**/*.spec.ts'],
  // Real HTTP and real files; the 256 MiB streaming spec sets its own, longer timeout.
  // Set per test file: Jest takes `testTimeout` from the root config only, and npm test's is 10 min.
  setupFilesAfterEnv: ['<rootDir>/jest.setup.js'],
};
