//! `flows-bench run`: every configuration, side by side, in one session.
//!
//! One FlowHandler process serves all three configurations: the load generator
//! calls it directly (the floor), through flows-bridge, and through Envoy's
//! gRPC-JSON transcoder, load point by load point, the three back to back so a
//! change in the machine's load touches them alike.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    load::{self, LoadResult, Target},
    payload::{self, Body},
    procs::{self, Cpu, Proc},
    report,
};

/// The settings of one harness run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub smoke: bool,
    pub warmup_s: f64,
    pub window_s: f64,
    pub fallback_window_s: f64,
    pub connections: Vec<usize>,
    pub rate: f64,
    pub open_connections: usize,
    pub fallback_connections: usize,
    pub slow_handler_ms: u64,
    pub startup_reps: usize,
    pub envoy_concurrency: usize,
    pub bridge_worker_threads: usize,
    pub command: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_gib: f64,
    pub load_before: [f64; 3],
    pub load_after: [f64; 3],
    pub date: String,
    pub commit: String,
    pub rustc: String,
    pub bridge_version: String,
    pub envoy_version: String,
}

/// One configuration under one load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// `direct`, `bridge` or `envoy`.
    pub config: String,
    /// `c1`, `c16`, `c64`, `rate2000`, `slow_c16`, `down_c16`.
    pub load: String,
    pub result: LoadResult,
    /// CPU-seconds per completed request, in microseconds.
    pub proxy_cpu_us: Option<f64>,
    pub handler_cpu_us: Option<f64>,
    pub loadgen_cpu_us: f64,
    /// Peak RSS during this run (VmHWM after a reset), KiB.
    pub proxy_rss_kib: Option<u64>,
    pub handler_rss_kib: Option<u64>,
    /// The proxy's anonymous memory at the end of this run (RssAnon), KiB.
    #[serde(default)]
    pub proxy_anon_kib: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Startup {
    pub name: String,
    /// From spawn to the readiness endpoint answering 200, ms, each repetition.
    pub to_ready_ms: Vec<f64>,
    /// From spawn to the first delivery answered with the handler's reply, ms.
    pub to_first_reply_ms: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Binary {
    pub name: String,
    pub path: String,
    pub bytes: u64,
    pub stripped_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub settings: Settings,
    pub machine: Machine,
    pub runs: Vec<Run>,
    pub fallback: Vec<Run>,
    pub startup: Vec<Startup>,
    pub binaries: Vec<Binary>,
}

/// Paths and options of `run`.
pub struct Options {
    pub settings: Settings,
    pub bridge: PathBuf,
    pub envoy: PathBuf,
    pub out: PathBuf,
    pub readme: Option<PathBuf>,
}

/// The processes one configuration runs.
struct Servers {
    work: PathBuf,
    protoset: PathBuf,
    bridge: PathBuf,
    envoy: PathBuf,
    concurrency: usize,
    worker_threads: usize,
}

struct Proxy {
    proc: Proc,
    addr: SocketAddr,
}

impl Servers {
    fn handler(&self, name: &str, delay: Option<Duration>) -> Result<(Proc, SocketAddr), String> {
        let addr = procs::free_port()?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        command.arg("handler").arg("--listen").arg(addr.to_string());
        if let Some(delay) = delay {
            command.arg("--delay-ms").arg(delay.as_millis().to_string());
        }
        let proc = Proc::spawn(name, command, &self.work.join(format!("{name}.log")))?;
        procs::wait_tcp(addr, Duration::from_secs(10))?;
        Ok((proc, addr))
    }

    fn bridge_command(
        &self,
        upstream: SocketAddr,
    ) -> Result<(Command, SocketAddr, SocketAddr), String> {
        let addr = procs::free_port()?;
        let admin = procs::free_port()?;
        let mut command = Command::new(&self.bridge);
        command
            .arg("serve")
            .env("FLOWS_BRIDGE_LISTEN", addr.to_string())
            .env("FLOWS_BRIDGE_ADMIN_LISTEN", admin.to_string())
            .env("FLOWS_BRIDGE_UPSTREAM", format!("http://{upstream}"))
            .env("FLOWS_BRIDGE_SECRET", payload::SECRET)
            .env("FLOWS_BRIDGE_BUDGET", "600ms")
            // As deploy/kubernetes/base/deployment.yaml runs it.
            .env("FLOWS_BRIDGE_LOG_FORMAT", "json")
            .env("FLOWS_BRIDGE_LOG", "info")
            .env(
                "FLOWS_BRIDGE_WORKER_THREADS",
                self.worker_threads.to_string(),
            )
            .env("MALLOC_ARENA_MAX", "2")
            .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=200");
        Ok((command, addr, admin))
    }

    fn bridge(&self, name: &str, upstream: SocketAddr, wait_ready: bool) -> Result<Proxy, String> {
        let (command, addr, admin) = self.bridge_command(upstream)?;
        let started = Instant::now();
        let proc = Proc::spawn(name, command, &self.work.join(format!("{name}.log")))?;
        if wait_ready {
            procs::wait_http_ok(admin, "/readyz", started, Duration::from_secs(10))?;
        } else {
            procs::wait_http_ok(admin, "/livez", started, Duration::from_secs(10))?;
        }
        Ok(Proxy { proc, addr })
    }

    fn envoy_command(
        &self,
        name: &str,
        upstream: SocketAddr,
    ) -> Result<(Command, SocketAddr, SocketAddr), String> {
        let addr = procs::free_port()?;
        let admin = procs::free_port()?;
        let config = self.work.join(format!("{name}.yaml"));
        fs::write(&config, envoy_config(addr, admin, upstream, &self.protoset))
            .map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.envoy);
        command
            .arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(self.concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg("warn");
        Ok((command, addr, admin))
    }

    fn envoy(&self, name: &str, upstream: SocketAddr) -> Result<Proxy, String> {
        let (command, addr, admin) = self.envoy_command(name, upstream)?;
        let started = Instant::now();
        let proc = Proc::spawn(name, command, &self.work.join(format!("{name}.log")))?;
        procs::wait_http_ok(admin, "/ready", started, Duration::from_secs(20))?;
        Ok(Proxy { proc, addr })
    }
}

/// Envoy as a user would put it in front of the handler: HTTP/1.1 and h2c in,
/// the gRPC-JSON transcoder, the router with the 600 ms budget as the route
/// timeout, HTTP/2 to the handler. No access log (flows-bridge logs a line
/// per delivery: this favours Envoy).
pub fn envoy_config(
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    protoset: &Path,
) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: {admin_ip}, port_value: {admin_port} }} }}
static_resources:
  listeners:
  - name: webhook
    address: {{ socket_address: {{ address: {ip}, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: webhook
          codec_type: AUTO
          route_config:
            name: local
            virtual_hosts:
            - name: handler
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: handler, timeout: 0.6s }}
          http_filters:
          - name: envoy.filters.http.grpc_json_transcoder
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder
              proto_descriptor: "{protoset}"
              services: ["platica.flows.v1.FlowHandler"]
              convert_grpc_status: true
              # Methods without google.api.http options at POST /package.Service/Method;
              # without it the JSON passes through untranscoded (and the handler answers
              # INTERNAL, wrapped in an HTTP 200).
              auto_mapping: true
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: handler
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: handler
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {up_ip}, port_value: {up_port} }} }} }}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
"#,
        admin_ip = admin.ip(),
        admin_port = admin.port(),
        ip = listen.ip(),
        port = listen.port(),
        up_ip = upstream.ip(),
        up_port = upstream.port(),
        protoset = protoset.display(),
    )
}

fn fallback_body() -> Bytes {
    flows_bridge::reply::parse_fallback(flows_bridge::config::DEFAULT_FALLBACK).unwrap_or_default()
}

/// What to measure, and how.
#[derive(Clone, Copy)]
enum Load {
    Closed(usize),
    Open(f64),
}

struct Measure<'a> {
    settings: &'a Settings,
}

impl Measure<'_> {
    async fn run(
        &self,
        (config, label): (&str, &str),
        load: Load,
        target: &Target,
        proxy: Option<&mut Proc>,
        handler: Option<&mut Proc>,
        window: Duration,
    ) -> Result<Run, String> {
        let mut proxy = proxy;
        let mut handler = handler;
        for p in [proxy.as_deref_mut(), handler.as_deref_mut()]
            .into_iter()
            .flatten()
        {
            p.check_alive()?;
            p.reset_peak_rss();
        }
        let warmup = Duration::from_secs_f64(self.settings.warmup_s);
        let cpu = |p: &Option<&mut Proc>| p.as_ref().map(|p| p.cpu());
        let (proxy_before, handler_before, self_before) =
            (cpu(&proxy), cpu(&handler), Cpu::of_self());
        let result = match load {
            Load::Closed(n) => load::closed(target, n, warmup, window).await?,
            Load::Open(rate) => {
                load::open(target, rate, self.settings.open_connections, warmup, window).await?
            }
        };
        let per_request = |seconds: f64| seconds * 1e6 / result.completed.max(1) as f64;
        let run = Run {
            config: config.to_owned(),
            load: label.to_owned(),
            proxy_cpu_us: proxy_before
                .zip(cpu(&proxy))
                .map(|(before, after)| per_request(after.since(before))),
            handler_cpu_us: handler_before
                .zip(cpu(&handler))
                .map(|(before, after)| per_request(after.since(before))),
            loadgen_cpu_us: per_request(Cpu::of_self().since(self_before)),
            proxy_rss_kib: proxy.as_ref().map(|p| p.peak_rss_kib()),
            handler_rss_kib: handler.as_ref().map(|p| p.peak_rss_kib()),
            proxy_anon_kib: proxy.as_ref().map(|p| p.anon_rss_kib()),
            result,
        };
        eprintln!(
            "  {:<7} {:<10} {:>9.0} req/s  p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  proxy {:>6} us/req  handler {:>6} us/req  {:?}",
            run.config,
            run.load,
            run.result.rps,
            run.result.latency_us.p50,
            run.result.latency_us.p99,
            run.result.latency_us.p999,
            run.proxy_cpu_us.map_or("-".into(), |v| format!("{v:.1}")),
            run.handler_cpu_us.map_or("-".into(), |v| format!("{v:.1}")),
            run.result.outcomes,
        );
        Ok(run)
    }
}

/// One delivery through `target` must come back as the handler's reply.
async fn sanity(name: &str, target: &Target) -> Result<(), String> {
    let result = load::closed(target, 1, Duration::ZERO, Duration::from_millis(50)).await?;
    if result.count("reply") == 0 || result.outcomes.len() != 1 {
        return Err(format!(
            "{name}: sanity check failed: {:?}",
            result.outcomes
        ));
    }
    Ok(())
}

fn machine(bridge: &Path, envoy: &Path) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: procs::command_line("uname", &["-sr"]),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        load_before: procs::loadavg(),
        load_after: [0.0; 3],
        date: procs::command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit: procs::command_line("git", &["rev-parse", "--short", "HEAD"]),
        rustc: procs::command_line("rustc", &["--version"]),
        bridge_version: procs::command_line(&bridge.to_string_lossy(), &["--version"]),
        envoy_version: procs::command_line(&envoy.to_string_lossy(), &["--version"]),
    }
}

pub async fn run(options: Options) -> Result<Results, String> {
    let settings = options.settings.clone();
    let work = std::env::temp_dir().join(format!("flows-bench-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let protoset = work.join("flows.protoset");
    fs::write(&protoset, flows_bridge::quote::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())?;
    let servers = Servers {
        work: work.clone(),
        protoset,
        bridge: options.bridge.clone(),
        envoy: options.envoy.clone(),
        concurrency: settings.envoy_concurrency,
        worker_threads: settings.bridge_worker_threads,
    };
    let mut machine = machine(&options.bridge, &options.envoy);
    eprintln!(
        "flows-bench: load average {:.2} {:.2} {:.2}; work dir {}",
        machine.load_before[0],
        machine.load_before[1],
        machine.load_before[2],
        work.display()
    );
    let window = Duration::from_secs_f64(settings.window_s);
    let measure = Measure {
        settings: &settings,
    };

    // The main matrix: one handler, both proxies in front of it.
    let (mut handler, handler_addr) = servers.handler("handler", None)?;
    let mut bridge = servers.bridge("bridge", handler_addr, true)?;
    let mut envoy = servers.envoy("envoy", handler_addr)?;
    let direct_target = load::grpc(handler_addr)?;
    let bridge_target = load::http(bridge.addr, Body::Delivery, fallback_body())?;
    let envoy_target = load::http(envoy.addr, Body::ProtoJson, fallback_body())?;
    sanity("direct", &direct_target).await?;
    sanity("bridge", &bridge_target).await?;
    sanity("envoy", &envoy_target).await?;

    let mut loads: Vec<(String, Load)> = settings
        .connections
        .iter()
        .map(|&c| (format!("c{c}"), Load::Closed(c)))
        .collect();
    loads.push((
        format!("rate{}", settings.rate as u64),
        Load::Open(settings.rate),
    ));

    let mut runs = Vec::new();
    for (label, load) in &loads {
        eprintln!("load {label}");
        // Side by side at each load point: the floor, the bridge, the peer.
        let configs = [
            ("direct", &direct_target, None),
            ("bridge", &bridge_target, Some(&mut bridge.proc)),
            ("envoy", &envoy_target, Some(&mut envoy.proc)),
        ];
        for (config, target, proxy) in configs {
            let run = measure
                .run(
                    (config, label),
                    *load,
                    target,
                    proxy,
                    Some(&mut handler),
                    window,
                )
                .await?;
            runs.push(run);
        }
    }
    bridge.proc.stop();
    envoy.proc.stop();

    // The fallback path: a handler slower than the budget, and no handler.
    eprintln!("fallback");
    let fallback_window = Duration::from_secs_f64(settings.fallback_window_s);
    let c = settings.fallback_connections;
    let mut fallback = Vec::new();
    {
        let delay = Duration::from_millis(settings.slow_handler_ms);
        let (mut slow, slow_addr) = servers.handler("handler-slow", Some(delay))?;
        let mut bridge = servers.bridge("bridge-slow", slow_addr, true)?;
        let mut envoy = servers.envoy("envoy-slow", slow_addr)?;
        let label = format!("slow_c{c}");
        let target = load::http(bridge.addr, Body::Delivery, fallback_body())?;
        fallback.push(
            measure
                .run(
                    ("bridge", &label),
                    Load::Closed(c),
                    &target,
                    Some(&mut bridge.proc),
                    Some(&mut slow),
                    fallback_window,
                )
                .await?,
        );
        let target = load::http(envoy.addr, Body::ProtoJson, fallback_body())?;
        fallback.push(
            measure
                .run(
                    ("envoy", &label),
                    Load::Closed(c),
                    &target,
                    Some(&mut envoy.proc),
                    Some(&mut slow),
                    fallback_window,
                )
                .await?,
        );
        bridge.proc.stop();
        envoy.proc.stop();
        slow.stop();
    }
    {
        // Nothing listens there: connections are refused at once.
        let down = procs::free_port()?;
        let mut bridge = servers.bridge("bridge-down", down, false)?;
        let mut envoy = servers.envoy("envoy-down", down)?;
        let label = format!("down_c{c}");
        let target = load::http(bridge.addr, Body::Delivery, fallback_body())?;
        fallback.push(
            measure
                .run(
                    ("bridge", &label),
                    Load::Closed(c),
                    &target,
                    Some(&mut bridge.proc),
                    None,
                    fallback_window,
                )
                .await?,
        );
        let target = load::http(envoy.addr, Body::ProtoJson, fallback_body())?;
        fallback.push(
            measure
                .run(
                    ("envoy", &label),
                    Load::Closed(c),
                    &target,
                    Some(&mut envoy.proc),
                    None,
                    fallback_window,
                )
                .await?,
        );
        // The same at the fixed rate: latency, not saturation (at 16
        // connections flat out, latency is 16 / throughput, whatever the path).
        let label = format!("down_rate{}", settings.rate as u64);
        let rate = Load::Open(settings.rate);
        for (config, proxy, body) in [
            ("bridge", &mut bridge, Body::Delivery),
            ("envoy", &mut envoy, Body::ProtoJson),
        ] {
            let target = load::http(proxy.addr, body, fallback_body())?;
            fallback.push(
                measure
                    .run(
                        (config, &label),
                        rate,
                        &target,
                        Some(&mut proxy.proc),
                        None,
                        fallback_window,
                    )
                    .await?,
            );
        }
        bridge.proc.stop();
        envoy.proc.stop();
    }

    // Start-up: spawn to ready, and to the first real reply.
    eprintln!("start-up");
    let mut startup = vec![
        Startup {
            name: "flows-bridge".into(),
            to_ready_ms: vec![],
            to_first_reply_ms: vec![],
        },
        Startup {
            name: "envoy".into(),
            to_ready_ms: vec![],
            to_first_reply_ms: vec![],
        },
    ];
    for rep in 0..settings.startup_reps {
        for (i, entry) in startup.iter_mut().enumerate() {
            let (command, addr, admin, ready_path, body) = if i == 0 {
                let (c, a, adm) = servers.bridge_command(handler_addr)?;
                (c, a, adm, "/readyz", Body::Delivery)
            } else {
                let (c, a, adm) =
                    servers.envoy_command(&format!("envoy-start{rep}"), handler_addr)?;
                (c, a, adm, "/ready", Body::ProtoJson)
            };
            let started = Instant::now();
            let proc = Proc::spawn(
                &entry.name,
                command,
                &work.join(format!("start-{i}-{rep}.log")),
            )?;
            let ready = procs::wait_http_ok(admin, ready_path, started, Duration::from_secs(20))?;
            let target = load::http(addr, body, fallback_body())?;
            let first = loop {
                let r = load::closed(&target, 1, Duration::ZERO, Duration::from_millis(1)).await;
                if r.is_ok_and(|r| r.count("reply") > 0) {
                    break started.elapsed();
                }
                if started.elapsed() > Duration::from_secs(20) {
                    return Err(format!("{}: no reply within 20 s", entry.name));
                }
            };
            entry.to_ready_ms.push(ready.as_secs_f64() * 1000.0);
            entry.to_first_reply_ms.push(first.as_secs_f64() * 1000.0);
            proc.stop();
        }
    }
    handler.stop();

    let binaries = [("flows-bridge", &options.bridge), ("envoy", &options.envoy)]
        .into_iter()
        .map(|(name, path)| Binary {
            name: name.into(),
            path: path.display().to_string(),
            bytes: procs::file_size(path),
            stripped_bytes: procs::stripped_size(path, &work),
        })
        .collect();
    machine.load_after = procs::loadavg();
    let _ = fs::remove_dir_all(&work);
    let results = Results {
        settings,
        machine,
        runs,
        fallback,
        startup,
        binaries,
    };
    report::write(&results, &options.out, options.readme.as_deref())?;
    Ok(results)
}

/// Whether every outcome of a run is one of `labels`.
pub fn only(run: &Run, labels: &[&str]) -> bool {
    run.result
        .outcomes
        .keys()
        .all(|k| labels.contains(&k.as_str()))
}
