module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'vmlb',
  rootDir: __dirname,
  testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts'],
};
