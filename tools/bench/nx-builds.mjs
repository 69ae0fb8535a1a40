#!/usr/bin/env node
// Whole builds through nx, in a scratch workspace holding images/tiny plus
// two more layers (five in all):
// - incremental: the top layer's script changed, everything below from the
//   cache, against a full rebuild of the same image (--skip-nx-cache);
// - no-op: `nx build image-tiny` with everything cached, with the Nx daemon
//   off and on, against `nx show projects` (Nx starting and computing the
//   project graph, no tasks) with the daemon off.
// The sides take turns; RUNS (default 5) runs each; medians with min and max.
//
// Usage: node tools/bench/nx-builds.mjs
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { median, nxBin, nxEnv, nxSync, repo, runs as runsOr, spread } from './lib.mjs';

const runs = runsOr(5);
const root = mkdtempSync(path.join(tmpdir(), 'vmlb-bench-ws-'));
/** nx in the scratch workspace, the daemon off unless `env` turns it on. */
const nx = (args, env = {}) => nxSync(root, args, { NX_DAEMON: 'false', ...env });

function cleanup() {
  spawnSync(process.execPath, [nxBin, 'daemon', '--stop'], { cwd: root, env: nxEnv });
  rmSync(root, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

try {
  symlinkSync(path.join(repo, 'node_modules'), path.join(root, 'node_modules'));
  writeFileSync(path.join(root, 'package.json'), '{"name":"vmlb-bench","private":true}\n');
  const nxJson = JSON.parse(readFileSync(path.join(repo, 'nx.json'), 'utf8'));
  delete nxJson.$schema;
  nxJson.cacheDirectory = '.nx/cache';
  writeFileSync(path.join(root, 'nx.json'), JSON.stringify(nxJson, null, 2));
  cpSync(path.join(repo, 'images/tiny'), path.join(root, 'images/tiny'), { recursive: true });
  for (const layer of ['30_tools', '40_app']) {
    mkdirSync(path.join(root, 'images/tiny', layer));
    writeFileSync(
      path.join(root, 'images/tiny', layer, 'build-layer'),
      `#!/bin/sh\nset -eu\nmkdir -p /opt/${layer}\nfor i in $(seq 20); do echo "$i" > /opt/${layer}/f$i; done\n`,
      { mode: 0o755 },
    );
  }
  const top = path.join(root, 'images/tiny/40_app/build-layer');
  nx(['build', 'image-tiny']);

  const full = [];
  const incremental = [];
  for (let run = 0; run < runs; run++) {
    const sides = [
      () => full.push(nx(['build', 'image-tiny', '--skip-nx-cache']).ms),
      () => {
        appendFileSync(top, `# edit ${run}\n`);
        const { ms, output } = nx(['build', 'image-tiny', '--output-style=static']);
        if (!/nx run tiny-30_tools:build\s+\[local cache\]/.test(output) || !/nx run tiny-40_app:build\s*$/m.test(output)) {
          throw new Error(`not an incremental build:\n${output}`);
        }
        incremental.push(ms);
      },
    ];
    if (run % 2) sides.reverse();
    for (const side of sides) side();
  }

  nx(['build', 'image-tiny']);
  const startup = [];
  const noopOff = [];
  const noopOn = [];
  // The daemon started and warm before it is timed, as on a developer's machine.
  nx(['build', 'image-tiny'], { NX_DAEMON: 'true' });
  for (let run = 0; run < runs; run++) {
    startup.push(nx(['show', 'projects']).ms);
    noopOff.push(nx(['build', 'image-tiny']).ms);
    noopOn.push(nx(['build', 'image-tiny'], { NX_DAEMON: 'true' }).ms);
  }

  const ratio = (a, b) => `${(median(a) / median(b)).toFixed(2)}×`;
  console.log(`images/tiny plus two layers (5 layers); ${runs} runs each`);
  console.log('\n| build | s | against | ratio of medians |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| full rebuild, \`--skip-nx-cache\` (baseline) | ${spread(full)} | | 1.00× |`);
  console.log(`| top layer changed, the rest from the cache | ${spread(incremental)} | full rebuild | ${ratio(incremental, full)} |`);
  console.log(`| \`nx show projects\`, daemon off (baseline) | ${spread(startup)} | | 1.00× |`);
  console.log(`| no-op build, everything cached, daemon off | ${spread(noopOff)} | nx show projects | ${ratio(noopOff, startup)} |`);
  console.log(`| no-op build, everything cached, daemon on | ${spread(noopOn)} | nx show projects | ${ratio(noopOn, startup)} |`);
} finally {
  cleanup();
}
