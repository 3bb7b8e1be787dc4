# Sourced by tests/interop/run.sh (from the repo root): how to set up and start
# the Go FlowHandler for the interop run.

interop_setup() (
  # A subshell: the cd does not leak into the runner. Everything is pinned by
  # go.mod / go.sum (grpc-go, protobuf, and the protoc-gen-go / -go-grpc tools)
  # and comes from the Go module proxy; warm, both steps are Go-cache hits.
  cd clients/go
  go generate ./...                # buf generate -> gen/ (gitignored)
  go build -o bin/flow-handler .   # bin/ is gitignored
)

interop_command() {
  echo "$ROOT/clients/go/bin/flow-handler --port \$PORT"
}
