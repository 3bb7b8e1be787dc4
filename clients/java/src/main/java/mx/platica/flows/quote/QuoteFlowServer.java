package mx.platica.flows.quote;

import io.grpc.Server;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import mx.platica.flows.v1.FlowHandlerGrpc;

/**
 * A running FlowHandler server: the {@link QuoteFlowService}, {@code grpc.health.v1.Health}
 * (SERVING for {@code ""} and {@code platica.flows.v1.FlowHandler}) and server reflection, both
 * {@code grpc.reflection.v1} and {@code grpc.reflection.v1alpha}, so old and new grpcurl work.
 */
public final class QuoteFlowServer {

  /** The fully qualified name of the service, {@code platica.flows.v1.FlowHandler}. */
  public static final String SERVICE_NAME = FlowHandlerGrpc.SERVICE_NAME;

  private final Server server;
  private final HealthStatusManager health;

  private QuoteFlowServer(Server server, HealthStatusManager health) {
    this.server = server;
    this.health = health;
  }

  /** Starts serving on host:port (port 0 picks a free one: see {@link #port()}). */
  @SuppressWarnings("deprecation") // the v1alpha reflection service, kept for old grpcurl
  public static QuoteFlowServer start(String host, int port, Duration work) throws IOException {
    HealthStatusManager health = new HealthStatusManager();
    Server server =
        NettyServerBuilder.forAddress(new InetSocketAddress(host, port))
            .addService(new QuoteFlowService(work))
            .addService(health.getHealthService())
            .addService(ProtoReflectionServiceV1.newInstance())
            .addService(io.grpc.protobuf.services.ProtoReflectionService.newInstance())
            .build();
    server.start();
    health.setStatus(HealthStatusManager.SERVICE_NAME_ALL_SERVICES, ServingStatus.SERVING);
    health.setStatus(SERVICE_NAME, ServingStatus.SERVING);
    return new QuoteFlowServer(server, health);
  }

  /** The bound port. */
  public int port() {
    return server.getPort();
  }

  /** The health service's state, e.g. for a check after {@link #stop}. */
  public HealthStatusManager health() {
    return health;
  }

  /**
   * Graceful stop: health turns NOT_SERVING, new calls are refused, and calls in flight get
   * {@code grace} to finish before they are cancelled. Calling it again waits for the stop.
   */
  public synchronized void stop(Duration grace) throws InterruptedException {
    if (!server.isShutdown()) {
      health.enterTerminalState(); // NOT_SERVING for every service, from now on
      server.shutdown();
    }
    if (!server.awaitTermination(grace.toNanos(), TimeUnit.NANOSECONDS)) {
      server.shutdownNow();
      server.awaitTermination();
    }
  }

  /** Stops at once: calls in flight are cancelled. */
  public void stopNow() throws InterruptedException {
    stop(Duration.ZERO);
  }
}
