#!/bin/sh
# Builds the welcome page into dist/apps/welcome: the page, stamped with
# the app's version, as images/prod's 30_app layer ships it.
set -eu
cd "$(dirname "$0")"
out=../../dist/apps/welcome
rm -rf "$out" && mkdir -p "$out"
version=$(cat VERSION)
sed "s/{{version}}/$version/g" src/index.html > "$out/index.html"
