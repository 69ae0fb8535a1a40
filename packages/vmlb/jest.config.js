module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'vmlb',
  rootDir: __dirname,
  testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts'],
  // Integration specs run real nx, qemu and chroots.
  testTimeout: 600_000,
};
