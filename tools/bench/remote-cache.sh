#!/usr/bin/env bash
# What sharing one big layer through Nx's self-hosted remote cache costs.
#
# Builds an image whose top layer writes LAYER_MIB (default 1024) MiB of random,
# incompressible data, and measures with /usr/bin/time -v, in the same run:
#   build        the layer built with no remote cache (the baseline)
#   upload       the same build with tools/cache-server on loopback: Nx
#                gzips the artifact and PUTs it before the task ends
#   download     a second checkout with empty caches: the layer is a remote hit
#   local hit    the first checkout after `rm -rf dist`: a local cache hit
# Each measurement is the `nx run <layer>:build` command alone (its parent
# layers are built first, untimed). Prints medians over RUNS (default 3) with
# min and max, as a markdown table for docs/benchmarks.md.
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
  if ! (cd "$dir" && /usr/bin/time -v -o "$stats" node "$nx_bin" "$@" >"$log" 2>&1); then
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

for run in $(seq "$runs"); do
  echo "run $run of $runs ($layer_mib MiB layer)" >&2
  rm -rf "$work/ws-"*
  make_workspace "$work/ws-local"
  make_workspace "$work/ws-a"
  make_workspace "$work/ws-b"

  # Baseline: no remote cache.
  timed_nx "$work/ws-local" run big-00_disk:build
  timed_nx "$work/ws-local" run big-10_big:build
  record build-s "$secs"; record build-rss "$rss"

  start_server
  export NX_SELF_HOSTED_REMOTE_CACHE_SERVER=$server_url
  timed_nx "$work/ws-a" run big-00_disk:build
  timed_nx "$work/ws-a" run big-10_big:build
  record upload-s "$secs"; record upload-rss "$rss"
  artifact_bytes=$(find "$work/server" -type f -printf '%s\n' | sort -n | tail -1)
  record artifact-mib "$((artifact_bytes / 1048576))"

  timed_nx "$work/ws-b" run big-00_disk:build
  timed_nx "$work/ws-b" run big-10_big:build
  expect_in_log 'big-10_big:build  \[remote cache\]'
  record download-s "$secs"; record download-rss "$rss"
  stop_server
  unset NX_SELF_HOSTED_REMOTE_CACHE_SERVER

  rm -rf "$work/ws-a/dist"
  timed_nx "$work/ws-a" run big-00_disk:build
  timed_nx "$work/ws-a" run big-10_big:build
  expect_in_log 'big-10_big:build  \[local cache\]'
  record localhit-s "$secs"; record localhit-rss "$rss"
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
echo "| build, no remote cache (baseline) | $(stats "${samples[build-s]}") | $(stats "${samples[build-rss]}") | 1.00× |"
echo "| build + upload to the remote cache | $(stats "${samples[upload-s]}") | $(stats "${samples[upload-rss]}") | $(ratio "${samples[upload-s]}" "${samples[build-s]}") |"
echo "| remote cache hit (download) in a fresh checkout | $(stats "${samples[download-s]}") | $(stats "${samples[download-rss]}") | $(ratio "${samples[download-s]}" "${samples[build-s]}") |"
echo "| local cache hit after \`rm -rf dist\` | $(stats "${samples[localhit-s]}") | $(stats "${samples[localhit-rss]}") | $(ratio "${samples[localhit-s]}" "${samples[build-s]}") |"
echo
echo "Artifact on the server: $(stats "${samples[artifact-mib]}") MiB."
