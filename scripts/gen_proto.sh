#!/usr/bin/env bash
# Regenerates the typed Python package in clients/python/src from proto/.
# Local plugins only (grpc_tools' protoc + mypy-protobuf): no network needed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=clients/python/src
rm -rf "$out/chatmesh"
mkdir -p "$out"
mapfile -t protos < <(find proto -name '*.proto' | sort)
uv run --frozen python -m grpc_tools.protoc -I proto \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out=only_async:"$out" \
  "${protos[@]}"
# Regular packages below the PEP 420 namespace `chatmesh`, each marked typed.
find "$out/chatmesh" -mindepth 1 -type d | while read -r dir; do
  touch "$dir/__init__.py"
done
for pkg in "$out"/chatmesh/*/; do
  touch "$pkg/py.typed"
done
