// A hung test fails in 30 s instead of npm test's 10 min (see jest.config.js).
jest.setTimeout(30_000);
