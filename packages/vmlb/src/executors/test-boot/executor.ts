import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { ExecutorContext } from '@nx/devkit';
// Nx's own CI test, without @nx/devkit/internal, which costs the task about half a second to load.
import { isCI } from '../../lib/util/ci';
import { reportFailure } from '../../lib/util/executor-errors';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { checkPrerequisites } from '../../lib/build/prerequisites';
import { generateSshKey, seedFile, serveNoCloudSeed, sshRun } from '../../lib/boot/cloud-init-seed';
import { tail } from '../../lib/util/exec';
import { bootAndCheck, bootInteractive, diskFormat, freePort, withBootScratch } from '../../lib/boot/qemu-boot';
import { kvmUsable, rememberKvmFailure } from '../../lib/boot/kvm-probe';
import type { TestBootExecutorSchema } from './schema';
import { chainTop, imageTestBootSettings } from '../../lib/image/image-chain';

export interface NormalizedTestBootOptions {
  imageName: string;
  disk: string;
  cloudInitDir?: string;
  ssh?: string;
  sshUser: string;
  logFile: string;
  check: boolean;
  expect: RegExp;
  timeoutMs: number;
  memory: string;
  cpus: number;
  sshPort: number;
}

/**
 * Check mode, with no keyboard, whenever nobody can type: --check, CI, or
 * standard input not a terminal (Nx runs a task with dependencies without
 * one unless --tui=false).
 */
export function normalizeOptions(
  given: TestBootExecutorSchema,
  workspaceRoot: string,
  terminal = { stdinIsTTY: process.stdin.isTTY === true, ci: Boolean(isCI()) },
): NormalizedTestBootOptions {
  // image.json's testBoot settings under the command line's.
  const options = { ...imageTestBootSettings(given.imageRoot, workspaceRoot), ...definedOnly(given) };
  if (options.upTo !== undefined && options.image !== undefined) throw new Error(`--upTo boots the image's own chain; --image boots a file: give one of them.`);
  const chain = chainTop(options, workspaceRoot);
  const cloudInitDir =
    options.cloudInitDir && seedFile(path.resolve(workspaceRoot, options.cloudInitDir), 'user-data')
      ? path.resolve(workspaceRoot, options.cloudInitDir)
      : undefined;
  if (options.ssh !== undefined && !cloudInitDir) {
    throw new Error(
      `--ssh needs a cloud-init seed to put its key into the guest: create ${options.cloudInitDir ?? `${options.imageRoot ?? `images/${options.imageName}`}/test-boot`}/user-data ` +
        `(or user-data.yaml) with a user whose ssh_authorized_keys lists \${VMLB_SSH_PUBLIC_KEY}.`,
    );
  }
  const disk = path.resolve(workspaceRoot, options.image ?? chain);
  if (!existsSync(disk)) {
    throw new Error(
      options.image
        ? `--image ${options.image} does not exist.`
        : `Image ${options.imageName} is not built (${chain} is missing): nx build image-${options.imageName}`,
    );
  }
  let expect: RegExp;
  try {
    expect = new RegExp(options.expect ?? 'login:');
  } catch (error) {
    throw new Error(`--expect '${options.expect}' is not a regular expression: ${(error as Error).message}`);
  }
  const memory = options.memory ?? '1G';
  if (!/^[0-9]+[MGmg]$/.test(memory)) throw new Error(`--memory '${memory}' is not a memory size such as 1G or 512M.`);
  return {
    imageName: options.imageName,
    disk,
    cloudInitDir,
    ssh: options.ssh,
    sshUser: options.sshUser ?? 'vmlb',
    logFile: path.join(path.dirname(path.resolve(workspaceRoot, chain)), 'test-boot.log'),
    check: options.check === true || terminal.ci || !terminal.stdinIsTTY,
    expect,
    timeoutMs: (options.timeout ?? 300) * 1000,
    memory,
    cpus: options.cpus ?? 2,
    sshPort: options.sshPort ?? 0,
  };
}

/** The options that were given: an undefined one must not hide image.json's setting. */
function definedOnly(options: TestBootExecutorSchema): TestBootExecutorSchema {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as TestBootExecutorSchema;
}

export default async function testBootExecutor(options: TestBootExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  // One interrupt handler for the whole run: Nx forwards the signal to the task
  // after the terminal sent it to the group, and a second signal must not cut
  // the removal of the throwaway overlay short.
  return reportFailure(() =>
    withInterruptSignal(async (signal) => {
      const upTo = options.upTo;
      // Loaded only when used: each costs the start of every other boot.
      if (upTo !== undefined && !options.image) {
        const { buildChainUpTo } = await import('../../lib/build/chain-task');
        await buildChainUpTo({ ...options, upTo }, context, (message) => console.log(message), signal);
      }
      if (options.blobs && !options.image) {
        // Blob mode: the layers may be refs only so far (cache hits); put their files in place first.
        const [{ materialiseChain }, { openBlobStores }] = await Promise.all([import('../../lib/blob/chain'), import('../../lib/blob/config')]);
        const chain = path.resolve(context.root, chainTop(options, context.root));
        await materialiseChain(chain, await openBlobStores(context.root), { log: (message) => console.log(message), signal });
      }
      const boot = normalizeOptions(options, context.root);
      checkPrerequisites(['qemu-img', 'qemu-system-x86_64'], { fuse: false, disks: false });
      await withBootScratch(async (scratchDir) => {
        // The key is made while the guest boots: only the seed server (when the guest asks) and ssh (after the boot) need it.
        const key = boot.cloudInitDir ? generateSshKey(scratchDir) : undefined;
        key?.catch(() => undefined);
        const [kvm, sshPort, format, seed] = await Promise.all([
          kvmUsable(),
          boot.sshPort || freePort(),
          diskFormat(boot.disk),
          boot.cloudInitDir && key
            ? serveNoCloudSeed(
                boot.cloudInitDir,
                key.then((made) => made.publicKey),
              )
            : undefined,
        ]);
        if (!kvm)
          console.log(
            'vmlb: KVM is not usable here (or failed a guest since the host started), so qemu emulates the CPU (TCG): the boot is several times slower.',
          );
        console.log(
          `vmlb: booting ${path.relative(context.root, boot.disk)} (unchanged: a throwaway overlay takes the writes); guest ssh on 127.0.0.1:${sshPort}`,
        );
        if (seed)
          console.log(
            `vmlb: cloud-init seed from ${path.relative(context.root, boot.cloudInitDir!)}, ssh key ${path.join(scratchDir, 'id_ed25519')} (for this boot only)`,
          );
        const machine = { ...boot, format, scratchDir, sshPort, kvm, seedUrl: seed?.guestUrl };
        try {
          if (!boot.check) {
            console.log('vmlb: the serial console follows; Ctrl-a x quits.');
            const exitCode = await bootInteractive(machine);
            if (exitCode !== 0) throw new Error(`qemu exited with code ${exitCode}.`);
            return;
          }
          const deadline = Date.now() + boot.timeoutMs;
          const afterBoot =
            boot.ssh !== undefined && key
              ? async () => {
                  console.log(`\nvmlb: running over ssh as ${boot.sshUser}: ${boot.ssh}`);
                  const { privateKey } = await key;
                  const result = await sshRun(boot.ssh!, { user: boot.sshUser, port: sshPort, privateKey, deadline });
                  console.log(`vmlb: ssh command exited with ${result.exitCode}`);
                  return result.exitCode === 0
                    ? undefined
                    : `the ssh command '${boot.ssh}' exited with ${result.exitCode}${result.exitCode === 255 ? ' (no ssh connection)' : ''}:\n${tail(result.output, 20)}`;
                }
              : undefined;
          signal.throwIfAborted();
          let result = await bootAndCheck(machine, { expect: boot.expect, timeoutMs: boot.timeoutMs }, signal, afterBoot);
          if (result.kvmFailed) {
            // /dev/kvm works for the probe's BIOS but not for every guest (nested virtualisation): start again, emulated.
            console.log(`\nvmlb: ${result.reason}; booting again under TCG, and under TCG from now on until this host restarts (VMLB_ACCEL=kvm tries KVM).`);
            rememberKvmFailure(result.reason ?? 'KVM failed a guest');
            result = await bootAndCheck({ ...machine, kvm: false }, { expect: boot.expect, timeoutMs: boot.timeoutMs }, signal, afterBoot);
          }
          const logFile = path.relative(context.root, boot.logFile);
          if (!result.passed) {
            throw new Error(
              `test-boot of image ${boot.imageName} failed after ${result.seconds.toFixed(1)} s: ${result.reason}.\n` +
                `Last 40 console lines:\n${result.consoleTail}\nThe whole console is in ${logFile}.`,
            );
          }
          console.log(
            `\nvmlb: image ${boot.imageName} booted: ${boot.expect} appeared after ${result.seconds.toFixed(1)} s${boot.ssh ? ' and the ssh command passed' : ''} (console in ${logFile}).`,
          );
          // A key that could not be made fails the boot here, even when no --ssh needed it.
          await key;
        } finally {
          await seed?.close();
        }
      });
    }),
  );
}
