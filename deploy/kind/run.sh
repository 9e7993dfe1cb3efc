#!/usr/bin/env bash
# Brings up a kind cluster with pullguard in front of the node's containerd and runs three pods:
#   signed       → runs
#   broken-sig2  → runs (signature-1 verifies, signature-2 is garbage: partial sufficiency), with a
#                  Warning Event SignatureRetrievalDegraded on the pod, posted by pullguard under
#                  deploy/rbac-events.yaml's ServiceAccount
#   unsigned     → fails with SignatureValidationFailed
#
# Needs: a working Docker engine, kind, kubectl, skopeo, gpg, node + npm (pullguard is built here
# and mounted into the node, with this machine's node binary). Network access for busybox.
# Exit codes: 0 all three pods behaved as expected, 1 they did not, 2 a prerequisite is missing.
# Usage: deploy/kind/run.sh [--keep]   (--keep leaves the cluster and registry running)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cluster=pullguard
registry_name=kind-registry
registry_port=5001
keep=0
[[ "${1:-}" == "--keep" ]] && keep=1

die_missing() {
  echo "run.sh: $1" >&2
  echo "run.sh: nothing was changed; install the missing piece and run again." >&2
  exit 2
}

# Docker first: kind cannot do anything without a running engine.
if ! command -v docker >/dev/null 2>&1; then
  die_missing "Docker is not installed (no 'docker' on PATH); kind needs a working Docker engine."
fi
if ! docker info >/dev/null 2>&1; then
  die_missing "Docker is installed but 'docker info' failed: the Docker engine is not running or not reachable."
fi
for tool in kind kubectl skopeo gpg node npm; do
  command -v "$tool" >/dev/null 2>&1 || die_missing "'$tool' is not on PATH."
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pullguard-kind-XXXXXX")
cleanup() {
  if [[ $keep -eq 0 ]]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    docker rm -f "$registry_name" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> building pullguard"
(cd "$repo" && npm ci --no-audit --no-fund && npm run build) >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }

echo "==> local registry ($registry_name, localhost:$registry_port)"
if [[ -z "$(docker ps -q -f "name=^${registry_name}$")" ]]; then
  docker run -d --restart=always -p "127.0.0.1:${registry_port}:5000" --name "$registry_name" registry:2 >/dev/null
fi

echo "==> signing key and demo images"
export GNUPGHOME="$work/gnupg"
mkdir -m 0700 "$GNUPGHOME"
gpg --batch --passphrase '' --quick-gen-key 'pullguard kind demo <demo@pullguard.invalid>' default default never 2>/dev/null
fpr=$(gpg --list-keys --with-colons | awk -F: '/^fpr:/ {print $10; exit}')
mkdir -p "$work/node-etc/registries.d" "$work/node-etc/sigstore" "$work/registries.d"
gpg --export "$fpr" >"$work/node-etc/demo-key.gpg"
# skopeo writes signatures to the staging lookaside; the node reads them as file:// lookaside.
cat >"$work/registries.d/demo.yaml" <<YAML
docker:
  localhost:${registry_port}:
    lookaside-staging: file://$work/node-etc/sigstore
YAML
docker pull -q busybox:1.36 >/dev/null
src="docker-daemon:busybox:1.36"
copy() { skopeo copy --quiet --dest-tls-verify=false --registries.d "$work/registries.d" "$@"; }
copy --sign-by "$fpr" "$src" "docker://localhost:${registry_port}/pullguard-demo/signed:v1"
copy --sign-by "$fpr" "$src" "docker://localhost:${registry_port}/pullguard-demo/broken-sig2:v1"
copy "$src" "docker://localhost:${registry_port}/pullguard-demo/unsigned:v1"
# broken-sig2: keep the valid signature-1 and add an unreadable signature-2.
broken_dir=$(find "$work/node-etc/sigstore/pullguard-demo" -maxdepth 1 -type d -name 'broken-sig2@*' | head -1)
[[ -n "$broken_dir" ]] || { echo "run.sh: signing did not write signatures (skopeo lookaside-staging)" >&2; exit 1; }
printf 'this is not an OpenPGP message\n' >"$broken_dir/signature-2"
# Lookaside paths carry no host (<repo>@sha256=<hex>/signature-N): the node reads the same tree.

cat >"$work/node-etc/policy.json" <<JSON
{
  "default": [{ "type": "insecureAcceptAnything" }],
  "transports": {
    "docker": {
      "kind-registry:5000/pullguard-demo": [
        { "type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pullguard/demo-key.gpg",
          "signedIdentity": { "type": "remapIdentity", "prefix": "kind-registry:5000", "signedPrefix": "localhost:${registry_port}" } }
      ]
    }
  }
}
JSON
cat >"$work/node-etc/registries.d/demo.yaml" <<YAML
docker:
  kind-registry:5000:
    lookaside: file:///etc/pullguard/sigstore
YAML

echo "==> kind cluster"
sed -e "s#@REPO@#$repo#" -e "s#@NODE_BIN@#$(command -v node)#" -e "s#@WORK@#$work#" "$here/cluster.yaml" >"$work/cluster.yaml"
kind create cluster --name "$cluster" --config "$work/cluster.yaml" --wait 120s
docker network connect kind "$registry_name" 2>/dev/null || true
node_name="${cluster}-control-plane"
# -i: several steps feed a file to the node on stdin.
in_node() { docker exec -i "$node_name" "$@"; }

echo "==> Events RBAC and a kubeconfig for pullguard (deploy/rbac-events.yaml's ServiceAccount, nothing more)"
kubectl apply -f "$repo/deploy/rbac-events.yaml"
token=$(kubectl -n pullguard-system create token pullguard --duration=2h)
in_node mkdir -p /etc/pullguard
# pullguard runs in the node, beside the API server: https://127.0.0.1:6443 with the cluster's CA.
in_node sh -c 'umask 077; cat > /etc/pullguard/kubeconfig' <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: kind
    cluster:
      server: https://127.0.0.1:6443
      certificate-authority: /etc/kubernetes/pki/ca.crt
users:
  - name: pullguard
    user:
      token: $token
contexts:
  - name: pullguard
    context: { cluster: kind, user: pullguard }
current-context: pullguard
KUBECONFIG

echo "==> pullguard in the node; containerd pulls the verified digests itself"
# The demo registry speaks plain HTTP: containerd must be told so (kind sets config_path).
in_node mkdir -p /etc/containerd/certs.d/kind-registry:5000
in_node sh -c 'cat > /etc/containerd/certs.d/kind-registry:5000/hosts.toml' <<'TOML'
server = "http://kind-registry:5000"
TOML
docker cp "$repo/deploy/systemd/pullguard.service" "$node_name:/etc/systemd/system/pullguard.service"
in_node mkdir -p /etc/systemd/system/pullguard.service.d
in_node sh -c 'cat > /etc/systemd/system/pullguard.service.d/10-kind.conf' <<'UNIT'
[Service]
ExecStart=
ExecStart=/usr/local/bin/node --max-semi-space-size=2 /opt/pullguard/dist/src/main.js serve \
  --socket /run/pullguard/pullguard.sock --state-dir /var/lib/pullguard \
  --backend unix:///run/containerd/containerd.sock \
  --signature-policy /etc/pullguard/policy.json --registries-d /etc/pullguard/registries.d \
  --insecure-registry kind-registry:5000 \
  --kubeconfig /etc/pullguard/kubeconfig --node-name @NODE_NAME@
UNIT
in_node sed -i "s/@NODE_NAME@/$node_name/" /etc/systemd/system/pullguard.service.d/10-kind.conf
in_node systemctl daemon-reload
in_node systemctl start pullguard.service
for _ in $(seq 1 30); do in_node test -S /run/pullguard/pullguard.sock && break; sleep 1; done
in_node test -S /run/pullguard/pullguard.sock || { in_node journalctl -u pullguard --no-pager | tail -50 >&2; exit 1; }
in_node sh -c 'grep -q imageServiceEndpoint /var/lib/kubelet/config.yaml || echo "imageServiceEndpoint: unix:///run/pullguard/pullguard.sock" >> /var/lib/kubelet/config.yaml'
in_node systemctl restart kubelet
kubectl wait --for=condition=Ready "node/$node_name" --timeout=120s

echo "==> pods"
for pod in signed broken-sig2 unsigned; do kubectl apply -f "$here/pods/$pod.yaml"; done
status=0
kubectl wait --for=condition=Ready pod/pg-signed --timeout=120s || status=1
kubectl wait --for=condition=Ready pod/pg-broken-sig2 --timeout=120s || status=1
unsigned_ok=0
for _ in $(seq 1 60); do
  if kubectl get events --field-selector involvedObject.name=pg-unsigned -o jsonpath='{.items[*].message}' | grep -q SignatureValidationFailed; then
    unsigned_ok=1
    break
  fi
  sleep 2
done
[[ $unsigned_ok -eq 1 ]] || status=1
degraded_ok=0
for _ in $(seq 1 30); do
  if kubectl get events --field-selector involvedObject.name=pg-broken-sig2,reason=SignatureRetrievalDegraded -o jsonpath='{.items[*].message}' | grep -q signature-2; then
    degraded_ok=1
    break
  fi
  sleep 2
done
[[ $degraded_ok -eq 1 ]] || { echo "run.sh: no SignatureRetrievalDegraded Event naming signature-2 on pg-broken-sig2" >&2; status=1; }
kubectl get events --field-selector involvedObject.name=pg-broken-sig2 -o custom-columns=REASON:.reason,MESSAGE:.message | tail -5
kubectl get pods -o wide
kubectl get events --field-selector involvedObject.name=pg-unsigned -o custom-columns=REASON:.reason,MESSAGE:.message | tail -5
if [[ $status -eq 0 ]]; then echo "run.sh: OK: signed and broken-sig2 run (with a SignatureRetrievalDegraded Event), unsigned was refused with SignatureValidationFailed"; else echo "run.sh: FAILED" >&2; fi
exit $status
