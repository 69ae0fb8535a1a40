module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'lockfile',
  rootDir: __dirname,
  testMatch: ['<rootDir>/**/*.spec.ts'],
  // Each spec runs the script with node, and a stand-in for `npm view`.
  // Set per test file: Jest takes `testTimeout` from the root config only, and npm test's is 10 min.
  setupFilesAfterEnv: ['<rootDir>/jest.setup.js'],
};
