package mx.platica.flows.quote;

import static mx.platica.flows.quote.Protos.WELCOME;
import static mx.platica.flows.quote.Protos.request;
import static mx.platica.flows.quote.Protos.toJava;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import mx.platica.flows.v1.Action;
import mx.platica.flows.v1.FlowHandlerGrpc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The program itself, started as `java mx.platica.flows.quote.Main`: its stdout and signals. */
class MainProcessTest {

  /** Starts Main in a new JVM on this test's class path; stderr goes to a file. */
  private static Process startMain(List<String> args, String portEnv) throws IOException {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.add("-XX:TieredStopAtLevel=1"); // starts faster; this JVM lives for seconds
    command.add("-cp");
    command.add(System.getProperty("java.class.path"));
    command.add(Main.class.getName());
    command.addAll(args);
    ProcessBuilder builder = new ProcessBuilder(command);
    builder.environment().remove("PORT");
    if (portEnv != null) {
      builder.environment().put("PORT", portEnv);
    }
    builder.redirectError(ProcessBuilder.Redirect.DISCARD);
    return builder.start();
  }

  /** Checks the `listening on` line, calls Exchange, sends `signal`; expects exit 0. */
  private static void serveOnceAndStop(Process process, String signal) throws Exception {
    try (BufferedReader stdout =
        new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
      String line = stdout.readLine();
      assertTrue(line != null && line.startsWith("listening on 127.0.0.1:"), String.valueOf(line));
      int port = Integer.parseInt(line.substring(line.lastIndexOf(':') + 1));
      assertTrue(port > 0, line);

      ManagedChannel channel = ManagedChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
      try {
        var reply =
            FlowHandlerGrpc.newBlockingStub(channel)
                .withDeadlineAfter(10, TimeUnit.SECONDS)
                .exchange(request(Action.ACTION_INIT, null));
        assertEquals(WELCOME, toJava(reply));
      } finally {
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      }

      new ProcessBuilder("kill", "-" + signal, Long.toString(process.pid())).start().waitFor();
      assertTrue(process.waitFor(15, TimeUnit.SECONDS), "still running after SIG" + signal);
      assertEquals(0, process.exitValue(), "exit status after SIG" + signal);
      assertEquals(null, stdout.readLine(), "exactly one line on stdout");
    } finally {
      process.destroyForcibly();
    }
  }

  /**
   * Whether this JVM started with `signal` ignored, as a script's `cmd &` does to SIGINT: children
   * inherit that, and the JVM then never installs a handler for it (the Main it starts could not
   * stop on it, as intended for a program started that way).
   */
  private static boolean ignoredInThisProcess(String signal) throws IOException {
    int number = signal.equals("INT") ? 2 : 15;
    for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
      if (line.startsWith("SigIgn:")) {
        long mask = Long.parseUnsignedLong(line.substring("SigIgn:".length()).trim(), 16);
        return (mask & (1L << (number - 1))) != 0;
      }
    }
    return false;
  }

  @ParameterizedTest
  @ValueSource(strings = {"TERM", "INT"})
  void printsItsPortAndStopsOnSignal(String signal) throws Exception {
    assumeFalse(ignoredInThisProcess(signal), "SIG" + signal + " is ignored in this process tree");
    serveOnceAndStop(startMain(List.of("--port", "0"), null), signal);
  }

  @Test
  void takesThePortFromTheEnvironment() throws Exception {
    serveOnceAndStop(startMain(List.of(), "0"), "TERM");
  }

  @Test
  void rejectsUnknownArguments() throws Exception {
    Process process = startMain(List.of("--bogus"), null);
    assertTrue(process.waitFor(15, TimeUnit.SECONDS));
    assertEquals(2, process.exitValue());
  }

  @Test
  void addressesPutIpv6HostsInBrackets() {
    assertEquals("127.0.0.1:50051", Main.address("127.0.0.1", 50051));
    assertEquals("[::1]:50051", Main.address("::1", 50051));
  }
}
