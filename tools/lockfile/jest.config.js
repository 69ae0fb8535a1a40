module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'lockfile',
  rootDir: __dirname,
  testMatch: ['<rootDir>/**/*.spec.ts'],
  // Each spec runs the script with node, and a stand-in for `npm view`.
  testTimeout: 30_000,
};
