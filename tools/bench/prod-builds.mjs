#!/usr/bin/env node
// Builds of images/prod through nx, in this workspace, with the Nx daemon on
// (as on a developer's machine; started and warm before anything is timed):
// - no-op: `nx build image-prod` with everything built, against `nx show
//   projects` (Nx starting and computing the project graph, no tasks); it
//   checks that no layer ran and that image.qcow2 and its layer are unchanged;
// - one layer task: `nx run prod-50_cleanup:build --skip-nx-cache
//   --exclude-task-dependencies`, split at the moments Nx starts and ends the
//   task (NX_PROFILE) and the executor's first and last lines arrive, so
//   Nx's share of a task is separate from the layer's build;
// - incremental: the welcome app's page edited, `nx build image-prod`
//   rebuilds the app, 30_app and 50_cleanup; per rebuilt layer, the task's
//   time against its script's own time.
// RUNS (default 5) runs each; medians with min and max. The page is put
// back and the image rebuilt from the cache at the end.
//
// Usage: node tools/bench/prod-builds.mjs (npx nx build image-prod first)
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { median, nxBin, repo, runs as runsOr, spread } from './lib.mjs';

const runs = runsOr(5);
const env = { ...process.env, NX_TUI: 'false', NX_NO_CLOUD: 'true', FORCE_COLOR: '0', NX_DAEMON: 'true' };
const page = path.join(repo, 'apps/welcome/src/index.html');
const originalPage = readFileSync(page, 'utf8');
const dist = path.join(repo, 'dist/images/prod');
const profileFile = path.join(repo, 'dist/.bench-nx-profile.json');

/** Runs nx; resolves with its wall time, output, and the arrival time (epoch ms) of each output line. */
function nx(args, extraEnv = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [nxBin, ...args], { cwd: repo, env: { ...env, ...extraEnv } });
    const lines = [];
    let pending = '';
    const take = (chunk) => {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop();
      for (const text of parts) lines.push({ at: Date.now(), text });
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('close', (code) => {
      if (pending) lines.push({ at: Date.now(), text: pending });
      const output = lines.map((line) => line.text).join('\n');
      if (code !== 0) reject(new Error(`nx ${args.join(' ')} failed:\n${output}`));
      else resolve({ started, ms: Date.now() - started, lines, output });
    });
  });
}

/** Nx's start and end (epoch ms) of each task of the last run with NX_PROFILE set. */
function taskSpans() {
  const spans = {};
  for (const event of JSON.parse(readFileSync(profileFile, 'utf8'))) {
    if (event.ph === 'X') spans[event.name] = { start: event.ts / 1000, end: (event.ts + event.dur) / 1000 };
  }
  return spans;
}

/** The layer file image.qcow2 leads to, and its identity on disk. */
function imageState() {
  const target = readlinkSync(path.join(dist, 'image.qcow2'));
  const stat = statSync(path.join(dist, target));
  return `${target} ino ${stat.ino} mtime ${stat.mtimeMs}`;
}

/** The layer tasks a run's output shows as run (not taken from a cache). */
function layersRun(output) {
  return [...output.matchAll(/^> nx run (prod-\S+):build\s*$/gm)].map((match) => match[1]).sort();
}

/** The arrival time of the first line matching `pattern` (after `from`). */
function lineAt(lines, pattern, from = 0) {
  const line = lines.find((candidate) => candidate.at >= from && pattern.test(candidate.text));
  if (!line) throw new Error(`no line matching ${pattern}`);
  return line;
}

const ms = (values) => `${median(values).toFixed(0)} (${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)})`;
const ratio = (a, b) => `${(median(a) / median(b)).toFixed(2)}×`;

try {
  await nx(['build', 'image-prod']);
  await nx(['show', 'projects']);

  // No-op builds against Nx's own start-up, split at the plugins' preTasksExecution hook and the image task.
  const startup = [];
  const noop = [];
  const noopSplit = { hook: [], 'image task': [], rest: [] };
  for (let run = 0; run < runs; run++) {
    startup.push((await nx(['show', 'projects'])).ms);
    const before = imageState();
    rmSync(profileFile, { force: true });
    const result = await nx(['build', 'image-prod', '--output-style=static'], { NX_PROFILE: path.relative(repo, profileFile), NX_PERF_LOGGING: 'true' });
    const ran = layersRun(result.output);
    if (ran.length) throw new Error(`the no-op build ran layers: ${ran.join(', ')}\n${result.output}`);
    if (imageState() !== before) throw new Error(`the no-op build changed image.qcow2's layer: ${before} -> ${imageState()}`);
    const hook = Number(result.output.match(/'PRE_TASKS_EXECUTION round trip' ([\d.]+)ms/)?.[1] ?? 0);
    const image = taskSpans()['image-prod:build'];
    noop.push(result.ms);
    noopSplit.hook.push(hook);
    noopSplit['image task'].push(image.end - image.start);
    noopSplit.rest.push(result.ms - hook - (image.end - image.start));
  }

  // One layer task through nx, split at Nx's task start and end and the executor's first and last lines.
  const split = { 'before the task': [], 'task start to the executor': [], 'the layer build': [], 'executor to task end': [], 'after the task': [] };
  const taskTimes = [];
  const buildTimes = [];
  for (let run = 0; run < runs; run++) {
    rmSync(profileFile, { force: true });
    const result = await nx(['run', 'prod-50_cleanup:build', '--skip-nx-cache', '--exclude-task-dependencies', '--output-style=stream'], {
      NX_PROFILE: path.relative(repo, profileFile),
    });
    const span = taskSpans()['prod-50_cleanup:build'];
    const first = lineAt(result.lines, /vmlb: layer .*50_cleanup of image prod: in no cache, building/).at;
    const last = lineAt(result.lines, /vmlb: layer 50_cleanup built in/).at;
    split['before the task'].push(span.start - result.started);
    split['task start to the executor'].push(first - span.start);
    split['the layer build'].push(last - first);
    split['executor to task end'].push(span.end - last);
    split['after the task'].push(result.started + result.ms - span.end);
    taskTimes.push(span.end - span.start);
    buildTimes.push(last - first);
  }
  // The rebuilt layer's bytes differ from the cached ones: the cache's copy goes back in place.
  await nx(['build', 'image-prod']);

  // Incremental: the app edited, everything it ships rebuilt.
  const incremental = [];
  const perLayer = { '30_app': { task: [], script: [] }, '50_cleanup': { task: [], script: [] } };
  try {
    for (let run = 0; run < runs; run++) {
      writeFileSync(page, `${originalPage}<!-- bench edit ${run} ${Date.now()} -->\n`);
      rmSync(profileFile, { force: true });
      const result = await nx(['build', 'image-prod', '--output-style=stream'], { NX_PROFILE: path.relative(repo, profileFile) });
      const spans = taskSpans();
      for (const [layer, times] of Object.entries(perLayer)) {
        const span = spans[`prod-${layer}:build`];
        const script = result.lines.find((line) => line.at >= span.start && line.at <= span.end + 50 && /build-layer ran in/.test(line.text));
        if (!script) throw new Error(`prod-${layer}:build did not run its script:\n${result.output}`);
        times.task.push(span.end - span.start);
        times.script.push(seconds(script.text.match(/ran in ([^;]+)/)[1]));
      }
      const ran = layersRun(result.output);
      if (ran.join() !== 'prod-30_app,prod-50_cleanup')
        throw new Error(`the edit rebuilt ${ran.join(', ') || 'no layer'}, not 30_app and 50_cleanup:\n${result.output}`);
      incremental.push(result.ms);
    }
  } finally {
    writeFileSync(page, originalPage);
  }
  await nx(['build', 'image-prod']);

  console.log(`images/prod, this workspace, Nx daemon on; ${runs} runs each`);
  console.log('\n| build | s | against | ratio of medians |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| \`nx show projects\` (baseline) | ${spread(startup)} | | 1.00× |`);
  console.log(`| no-op \`nx build image-prod\` (no layer runs, image.qcow2 unchanged) | ${spread(noop)} | nx show projects | ${ratio(noop, startup)} |`);
  console.log(
    `| app page edited: \`nx build image-prod\` (welcome, 30_app, 50_cleanup rebuilt) | ${spread(incremental)} | nx show projects | ${ratio(incremental, startup)} |`,
  );
  console.log(
    '\nThe no-op build split (ms): the plugins’ preTasksExecution hook, which Nx runs in a plugin worker it starts for it; the image task (not cached: it always runs); the rest (Nx starting, the graph from the daemon, hashing, cache checks, exit):',
  );
  console.log('\n| part | ms |');
  console.log('| --- | --- |');
  for (const [part, values] of Object.entries(noopSplit)) console.log(`| ${part} | ${ms(values)} |`);
  console.log('\n`nx run prod-50_cleanup:build --skip-nx-cache --exclude-task-dependencies`, split (ms):');
  console.log('\n| part | what happens | ms |');
  console.log('| --- | --- | --- |');
  const what = {
    'before the task': 'Nx starts, reads the graph from the daemon, runs the plugins’ preTasksExecution, hashes the task',
    'task start to the executor': 'the task process forked, Nx and the executor loaded, options normalised, checks',
    'the layer build': 'the layer build itself (lib/build/layer-build: attach, script, detach, digest)',
    'executor to task end': 'the executor returns, its process exits, Nx stores the outputs in its cache',
    'after the task': 'Nx records the run and exits',
  };
  for (const [part, values] of Object.entries(split)) console.log(`| ${part} | ${what[part]} | ${ms(values)} |`);
  console.log(
    `\nNx's task against the executor's build: ${spread(taskTimes)} s against ${spread(buildTimes)} s, ${((median(taskTimes) - median(buildTimes)) / 1000).toFixed(2)} s over.`,
  );
  console.log('\nIncremental, per rebuilt layer: the task as Nx times it against its script as the build reports it (s):');
  console.log('\n| layer | task | script | task over script (median) |');
  console.log('| --- | --- | --- | --- |');
  for (const [layer, times] of Object.entries(perLayer)) {
    const over = times.task.map((task, index) => task - times.script[index]);
    console.log(`| ${layer} | ${spread(times.task)} | ${spread(times.script)} | ${(median(over) / 1000).toFixed(2)} |`);
  }
} finally {
  rmSync(profileFile, { force: true });
  if (readFileSync(page, 'utf8') !== originalPage) writeFileSync(page, originalPage);
  spawnSync(process.execPath, [nxBin, 'daemon', '--stop'], { cwd: repo, env, stdio: 'ignore' });
}

/** Milliseconds from a duration as the build prints it ("1.2 s", "850 ms", "1 min 02 s"). */
function seconds(text) {
  const minutes = text.match(/(\d+) min/);
  const secondsPart = text.match(/([\d.]+) s/);
  const millis = text.match(/(\d+) ms/);
  return (minutes ? Number(minutes[1]) * 60000 : 0) + (secondsPart ? Number(secondsPart[1]) * 1000 : 0) + (millis ? Number(millis[1]) : 0);
}
