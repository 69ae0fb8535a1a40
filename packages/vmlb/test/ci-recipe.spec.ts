import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseDocument } from 'yaml';
import { NxWorkspace, REPO_ROOT } from './support/nx-workspace';

const RECIPE = '.github/workflows/images.yml';
const ON_DEFAULT_BRANCH = "github.event_name == 'push' && github.ref_name == github.event.repository.default_branch";

/** The keys GitHub Actions knows at each level (a subset: those a build recipe uses). */
const WORKFLOW_KEYS = ['name', 'run-name', 'on', 'permissions', 'env', 'defaults', 'concurrency', 'jobs'];
const JOB_KEYS = ['name', 'runs-on', 'timeout-minutes', 'environment', 'env', 'if', 'needs', 'permissions', 'concurrency', 'strategy', 'container', 'steps'];
const STEP_KEYS = ['name', 'id', 'if', 'uses', 'with', 'run', 'env', 'shell', 'working-directory', 'timeout-minutes', 'continue-on-error'];
/** Options of `nx affected` / `nx run-many` themselves, not passed to the tasks. */
const NX_OWN_OPTIONS = [
  'exclude',
  'parallel',
  'base',
  'head',
  'projects',
  'output-style',
  'outputStyle',
  'skip-nx-cache',
  'skip-remote-cache',
  'verbose',
  'nx-bail',
];

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
}
interface Job {
  'runs-on': string;
  environment: string;
  env: Record<string, string>;
  steps: Step[];
}
interface NxCommand {
  args: string[];
  subcommand: string;
  targets: string[];
  /** The options meant for the tasks (`--check` → check: true). */
  taskOptions: Record<string, string | true>;
  exclude: string[];
}

/** The `nx` commands of a run script, each as its arguments (after `nx`) with targets and options taken apart. */
function nxCommands(script: string): NxCommand[] {
  return script
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.replace(/\s#.*$/, ''))
    .flatMap((line) => [...line.matchAll(/\bnpx nx (.+)$/g)].map((match) => match[1].trim().split(/\s+/)))
    .map((args) => {
      const [subcommand, ...rest] = args;
      const command: NxCommand = { args, subcommand, targets: [], taskOptions: {}, exclude: [] };
      for (let index = 0; index < rest.length; index++) {
        if (rest[index] === '-t' || rest[index] === '--targets') {
          while (rest[index + 1] && !rest[index + 1].startsWith('-')) command.targets.push(...rest[++index].split(','));
          continue;
        }
        const [name, value] = rest[index].replace(/^--/, '').split('=');
        if (name === 'exclude') command.exclude.push(...(value ?? '').split(','));
        else if (!NX_OWN_OPTIONS.includes(name)) command.taskOptions[name] = value ?? true;
      }
      return command;
    });
}

/** The option names an executor's schema.json allows, for an executor such as `vmlb:test-boot`. */
function schemaProperties(executor: string): string[] {
  const [plugin, name] = executor.split(':');
  if (plugin !== 'vmlb') throw new Error(`the recipe passes options to ${executor}, whose schema this test does not know`);
  const packageDir = path.join(REPO_ROOT, 'packages/vmlb');
  const entry = JSON.parse(readFileSync(path.join(packageDir, 'executors.json'), 'utf8')).executors[name];
  return Object.keys(JSON.parse(readFileSync(path.join(packageDir, entry.schema), 'utf8')).properties);
}

/**
 * The GitHub Actions recipe in .github/workflows: nothing here runs it, so
 * this checks that it is a workflow GitHub reads as meant, and that every
 * nx command, target, option and script it calls exists in this workspace
 * (the nx commands are planned by the real nx, --graph=stdout, without
 * running a task).
 */
describe(`the CI recipe ${RECIPE}`, () => {
  const document = parseDocument(readFileSync(path.join(REPO_ROOT, RECIPE), 'utf8'), { uniqueKeys: true, strict: true });
  const workflow = document.toJS() as { on: Record<string, unknown>; env?: unknown; jobs: Record<string, Job> };
  const [job] = Object.values(workflow.jobs);
  const runSteps = job.steps.filter((step) => step.run !== undefined);
  const commands = runSteps.flatMap((step) => nxCommands(step.run!));
  const repo = new NxWorkspace({ existingRoot: REPO_ROOT });
  const images = readdirSync(path.join(REPO_ROOT, 'images'));

  it('is YAML GitHub reads as a workflow: on pushes to main and pull requests, one job of steps that each use an action or run a script', () => {
    expect(document.errors).toEqual([]);
    expect(Object.keys(workflow).filter((key) => !WORKFLOW_KEYS.includes(key))).toEqual([]);
    expect(workflow.on).toEqual({ push: { branches: ['main'] }, pull_request: null });
    expect(Object.keys(workflow.jobs)).toHaveLength(1);
    expect(Object.keys(job).filter((key) => !JOB_KEYS.includes(key))).toEqual([]);
    for (const step of job.steps) {
      expect(Object.keys(step).filter((key) => !STEP_KEYS.includes(key))).toEqual([]);
      expect([step.uses, step.run].filter((value) => value !== undefined)).toHaveLength(1);
      if (step.uses) expect(step.uses).toMatch(/^[\w-]+\/[\w-]+@v\d+$/);
    }
    expect(job.steps.map((step) => step.uses?.split('@')[0]).filter(Boolean)).toEqual([
      'actions/checkout',
      'actions/setup-node',
      'nrwl/nx-set-shas',
      'actions/upload-artifact',
    ]);
  });

  it('shares layers through the remote cache and the S3 blob store, configured from secrets; only main gets the read-write token', () => {
    for (const name of [
      'NX_SELF_HOSTED_REMOTE_CACHE_SERVER',
      'NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN',
      'VMLB_BLOB_STORE',
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
    ]) {
      expect(`${name}=${job.env[name]}`).toBe(`${name}=\${{ secrets.${name} }}`);
    }
    // Secrets of one name per environment: the one limited to main (cache-write) for pushes, cache-read for everything else.
    expect(job.environment).toBe("${{ github.event_name == 'push' && 'cache-write' || 'cache-read' }}");
    expect(workflow.on).not.toHaveProperty('pull_request_target');
  });

  it('sets the host up with tools/setup.sh, as root, and every script it runs exists and is executable', () => {
    expect(runSteps[0].run).toMatch(/^sudo -E env "PATH=\$PATH" tools\/setup\.sh$/);
    const scripts = runSteps.flatMap((step) => [...step.run!.matchAll(/(?:^|\s)((?:\.\/)?(?:tools|\.ci|apps)\/[\w./-]+)/g)].map((match) => match[1]));
    expect(scripts).toContain('tools/setup.sh');
    for (const script of scripts) expect(() => accessSync(path.join(REPO_ROOT, script), constants.X_OK)).not.toThrow();
    // Every nx command runs as root (layer builds attach disks and chroot).
    for (const step of runSteps) expect(step.run).toMatch(/^sudo -E env "PATH=\$PATH" /);
  });

  it('builds, boot-checks, and on the default branch exports the affected images', () => {
    expect(commands.map(({ subcommand, targets, taskOptions }) => ({ subcommand, targets, taskOptions }))).toEqual([
      { subcommand: 'affected', targets: ['build'], taskOptions: {} },
      { subcommand: 'affected', targets: ['test-boot'], taskOptions: { check: true } },
      { subcommand: 'affected', targets: ['flatten'], taskOptions: { compress: true } },
    ]);
    const exportSteps = job.steps.filter((step) => step.run?.includes('-t flatten') || step.uses?.startsWith('actions/upload-artifact'));
    expect(exportSteps.map((step) => step.if)).toEqual([ON_DEFAULT_BRANCH, ON_DEFAULT_BRANCH]);
    expect(job.steps.filter((step) => step.if === undefined).every((step) => !step.run?.includes('-t flatten'))).toBe(true);
  });

  it('calls nx commands whose targets, options and excluded projects this workspace has, and passes the options to those tasks only', async () => {
    const projects: string[] = JSON.parse(await repo.nxOk(['show', 'projects', '--json']));
    // Every image affected: what a change to all of them would run.
    const files = images.map((image) => `images/${image}/image.json`).join(',');
    for (const command of commands) {
      for (const excluded of command.exclude) expect(projects).toContain(excluded);
      const plan = await repo.nxOk([...command.args, '--graph=stdout', `--files=${files}`], { env: { VMLB_BLOB_STORE: 's3://bucket/prefix' } });
      const { graph, tasks } = JSON.parse(plan.slice(plan.indexOf('{'))) as {
        graph: { nodes: Record<string, { data: { targets: Record<string, { executor: string }> } }> };
        tasks: { tasks: Record<string, { target: { project: string; target: string }; overrides: Record<string, unknown> }> };
      };
      const planned = Object.values(tasks.tasks);
      for (const target of command.targets) {
        const asked = planned.filter((task) => task.target.target === target && !command.exclude.includes(task.target.project));
        expect(`${command.args.join(' ')}: ${asked.length > 0}`).toBe(`${command.args.join(' ')}: true`);
        for (const task of asked) {
          const { __overrides_unparsed__: _unparsed, ...overrides } = task.overrides;
          expect(overrides).toEqual(command.taskOptions);
          const executor = graph.nodes[task.target.project].data.targets[target].executor;
          for (const option of Object.keys(overrides)) expect(`${executor}: ${schemaProperties(executor).includes(option)}`).toBe(`${executor}: true`);
        }
      }
      for (const excluded of command.exclude)
        expect(planned.filter((task) => task.target.project === excluded && command.targets.includes(task.target.target))).toEqual([]);
      // Their dependencies (the layer builds) run as they always do: no option of the command reaches them.
      for (const task of planned.filter((each) => !command.targets.includes(each.target.target)))
        expect(task.overrides).toEqual({ __overrides_unparsed__: [] });
    }
  });

  it('uploads the folder every image exports to', async () => {
    const upload = job.steps.find((step) => step.uses?.startsWith('actions/upload-artifact'))!;
    const pattern = new RegExp(`^${String(upload.with!.path).replace(/\/$/, '').replace(/\*/g, '[^/]+')}$`);
    for (const image of images) {
      const project = JSON.parse(await repo.nxOk(['show', 'project', `image-${image}`, '--json']));
      expect(project.targets.flatten.options.outputDir).toMatch(pattern);
    }
  });
});
