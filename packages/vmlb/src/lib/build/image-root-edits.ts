import { type Stats, existsSync, lstatSync, mkdirSync, readFileSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { resolveInRoot } from '../disk/root-path';

/**
 * vmlb's own temporary edits of an image root around a layer script (mount
 * points it lacks, policy-rc.d), taken back afterwards without following
 * any symlink the script planted.
 */

/**
 * The host path of `relative` (a path under the image root, as
 * `resolveInRoot` gave it before a script ran) only if every component is
 * still what it was meant to be: no symlink anywhere, every parent a real
 * folder. After a layer script has run, vmlb touches the image root only
 * through this, so a symlink the script planted (`/usr/sbin` -> a host
 * folder) can never lead vmlb's clean-up out of the image. The script's
 * processes are all gone by then (its PID namespace ended), so nothing
 * changes the tree between the check and the removal.
 */
export function unlinkedPathUnder(root: string, relative: string): { hostPath: string; stats: Stats } | undefined {
  const parts = relative.split('/').filter((part) => part && part !== '.');
  if (parts.includes('..')) return undefined;
  let current = root;
  let stats;
  for (const [index, part] of parts.entries()) {
    current = path.join(current, part);
    try {
      stats = lstatSync(current);
    } catch {
      return undefined;
    }
    if (stats.isSymbolicLink()) return undefined;
    if (index < parts.length - 1 && !stats.isDirectory()) return undefined;
  }
  return stats ? { hostPath: current, stats } : undefined;
}

/**
 * Creates the folders of `hostPath` (under `root`) that do not exist, one by
 * one; returns those it created, relative to the root, outermost first, so
 * that they can be taken away again (`removeMadeFolders`).
 */
export function makeFoldersInRoot(root: string, hostPath: string): string[] {
  const relative = path.relative(root, hostPath);
  const made: string[] = [];
  let current = '';
  for (const part of relative.split('/').filter(Boolean)) {
    current = current ? `${current}/${part}` : part;
    if (existsSync(path.join(root, current))) continue;
    mkdirSync(path.join(root, current));
    made.push(current);
  }
  return made;
}

/**
 * Removes folders `makeFoldersInRoot` created, innermost first, when they
 * are still empty folders reached without a symlink; anything else now
 * belongs to the image and is left alone.
 */
export function removeMadeFolders(root: string, made: readonly string[]): void {
  for (const relative of [...made].reverse()) {
    const found = unlinkedPathUnder(root, relative);
    if (!found?.stats.isDirectory()) continue;
    try {
      rmdirSync(found.hostPath);
    } catch {
      /* not empty: the script put something there */
    }
  }
}

const POLICY_RC_D = '#!/bin/sh\n# Written by vmlb for the duration of a layer build: services must not start in a chroot.\nexit 101\n';

/**
 * On Debian-family images, stop package installs from starting services
 * during the build (invoke-rc.d asks /usr/sbin/policy-rc.d; 101 = denied).
 * Returns a function that puts things back; an image's own policy-rc.d is
 * left alone, and so is one the script replaced or reached through a
 * symlink it planted (`/usr/sbin` -> a host folder): after the script, the
 * file is found again without following any link, and removed only if it
 * is still vmlb's.
 */
export function blockServiceStarts(root: string): () => void {
  if (!existsSync(resolveInRoot(root, '/etc/debian_version'))) return () => undefined;
  const sbin = resolveInRoot(root, '/usr/sbin');
  if (!existsSync(sbin)) return () => undefined;
  const policy = path.join(sbin, 'policy-rc.d');
  try {
    lstatSync(policy);
    return () => undefined;
  } catch {
    // 'wx': never through a symlink, never over a file.
    writeFileSync(policy, POLICY_RC_D, { mode: 0o755, flag: 'wx' });
    const relative = path.relative(root, policy);
    return () => {
      const found = unlinkedPathUnder(root, relative);
      if (!found?.stats.isFile() || found.stats.size !== POLICY_RC_D.length) return;
      if (readFileSync(found.hostPath, 'utf8') === POLICY_RC_D) unlinkSync(found.hostPath);
    };
  }
}
