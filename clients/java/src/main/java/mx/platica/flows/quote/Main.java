package mx.platica.flows.quote;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.logging.ConsoleHandler;
import java.util.logging.Formatter;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogManager;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import sun.misc.Signal;

/**
 * The quote flow as a Platica FlowHandler.
 *
 * <pre>
 *   java -jar target/flow-handler.jar [--host 127.0.0.1] [--port 50051] [--grace 5]
 *       [--work-ms 0] [--log-level INFO]
 * </pre>
 *
 * <p>Prints {@code listening on HOST:PORT} to stdout once it serves; logs go to stderr. SIGTERM or
 * SIGINT stops it gracefully (health NOT_SERVING, calls in flight get {@code --grace} seconds)
 * and it exits 0.
 */
public final class Main {

  private static final Logger log = Logger.getLogger("flow_handler");

  private static final String USAGE =
      String.join(
          "\n",
          "usage: java -jar flow-handler.jar [options]",
          "",
          "Quote-flow FlowHandler (grpc-java).",
          "",
          "  --host HOST       address to bind (default 127.0.0.1)",
          "  --port PORT       port to bind; 0 picks a free one (default: $PORT or 50051)",
          "  --grace SECONDS   seconds in-flight calls get on shutdown (default 5)",
          "  --work-ms MS      simulated work per call, to try the deadline and the bridge's"
              + " fallback (default 0)",
          "  --log-level LVL   DEBUG, INFO, WARNING or ERROR (default: $LOG_LEVEL or INFO)",
          "  -h, --help        show this help");

  private static final List<String> OPTIONS =
      List.of("--host", "--port", "--grace", "--work-ms", "--log-level");

  private Main() {}

  /** Bad command-line arguments. */
  static final class UsageException extends Exception {
    private static final long serialVersionUID = 1L;

    UsageException(String message) {
      super(message);
    }
  }

  /** The parsed command line. */
  record Options(String host, int port, Duration grace, Duration work, Level logLevel) {

    static Options parse(String[] args, Map<String, String> env) throws UsageException {
      Map<String, String> values = new HashMap<>();
      for (int i = 0; i < args.length; i++) {
        String arg = args[i];
        String name = arg;
        String value = null;
        int eq = arg.indexOf('=');
        if (arg.startsWith("--") && eq > 0) {
          name = arg.substring(0, eq);
          value = arg.substring(eq + 1);
        }
        if (!OPTIONS.contains(name)) {
          throw new UsageException("unknown argument: " + arg);
        }
        if (value == null) {
          if (i + 1 >= args.length) {
            throw new UsageException(name + " needs a value");
          }
          value = args[++i];
        }
        values.put(name, value);
      }
      String host = values.getOrDefault("--host", "127.0.0.1");
      int port = integer("--port", values.getOrDefault("--port", env.getOrDefault("PORT", "50051")));
      if (port < 0 || port > 65535) {
        throw new UsageException("--port must be 0..65535, not " + port);
      }
      Duration grace = seconds("--grace", values.getOrDefault("--grace", "5"));
      Duration work = Duration.ofNanos((long) (number("--work-ms", values.getOrDefault("--work-ms", "0")) * 1e6));
      Level level = level(values.getOrDefault("--log-level", env.getOrDefault("LOG_LEVEL", "INFO")));
      return new Options(host, port, grace, work, level);
    }

    private static int integer(String name, String value) throws UsageException {
      try {
        return Integer.parseInt(value.trim());
      } catch (NumberFormatException e) {
        throw new UsageException(name + " must be an integer, not " + value);
      }
    }

    private static double number(String name, String value) throws UsageException {
      double n;
      try {
        n = Double.parseDouble(value.trim());
      } catch (NumberFormatException e) {
        throw new UsageException(name + " must be a number, not " + value);
      }
      if (!(n >= 0) || Double.isInfinite(n)) {
        throw new UsageException(name + " must be a non-negative number, not " + value);
      }
      return n;
    }

    private static Duration seconds(String name, String value) throws UsageException {
      return Duration.ofNanos((long) (number(name, value) * 1e9));
    }

    private static Level level(String value) throws UsageException {
      switch (value.trim().toUpperCase(Locale.ROOT)) {
        case "DEBUG":
          return Level.FINE;
        case "INFO":
          return Level.INFO;
        case "WARN":
        case "WARNING":
          return Level.WARNING;
        case "ERROR":
          return Level.SEVERE;
        default:
          throw new UsageException("--log-level must be DEBUG, INFO, WARNING or ERROR, not " + value);
      }
    }
  }

  public static void main(String[] args) {
    System.exit(run(args));
  }

  static int run(String[] args) {
    if (List.of(args).contains("-h") || List.of(args).contains("--help")) {
      System.out.println(USAGE);
      return 0;
    }
    Options options;
    try {
      options = Options.parse(args, System.getenv());
    } catch (UsageException e) {
      System.err.println(USAGE);
      System.err.println("error: " + e.getMessage());
      return 2;
    }
    configureLogging(options.logLevel());

    // Installed before the server starts, so a signal never finds the JVM's default handler
    // (which would exit 143/130 instead of stopping gracefully with 0).
    CountDownLatch stop = new CountDownLatch(1);
    for (String name : List.of("TERM", "INT")) {
      Signal.handle(new Signal(name), signal -> stop.countDown());
    }

    QuoteFlowServer server;
    try {
      server = QuoteFlowServer.start(options.host(), options.port(), options.work());
    } catch (IOException e) {
      log.severe("cannot listen on " + address(options.host(), options.port()) + ": " + e.getMessage());
      return 1;
    }
    System.out.println("listening on " + address(options.host(), server.port()));
    System.out.flush();

    try {
      stop.await();
      log.info(() -> String.format("stopping (grace %.1f s)", options.grace().toMillis() / 1000.0));
      server.stop(options.grace());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return 1;
    }
    log.info("stopped");
    return 0;
  }

  /** host:port, with an IPv6 host in brackets. */
  static String address(String host, int port) {
    if (host.contains(":") && !host.startsWith("[")) {
      return "[" + host + "]:" + port;
    }
    return host + ":" + port;
  }

  /** One line per record on stderr: {@code 2026-05-06T19:00:30.123Z INFO logger: message}. */
  private static void configureLogging(Level level) {
    LogManager.getLogManager().reset();
    Handler handler = new ConsoleHandler(); // stderr
    handler.setLevel(level);
    handler.setFormatter(
        new Formatter() {
          @Override
          public String format(LogRecord record) {
            StringBuilder line =
                new StringBuilder()
                    .append(Instant.ofEpochMilli(record.getMillis()))
                    .append(' ')
                    .append(record.getLevel().getName())
                    .append(' ')
                    .append(record.getLoggerName())
                    .append(": ")
                    .append(formatMessage(record))
                    .append(System.lineSeparator());
            if (record.getThrown() != null) {
              StringWriter trace = new StringWriter();
              record.getThrown().printStackTrace(new PrintWriter(trace));
              line.append(trace);
            }
            return line.toString();
          }
        });
    Logger root = Logger.getLogger("");
    root.addHandler(handler);
    root.setLevel(level);
  }
}
