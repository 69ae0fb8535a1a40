// Nx's own CI detection, from the module that holds only it: `@nx/devkit/internal` would load
// the whole devkit into every task process that asks.
export { isCI } from 'nx/src/utils/is-ci';
