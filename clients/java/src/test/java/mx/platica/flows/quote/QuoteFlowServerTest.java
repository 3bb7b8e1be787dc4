package mx.platica.flows.quote;

import static mx.platica.flows.quote.Protos.WELCOME;
import static mx.platica.flows.quote.Protos.payment;
import static mx.platica.flows.quote.Protos.request;
import static mx.platica.flows.quote.Protos.toJava;
import static mx.platica.flows.quote.Protos.welcomeWith;
import static mx.platica.flows.quote.QuoteFlow.ERROR_EMAIL;
import static mx.platica.flows.quote.QuoteFlow.ERROR_POSTAL_CODE;
import static mx.platica.flows.quote.QuoteFlow.ERROR_PRODUCT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.common.util.concurrent.ListenableFuture;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import mx.platica.flows.v1.Action;
import mx.platica.flows.v1.ExchangeRequest;
import mx.platica.flows.v1.ExchangeResponse;
import mx.platica.flows.v1.FlowHandlerGrpc;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/** The FlowHandler over a real gRPC connection to 127.0.0.1 (port 0). */
class QuoteFlowServerTest {

  private final List<QuoteFlowServer> servers = new ArrayList<>();
  private final List<ManagedChannel> channels = new ArrayList<>();

  @AfterEach
  void tearDown() throws InterruptedException {
    for (ManagedChannel channel : channels) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    for (QuoteFlowServer server : servers) {
      server.stopNow();
    }
  }

  private QuoteFlowServer start(Duration work) throws Exception {
    QuoteFlowServer server = QuoteFlowServer.start("127.0.0.1", 0, work);
    servers.add(server);
    return server;
  }

  private ManagedChannel connect(QuoteFlowServer server) {
    ManagedChannel channel =
        ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    channels.add(channel);
    return channel;
  }

  private ManagedChannel channel() throws Exception {
    return connect(start(Duration.ZERO));
  }

  private Map<String, Object> exchange(ExchangeRequest request) throws Exception {
    return toJava(
        FlowHandlerGrpc.newBlockingStub(channel())
            .withDeadlineAfter(5, TimeUnit.SECONDS)
            .exchange(request));
  }

  private Status exchangeError(ExchangeRequest request) throws Exception {
    FlowHandlerGrpc.FlowHandlerBlockingStub stub =
        FlowHandlerGrpc.newBlockingStub(channel()).withDeadlineAfter(5, TimeUnit.SECONDS);
    return assertThrows(StatusRuntimeException.class, () -> stub.exchange(request)).getStatus();
  }

  // --- the flow ----------------------------------------------------------------

  @Test
  void initListsProducts() throws Exception {
    assertEquals(WELCOME, exchange(request(Action.ACTION_INIT, null)));
  }

  @Test
  void initIgnoresPayloadAndScreen() throws Exception {
    assertEquals(
        WELCOME, exchange(request(Action.ACTION_INIT, "PAYMENT", Map.of("selected_product", "p1"))));
  }

  @ParameterizedTest
  @ValueSource(strings = {"PAYMENT", "WELCOME", "SUCCESS", ""})
  void backRestoresWelcome(String screen) throws Exception {
    assertEquals(WELCOME, exchange(request(Action.ACTION_BACK, screen)));
  }

  @Test
  void backWithoutScreenRestoresWelcome() throws Exception {
    assertEquals(WELCOME, exchange(request(Action.ACTION_BACK, null)));
  }

  static Stream<Arguments> validSelections() {
    return Stream.of(
        Arguments.of(Map.of("selected_product", "p1"), payment("p1", "Plan Básico", 199)),
        Arguments.of(Map.of("selected_product", "p2"), payment("p2", "Plan Premium", 499)),
        Arguments.of(
            Map.of("selected_product", "p2", "email", "juan@empresa.com"),
            payment("p2", "Plan Premium", 499)),
        Arguments.of(
            Map.of("selected_product", "p1", "postal_code", "06600"),
            payment("p1", "Plan Básico", 199)),
        Arguments.of(
            Map.of("selected_product", "p1", "email", "a@b.c", "postal_code", "00000", "extra", 1),
            payment("p1", "Plan Básico", 199)),
        // not strings: ignored, as if absent
        Arguments.of(
            Map.of("selected_product", "p2", "email", 5, "postal_code", 6600),
            payment("p2", "Plan Premium", 499)),
        Arguments.of(
            mapWithNulls("selected_product", "p2", "email", null, "postal_code", List.of()),
            payment("p2", "Plan Premium", 499)));
  }

  @ParameterizedTest
  @MethodSource("validSelections")
  void validSelectionGoesToPayment(Map<String, Object> payload, Map<String, Object> expected)
      throws Exception {
    Map<String, Object> got =
        exchange(request(Action.ACTION_DATA_EXCHANGE, "WELCOME", payload));
    assertEquals(expected, got);
    // A whole number, so the bridge sends 199 / 499 and not 199.0.
    double amount = (Double) ((Map<?, ?>) got.get("data")).get("amount_mxn");
    assertEquals(Math.rint(amount), amount);
  }

  static Stream<Arguments> badValues() {
    return Stream.of(
        Arguments.of(Map.of(), ERROR_PRODUCT),
        Arguments.of(Map.of("selected_product", "p9"), ERROR_PRODUCT),
        Arguments.of(Map.of("selected_product", ""), ERROR_PRODUCT),
        Arguments.of(Map.of("selected_product", "P1"), ERROR_PRODUCT),
        Arguments.of(Map.of("selected_product", " p1"), ERROR_PRODUCT),
        Arguments.of(Map.of("selected_product", 1), ERROR_PRODUCT),
        Arguments.of(Map.of("selected_product", List.of("p1")), ERROR_PRODUCT),
        Arguments.of(mapWithNulls("selected_product", null), ERROR_PRODUCT),
        // product first, then email, then postal code
        Arguments.of(Map.of("selected_product", "p9", "email", "juan@"), ERROR_PRODUCT),
        Arguments.of(Map.of("selected_product", "p1", "email", "juan@"), ERROR_EMAIL),
        Arguments.of(Map.of("selected_product", "p1", "email", "juan empresa.com"), ERROR_EMAIL),
        Arguments.of(
            Map.of("selected_product", "p1", "email", "juan@", "postal_code", "1"), ERROR_EMAIL),
        Arguments.of(Map.of("selected_product", "p1", "postal_code", "0600"), ERROR_POSTAL_CODE),
        Arguments.of(Map.of("selected_product", "p1", "postal_code", "06G00"), ERROR_POSTAL_CODE),
        Arguments.of(
            Map.of("selected_product", "p1", "postal_code", "０６６００"), ERROR_POSTAL_CODE));
  }

  @ParameterizedTest
  @MethodSource("badValues")
  void badValuesStayOnWelcomeWithAnError(Map<String, Object> payload, String error)
      throws Exception {
    assertEquals(
        welcomeWith(error), exchange(request(Action.ACTION_DATA_EXCHANGE, "WELCOME", payload)));
  }

  @Test
  void paymentConfirms() throws Exception {
    assertEquals(
        Map.of("screen", "SUCCESS", "data", Map.of("acknowledged", true)),
        exchange(request(Action.ACTION_DATA_EXCHANGE, "PAYMENT", Map.of("anything", "x"))));
  }

  static Stream<Arguments> stepsTheFlowDoesNotHave() {
    return Stream.of(
        Arguments.of("unknown screen", request(Action.ACTION_DATA_EXCHANGE, "SUCCESS")),
        Arguments.of("no screen", request(Action.ACTION_DATA_EXCHANGE, null)),
        Arguments.of("lowercase screen", request(Action.ACTION_DATA_EXCHANGE, "welcome")),
        Arguments.of(
            "unknown action",
            request(Action.ACTION_UNSPECIFIED, "WELCOME", Map.of("selected_product", "p1"))),
        Arguments.of(
            "unrecognized action number",
            request(Action.ACTION_DATA_EXCHANGE, "WELCOME").toBuilder()
                .setFlowExchange(
                    request(Action.ACTION_DATA_EXCHANGE, "WELCOME").getFlowExchange().toBuilder()
                        .setActionValue(42))
                .build()),
        Arguments.of("no flow_exchange", ExchangeRequest.newBuilder().setId("no-exchange").build()));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("stepsTheFlowDoesNotHave")
  void noStepIsInvalidArgument(String name, ExchangeRequest request) throws Exception {
    assertEquals(Status.Code.INVALID_ARGUMENT, exchangeError(request).getCode());
  }

  @Test
  void answersWithoutADeadline() throws Exception {
    ExchangeResponse reply =
        FlowHandlerGrpc.newBlockingStub(channel()).exchange(request(Action.ACTION_INIT, null));
    assertEquals(WELCOME, toJava(reply));
  }

  // --- the deadline --------------------------------------------------------------

  @Test
  void givesUpAtOnceWhenTheDeadlineLeavesNoTimeForTheWork() throws Exception {
    ManagedChannel channel = connect(start(Duration.ofSeconds(5)));
    checkHealth(channel, ""); // connected, so the timing below is the call's alone
    FlowHandlerGrpc.FlowHandlerBlockingStub stub =
        FlowHandlerGrpc.newBlockingStub(channel).withDeadlineAfter(1, TimeUnit.SECONDS);
    long started = System.nanoTime();
    Status status =
        assertThrows(StatusRuntimeException.class, () -> stub.exchange(request(Action.ACTION_INIT, null)))
            .getStatus();
    long elapsedMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
    assertEquals(Status.Code.DEADLINE_EXCEEDED, status.getCode());
    assertEquals("no time left", status.getDescription()); // the server's answer, not the client's timer
    assertTrue(elapsedMillis < 900, "took " + elapsedMillis + " ms");
  }

  @Test
  void doesTheWorkWhenTheDeadlineAllows() throws Exception {
    ManagedChannel channel = connect(start(Duration.ofMillis(50)));
    ExchangeResponse reply =
        FlowHandlerGrpc.newBlockingStub(channel)
            .withDeadlineAfter(2, TimeUnit.SECONDS)
            .exchange(request(Action.ACTION_INIT, null));
    assertEquals(WELCOME, toJava(reply));
  }

  // --- health and reflection ------------------------------------------------------

  private static ServingStatus checkHealth(ManagedChannel channel, String service) {
    return HealthGrpc.newBlockingStub(channel)
        .withDeadlineAfter(5, TimeUnit.SECONDS)
        .check(HealthCheckRequest.newBuilder().setService(service).build())
        .getStatus();
  }

  @Test
  void healthIsServingForTheServerAndTheFlowHandler() throws Exception {
    ManagedChannel channel = channel();
    assertEquals(ServingStatus.SERVING, checkHealth(channel, ""));
    assertEquals(ServingStatus.SERVING, checkHealth(channel, "platica.flows.v1.FlowHandler"));
    Status unknown =
        assertThrows(StatusRuntimeException.class, () -> checkHealth(channel, "no.such.Service"))
            .getStatus();
    assertEquals(Status.Code.NOT_FOUND, unknown.getCode());
  }

  /** One request on a reflection stream (v1 or v1alpha), its single reply. */
  private static <Req, Res> Res reflect(
      java.util.function.Function<StreamObserver<Res>, StreamObserver<Req>> open, Req request)
      throws Exception {
    CompletableFuture<Res> reply = new CompletableFuture<>();
    StreamObserver<Req> requests =
        open.apply(
            new StreamObserver<Res>() {
              @Override
              public void onNext(Res value) {
                reply.complete(value);
              }

              @Override
              public void onError(Throwable t) {
                reply.completeExceptionally(t);
              }

              @Override
              public void onCompleted() {
                reply.completeExceptionally(new AssertionError("no reply"));
              }
            });
    requests.onNext(request);
    requests.onCompleted();
    return reply.get(5, TimeUnit.SECONDS);
  }

  @Test
  void reflectionV1ListsAndDescribesTheFlowHandler() throws Exception {
    var stub =
        io.grpc.reflection.v1.ServerReflectionGrpc.newStub(channel())
            .withDeadlineAfter(5, TimeUnit.SECONDS);
    var list =
        reflect(
            stub::serverReflectionInfo,
            io.grpc.reflection.v1.ServerReflectionRequest.newBuilder().setListServices("").build());
    Set<String> names =
        list.getListServicesResponse().getServiceList().stream()
            .map(io.grpc.reflection.v1.ServiceResponse::getName)
            .collect(Collectors.toSet());
    assertTrue(
        names.containsAll(
            Set.of(
                "platica.flows.v1.FlowHandler",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection")),
        names.toString());

    var file =
        reflect(
            stub::serverReflectionInfo,
            io.grpc.reflection.v1.ServerReflectionRequest.newBuilder()
                .setFileContainingSymbol("platica.flows.v1.FlowHandler")
                .build());
    var descriptors = file.getFileDescriptorResponse().getFileDescriptorProtoList();
    assertTrue(!descriptors.isEmpty(), file.toString());
    var proto = com.google.protobuf.DescriptorProtos.FileDescriptorProto.parseFrom(descriptors.get(0));
    assertEquals("platica/flows/v1/flows.proto", proto.getName());
  }

  @Test
  void reflectionV1alphaListsTheFlowHandler() throws Exception {
    var stub =
        io.grpc.reflection.v1alpha.ServerReflectionGrpc.newStub(channel())
            .withDeadlineAfter(5, TimeUnit.SECONDS);
    var list =
        reflect(
            stub::serverReflectionInfo,
            io.grpc.reflection.v1alpha.ServerReflectionRequest.newBuilder()
                .setListServices("")
                .build());
    Set<String> names =
        list.getListServicesResponse().getServiceList().stream()
            .map(io.grpc.reflection.v1alpha.ServiceResponse::getName)
            .collect(Collectors.toSet());
    assertTrue(names.contains("platica.flows.v1.FlowHandler"), names.toString());
    assertTrue(names.contains("grpc.health.v1.Health"), names.toString());
  }

  // --- graceful stop ---------------------------------------------------------------

  @Test
  void gracefulStopFinishesCallsInFlightAndTurnsHealthOff() throws Exception {
    QuoteFlowServer server = start(Duration.ofSeconds(1));
    ManagedChannel channel = connect(server);

    // Watch health: SERVING now, NOT_SERVING once the stop begins.
    BlockingQueue<ServingStatus> statuses = new LinkedBlockingQueue<>();
    CompletableFuture<ClientCallStreamObserver<?>> watch = new CompletableFuture<>();
    HealthGrpc.newStub(channel)
        .watch(
            HealthCheckRequest.newBuilder().setService("").build(),
            new ClientResponseObserver<HealthCheckRequest, HealthCheckResponse>() {
              @Override
              public void beforeStart(ClientCallStreamObserver<HealthCheckRequest> call) {
                watch.complete(call);
              }

              @Override
              public void onNext(HealthCheckResponse value) {
                statuses.add(value.getStatus());
              }

              @Override
              public void onError(Throwable t) {}

              @Override
              public void onCompleted() {}
            });
    assertEquals(ServingStatus.SERVING, statuses.poll(5, TimeUnit.SECONDS));

    ListenableFuture<ExchangeResponse> call =
        FlowHandlerGrpc.newFutureStub(channel)
            .withDeadlineAfter(5, TimeUnit.SECONDS)
            .exchange(request(Action.ACTION_INIT, null));
    Thread.sleep(300); // the call is in the handler's simulated work
    CompletableFuture<Void> stopping =
        CompletableFuture.runAsync(
            () -> {
              try {
                server.stop(Duration.ofSeconds(5));
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            });

    assertEquals(ServingStatus.NOT_SERVING, statuses.poll(5, TimeUnit.SECONDS));
    watch.get().cancel("seen NOT_SERVING", null); // so only the Exchange call is in flight
    assertEquals(WELCOME, toJava(call.get(5, TimeUnit.SECONDS)));
    stopping.get(5, TimeUnit.SECONDS);
  }

  private static Map<String, Object> mapWithNulls(Object... keysAndValues) {
    Map<String, Object> map = new HashMap<>();
    List<Object> list = Arrays.asList(keysAndValues);
    for (int i = 0; i < list.size(); i += 2) {
      map.put((String) list.get(i), list.get(i + 1));
    }
    return map;
  }
}
