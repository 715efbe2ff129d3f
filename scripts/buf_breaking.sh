#!/usr/bin/env bash
# buf breaking against the main branch. On main itself (CI runs a fresh clone of
# main) this compares main with the previous commit, so a change that breaks
# the contract is caught after it lands too.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=node_modules/.bin/buf
branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo "")
if [ "$branch" != "main" ] && git rev-parse --verify --quiet main >/dev/null; then
  against=".git#branch=main"
elif git rev-parse --verify --quiet HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto 2>/dev/null; then
  against=".git#ref=HEAD~1"
else
  echo "buf breaking: no earlier contract to compare with"
  exit 0
fi
echo "buf breaking --against $against"
"$buf" breaking --against "$against"
