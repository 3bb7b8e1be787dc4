"""The reference quote flow as a Platica FlowHandler, in Python (grpc.aio).

    python flow_handler.py [--host 127.0.0.1] [--port 50051]

flows-bridge (the sidecar) receives Platica's signed WhatsApp Flows webhooks
and calls `platica.flows.v1.FlowHandler/Exchange` here; the reply goes back to
Platica as JSON. The flow (the same in every language in clients/):

- `ACTION_INIT` or `ACTION_BACK`, on any screen: WELCOME with the products.
- `ACTION_DATA_EXCHANGE` on WELCOME: `selected_product` must be a known
  product, then `email` and `postal_code` (each only when given) must be
  valid, checked in that order; the first failure answers WELCOME with the
  products and `error_message`. Otherwise PAYMENT with the product and amount.
- `ACTION_DATA_EXCHANGE` on PAYMENT: SUCCESS with `acknowledged`.
- Anything else: INVALID_ARGUMENT (the bridge then answers its fallback).

Also served: grpc.health.v1 (SERVING for "" and the FlowHandler; the bridge's
/readyz asks it) and server reflection (v1alpha, what grpcio-reflection
ships, and the same servicer under the v1 name). Prints `listening on HOST:PORT` once ready; SIGTERM or SIGINT stops it
gracefully (health turns NOT_SERVING, in-flight calls get `--grace` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Optional

import gen_stubs

gen_stubs.ensure()

import grpc  # noqa: E402
from grpc_health.v1 import health as grpc_health  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402
from platica.flows.v1 import flows_pb2, flows_pb2_grpc  # noqa: E402

log = logging.getLogger("flow_handler")

SERVICE_NAME = flows_pb2.DESCRIPTOR.services_by_name["FlowHandler"].full_name

# (id, title, amount in MXN)
PRODUCTS = (
    ("p1", "Plan Básico", 199),
    ("p2", "Plan Premium", 499),
)

ERROR_PRODUCT = "Selecciona un producto válido"
ERROR_EMAIL = "El correo electrónico no es válido"
ERROR_POSTAL_CODE = "El código postal no es válido"

# Unicode White_Space, the definition the reference (Rust's char::is_whitespace)
# uses. Python's str.isspace() differs (it also accepts U+001C..U+001F).
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
_ASCII_DIGITS = frozenset("0123456789")


class InvalidStep(Exception):
    """The quote flow has no step for this request (INVALID_ARGUMENT)."""


def valid_email(email: str) -> bool:
    """`local@domain.tld`, no whitespace: enough to catch typos, as a form would."""
    local, at, domain = email.partition("@")
    if not at:
        return False
    parts = domain.split(".")
    return (
        bool(local)
        and not any(c in _WHITESPACE for c in email)
        and len(parts) >= 2
        and all(parts)
    )


def valid_postal_code(code: str) -> bool:
    """Mexican postal codes: exactly five ASCII digits."""
    return len(code) == 5 and all(c in _ASCII_DIGITS for c in code)


def _reply(screen: str, data: dict) -> flows_pb2.ExchangeResponse:
    response = flows_pb2.ExchangeResponse(screen=screen)
    # Struct.update turns ints into doubles; the bridge sends whole numbers as
    # JSON integers again (499, not 499.0).
    response.data.update(data)
    return response


def _welcome(error: Optional[str] = None) -> flows_pb2.ExchangeResponse:
    data: dict = {"products": [{"id": pid, "title": title} for pid, title, _ in PRODUCTS]}
    if error is not None:
        data["error_message"] = error
    return _reply("WELCOME", data)


def answer(request: flows_pb2.ExchangeRequest) -> flows_pb2.ExchangeResponse:
    """The quote flow's reply to one step; raises InvalidStep when it has none."""
    if not request.HasField("flow_exchange"):
        raise InvalidStep("flow_exchange is missing")
    exchange = request.flow_exchange
    screen = exchange.screen if exchange.HasField("screen") else None
    payload = exchange.payload

    def text(key: str) -> Optional[str]:
        """A payload field's value when it is a string; None when absent or not a string."""
        if key in payload.fields:
            value = payload.fields[key]
            if value.WhichOneof("kind") == "string_value":
                return value.string_value
        return None

    action = exchange.action
    if action in (flows_pb2.ACTION_INIT, flows_pb2.ACTION_BACK):
        return _welcome()
    if action == flows_pb2.ACTION_DATA_EXCHANGE and screen == "WELCOME":
        selected = text("selected_product")
        product = next((p for p in PRODUCTS if p[0] == selected), None)
        if product is None:
            return _welcome(ERROR_PRODUCT)
        email = text("email")
        if email is not None and not valid_email(email):
            return _welcome(ERROR_EMAIL)
        postal_code = text("postal_code")
        if postal_code is not None and not valid_postal_code(postal_code):
            return _welcome(ERROR_POSTAL_CODE)
        pid, title, amount = product
        return _reply(
            "PAYMENT", {"product_id": pid, "product_title": title, "amount_mxn": amount}
        )
    if action == flows_pb2.ACTION_DATA_EXCHANGE and screen == "PAYMENT":
        return _reply("SUCCESS", {"acknowledged": True})
    raise InvalidStep(
        f"the quote flow has no step for action {flows_pb2.Action.Name(action)} "
        f"on screen {screen if screen is not None else '(none)'}"
    )


class QuoteFlow(flows_pb2_grpc.FlowHandlerServicer):
    """FlowHandler serving the quote flow.

    `work_seconds` simulates slow work (a database, another service) before
    answering; 0 by default. It shows how to honour the deadline: a reply
    after it is discarded by the bridge, so do not start work that cannot
    finish in time.
    """

    def __init__(self, work_seconds: float = 0.0) -> None:
        self._work_seconds = work_seconds

    async def Exchange(
        self, request: flows_pb2.ExchangeRequest, context: grpc.aio.ServicerContext
    ) -> flows_pb2.ExchangeResponse:
        remaining = context.time_remaining()  # None when the caller set no deadline
        if remaining is not None and remaining <= self._work_seconds:
            log.warning(
                "delivery %s: %.0f ms left, not enough for the work; giving up",
                request.id,
                remaining * 1000,
            )
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no time left")
        if self._work_seconds > 0:
            await asyncio.sleep(self._work_seconds)
        try:
            response = answer(request)
        except InvalidStep as error:
            log.warning("delivery %s: %s", request.id, error)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        # Ids and names only: payloads and request.client hold personal data.
        log.info(
            "delivery %s: %s on %s -> %s",
            request.id,
            request.flow_exchange.action_name,
            request.flow_exchange.screen or "-",
            response.screen,
        )
        return response


class Running:
    """A started server: `port` is the bound port (useful with port 0)."""

    def __init__(self, server: grpc.aio.Server, health: grpc_health.aio.HealthServicer, port: int):
        self.server = server
        self.health = health
        self.port = port

    async def stop(self, grace: Optional[float]) -> None:
        """Health NOT_SERVING first, then stop accepting and drain for `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"  # IPv6
    return f"{host}:{port}"


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _enable_reflection(server: grpc.aio.Server, service_names: tuple[str, ...]) -> None:
    """Serves reflection as grpc.reflection.v1alpha and grpc.reflection.v1.

    grpcio-reflection only ships v1alpha. The v1 service has the same messages
    (same fields, same numbers), so the same servicer answers under the v1
    name too: grpcurl 1.9 asks v1 first, grpcurl 1.8 only knows v1alpha.
    """
    servicer = reflection.aio.ReflectionServicer(service_names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, handlers),)
    )


async def start(
    host: str = "127.0.0.1", port: int = 0, *, work_seconds: float = 0.0
) -> Running:
    """Starts the FlowHandler with health and reflection on host:port."""
    server = grpc.aio.server()
    flows_pb2_grpc.add_FlowHandlerServicer_to_server(QuoteFlow(work_seconds), server)
    health = grpc_health.aio.HealthServicer()
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    _enable_reflection(
        server, (SERVICE_NAME, grpc_health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1)
    )
    try:
        bound = server.add_insecure_port(_address(host, port))
    except RuntimeError as error:  # grpcio raises when it cannot bind
        raise OSError(f"cannot listen on {_address(host, port)}: {error}") from error
    if bound == 0:
        raise OSError(f"cannot listen on {_address(host, port)}")
    await server.start()
    return Running(server, health, bound)


async def _serve(args: argparse.Namespace) -> None:
    running = await start(args.host, args.port, work_seconds=args.work_ms / 1000)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {_address(args.host, running.port)}", flush=True)
    await stop.wait()
    log.info("stopping (grace %.1f s)", args.grace)
    await running.stop(args.grace)
    log.info("stopped")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Quote-flow FlowHandler (grpc.aio).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "50051")),
        help="port to bind; 0 picks a free one (default: $PORT or 50051)",
    )
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds in-flight calls get on shutdown"
    )
    parser.add_argument(
        "--work-ms",
        type=float,
        default=0.0,
        help="simulated work per call, to try the deadline and the bridge's fallback",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(args))
    except OSError as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
