// `npm run e2e`: slow end-to-end runs (a real Debian image, built and booted), not part of `npm test`.
module.exports = {
  ...require('./jest.preset.js'),
  displayName: 'e2e',
  rootDir: __dirname,
  testMatch: ['<rootDir>/packages/vmlb/e2e/**/*.e2e.ts'],
  testTimeout: 3_600_000,
};
