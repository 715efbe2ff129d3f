#!/usr/bin/env bash
# Apply a release to the current kubectl context and wait until it is healthy;
# on any failure, roll back every Deployment this run changed.
#
#   k8s/deploy.sh RELEASE_DIR [--timeout 300s]
#
# RELEASE_DIR is a kustomization (k8s/release.sh writes one). Steps:
#   1. remember each ChatMesh Deployment's current revision;
#   2. delete finished migration Jobs (their pod template is immutable), apply -k;
#   3. wait for the migration Jobs to complete, then for every rollout;
#   4. on failure: `kubectl rollout undo --to-revision=<remembered>` for each
#      Deployment whose revision moved, wait for that, and exit non-zero.
set -Eeuo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 RELEASE_DIR [--timeout 300s]" >&2
  exit 2
fi
release=$1
shift
timeout=300s
if [[ ${1:-} == --timeout ]]; then
  timeout=${2:?--timeout needs a value}
fi

selector=app.kubernetes.io/part-of=chatmesh
namespace=$(kubectl kustomize "$release" \
  | sed -nE 's/^  namespace: ([a-z0-9-]+)$/\1/p' | sort -u)
if [[ -z $namespace || $namespace == *$'\n'* ]]; then
  echo "deploy.sh: expected exactly one namespace in $release, got: ${namespace:-none}" >&2
  exit 1
fi
kc=(kubectl --namespace "$namespace")

revisions=$(mktemp)
trap 'rm -f "$revisions"' EXIT
revision_of() {
  "${kc[@]}" get "$1" -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}'
}
while read -r deployment; do
  [[ -n $deployment ]] && echo "$deployment $(revision_of "$deployment")" >> "$revisions"
done < <("${kc[@]}" get deployments -l "$selector" -o name 2>/dev/null || true)

rollback() {
  trap - ERR
  set +e
  echo "::error::release failed; rolling back the Deployments it changed"
  while read -r deployment before; do
    now=$(revision_of "$deployment" || true)
    if [[ -n $before && $now != "$before" ]]; then
      echo "rollback: $deployment revision $now -> $before"
      "${kc[@]}" rollout undo "$deployment" --to-revision="$before"
      "${kc[@]}" rollout status "$deployment" --timeout="$timeout" || true
    fi
  done < "$revisions"
  exit 1
}
trap 'rollback' ERR

"${kc[@]}" delete jobs -l app.kubernetes.io/component=migration --ignore-not-found --wait=true
kubectl apply -k "$release"

if [[ -n $("${kc[@]}" get jobs -l app.kubernetes.io/component=migration -o name) ]]; then
  "${kc[@]}" wait --for=condition=complete jobs -l app.kubernetes.io/component=migration \
    --timeout="$timeout"
fi
while read -r deployment; do
  "${kc[@]}" rollout status "$deployment" --timeout="$timeout"
done < <("${kc[@]}" get deployments -l "$selector" -o name)

trap - ERR
echo "release applied to namespace $namespace"
