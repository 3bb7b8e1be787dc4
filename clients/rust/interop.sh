# Sourced by tests/interop/run.sh (from the repo root): how to build and start
# the Rust FlowHandler for the interop run.

interop_setup() {
  # A workspace member: the same target/ and Cargo.lock as the bridge, so a
  # warm build only checks freshness. build.rs generates the stubs (protox, no
  # protoc) into OUT_DIR.
  cargo build -p flows-handler-example --locked
}

interop_command() {
  # shellcheck disable=SC2016 # $PORT is expanded by the shell that runs the command
  printf '%q --port $PORT\n' "${CARGO_TARGET_DIR:-$ROOT/target}/debug/flow-handler"
}
