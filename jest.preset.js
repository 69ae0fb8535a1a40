// Shared Jest settings for every package in the workspace.
//
// execa 9 and several of its dependencies are published as ES modules only.
// Jest on Node 20 cannot require() them, so those packages (found by their
// package.json "type": "module", wherever they sit in node_modules) are
// compiled to CommonJS by ts-jest like our own sources, and resolved through
// their "import" export condition when "require" has no entry.
const fs = require('node:fs');
const path = require('node:path');

function findEsmPackages(nodeModulesDir, found = new Set()) {
  let entries;
  try {
    entries = fs.readdirSync(nodeModulesDir);
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (entry.startsWith('.')) continue;
    const names = entry.startsWith('@') ? fs.readdirSync(path.join(nodeModulesDir, entry)).map((scoped) => `${entry}/${scoped}`) : [entry];
    for (const name of names) {
      const packageDir = path.join(nodeModulesDir, name);
      try {
        if (JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).type === 'module') {
          found.add(name);
        }
      } catch {
        // Not a package folder (or a dangling workspace link): nothing to transform.
      }
      findEsmPackages(path.join(packageDir, 'node_modules'), found);
    }
  }
  return found;
}

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const esmPackages = [...findEsmPackages(path.join(__dirname, 'node_modules'))].map(escapeRegExp);

module.exports = {
  testEnvironment: 'node',
  resolver: path.join(__dirname, 'tools/jest/esm-fallback-resolver.js'),
  transform: {
    '^.+\\.[cm]?[tj]s$': [
      'ts-jest',
      {
        tsconfig: path.join(__dirname, 'tsconfig.jest.json'),
        diagnostics: { ignoreCodes: ['TS151001'] },
      },
    ],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esmPackages.join('|')})/)`],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
};
