// `npm test`: every package's unit and integration specs.
module.exports = {
  projects: ['<rootDir>/packages/*/jest.config.js', '<rootDir>/tools/cache-server/jest.config.js'],
  // Integration specs run real nx, qemu and chroots.
  testTimeout: 600_000,
};
