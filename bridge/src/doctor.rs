//! `flows-bridge doctor --upstream ADDR`: is this FlowHandler ready for
//! production behind the bridge? Health and reflection present, every
//! conformance vector answered as expected, latency against the budget, and
//! what it does at its deadline. Colours only on a terminal (and never with
//! `NO_COLOR`).

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use anstyle::{AnsiColor, Style};
use clap::Args;
use serde_json::Value as Json;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    config::{self, UpstreamAddr},
    proto::{ExchangeRequest, flow_handler_client::FlowHandlerClient},
    tools::{self, BoxError},
    upstream::{SERVICE_NAME, Upstream},
    vectors::{self, Case},
};

pub const GOOD: Style = AnsiColor::Green.on_default().bold();
pub const WARN: Style = AnsiColor::Yellow.on_default().bold();
pub const BAD: Style = AnsiColor::Red.on_default().bold();
const DIM: Style = Style::new().dimmed();

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The FlowHandler: http://host:port or unix:///path.
    #[arg(long, env = config::ENV_UPSTREAM, default_value = config::DEFAULT_UPSTREAM)]
    pub upstream: String,
    /// The budget the bridge will give each call.
    #[arg(long, env = config::ENV_BUDGET, default_value = config::DEFAULT_BUDGET)]
    pub budget: String,
    /// A directory of conformance cases (default: the ones built into this binary).
    #[arg(long)]
    pub vectors: Option<PathBuf>,
    /// Calls made to measure latency.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Pass,
    Warn,
    Fail,
}

struct Report {
    out: anstream::AutoStream<std::io::Stdout>,
    counts: [usize; 3],
}

impl Report {
    fn line(&mut self, verdict: Verdict, check: &str, detail: &str) {
        let (style, mark) = match verdict {
            Verdict::Pass => (GOOD, "✓"),
            Verdict::Warn => (WARN, "!"),
            Verdict::Fail => (BAD, "✗"),
        };
        self.counts[verdict as usize] += 1;
        let _ = writeln!(self.out, "  {style}{mark}{style:#} {check:<12} {detail}");
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.out, "      {DIM}{text}{DIM:#}");
    }
}

/// Runs every check; returns whether none failed.
pub async fn run(args: &DoctorArgs) -> Result<bool, BoxError> {
    let budget = config::parse_duration(&args.budget)?.ok_or("--budget must be positive")?;
    let addr = config::parse_upstream(&args.upstream)?;
    let cases = match &args.vectors {
        Some(dir) => vectors::read_dir(dir)?,
        None => vectors::embedded()?,
    };
    let mut report = Report {
        out: anstream::stdout(),
        counts: [0; 3],
    };
    let _ = writeln!(
        report.out,
        "flows-bridge doctor: {addr} (budget {})\n",
        humantime::format_duration(budget)
    );

    let channel = match connect(&addr).await {
        Ok((channel, took)) => {
            report.line(
                Verdict::Pass,
                "reachable",
                &format!("connected in {}", ms(took)),
            );
            channel
        }
        Err(error) => {
            report.line(
                Verdict::Fail,
                "reachable",
                &format!("cannot connect: {error}"),
            );
            return Ok(finish(report));
        }
    };
    check_health(&mut report, channel.clone()).await;
    check_reflection(&mut report, channel.clone()).await;
    // The vectors and the latency go the way the bridge's calls go.
    let upstream = Upstream::new(&addr);
    check_vectors(&mut report, &upstream, &cases, budget).await;
    check_latency(&mut report, &upstream, budget, args.requests).await;
    check_deadline(&mut report, channel).await;
    Ok(finish(report))
}

fn finish(mut report: Report) -> bool {
    let [pass, warn, fail] = report.counts;
    let (style, verdict) = if fail > 0 {
        (BAD, "not ready for production")
    } else if warn > 0 {
        (WARN, "ready, with warnings")
    } else {
        (GOOD, "ready for production")
    };
    let _ = writeln!(
        report.out,
        "\n{style}{verdict}{style:#}: {pass} passed, {warn} warnings, {fail} failed"
    );
    fail == 0
}

async fn connect(addr: &UpstreamAddr) -> Result<(Channel, Duration), BoxError> {
    let started = Instant::now();
    let endpoint = match addr {
        UpstreamAddr::Tcp(uri) => tonic::transport::Endpoint::from(uri.clone()),
        UpstreamAddr::Unix(_) => tonic::transport::Endpoint::from_static("http://localhost"),
    }
    .connect_timeout(Duration::from_secs(3));
    let channel = match addr {
        UpstreamAddr::Tcp(_) => endpoint.connect().await?,
        UpstreamAddr::Unix(path) => {
            let path = path.clone();
            endpoint
                .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await?
        }
    };
    Ok((channel, started.elapsed()))
}

async fn check_health(report: &mut Report, channel: Channel) {
    let mut client = HealthClient::new(channel);
    let ask = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };
    match client.check(ask(SERVICE_NAME)).await {
        Ok(r) if r.get_ref().status() == ServingStatus::Serving => {
            report.line(
                Verdict::Pass,
                "health",
                &format!("grpc.health.v1 SERVING for {SERVICE_NAME}"),
            );
        }
        Ok(r) => report.line(
            Verdict::Fail,
            "health",
            &format!(
                "{SERVICE_NAME} is {:?}: the bridge reports not ready",
                r.get_ref().status()
            ),
        ),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            report.line(Verdict::Warn, "health", "no grpc.health.v1 service");
            report.note("the bridge's /readyz then only knows that the port accepts connections");
        }
        Err(status) if status.code() == tonic::Code::NotFound => {
            match client.check(ask("")).await {
                Ok(r) if r.get_ref().status() == ServingStatus::Serving => {
                    report.line(
                        Verdict::Warn,
                        "health",
                        "SERVING for \"\", but nothing for the FlowHandler service",
                    );
                    report.note(&format!(
                        "set a status for {SERVICE_NAME} so readiness follows it"
                    ));
                }
                _ => report.line(
                    Verdict::Fail,
                    "health",
                    "neither the FlowHandler nor \"\" is SERVING",
                ),
            }
        }
        Err(status) => report.line(
            Verdict::Fail,
            "health",
            &format!("health check failed: {status}"),
        ),
    }
}

async fn check_reflection(report: &mut Report, channel: Channel) {
    let v1 = list_services_v1(channel.clone()).await;
    let v1alpha = list_services_v1alpha(channel).await;
    let has = |r: &Result<Vec<String>, BoxError>| {
        r.as_ref()
            .is_ok_and(|s| s.iter().any(|s| s == SERVICE_NAME))
    };
    match (has(&v1), has(&v1alpha)) {
        (true, true) => report.line(
            Verdict::Pass,
            "reflection",
            &format!("v1 and v1alpha list {SERVICE_NAME}"),
        ),
        (true, false) => {
            report.line(
                Verdict::Warn,
                "reflection",
                "v1 only: grpcurl 1.8.x and older need v1alpha",
            );
        }
        (false, true) => {
            report.line(
                Verdict::Warn,
                "reflection",
                "v1alpha only: newer tools prefer grpc.reflection.v1",
            );
        }
        (false, false) => {
            report.line(Verdict::Warn, "reflection", "no server reflection");
            report.note("grpcurl then needs the protoset: flows-bridge protoset -o flows.protoset");
        }
    }
}

/// `list_services_v1` and `list_services_v1alpha`: the same call on the two
/// reflection versions, whose generated types differ only in their module.
macro_rules! list_services {
    ($name:ident, $version:ident) => {
        async fn $name(channel: Channel) -> Result<Vec<String>, BoxError> {
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse,
            };
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut stream = ServerReflectionClient::new(channel)
                .server_reflection_info(tokio_stream::once(request))
                .await?
                .into_inner();
            match stream
                .next()
                .await
                .transpose()?
                .and_then(|r| r.message_response)
            {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    Ok(list.service.into_iter().map(|s| s.name).collect())
                }
                _ => Err("no service list".into()),
            }
        }
    };
}

list_services!(list_services_v1, v1);
list_services!(list_services_v1alpha, v1alpha);

/// What the bridge would answer Platica for `request`: the rendered reply, or
/// the default fallback.
async fn bridge_answer(
    upstream: &Upstream,
    request: ExchangeRequest,
    budget: Duration,
) -> (Json, Option<&'static str>) {
    let deadline = tokio::time::Instant::now() + budget;
    match upstream
        .exchange(Box::new(request), deadline, &http::HeaderMap::new())
        .await
    {
        Ok(body) => (serde_json::from_slice(&body).unwrap_or(Json::Null), None),
        Err((reason, _)) => (
            serde_json::from_str(config::DEFAULT_FALLBACK).unwrap_or(Json::Null),
            Some(reason.as_str()),
        ),
    }
}

async fn check_vectors(report: &mut Report, upstream: &Upstream, cases: &[Case], budget: Duration) {
    let mut failures = Vec::new();
    for case in cases {
        let request = match case
            .delivery()
            .and_then(|d| tools::to_request(d.to_string().as_bytes(), None, budget))
        {
            Ok(request) => request,
            Err(error) => {
                failures.push(format!("{}: cannot build the request: {error}", case.name));
                continue;
            }
        };
        let (answer, fallback) = bridge_answer(upstream, request, budget).await;
        if answer != case.expect_body {
            let why = fallback.map_or(String::new(), |r| format!(" (fallback: {r})"));
            failures.push(format!(
                "{}: expected {}, got {answer}{why}",
                case.name, case.expect_body
            ));
        }
    }
    let passed = cases.len() - failures.len();
    let verdict = if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    report.line(
        verdict,
        "vectors",
        &format!(
            "{passed}/{} conformance cases answered as expected",
            cases.len()
        ),
    );
    for failure in failures.iter().take(10) {
        report.note(failure);
    }
}

async fn check_latency(
    report: &mut Report,
    upstream: &Upstream,
    budget: Duration,
    requests: usize,
) {
    let body = tools::SEED_SCREEN_ADVANCE_FULL.as_bytes();
    let mut times = Vec::with_capacity(requests);
    let mut fallbacks = 0;
    for _ in 0..requests.max(1) {
        let Ok(request) = tools::to_request(body, None, budget) else {
            return;
        };
        let started = Instant::now();
        let (_, fallback) = bridge_answer(upstream, request, budget).await;
        times.push(started.elapsed());
        fallbacks += usize::from(fallback.is_some());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let (p50, p90, p99, max) = (at(0.5), at(0.9), at(0.99), at(1.0));
    let verdict = if fallbacks > 0 || p99 >= budget {
        Verdict::Fail
    } else if p99 >= budget / 2 {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    report.line(
        verdict,
        "latency",
        &format!(
            "{} calls: p50 {}, p90 {}, p99 {}, max {} ({}% of the budget at p99)",
            times.len(),
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            (p99.as_secs_f64() / budget.as_secs_f64() * 100.0).round()
        ),
    );
    if fallbacks > 0 {
        report.note(&format!(
            "{fallbacks} calls would have been answered with the fallback"
        ));
    } else if verdict == Verdict::Warn {
        report.note("p99 above half the budget leaves little room for a slow moment");
    }
}

/// Calls with 1 ms left: a handler that checks its deadline answers at once
/// with DEADLINE_EXCEEDED (or replies within the millisecond).
async fn check_deadline(report: &mut Report, channel: Channel) {
    let Ok(request) = tools::to_request(
        tools::SEED_SCREEN_ADVANCE_FULL.as_bytes(),
        None,
        Duration::from_millis(1),
    ) else {
        return;
    };
    let mut call = tonic::Request::new(request);
    call.set_timeout(Duration::from_millis(1));
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        FlowHandlerClient::new(channel).exchange(call),
    )
    .await;
    let took = started.elapsed();
    match result {
        Err(_) => report.line(
            Verdict::Fail,
            "deadline",
            "with 1 ms left it had not answered after 5 s",
        ),
        Ok(Err(status))
            if matches!(
                status.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) =>
        {
            report.line(
                Verdict::Pass,
                "deadline",
                &format!("with 1 ms left: {:?} after {}", status.code(), ms(took)),
            );
        }
        Ok(Ok(_)) if took <= Duration::from_millis(2) => {
            report.line(
                Verdict::Pass,
                "deadline",
                &format!("with 1 ms left it still replied in time ({})", ms(took)),
            );
        }
        Ok(Ok(_)) => {
            report.line(
                Verdict::Warn,
                "deadline",
                &format!("with 1 ms left it replied after {}", ms(took)),
            );
            report.note(
                "a reply after the deadline is discarded: check the time left before slow work",
            );
        }
        Ok(Err(status)) => report.line(
            Verdict::Warn,
            "deadline",
            &format!("with 1 ms left: {:?} after {}", status.code(), ms(took)),
        ),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
