#!/bin/sh
# Generates the Go stubs of ../../proto into gen/ (gitignored, never committed):
#   go generate ./...     (runs this script)
# with buf (../../scripts/tools buf) and the protoc-gen-go / protoc-gen-go-grpc
# versions pinned in go.mod (`tool` directives), installed into bin/ (gitignored).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
GOBIN="$here/bin" go install tool
# scripts/tools runs buf from the repository root: proto/ is the input there,
# and -o makes the template's `out: gen` land in clients/go/gen.
PATH="$here/bin:$PATH" ../../scripts/tools buf generate proto \
  --template "$here/buf.gen.yaml" --output "$here"
