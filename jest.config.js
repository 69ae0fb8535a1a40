// `npm test`: every package's unit and integration specs.
module.exports = {
  projects: ['<rootDir>/packages/*/jest.config.js'],
};
