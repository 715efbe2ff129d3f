#!/usr/bin/env bash
# Regenerates the typed Python package in clients/python/src from proto/.
# Local plugins only (grpc_tools' protoc + mypy-protobuf): no network needed.
# Generates into a temporary folder and swaps it in, so a concurrent import
# never sees a half-written package.
set -euo pipefail
cd "$(dirname "$0")/.."
out=clients/python/src
tmp=$(mktemp -d "$out/.gen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mapfile -t protos < <(find proto -name '*.proto' | sort)
if ! log=$(uv run --frozen python -m grpc_tools.protoc -I proto \
  --python_out="$tmp" --grpc_python_out="$tmp" \
  --mypy_out="$tmp" --mypy_grpc_out=only_async:"$tmp" \
  "${protos[@]}" 2>&1); then
  echo "$log" | grep -v '^Writing mypy to' >&2
  exit 1
fi
# Regular packages below the PEP 420 namespace `chatmesh`, each marked typed.
find "$tmp/chatmesh" -mindepth 1 -type d | while read -r dir; do
  touch "$dir/__init__.py"
done
for pkg in "$tmp"/chatmesh/*/; do
  touch "$pkg/py.typed"
done
rm -rf "$out/chatmesh.old"
[ -d "$out/chatmesh" ] && mv "$out/chatmesh" "$out/chatmesh.old"
mv "$tmp/chatmesh" "$out/chatmesh"
rm -rf "$out/chatmesh.old"
