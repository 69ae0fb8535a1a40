# This image starts from a blank disk. This first layer gives it one
# bootable Linux partition (MBR) spanning the disk, formatted ext4 with the
# label "root". Put an operating system into it in the next layer: a
# modify-disk layer that mounts the partition (as below) and runs, e.g.,
# debootstrap. A build-layer needs a system in the image to chroot into.

device=$3

# --no-tell-kernel: the partition is reached below without the kernel's
# partition nodes, and asking the kernel to re-read the table fails noisily
# on devices without partition support.
sfdisk --quiet --no-tell-kernel "$device" <<'TABLE'
label: dos
type=83, bootable
TABLE

# Where the partition lies: start and size in sectors, and the sector size.
geometry=$(sfdisk --json "$device" | python3 -c '
import json, sys
table = json.load(sys.stdin)["partitiontable"]
partition = table["partitions"][0]
print(partition["start"], partition["size"], table.get("sectorsize", 512))
')
read -r start_sector sector_count sector_size <<<"$geometry"

# Partition device nodes cannot be relied on (on some hosts `losetup -P`
# creates none), so the partition gets a loop device of its own at its
# offset and size, detached whatever happens next.
partition=$(losetup --find --show \
  --offset $((start_sector * sector_size)) \
  --sizelimit $((sector_count * sector_size)) \
  "$device")
trap 'losetup -d "$partition"' EXIT

# Inode tables and journal are written now: left lazy, the kernel would
# write them in the background the first time a later layer mounts the file
# system, and those writes would land in that layer. -F: never ask.
mkfs.ext4 -q -F -L root -E lazy_itable_init=0,lazy_journal_init=0 "$partition"
