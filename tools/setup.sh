#!/usr/bin/env bash
# Sets up a fresh machine for vmlb: the host tools layer builds and tests
# use, the npm dependencies, and the compiled plugin. Safe to run again.
# Run as root on Debian or Ubuntu (other distributions: see the dnf line).
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-utils: qemu-img, qemu-nbd; qemu-system-common: qemu-storage-daemon;
# fdisk: sfdisk; e2fsprogs: mkfs.ext4, debugfs; fuse3: the FUSE export;
# busybox-static: the tiny test images' userland; qemu-system-x86: test-boot;
# extlinux, syslinux-common: the bootloader of images/tiny-boot and images/prod;
# debootstrap, cloud-guest-utils (growpart): images/prod; openssh-client: test-boot --ssh;
# xz-utils, zstd: compressed base downloads; time (/usr/bin/time -v): tools/bench;
# tar: OVA exports; libxml2-utils (xmllint): the OVA test checks the OVF descriptor.
PACKAGES=(qemu-utils qemu-system-common qemu-system-x86 extlinux syslinux-common debootstrap cloud-guest-utils openssh-client fdisk e2fsprogs fuse3 util-linux mount libcap2-bin busybox-static xz-utils zstd time tar libxml2-utils ca-certificates)

# --bench: also what `npm run bench` compares against. libguestfs-tools:
# virt-customize; linux-image-amd64: the kernel libguestfs' appliance boots
# (it uses the host's, and a container has none). About 575 MB.
case "${1:-}" in
  '') ;;
  --bench) PACKAGES+=(libguestfs-tools linux-image-amd64) ;;
  *)
    echo "tools/setup.sh: unknown option '$1'. Usage: tools/setup.sh [--bench]" >&2
    exit 2
    ;;
esac

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "tools/setup.sh: installing ${missing[*]} needs root; run it with sudo." >&2
      exit 1
    fi
    echo "tools/setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "tools/setup.sh: no apt-get here. Install the equivalent of:" >&2
    echo "  dnf install -y qemu-img qemu-storage-daemon util-linux e2fsprogs fuse3 busybox xz zstd" >&2
    exit 1
  fi
fi

# npm ci builds the plugin too (the root package's prepare script).
if ! npm ci --no-audit --no-fund; then
  echo "tools/setup.sh: npm ci failed. If it says a package is \"Missing: ... from lock file\", package-lock.json lacks an optional (other platform's) package: add it with 'node tools/lockfile/complete-optional.mjs' and commit package-lock.json." >&2
  exit 1
fi
