//! The FlowHandler over a real gRPC connection on 127.0.0.1: the quote flow,
//! the deadline, health, reflection (v1 and v1alpha), the graceful stop, and
//! the `flow-handler` binary itself (its `listening on` line and signals).

#![forbid(unsafe_code)]
// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use flows_handler_example::{
    flow::{ERROR_EMAIL, ERROR_POSTAL_CODE, ERROR_PRODUCT},
    handler::QuoteFlow,
    proto::{
        Action, ExchangeRequest, ExchangeResponse, FlowExchange,
        flow_handler_client::FlowHandlerClient,
    },
    server::{self, Running, SERVICE_NAME, Stopped},
};
use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    health_server::Health as _,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn products() -> Json {
    json!([{"id": "p1", "title": "Plan Básico"}, {"id": "p2", "title": "Plan Premium"}])
}

fn welcome() -> Json {
    json!({"screen": "WELCOME", "data": {"products": products()}})
}

fn welcome_with(error: &str) -> Json {
    json!({"screen": "WELCOME", "data": {"products": products(), "error_message": error}})
}

fn payment(id: &str, title: &str, amount: u32) -> Json {
    json!({
        "screen": "PAYMENT",
        "data": {"product_id": id, "product_title": title, "amount_mxn": amount},
    })
}

/// A step as the bridge sends it: the action, the screen, the payload.
fn step(action: Action, screen: Option<&str>, payload: Json) -> ExchangeRequest {
    let Json::Object(payload) = payload else {
        panic!("a payload is a JSON object");
    };
    ExchangeRequest {
        id: "d7c1f3a0-0000-4000-8000-000000000001".to_owned(),
        event_name: "whatsapp.flows.screen_advance".to_owned(),
        flow_exchange: Some(FlowExchange {
            action: action.into(),
            action_name: action
                .as_str_name()
                .trim_start_matches("ACTION_")
                .to_lowercase(),
            screen: screen.map(str::to_owned),
            payload: Some(to_struct(payload)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn to_struct(object: serde_json::Map<String, Json>) -> Struct {
    Struct {
        fields: object.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(json: Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(values) => Kind::ListValue(ListValue {
            values: values.into_iter().map(to_value).collect(),
        }),
        Json::Object(object) => Kind::StructValue(to_struct(object)),
    };
    Value { kind: Some(kind) }
}

/// The reply as the JSON Platica gets from the bridge (whole numbers as
/// integers, as the bridge renders them).
fn to_json(reply: ExchangeResponse) -> Json {
    let mut out = serde_json::Map::new();
    if let Some(screen) = reply.screen.filter(|s| !s.is_empty()) {
        out.insert("screen".to_owned(), Json::String(screen));
    }
    if let Some(data) = reply.data {
        out.insert("data".to_owned(), struct_to_json(data));
    }
    Json::Object(out)
}

fn struct_to_json(data: Struct) -> Json {
    Json::Object(
        data.fields
            .into_iter()
            .map(|(k, v)| (k, value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: Value) -> Json {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 => {
            json!(n as i64)
        }
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(list)) => {
            Json::Array(list.values.into_iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(object)) => struct_to_json(object),
    }
}

/// A server on 127.0.0.1:0 and a channel to it.
async fn start(handler: QuoteFlow) -> (Running, Channel) {
    let running = server::start("127.0.0.1", 0, handler).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", running.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (running, channel)
}

/// Sends one request, with a deadline when `timeout` is given.
async fn call(
    channel: &Channel,
    request: ExchangeRequest,
    timeout: Option<Duration>,
) -> Result<ExchangeResponse, Status> {
    let mut request = Request::new(request);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    FlowHandlerClient::new(channel.clone())
        .exchange(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Answers each request on a fresh server and stops it.
async fn exchange(request: ExchangeRequest) -> Result<Json, Status> {
    let (running, channel) = start(QuoteFlow::new()).await;
    let reply = call(&channel, request, Some(TIMEOUT)).await.map(to_json);
    assert_eq!(running.stop(TIMEOUT).await.unwrap(), Stopped::Drained);
    reply
}

// --- the flow ------------------------------------------------------------------

#[tokio::test]
async fn init_lists_products() {
    let got = exchange(step(Action::Init, None, json!({"selected_product": "p1"})));
    assert_eq!(got.await.unwrap(), welcome());
}

#[tokio::test]
async fn back_restores_welcome_from_any_screen() {
    let (running, channel) = start(QuoteFlow::new()).await;
    for screen in [Some("PAYMENT"), Some("WELCOME"), None] {
        let reply = call(
            &channel,
            step(Action::Back, screen, json!({})),
            Some(TIMEOUT),
        );
        assert_eq!(to_json(reply.await.unwrap()), welcome(), "{screen:?}");
    }
    running.stop(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn a_valid_selection_goes_to_payment() {
    let (running, channel) = start(QuoteFlow::new()).await;
    for (payload, expected) in [
        (
            json!({"selected_product": "p1"}),
            payment("p1", "Plan Básico", 199),
        ),
        (
            json!({"selected_product": "p2"}),
            payment("p2", "Plan Premium", 499),
        ),
        (
            json!({"selected_product": "p2", "email": "juan@empresa.com"}),
            payment("p2", "Plan Premium", 499),
        ),
        (
            json!({"selected_product": "p1", "postal_code": "06600"}),
            payment("p1", "Plan Básico", 199),
        ),
        (
            json!({"selected_product": "p1", "email": "a@b.c", "postal_code": "00000", "extra": 1}),
            payment("p1", "Plan Básico", 199),
        ),
        (
            json!({"selected_product": "p1", "email": "juan\u{feff}@empresa.com"}),
            payment("p1", "Plan Básico", 199),
        ),
        // Not strings: ignored, as if absent.
        (
            json!({"selected_product": "p2", "email": 5, "postal_code": 6600}),
            payment("p2", "Plan Premium", 499),
        ),
    ] {
        let request = step(Action::DataExchange, Some("WELCOME"), payload.clone());
        let reply = call(&channel, request, Some(TIMEOUT)).await.unwrap();
        assert_eq!(to_json(reply), expected, "{payload}");
    }
    running.stop(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn bad_values_stay_on_welcome_with_an_error() {
    let (running, channel) = start(QuoteFlow::new()).await;
    for (payload, error) in [
        (json!({}), ERROR_PRODUCT),
        (json!({"selected_product": "p9"}), ERROR_PRODUCT),
        (json!({"selected_product": ""}), ERROR_PRODUCT),
        (json!({"selected_product": "P1"}), ERROR_PRODUCT),
        (json!({"selected_product": 1}), ERROR_PRODUCT),
        (json!({"selected_product": null}), ERROR_PRODUCT),
        // product first, then email, then postal code
        (
            json!({"selected_product": "p9", "email": "juan@"}),
            ERROR_PRODUCT,
        ),
        (
            json!({"selected_product": "p1", "email": "juan@"}),
            ERROR_EMAIL,
        ),
        (
            json!({"selected_product": "p1", "email": "juan empresa.com"}),
            ERROR_EMAIL,
        ),
        (
            json!({"selected_product": "p1", "email": "juan\u{a0}@empresa.com"}),
            ERROR_EMAIL,
        ),
        (
            json!({"selected_product": "p1", "email": "juan@", "postal_code": "1"}),
            ERROR_EMAIL,
        ),
        (
            json!({"selected_product": "p1", "postal_code": "0600"}),
            ERROR_POSTAL_CODE,
        ),
        (
            json!({"selected_product": "p1", "postal_code": "06G00"}),
            ERROR_POSTAL_CODE,
        ),
        (
            json!({"selected_product": "p1", "postal_code": "０６６００"}),
            ERROR_POSTAL_CODE,
        ),
    ] {
        let request = step(Action::DataExchange, Some("WELCOME"), payload.clone());
        let reply = call(&channel, request, Some(TIMEOUT)).await.unwrap();
        assert_eq!(to_json(reply), welcome_with(error), "{payload}");
    }
    running.stop(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn payment_confirms() {
    let request = step(
        Action::DataExchange,
        Some("PAYMENT"),
        json!({"anything": "x"}),
    );
    let got = exchange(request).await.unwrap();
    assert_eq!(
        got,
        json!({"screen": "SUCCESS", "data": {"acknowledged": true}})
    );
}

#[tokio::test]
async fn no_step_is_invalid_argument() {
    let (running, channel) = start(QuoteFlow::new()).await;
    for (name, request) in [
        (
            "unknown screen",
            step(Action::DataExchange, Some("SUCCESS"), json!({})),
        ),
        ("no screen", step(Action::DataExchange, None, json!({}))),
        (
            "lowercase screen",
            step(Action::DataExchange, Some("welcome"), json!({})),
        ),
        (
            "unknown action",
            step(
                Action::Unspecified,
                Some("WELCOME"),
                json!({"selected_product": "p1"}),
            ),
        ),
        (
            "no flow_exchange",
            ExchangeRequest {
                id: "no-exchange".to_owned(),
                ..Default::default()
            },
        ),
    ] {
        let error = call(&channel, request, Some(TIMEOUT)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{name}: {error:?}");
    }
    running.stop(TIMEOUT).await.unwrap();
}

// --- the deadline ----------------------------------------------------------------

#[tokio::test]
async fn gives_up_at_once_when_the_deadline_leaves_no_time_for_the_work() {
    let (running, channel) = start(QuoteFlow::with_work(Duration::from_secs(5))).await;
    let started = Instant::now();
    let request = step(Action::Init, None, json!({}));
    let error = call(&channel, request, Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    // The server's answer, not the client's timer.
    assert_eq!(error.message(), "no time left");
    assert!(started.elapsed() < Duration::from_millis(900));
    running.stop(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn does_the_work_when_the_deadline_allows() {
    let (running, channel) = start(QuoteFlow::with_work(Duration::from_millis(50))).await;
    let request = step(Action::Init, None, json!({}));
    let reply = call(&channel, request, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(to_json(reply), welcome());
    running.stop(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn answers_without_a_deadline() {
    let (running, channel) = start(QuoteFlow::new()).await;
    let reply = call(&channel, step(Action::Init, None, json!({})), None)
        .await
        .unwrap();
    assert_eq!(to_json(reply), welcome());
    running.stop(TIMEOUT).await.unwrap();
}

// --- health and reflection ------------------------------------------------------------

#[tokio::test]
async fn health_is_serving_for_the_server_and_the_flow_handler() {
    let (running, channel) = start(QuoteFlow::new()).await;
    let mut health = HealthClient::new(channel);
    for service in ["", "platica.flows.v1.FlowHandler"] {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let reply = health.check(request).await.unwrap().into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = HealthCheckRequest {
        service: "no.such.Service".to_owned(),
    };
    let error = health.check(unknown).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    running.stop(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn reflection_v1_lists_the_services() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let (running, channel) = start(QuoteFlow::new()).await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a list: {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        "platica.flows.v1.FlowHandler",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    running.stop(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_services_and_describes_the_flow_handler() {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let (running, channel) = start(QuoteFlow::new()).await;
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("platica.flows.v1.FlowHandler".to_owned()),
    ]
    .map(|message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    });
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a list: {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        "platica.flows.v1.FlowHandler",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }

    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
        panic!("not a file descriptor: {reply:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    running.stop(TIMEOUT).await.unwrap();
}

// --- the graceful stop ----------------------------------------------------------------

#[tokio::test]
async fn a_graceful_stop_finishes_calls_in_flight_and_turns_health_off() {
    let (running, channel) = start(QuoteFlow::with_work(Duration::from_secs(1))).await;
    let health = running.health();
    let in_flight = tokio::spawn(async move {
        call(&channel, step(Action::Init, None, json!({})), Some(TIMEOUT)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // in the handler's work
    assert_eq!(running.stop(TIMEOUT).await.unwrap(), Stopped::Drained);
    assert_eq!(to_json(in_flight.await.unwrap().unwrap()), welcome());
    for service in ["", SERVICE_NAME] {
        let request = Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        let status = health.check(request).await.unwrap().into_inner().status();
        assert_eq!(status, ServingStatus::NotServing, "{service:?}");
    }
}

#[tokio::test]
async fn a_graceful_stop_gives_up_on_calls_after_the_grace_period() {
    let (running, channel) = start(QuoteFlow::with_work(Duration::from_secs(10))).await;
    let in_flight = tokio::spawn(async move {
        call(
            &channel,
            step(Action::Init, None, json!({})),
            Some(Duration::from_secs(20)),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let stopped = running.stop(Duration::from_millis(200)).await.unwrap();
    assert_eq!(stopped, Stopped::GraceExpired);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The call is abandoned; its connection ends with this test's runtime.
    in_flight.abort();
}

// --- the binary ------------------------------------------------------------------------

/// Starts `flow-handler` with `args` and `env`, reads its `listening on` line,
/// checks one call, sends `signal` and checks that it exits 0 having printed
/// nothing else on stdout.
async fn run_binary(args: &[&str], env: &[(&str, &str)], signal: &str) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flow-handler"));
    command
        .args(args)
        .env_remove("PORT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
        .await
        .expect("a line within 30 s")
        .unwrap();
    let port: u16 = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    assert_ne!(port, 0);

    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let reply = call(&channel, step(Action::Init, None, json!({})), Some(TIMEOUT));
    assert_eq!(to_json(reply.await.unwrap()), welcome());

    // Through kill(1): the tests forbid unsafe code too.
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s")
        .unwrap();
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "", "one line on stdout only");
}

#[tokio::test]
async fn the_binary_prints_its_port_and_stops_on_sigterm() {
    run_binary(&["--port", "0"], &[], "TERM").await;
}

#[tokio::test]
async fn the_binary_takes_the_port_from_env_and_stops_on_sigint() {
    run_binary(&[], &[("PORT", "0")], "INT").await;
}
