# Sourced by tests/interop/run.sh (from the repo root): how to set up and start
# the Python FlowHandler for the interop run.

interop_setup() {
  # requirements-dev.txt is the runtime plus pytest, so scripts/test can run the
  # client's own tests from the same venv.
  local venv=.tools/interop/venv-python req=clients/python/requirements-dev.txt
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  # Reinstall only when the requirements changed since the last install.
  if ! cat "$req" clients/python/requirements.txt | cmp -s - "$venv/.installed-requirements.txt"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cat "$req" clients/python/requirements.txt >"$venv/.installed-requirements.txt"
  fi
  "$venv/bin/python" clients/python/gen_stubs.py >/dev/null
}

interop_command() {
  echo "$ROOT/.tools/interop/venv-python/bin/python clients/python/flow_handler.py --port \$PORT"
}
