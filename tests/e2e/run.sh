#!/usr/bin/env bash
# CoreDog end to end on a kind cluster: a real crash in a real pod, collected, stored in an
# in-cluster S3 server, announced, listed and fetched with the kubectl plugin, then uninstalled
# without a trace. Once installed with Helm, once with `kubectl coredog install`.
#
#   tests/e2e/run.sh
#
# Needs docker, kind, kubectl, helm, jq, curl and cargo. Not run by .ci/run (see README.md).
# Environment:
#   COREDOG_E2E_CLUSTER   kind cluster name (default coredog-e2e); created, then deleted
#   COREDOG_E2E_KEEP=1    keep the cluster at the end (to look around after a failure)
#   COREDOG_E2E_ONLY      helm | plugin: run one of the two rounds
#   SEAWEEDFS_IMAGE       default chrislusf/seaweedfs:4.48 (the version .ci/tools installs)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/tests/e2e"
manifests="$here/manifests"

cluster=${COREDOG_E2E_CLUSTER:-coredog-e2e}
node="${cluster}-control-plane"
keep=${COREDOG_E2E_KEEP:-0}
only=${COREDOG_E2E_ONLY:-}
image_repository=ghcr.io/coredog-io/coredog
image_tag=e2e
image="$image_repository:$image_tag"
seaweedfs_image=${SEAWEEDFS_IMAGE:-chrislusf/seaweedfs:4.48}
namespace=coredog-system
host_dir=/data/coredog-system/dumps
core_pattern=/corefile/core.%e.%p.%h.%t
bucket=coredog
store_dir=corefiles
filer_port=18888
s3_port=18333

work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig"
original_core_pattern=""
port_forward_pid=""

log() { printf '\n[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  printf '[e2e] FAILED: %s\n' "$*" >&2
  exit 1
}

# Retries "$@" every 3 seconds for up to $1 seconds.
eventually() {
  local timeout=$1
  shift
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 3
  done
}

diagnostics() {
  log "diagnostics"
  kubectl get pods -A -o wide || true
  kubectl get mutatingwebhookconfigurations || true
  kubectl -n "$namespace" logs -l app.kubernetes.io/name=coredog --all-containers --prefix --tail=200 || true
  kubectl -n default describe pods -l app=crash-test || true
  kubectl -n e2e-infra logs deploy/receiver --tail=50 || true
  docker exec "$node" cat /proc/sys/kernel/core_pattern || true
  docker exec "$node" find "$host_dir" -maxdepth 5 || true
}

cleanup() {
  local status=$?
  set +e
  if [ "$status" -ne 0 ]; then
    diagnostics
  fi
  if [ -n "$port_forward_pid" ]; then
    kill "$port_forward_pid" 2>/dev/null
    wait "$port_forward_pid" 2>/dev/null
  fi
  # kind nodes share the host's kernel, and so its kernel.core_pattern: put it back.
  if [ -n "$original_core_pattern" ]; then
    docker exec "$node" sysctl -q -w "kernel.core_pattern=$original_core_pattern" >/dev/null 2>&1
  fi
  if [ "$keep" = 1 ]; then
    log "keeping cluster $cluster (KUBECONFIG=$KUBECONFIG)"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1
    rm -rf "$work"
  fi
  if [ "$status" -eq 0 ]; then
    log "PASSED"
  fi
  exit "$status"
}
trap cleanup EXIT

for tool in docker kind kubectl helm jq curl cargo; do
  command -v "$tool" >/dev/null || fail "$tool is required (see tests/e2e/README.md)"
done

# --- cluster, image, plugin --------------------------------------------------------------------

log "creating kind cluster $cluster"
kind create cluster --name "$cluster" --kubeconfig "$KUBECONFIG" --wait 180s
original_core_pattern=$(docker exec "$node" cat /proc/sys/kernel/core_pattern)

log "building $image"
docker build -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"

log "building kubectl-coredog"
cargo build --release --locked -p kubectl-coredog --manifest-path "$root/Cargo.toml"
export PATH="$root/target/release:$PATH"
kubectl coredog --help >/dev/null

# --- storage and notification receiver ---------------------------------------------------------

log "deploying SeaweedFS ($seaweedfs_image) and the notification receiver"
sed "s|SEAWEEDFS_IMAGE|$seaweedfs_image|" "$manifests/seaweedfs.yaml" | kubectl apply -f -
kubectl apply -f "$manifests/receiver.yaml"
kubectl -n e2e-infra rollout status deploy/seaweedfs --timeout=300s
kubectl -n e2e-infra rollout status deploy/receiver --timeout=300s
# Commands' output is taken whole before grep -q looks at it: grep -q stops at the first match,
# and the command still writing into the pipe would die of SIGPIPE and fail it under pipefail.
create_bucket() {
  local answer
  answer=$(echo "s3.bucket.create -name $bucket" |
    kubectl -n e2e-infra exec -i deploy/seaweedfs -- weed shell -master=localhost:9333 2>&1)
  grep -q "created bucket\|already exist" <<<"$answer"
}
eventually 120 create_bucket || fail "cannot create bucket $bucket"

kubectl -n e2e-infra port-forward svc/seaweedfs "$filer_port:8888" "$s3_port:8333" >"$work/port-forward.log" 2>&1 &
port_forward_pid=$!
filer_up() { curl -fsS -o /dev/null "http://127.0.0.1:$filer_port/buckets/"; }
eventually 60 filer_up || fail "port-forward to SeaweedFS does not answer"

# The bucket's entries under a directory, one full path per line.
filer_ls() {
  curl -fsS -H 'Accept: application/json' "http://127.0.0.1:$filer_port/buckets/$bucket/$1/" |
    jq -r '.Entries // [] | .[].FullPath'
}

# --- the checks, the same for both ways of installing ------------------------------------------

node_pattern_is() { [ "$(docker exec "$node" cat /proc/sys/kernel/core_pattern)" = "$1" ]; }

wait_for_webhook() {
  kubectl -n "$namespace" rollout status deploy/coredog-webhook --timeout=300s
  kubectl -n "$namespace" rollout status ds/coredog-watcher --timeout=300s
  has_ca_bundle() {
    [ -n "$(kubectl get mutatingwebhookconfiguration coredog-webhook \
      -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]
  }
  eventually 120 has_ca_bundle || fail "the webhook did not write its caBundle"
  eventually 120 node_pattern_is "$core_pattern" ||
    fail "the watcher did not set kernel.core_pattern to $core_pattern"
}

check_collection() {
  local round=$1
  log "[$round] crash test"
  kubectl apply -f "$manifests/crash-test.yaml"
  local pod=""
  find_pod() {
    pod=$(kubectl -n default get pods -l app=crash-test -o json |
      jq -r '[.items[] | select(.metadata.deletionTimestamp == null) | .metadata.name] | join(" ")')
    [ -n "$pod" ] && [ "$(wc -w <<<"$pod")" -eq 1 ]
  }
  eventually 120 find_pod || fail "no crash-test pod"
  log "[$round] pod default/$pod"

  # The webhook gave the pod its dump directory.
  local spec
  spec=$(kubectl -n default get pod "$pod" -o json)
  jq -e --arg dir "$host_dir/default" \
    '.spec.volumes[] | select(.name == "coredog-corefile") | .hostPath.path == $dir' \
    <<<"$spec" >/dev/null || fail "pod $pod has no coredog-corefile hostPath volume for $host_dir/default"
  jq -e '.spec.containers[] | select(.name == "app") | .volumeMounts[]
      | select(.name == "coredog-corefile")
      | .mountPath == "/corefile" and .subPathExpr == "$(COREDOG_POD_NAME)/app"' \
    <<<"$spec" >/dev/null || fail "container app has no /corefile mount with subPathExpr"
  jq -e '.metadata.annotations["coredog.io/injected"] == "app"' <<<"$spec" >/dev/null ||
    fail "pod $pod lacks coredog.io/injected: app"

  # The dump and its record reach the bucket under <StoreDir>/<namespace>/<pod>/.
  local record_path=""
  find_record() {
    record_path=$(filer_ls "$store_dir/default/$pod" 2>/dev/null | grep '\.json$' | head -n 1 || true)
    [ -n "$record_path" ]
  }
  eventually 240 find_record || fail "no record under $store_dir/default/$pod/ in bucket $bucket"
  local record
  record=$(curl -fsS "http://127.0.0.1:$filer_port$record_path")
  log "[$round] record $record_path: $record"
  jq -e --arg pod "$pod" '.pod == $pod and .namespace == "default" and .container == "app"
      and (.sha256 | test("^[0-9a-f]{64}$"))' <<<"$record" >/dev/null ||
    fail "record does not describe default/$pod/app"
  local id key sha256 file_name
  id=$(jq -r .id <<<"$record")
  key=$(jq -r .key <<<"$record")
  sha256=$(jq -r .sha256 <<<"$record")
  file_name=$(basename "$(jq -r .hostPath <<<"$record")")
  [ "/buckets/$bucket/$key.json" = "$record_path" ] || fail "record key $key does not match $record_path"
  grep -qx "/buckets/$bucket/$key" <<<"$(filer_ls "$store_dir/default/$pod")" ||
    fail "the dump object $key is missing"

  # The receiver was told.
  notified() {
    local logs
    logs=$(kubectl -n e2e-infra logs deploy/receiver)
    grep '^POST ' <<<"$logs" | grep -F "$pod" >/dev/null
  }
  eventually 120 notified || fail "the receiver got no notification naming $pod"

  # The node's copy is gone once stored.
  local local_file="$host_dir/default/$pod/app/$file_name"
  local_gone() { ! docker exec "$node" test -e "$local_file"; }
  eventually 60 local_gone || fail "$local_file is still on the node"

  # The plugin lists it and fetches the same bytes.
  local listing
  listing=$(kubectl coredog list -n default -o json --config "$manifests/local-config.yaml")
  jq -e . <<<"$listing" >/dev/null || fail "kubectl coredog list -o json printed no JSON"
  grep -q "$id" <<<"$listing" || fail "kubectl coredog list does not show $id"
  kubectl coredog fetch "$id" -o "$work/$id.core" --config "$manifests/local-config.yaml"
  local fetched
  fetched=$(sha256sum "$work/$id.core" | cut -d' ' -f1)
  [ "$fetched" = "$sha256" ] || fail "fetched dump has sha256 $fetched, the record says $sha256"

  kubectl coredog doctor || fail "kubectl coredog doctor failed"

  kubectl delete -f "$manifests/crash-test.yaml" --wait=true
  kubectl -n default wait --for=delete pod -l app=crash-test --timeout=120s
  log "[$round] collection checks passed"
}

check_uninstalled() {
  local round=$1
  no_webhook_configuration() {
    [ -z "$(kubectl get mutatingwebhookconfigurations -o name | grep coredog || true)" ]
  }
  eventually 60 no_webhook_configuration || fail "a CoreDog MutatingWebhookConfiguration remains"
  # Everything named coredog-*, the webhook's runtime TLS Secret included (garbage-collected
  # through its ownerReference to the MutatingWebhookConfiguration).
  no_objects() {
    [ -z "$(kubectl -n "$namespace" get deployments,daemonsets,pods,services,secrets,configmaps,serviceaccounts,roles,rolebindings,poddisruptionbudgets \
      -o name | grep coredog || true)" ] &&
      [ -z "$(kubectl get clusterroles,clusterrolebindings -o name | grep coredog || true)" ]
  }
  eventually 120 no_objects || fail "CoreDog objects remain after uninstall"
  eventually 120 node_pattern_is "$original_core_pattern" ||
    fail "kernel.core_pattern was not restored on uninstall"
  log "[$round] uninstalled without a trace"
}

# --- round 1: Helm -----------------------------------------------------------------------------

if [ -z "$only" ] || [ "$only" = helm ]; then
  log "[helm] installing CoreDog"
  helm install coredog "$root/charts" -n "$namespace" --create-namespace \
    -f "$manifests/coredog-values.yaml" \
    --set image.repository="$image_repository" --set image.tag="$image_tag" \
    --wait --timeout 5m
  wait_for_webhook
  check_collection helm
  log "[helm] uninstalling"
  helm uninstall coredog -n "$namespace" --wait --timeout 5m
  check_uninstalled helm
fi

# --- round 2: kubectl coredog install ----------------------------------------------------------

if [ -z "$only" ] || [ "$only" = plugin ]; then
  log "[plugin] installing CoreDog with kubectl coredog install"
  kubectl coredog install --image "$image" \
    --config "$manifests/coredog-config.yaml" --node-setup --webhook-failure-policy Fail
  wait_for_webhook
  check_collection plugin
  log "[plugin] upgrading with node setup turned off, then on again"
  kubectl coredog install --image "$image" --node-setup=false
  kubectl -n "$namespace" rollout status ds/coredog-watcher --timeout=300s
  eventually 120 node_pattern_is "$original_core_pattern" ||
    fail "kernel.core_pattern was not restored when node setup was turned off"
  kubectl coredog install --image "$image" --node-setup
  wait_for_webhook
  log "[plugin] uninstalling"
  kubectl coredog uninstall
  check_uninstalled plugin
fi
