#!/usr/bin/env bash
# What sharing one big layer costs: through Nx's self-hosted remote cache
# (inline mode), and through a blob store with Nx caching only refs (blob mode).
#
# Builds an image whose top layer writes LAYER_MIB (default 1024) MiB of random,
# incompressible data, and measures with /usr/bin/time -v, in the same run:
#   build        the layer built with no remote cache (the baseline)
#   upload       the same build with tools/cache-server on loopback: inline,
#                Nx gzips the layer and PUTs it before the task ends; blob
#                mode, vmlb uploads it to a file:// blob store, Nx the ref
#   download     a second checkout with empty caches: the layer is a remote
#                hit (blob mode: the ref, then `pull` for the bytes)
#   local hit    the first checkout after `rm -rf dist`: a local cache hit
#                (blob mode: refs, then `pull`, which links)
# Each measurement is one nx command (the layer's parents are built first,
# untimed); max RSS is its largest process. Prints medians over RUNS
# (default 3) with min and max, as a markdown table for docs/benchmarks.md.
#
# Usage: tools/bench/remote-cache.sh     (as root, after tools/setup.sh)
#        RUNS=5 LAYER_MIB=512 tools/bench/remote-cache.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
runs=${RUNS:-3}
layer_mib=${LAYER_MIB:-1024}
nx_bin="$repo/node_modules/nx/dist/bin/nx.js"
work=$(mktemp -d /var/tmp/vmlb-bench-remote-cache.XXXXXX)
server_pid=

cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export NX_DAEMON=false NX_TUI=false NX_NO_CLOUD=true FORCE_COLOR=0
unset NX_SELF_HOSTED_REMOTE_CACHE_SERVER NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN

# A workspace like a user's: the repo's node_modules, nx.json, one image "big".
make_workspace() {
  local dir=$1
  mkdir -p "$dir/images/big/00_disk" "$dir/images/big/10_big"
  ln -s "$repo/node_modules" "$dir/node_modules"
  echo '{"name":"bench","private":true}' >"$dir/package.json"
  node -e 'const j=require(process.argv[1]); delete j.$schema; j.cacheDirectory=".nx/cache"; j.maxCacheSize="20GB"; console.log(JSON.stringify(j))' "$repo/nx.json" >"$dir/nx.json"
  echo '{"base":{"empty":"3G"}}' >"$dir/images/big/image.json"
  cp "$repo/images/tiny/00_disk/modify-disk" "$dir/images/big/00_disk/"
  printf '#!/bin/sh\nset -eu\ndd if=/dev/urandom of=/big.bin bs=1M count=%s 2>/dev/null\n' "$layer_mib" >"$dir/images/big/10_big/build-layer"
  chmod +x "$dir/images/big/10_big/build-layer"
}

# Runs nx in workspace $1 with the rest as arguments under /usr/bin/time -v;
# sets $secs and $rss (max RSS in MiB); fails with nx's output if nx fails.
timed_nx() {
  local dir=$1 log="$work/nx.log" stats="$work/time.txt"
  shift
  # Each checkout is its own machine: its own blob cache (blob mode).
  if ! (cd "$dir" && VMLB_BLOB_CACHE="$dir/.blob-cache" /usr/bin/time -v -o "$stats" node "$nx_bin" "$@" >"$log" 2>&1); then
    cat "$log" >&2
    echo "nx $* failed in $dir" >&2
    return 1
  fi
  read -r secs rss < <(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; wall = s }
              /Maximum resident set size/ { rss = $2 / 1024 }
              END { printf "%.1f %.0f\n", wall, rss }' "$stats")
  cp "$log" "$work/last-nx.log"
}

expect_in_log() {
  if ! grep -q "$1" "$work/last-nx.log"; then
    cat "$work/last-nx.log" >&2
    echo "expected '$1' in the output of the last nx run" >&2
    exit 1
  fi
}

start_server() {
  rm -rf "$work/server"
  local port_file="$work/server.out"
  node "$repo/tools/cache-server/dist/main.js" --dir "$work/server" --port 0 >"$port_file" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    server_url=$(grep -o 'http://127.0.0.1:[0-9]*' "$port_file" | head -1 || true)
    [ -n "$server_url" ] && return 0
    sleep 0.1
  done
  cat "$port_file" >&2
  echo "the cache server did not start" >&2
  exit 1
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

declare -A samples
record() { samples[$1]+="$2 "; }

# Builds the big layer in workspace $1: its parent first, untimed (the
# figures left in secs and rss are the big layer's alone).
timed_layer() {
  timed_nx "$1" run big-00_disk:build
  timed_nx "$1" run big-10_big:build
}

# A hit of the big layer in workspace $1 from the $2 ("remote" or "local")
# cache, recorded as <mode>-$3; in blob mode then a pull, whose output must
# hold $4, recorded as $5.
measure_hit() {
  local ws=$1 cache=$2 label=$3 pulled=$4 pull_label=$5
  timed_layer "$ws"
  expect_in_log "big-10_big:build  \\[$cache cache\\]"
  record "$mode-$label-s" "$secs"; record "$mode-$label-rss" "$rss"
  if [ "$mode" = blob ]; then
    # The hit brought the ref; pull brings the bytes (or links them).
    timed_nx "$ws" run image-big:pull
    expect_in_log "$pulled"
    record "$pull_label-s" "$secs"; record "$pull_label-rss" "$rss"
  fi
}

for run in $(seq "$runs"); do
  echo "run $run of $runs ($layer_mib MiB layer)" >&2
  rm -rf "$work/ws-"* "$work/blobs"
  make_workspace "$work/ws-local"

  # Baseline: no remote cache, no blob store.
  timed_layer "$work/ws-local"
  record build-s "$secs"; record build-rss "$rss"

  for mode in inline blob; do
    make_workspace "$work/ws-$mode-a"
    make_workspace "$work/ws-$mode-b"
    if [ "$mode" = blob ]; then
      mkdir -p "$work/blobs"
      export VMLB_BLOB_STORE="file://$work/blobs"
    fi
    start_server
    export NX_SELF_HOSTED_REMOTE_CACHE_SERVER=$server_url
    timed_layer "$work/ws-$mode-a"
    record "$mode-upload-s" "$secs"; record "$mode-upload-rss" "$rss"

    measure_hit "$work/ws-$mode-b" remote download 'downloaded 10_big.qcow2' blob-pull
    record "$mode-nx-mib" "$(du -sm --apparent-size "$work/server" | cut -f1)"
    record "$mode-store-mib" "$( [ "$mode" = blob ] && du -sm --apparent-size "$work/blobs" | cut -f1 || echo 0)"
    stop_server
    unset NX_SELF_HOSTED_REMOTE_CACHE_SERVER

    rm -rf "$work/ws-$mode-a/dist"
    measure_hit "$work/ws-$mode-a" local localhit ' 0 downloaded' blob-localpull
    unset VMLB_BLOB_STORE
  done
done

# median min max of a space-separated list of numbers
stats() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s (%s–%s)", m, v[1], v[NR] }'; }
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$(median "$1")" -v b="$(median "$2")" 'BEGIN { printf "%.2f×", a / b }'; }

echo
echo "$layer_mib MiB random layer, $runs runs, medians (min–max); $(nproc) cores, $(node --version), nx $(node -p 'require(process.argv[1]).version' "$repo/node_modules/nx/package.json")"
echo
echo "| step | wall time, s | max RSS, MiB | time vs. build |"
echo "| --- | --- | --- | --- |"
row() { echo "| $1 | $(stats "${samples[$2-s]}") | $(stats "${samples[$2-rss]}") | $(ratio "${samples[$2-s]}" "${samples[build-s]}") |"; }
row "build, no remote cache (baseline)" build
row "inline: build + upload to Nx's remote cache" inline-upload
row "inline: remote cache hit in a fresh checkout (downloads the layer)" inline-download
row "inline: local cache hit after \`rm -rf dist\`" inline-localhit
row "blob: build + upload to the blob store (Nx uploads the ref)" blob-upload
row "blob: remote cache hit in a fresh checkout (the ref only)" blob-download
row "blob: \`pull\` in that checkout (downloads the layer)" blob-pull
row "blob: local cache hit after \`rm -rf dist\` (refs only)" blob-localhit
row "blob: \`pull\` after that (links from the blob cache)" blob-localpull
echo
echo "Bytes stored remotely per run (MiB, median): inline: Nx's remote cache $(median "${samples[inline-nx-mib]}"); blob: Nx's remote cache $(median "${samples[blob-nx-mib]}"), blob store $(median "${samples[blob-store-mib]}")."
