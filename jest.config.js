// `npm test`: every package's unit and integration specs.
module.exports = {
  projects: ['<rootDir>/packages/*/jest.config.js', '<rootDir>/tools/cache-server/jest.config.js', '<rootDir>/tools/lockfile/jest.config.js'],
  // Integration specs run real nx, qemu and chroots.
  testTimeout: 600_000,
  // Two suites at a time on a 2-core machine (Jest's default would be one):
  // integration suites spend most of their time waiting on nx, qemu and the
  // disk, and each works in its own workspace and checks only its own mounts,
  // loop devices and daemons. Measured on a fresh clone: 605 s for 689 tests
  // against 714 s for 637 tests one suite at a time.
  maxWorkers: 2,
};
