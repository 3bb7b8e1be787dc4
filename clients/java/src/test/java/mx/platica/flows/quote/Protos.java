package mx.platica.flows.quote;

import com.google.protobuf.ListValue;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import mx.platica.flows.v1.Action;
import mx.platica.flows.v1.ExchangeRequest;
import mx.platica.flows.v1.ExchangeResponse;
import mx.platica.flows.v1.FlowExchange;

/** Test helpers: plain Java values (maps, lists, strings, doubles, booleans) to and from protos. */
final class Protos {

  static final List<Map<String, Object>> PRODUCTS =
      List.of(Map.of("id", "p1", "title", "Plan Básico"), Map.of("id", "p2", "title", "Plan Premium"));

  static final Map<String, Object> WELCOME =
      Map.of("screen", "WELCOME", "data", Map.of("products", PRODUCTS));

  private Protos() {}

  static Map<String, Object> welcomeWith(String error) {
    return Map.of("screen", "WELCOME", "data", Map.of("products", PRODUCTS, "error_message", error));
  }

  static Map<String, Object> payment(String id, String title, double amount) {
    return Map.of(
        "screen",
        "PAYMENT",
        "data",
        Map.of("product_id", id, "product_title", title, "amount_mxn", amount));
  }

  /** A request for one step; {@code screen} null means no screen. */
  static ExchangeRequest request(Action action, String screen, Map<String, ?> payload) {
    FlowExchange.Builder exchange =
        FlowExchange.newBuilder()
            .setAction(action)
            .setActionName(action.name().replaceFirst("^ACTION_", "").toLowerCase())
            .setPayload(struct(payload));
    if (screen != null) {
      exchange.setScreen(screen);
    }
    return ExchangeRequest.newBuilder()
        .setId("d7c1f3a0-0000-4000-8000-000000000001")
        .setEventName("whatsapp.flows.screen_advance")
        .setFlowExchange(exchange)
        .build();
  }

  static ExchangeRequest request(Action action, String screen) {
    return request(action, screen, Map.of());
  }

  /** The reply as Platica would see it: {"screen": ..., "data": {...}}, each key only when set. */
  static Map<String, Object> toJava(ExchangeResponse response) {
    Map<String, Object> reply = new LinkedHashMap<>();
    if (response.hasScreen()) {
      reply.put("screen", response.getScreen());
    }
    if (response.hasData()) {
      reply.put("data", toJava(response.getData()));
    }
    return reply;
  }

  static Map<String, Object> toJava(Struct struct) {
    Map<String, Object> map = new LinkedHashMap<>();
    struct.getFieldsMap().forEach((key, value) -> map.put(key, toJava(value)));
    return map;
  }

  static Object toJava(Value value) {
    switch (value.getKindCase()) {
      case STRUCT_VALUE:
        return toJava(value.getStructValue());
      case LIST_VALUE:
        List<Object> list = new ArrayList<>();
        value.getListValue().getValuesList().forEach(v -> list.add(toJava(v)));
        return list;
      case STRING_VALUE:
        return value.getStringValue();
      case NUMBER_VALUE:
        return value.getNumberValue();
      case BOOL_VALUE:
        return value.getBoolValue();
      default:
        return null;
    }
  }

  static Struct struct(Map<String, ?> map) {
    Struct.Builder struct = Struct.newBuilder();
    map.forEach((key, value) -> struct.putFields(key, value(value)));
    return struct.build();
  }

  static Value value(Object value) {
    Value.Builder v = Value.newBuilder();
    if (value == null) {
      v.setNullValueValue(0);
    } else if (value instanceof String s) {
      v.setStringValue(s);
    } else if (value instanceof Number n) {
      v.setNumberValue(n.doubleValue());
    } else if (value instanceof Boolean b) {
      v.setBoolValue(b);
    } else if (value instanceof Map<?, ?> m) {
      Map<String, Object> fields = new LinkedHashMap<>();
      m.forEach((k, x) -> fields.put((String) k, x));
      v.setStructValue(struct(fields));
    } else if (value instanceof List<?> l) {
      ListValue.Builder list = ListValue.newBuilder();
      l.forEach(x -> list.addValues(value(x)));
      v.setListValue(list);
    } else {
      throw new IllegalArgumentException("no JSON value for " + value.getClass());
    }
    return v.build();
  }
}
