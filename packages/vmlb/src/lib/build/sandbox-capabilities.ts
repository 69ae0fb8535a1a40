import { readFileSync } from 'node:fs';

/** Which capabilities a build-layer script keeps, and the list capsh drops. */

/**
 * Capabilities a layer script keeps: what package managers and maintainer
 * scripts use on files and users of the image (chown, chmod on any file,
 * setuid/setgid, file capabilities, signals, low ports, audit messages).
 * Every other one is dropped from its bounding set before the image's
 * shell starts: no mount or remount (sys_admin), chroot (sys_chroot, the
 * way out of a chroot), kernel modules, raw I/O, reboot or kexec, clock,
 * device nodes (mknod), network configuration or raw sockets on the host's
 * network (net_admin, net_raw), ptrace, the kernel log, open_by_handle_at
 * (dac_read_search), BPF, perf, MAC policy, audit control.
 */
export const KEPT_CAPABILITIES = [
  'cap_chown',
  'cap_dac_override',
  'cap_fowner',
  'cap_fsetid',
  'cap_kill',
  'cap_setgid',
  'cap_setuid',
  'cap_setpcap',
  'cap_linux_immutable',
  'cap_net_bind_service',
  'cap_net_broadcast',
  'cap_ipc_lock',
  'cap_ipc_owner',
  'cap_sys_nice',
  'cap_sys_resource',
  'cap_lease',
  'cap_audit_write',
  'cap_setfcap',
] as const;

/** Capability names by number (capability.h), as far as libcap 2.66 knows them. */
const CAPABILITY_NAMES = [
  'cap_chown',
  'cap_dac_override',
  'cap_dac_read_search',
  'cap_fowner',
  'cap_fsetid',
  'cap_kill',
  'cap_setgid',
  'cap_setuid',
  'cap_setpcap',
  'cap_linux_immutable',
  'cap_net_bind_service',
  'cap_net_broadcast',
  'cap_net_admin',
  'cap_net_raw',
  'cap_ipc_lock',
  'cap_ipc_owner',
  'cap_sys_module',
  'cap_sys_rawio',
  'cap_sys_chroot',
  'cap_sys_ptrace',
  'cap_sys_pacct',
  'cap_sys_admin',
  'cap_sys_boot',
  'cap_sys_nice',
  'cap_sys_resource',
  'cap_sys_time',
  'cap_sys_tty_config',
  'cap_mknod',
  'cap_lease',
  'cap_audit_write',
  'cap_audit_control',
  'cap_setfcap',
  'cap_mac_override',
  'cap_mac_admin',
  'cap_syslog',
  'cap_wake_alarm',
  'cap_block_suspend',
  'cap_audit_read',
  'cap_perfmon',
  'cap_bpf',
  'cap_checkpoint_restore',
];

/**
 * Every capability the running kernel has but `KEPT_CAPABILITIES` (a newer
 * kernel's unknown ones by number), for `capsh --drop`.
 */
export function droppedCapabilities(lastCap = readLastCap()): string[] {
  const dropped: string[] = [];
  for (let number = 0; number <= lastCap; number++) {
    const name = CAPABILITY_NAMES[number] ?? String(number);
    if (!(KEPT_CAPABILITIES as readonly string[]).includes(name)) dropped.push(name);
  }
  return dropped;
}

let lastCapCache: number | undefined;
function readLastCap(): number {
  if (lastCapCache === undefined) {
    try {
      lastCapCache = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
    } catch {
      lastCapCache = CAPABILITY_NAMES.length - 1;
    }
  }
  return lastCapCache;
}
