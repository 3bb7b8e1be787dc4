# Sourced by tests/interop/run.sh (from the repo root): how to build and start
# the Java FlowHandler for the interop run.

interop_setup() {
  # Build the executable jar when it is missing or older than anything it is
  # built from (the pom, the sources, the contract). Maven fetches the pinned
  # plugins, dependencies, protoc and protoc-gen-grpc-java from Maven Central
  # into ~/.m2 on the first run.
  local dir=clients/java jar=clients/java/target/flow-handler.jar
  if [ -f "$jar" ] && [ -z "$(find "$dir/pom.xml" "$dir/src/main" proto -newer "$jar" -print -quit)" ]; then
    return 0
  fi
  # (Debian's Maven 3.8.7 prints stray ESC[0m codes even with -q -B: dropped.)
  (cd "$dir" && mvn -q -B -T 1 -DskipTests package 2>&1) | sed 's/\x1b\[0m//g'
  return "${PIPESTATUS[0]}"
}

interop_command() {
  echo "java -jar $ROOT/clients/java/target/flow-handler.jar --port \$PORT"
}
