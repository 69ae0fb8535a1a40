// Jest resolves with the "require" export condition. Packages that only
// export an "import" entry (execa's dependencies) are retried with it; the
// transform in jest.preset.js then compiles them to CommonJS.
module.exports = (request, options) => {
  try {
    return options.defaultResolver(request, options);
  } catch (error) {
    try {
      return options.defaultResolver(request, { ...options, conditions: ['import', 'node', 'default'] });
    } catch {
      throw error;
    }
  }
};
