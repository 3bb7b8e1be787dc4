"""Tests of the quote-flow FlowHandler over a real grpc.aio channel on 127.0.0.1:0.

    pip install -r requirements-dev.txt && python -m pytest -q
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

import flow_handler
from flow_handler import ERROR_EMAIL, ERROR_POSTAL_CODE, ERROR_PRODUCT, flows_pb2, flows_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

HERE = Path(__file__).resolve().parent

PRODUCTS = [{"id": "p1", "title": "Plan Básico"}, {"id": "p2", "title": "Plan Premium"}]
WELCOME = {"screen": "WELCOME", "data": {"products": PRODUCTS}}


def welcome_with(error: str) -> dict:
    return {"screen": "WELCOME", "data": {"products": PRODUCTS, "error_message": error}}


def payment(pid: str, title: str, amount: int) -> dict:
    return {
        "screen": "PAYMENT",
        "data": {"product_id": pid, "product_title": title, "amount_mxn": amount},
    }


def request(action: int, screen: str | None = None, payload: dict | None = None, **kw):
    exchange = flows_pb2.FlowExchange(
        action=action,
        action_name=flows_pb2.Action.Name(action).removeprefix("ACTION_").lower(),
    )
    if screen is not None:
        exchange.screen = screen
    exchange.payload.update(payload or {})
    return flows_pb2.ExchangeRequest(
        id="d7c1f3a0-0000-4000-8000-000000000001",
        event_name="whatsapp.flows.screen_advance",
        flow_exchange=exchange,
        **kw,
    )


def run(scenario, **start_kw):
    """Runs `scenario(stub, running)` against a fresh server on 127.0.0.1:0."""

    async def main():
        running = await flow_handler.start("127.0.0.1", 0, **start_kw)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                return await scenario(channel, running)
        finally:
            await running.stop(None)

    return asyncio.run(main())


def exchange(req, timeout: float = 5.0) -> dict:
    async def scenario(channel, _running):
        reply = await flows_pb2_grpc.FlowHandlerStub(channel).Exchange(req, timeout=timeout)
        return json_format.MessageToDict(reply)

    return run(scenario)


def exchange_error(req) -> grpc.aio.AioRpcError:
    async def scenario(channel, _running):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await flows_pb2_grpc.FlowHandlerStub(channel).Exchange(req, timeout=5)
        return raised.value

    return run(scenario)


A = flows_pb2


# --- the flow ---------------------------------------------------------------


def test_init_lists_products():
    assert exchange(request(A.ACTION_INIT)) == WELCOME


@pytest.mark.parametrize("screen", ["PAYMENT", "WELCOME", None])
def test_back_restores_welcome(screen):
    assert exchange(request(A.ACTION_BACK, screen)) == WELCOME


@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"selected_product": "p1"}, payment("p1", "Plan Básico", 199)),
        ({"selected_product": "p2"}, payment("p2", "Plan Premium", 499)),
        (
            {"selected_product": "p2", "email": "juan@empresa.com"},
            payment("p2", "Plan Premium", 499),
        ),
        (
            {"selected_product": "p1", "postal_code": "06600"},
            payment("p1", "Plan Básico", 199),
        ),
        (
            {"selected_product": "p1", "email": "a@b.c", "postal_code": "00000", "extra": 1},
            payment("p1", "Plan Básico", 199),
        ),
    ],
)
def test_valid_selection_goes_to_payment(payload, expected):
    assert exchange(request(A.ACTION_DATA_EXCHANGE, "WELCOME", payload)) == expected


@pytest.mark.parametrize(
    "payload, error",
    [
        ({}, ERROR_PRODUCT),
        ({"selected_product": "p9"}, ERROR_PRODUCT),
        ({"selected_product": ""}, ERROR_PRODUCT),
        ({"selected_product": "P1"}, ERROR_PRODUCT),
        ({"selected_product": 1}, ERROR_PRODUCT),  # not a string
        ({"selected_product": None}, ERROR_PRODUCT),
        # product first, then email, then postal code
        ({"selected_product": "p9", "email": "juan@"}, ERROR_PRODUCT),
        ({"selected_product": "p1", "email": "juan@"}, ERROR_EMAIL),
        ({"selected_product": "p1", "email": "juan empresa.com"}, ERROR_EMAIL),
        ({"selected_product": "p1", "email": "juan@", "postal_code": "1"}, ERROR_EMAIL),
        ({"selected_product": "p1", "postal_code": "0600"}, ERROR_POSTAL_CODE),
        ({"selected_product": "p1", "postal_code": "06G00"}, ERROR_POSTAL_CODE),
    ],
)
def test_bad_values_stay_on_welcome_with_an_error(payload, error):
    assert exchange(request(A.ACTION_DATA_EXCHANGE, "WELCOME", payload)) == welcome_with(error)


def test_non_string_email_and_postal_code_are_ignored():
    payload = {"selected_product": "p2", "email": 5, "postal_code": 6600}
    got = exchange(request(A.ACTION_DATA_EXCHANGE, "WELCOME", payload))
    assert got == payment("p2", "Plan Premium", 499)


def test_payment_confirms():
    got = exchange(request(A.ACTION_DATA_EXCHANGE, "PAYMENT", {"anything": "x"}))
    assert got == {"screen": "SUCCESS", "data": {"acknowledged": True}}


@pytest.mark.parametrize(
    "req",
    [
        request(A.ACTION_DATA_EXCHANGE, "SUCCESS"),
        request(A.ACTION_DATA_EXCHANGE, None),
        request(A.ACTION_DATA_EXCHANGE, "welcome"),
        request(A.ACTION_UNSPECIFIED, "WELCOME", {"selected_product": "p1"}),
        flows_pb2.ExchangeRequest(id="no-exchange"),
    ],
    ids=["unknown-screen", "no-screen", "lowercase-screen", "unknown-action", "no-flow-exchange"],
)
def test_no_step_is_invalid_argument(req):
    error = exchange_error(req)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- the validators, exactly as the reference ---------------------------------


@pytest.mark.parametrize(
    "email",
    ["juan@empresa.com", "a@b.c", "a.b+c@sub.example.mx", "a@b@c.com", "ñ@dominio.mx"],
)
def test_valid_emails(email):
    assert flow_handler.valid_email(email)


@pytest.mark.parametrize(
    "email",
    [
        "",
        "juan",
        "juan@",
        "@empresa.com",
        "juan@empresa",
        "juan@empresa.",
        "juan@.com",
        "juan@empresa..com",
        "juan @empresa.com",
        "juan@empresa.com ",
        "juan\t@empresa.com",
        "juan\u00a0@empresa.com",  # no-break space is whitespace
        "juan\u3000@empresa.com",
    ],
)
def test_invalid_emails(email):
    assert not flow_handler.valid_email(email)


def test_email_whitespace_is_unicode_white_space_not_str_isspace():
    # U+001F is str.isspace() in Python but not Unicode White_Space (nor Rust's
    # char::is_whitespace): the reference accepts it.
    assert flow_handler.valid_email("juan\x1f@empresa.com")


@pytest.mark.parametrize("code", ["06600", "00000", "99999"])
def test_valid_postal_codes(code):
    assert flow_handler.valid_postal_code(code)


@pytest.mark.parametrize("code", ["", "0660", "066000", "06G00", " 6600", "０６６００", "٠٦٦٠٠"])
def test_invalid_postal_codes(code):
    assert not flow_handler.valid_postal_code(code)


# --- the server around it ------------------------------------------------------


def test_health_is_serving_for_both_names():
    async def scenario(channel, _running):
        stub = health_pb2_grpc.HealthStub(channel)
        statuses = []
        for service in ("", "platica.flows.v1.FlowHandler"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            statuses.append(reply.status)
        return statuses

    serving = health_pb2.HealthCheckResponse.SERVING
    assert run(scenario) == [serving, serving]


def test_reflection_lists_the_flow_handler():
    async def scenario(channel, _running):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        async for reply in call:
            return {s.name for s in reply.list_services_response.service}

    names = run(scenario)
    assert "platica.flows.v1.FlowHandler" in names
    assert "grpc.health.v1.Health" in names


def test_reflection_is_also_served_as_v1():
    """grpcurl 1.9 asks grpc.reflection.v1; the messages match v1alpha's."""

    async def scenario(channel, _running):
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        async for reply in call:
            return {s.name for s in reply.list_services_response.service}

    names = run(scenario)
    assert "platica.flows.v1.FlowHandler" in names
    assert "grpc.reflection.v1.ServerReflection" in names


def test_gives_up_at_once_when_the_deadline_leaves_no_time_for_the_work():
    async def scenario(channel, _running):
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await flows_pb2_grpc.FlowHandlerStub(channel).Exchange(
                request(A.ACTION_INIT), timeout=1.0
            )
        return raised.value, time.monotonic() - started

    error, elapsed = run(scenario, work_seconds=5.0)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == "no time left"  # the server's answer, not the client's timer
    assert elapsed < 0.9


def test_does_the_work_when_the_deadline_allows():
    async def scenario(channel, _running):
        reply = await flows_pb2_grpc.FlowHandlerStub(channel).Exchange(
            request(A.ACTION_INIT), timeout=2
        )
        return json_format.MessageToDict(reply)

    assert run(scenario, work_seconds=0.05) == WELCOME


def test_graceful_stop_finishes_calls_in_flight_and_turns_health_off():
    async def scenario(channel, running):
        call = flows_pb2_grpc.FlowHandlerStub(channel).Exchange(request(A.ACTION_INIT), timeout=5)
        await asyncio.sleep(0.3)  # the call is in the handler's simulated work
        stopping = asyncio.create_task(running.stop(5.0))
        reply = await call
        await stopping
        status = (await running.health.Check(health_pb2.HealthCheckRequest(service=""), None)).status
        return json_format.MessageToDict(reply), status

    reply, status = run(scenario, work_seconds=1.0)
    assert reply == WELCOME
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_process_prints_its_port_and_stops_on_signal(sig):
    process = subprocess.Popen(
        [sys.executable, str(HERE / "flow_handler.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port > 0

        async def check():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = await flows_pb2_grpc.FlowHandlerStub(channel).Exchange(
                    request(A.ACTION_INIT), timeout=5
                )
                return json_format.MessageToDict(reply)

        assert asyncio.run(check()) == WELCOME
        process.send_signal(sig)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_answers_without_a_deadline():
    assert exchange(request(A.ACTION_INIT), timeout=None) == WELCOME
