package mx.platica.flows.quote;

import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;
import mx.platica.flows.v1.ExchangeRequest;
import mx.platica.flows.v1.ExchangeResponse;
import mx.platica.flows.v1.FlowHandlerGrpc;

/**
 * {@code platica.flows.v1.FlowHandler} serving the {@link QuoteFlow}.
 *
 * <p>{@code work} simulates slow work (a database, another service) before answering; zero by
 * default. It shows how to honour the deadline: the bridge discards a reply that comes after it,
 * so a call that has less time left than the work needs gives up at once with DEADLINE_EXCEEDED.
 */
public final class QuoteFlowService extends FlowHandlerGrpc.FlowHandlerImplBase {

  private static final Logger log = Logger.getLogger(QuoteFlowService.class.getName());

  private final Duration work;

  public QuoteFlowService(Duration work) {
    if (work.isNegative()) {
      throw new IllegalArgumentException("work must not be negative: " + work);
    }
    this.work = work;
  }

  public QuoteFlowService() {
    this(Duration.ZERO);
  }

  @Override
  public void exchange(ExchangeRequest request, StreamObserver<ExchangeResponse> responses) {
    Deadline deadline = Context.current().getDeadline(); // null when the caller set none
    if (deadline != null && deadline.timeRemaining(TimeUnit.NANOSECONDS) <= work.toNanos()) {
      log.warning(
          () ->
              String.format(
                  "delivery %s: %d ms left, not enough for the work; giving up",
                  request.getId(), deadline.timeRemaining(TimeUnit.MILLISECONDS)));
      responses.onError(Status.DEADLINE_EXCEEDED.withDescription("no time left").asRuntimeException());
      return;
    }
    if (!work.isZero()) {
      try {
        Thread.sleep(work.toMillis(), work.toNanosPart() % 1_000_000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        responses.onError(Status.CANCELLED.withDescription("interrupted").asRuntimeException());
        return;
      }
    }
    ExchangeResponse response;
    try {
      response = QuoteFlow.answer(request);
    } catch (QuoteFlow.InvalidStepException e) {
      log.warning(() -> "delivery " + request.getId() + ": " + e.getMessage());
      responses.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
      return;
    }
    // Ids and names only: payloads and request.getClient() hold personal data.
    log.info(
        () ->
            String.format(
                "delivery %s: %s on %s -> %s",
                request.getId(),
                request.getFlowExchange().getActionName(),
                request.getFlowExchange().hasScreen() ? request.getFlowExchange().getScreen() : "-",
                response.getScreen()));
    responses.onNext(response);
    responses.onCompleted();
  }
}
