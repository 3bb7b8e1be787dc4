package mx.platica.flows.quote;

import com.google.protobuf.ListValue;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import mx.platica.flows.v1.Action;
import mx.platica.flows.v1.ExchangeRequest;
import mx.platica.flows.v1.ExchangeResponse;
import mx.platica.flows.v1.FlowExchange;

/**
 * The quote flow: the reply to one step, with no I/O. The same flow as every client in
 * {@code clients/} and the bridge's built-in reference ({@code bridge/src/quote.rs}).
 *
 * <ul>
 *   <li>{@code ACTION_INIT} or {@code ACTION_BACK}, on any screen: WELCOME with the products.
 *   <li>{@code ACTION_DATA_EXCHANGE} on WELCOME: {@code selected_product} must be a known
 *       product, then {@code email} and {@code postal_code} (each only when it is a string) must
 *       be valid, checked in that order; the first failure answers WELCOME with the products and
 *       {@code error_message}. Otherwise PAYMENT with the product and its amount.
 *   <li>{@code ACTION_DATA_EXCHANGE} on PAYMENT: SUCCESS with {@code acknowledged}.
 *   <li>Anything else: {@link InvalidStepException} (INVALID_ARGUMENT; the bridge then answers
 *       its fallback).
 * </ul>
 */
public final class QuoteFlow {

  /** A product on offer; the amount is whole pesos. */
  public record Product(String id, String title, int amountMxn) {}

  public static final List<Product> PRODUCTS =
      List.of(new Product("p1", "Plan Básico", 199), new Product("p2", "Plan Premium", 499));

  public static final String ERROR_PRODUCT = "Selecciona un producto válido";
  public static final String ERROR_EMAIL = "El correo electrónico no es válido";
  public static final String ERROR_POSTAL_CODE = "El código postal no es válido";

  public static final String WELCOME = "WELCOME";
  public static final String PAYMENT = "PAYMENT";
  public static final String SUCCESS = "SUCCESS";

  /** The quote flow has no step for a request: the handler answers INVALID_ARGUMENT. */
  public static final class InvalidStepException extends Exception {
    private static final long serialVersionUID = 1L;

    InvalidStepException(String message) {
      super(message);
    }
  }

  private QuoteFlow() {}

  /** The quote flow's reply to one step. */
  public static ExchangeResponse answer(ExchangeRequest request) throws InvalidStepException {
    if (!request.hasFlowExchange()) {
      throw new InvalidStepException("flow_exchange is missing");
    }
    FlowExchange exchange = request.getFlowExchange();
    Action action = exchange.getAction();
    String screen = exchange.hasScreen() ? exchange.getScreen() : null;
    Map<String, Value> payload = exchange.getPayload().getFieldsMap();

    if (action == Action.ACTION_INIT || action == Action.ACTION_BACK) {
      return welcome(null);
    }
    if (action == Action.ACTION_DATA_EXCHANGE && WELCOME.equals(screen)) {
      return selectProduct(payload);
    }
    if (action == Action.ACTION_DATA_EXCHANGE && PAYMENT.equals(screen)) {
      return reply(SUCCESS, Map.of("acknowledged", Value.newBuilder().setBoolValue(true).build()));
    }
    String actionName = action == Action.UNRECOGNIZED ? "ACTION_UNRECOGNIZED" : action.name();
    throw new InvalidStepException(
        "the quote flow has no step for action "
            + actionName
            + " on screen "
            + (screen != null ? screen : "(none)"));
  }

  /** {@code data_exchange} on WELCOME: product, then email, then postal code. */
  private static ExchangeResponse selectProduct(Map<String, Value> payload) {
    Optional<Product> product =
        text(payload, "selected_product")
            .flatMap(id -> PRODUCTS.stream().filter(p -> p.id().equals(id)).findFirst());
    if (product.isEmpty()) {
      return welcome(ERROR_PRODUCT);
    }
    if (text(payload, "email").filter(email -> !validEmail(email)).isPresent()) {
      return welcome(ERROR_EMAIL);
    }
    if (text(payload, "postal_code").filter(code -> !validPostalCode(code)).isPresent()) {
      return welcome(ERROR_POSTAL_CODE);
    }
    Product p = product.get();
    return reply(
        PAYMENT,
        Map.of(
            "product_id", string(p.id()),
            "product_title", string(p.title()),
            // A Struct number is a double; the bridge renders 499.0 as 499.
            "amount_mxn", Value.newBuilder().setNumberValue(p.amountMxn()).build()));
  }

  /** A payload field's value when it is a string; empty when absent or of another type. */
  private static Optional<String> text(Map<String, Value> payload, String key) {
    Value value = payload.get(key);
    if (value == null || value.getKindCase() != Value.KindCase.STRING_VALUE) {
      return Optional.empty();
    }
    return Optional.of(value.getStringValue());
  }

  /**
   * {@code local@domain.tld} with no whitespace: enough to catch typos, as a form would. The part
   * before the first {@code @} is non-empty; the part after it, split on {@code .}, has at least
   * two parts, none empty.
   */
  public static boolean validEmail(String email) {
    int at = email.indexOf('@');
    if (at < 0) {
      return false;
    }
    String local = email.substring(0, at);
    // -1 keeps trailing empty parts ("a@b." has an empty last part).
    String[] parts = email.substring(at + 1).split("\\.", -1);
    return !local.isEmpty()
        && email.codePoints().noneMatch(QuoteFlow::isWhiteSpace)
        && parts.length >= 2
        && List.of(parts).stream().noneMatch(String::isEmpty);
  }

  /** Mexican postal codes: exactly five ASCII digits (no other Unicode digits). */
  public static boolean validPostalCode(String code) {
    return code.length() == 5 && code.chars().allMatch(c -> c >= '0' && c <= '9');
  }

  /**
   * Unicode's White_Space property, the definition the reference uses (Rust's {@code
   * char::is_whitespace}). Java's {@link Character#isWhitespace} differs: it leaves out the
   * no-break spaces (U+00A0, U+2007, U+202F) and counts U+001C..U+001F.
   */
  static boolean isWhiteSpace(int codePoint) {
    return (codePoint >= 0x09 && codePoint <= 0x0D)
        || codePoint == 0x20
        || codePoint == 0x85
        || codePoint == 0xA0
        || codePoint == 0x1680
        || (codePoint >= 0x2000 && codePoint <= 0x200A)
        || codePoint == 0x2028
        || codePoint == 0x2029
        || codePoint == 0x202F
        || codePoint == 0x205F
        || codePoint == 0x3000;
  }

  private static ExchangeResponse welcome(String error) {
    ListValue.Builder products = ListValue.newBuilder();
    for (Product p : PRODUCTS) {
      Struct product =
          Struct.newBuilder()
              .putFields("id", string(p.id()))
              .putFields("title", string(p.title()))
              .build();
      products.addValues(Value.newBuilder().setStructValue(product));
    }
    Struct.Builder data =
        Struct.newBuilder().putFields("products", Value.newBuilder().setListValue(products).build());
    if (error != null) {
      data.putFields("error_message", string(error));
    }
    return ExchangeResponse.newBuilder().setScreen(WELCOME).setData(data).build();
  }

  private static ExchangeResponse reply(String screen, Map<String, Value> data) {
    return ExchangeResponse.newBuilder()
        .setScreen(screen)
        .setData(Struct.newBuilder().putAllFields(data))
        .build();
  }

  private static Value string(String s) {
    return Value.newBuilder().setStringValue(s).build();
  }
}
