# Sourced by tests/interop/run.sh (from the repo root): how to set up and start
# the TypeScript (Node.js, @grpc/grpc-js) FlowHandler for the interop run.

interop_setup() {
  local dir=clients/node
  local stamp=$dir/node_modules/.installed-package-lock
  # `npm ci` (exactly package-lock.json) only when the lock file or Node
  # changed since the last install; then the build: types from the protos
  # (gen/) and tsc (dist/), both incremental enough to be quick when warm.
  if ! { node --version; cat "$dir/package-lock.json"; } | cmp -s - "$stamp"; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    { node --version; cat "$dir/package-lock.json"; } >"$stamp"
  fi
  (cd "$dir" && npm run --silent build)
}

interop_command() {
  echo "node $ROOT/clients/node/dist/src/main.js --port \$PORT"
}
