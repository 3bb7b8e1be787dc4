# The reference FlowHandlers that CI runs (tests/interop/run.sh,
# tests/grpcurl/run.sh). Each has a clients/<name>/interop.sh.
# shellcheck disable=SC2034 # used by the scripts that source this file
CLIENTS=(python go java node rust)
