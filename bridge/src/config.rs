//! Every setting of `flows-bridge serve`: its environment variable (`ENV_*`), its
//! default (`DEFAULT_*`, with why), and one validation pass that reports every
//! bad value by name before anything binds a port.
//!
//! clap reads the flags and the environment (a flag wins over its variable); this
//! module turns the raw strings into a typed [`Config`], collecting all errors.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use bytes::Bytes;
use clap::Parser;

use crate::{reply, secrets::Secrets};

pub const ENV_LISTEN: &str = "FLOWS_BRIDGE_LISTEN";
pub const ENV_ADMIN_LISTEN: &str = "FLOWS_BRIDGE_ADMIN_LISTEN";
pub const ENV_PATH: &str = "FLOWS_BRIDGE_PATH";
pub const ENV_UPSTREAM: &str = "FLOWS_BRIDGE_UPSTREAM";
pub const ENV_SECRET: &str = "FLOWS_BRIDGE_SECRET";
pub const ENV_SECRET_FILE: &str = "FLOWS_BRIDGE_SECRET_FILE";
pub const ENV_SECRET_RELOAD_INTERVAL: &str = "FLOWS_BRIDGE_SECRET_RELOAD_INTERVAL";
pub const ENV_INSECURE_SKIP_SIGNATURE: &str = "FLOWS_BRIDGE_INSECURE_SKIP_SIGNATURE";
pub const ENV_BUDGET: &str = "FLOWS_BRIDGE_BUDGET";
pub const ENV_TIMESTAMP_TOLERANCE: &str = "FLOWS_BRIDGE_TIMESTAMP_TOLERANCE";
pub const ENV_MAX_BODY: &str = "FLOWS_BRIDGE_MAX_BODY";
pub const ENV_MAX_IN_FLIGHT: &str = "FLOWS_BRIDGE_MAX_IN_FLIGHT";
pub const ENV_FALLBACK: &str = "FLOWS_BRIDGE_FALLBACK";
pub const ENV_IDEMPOTENCY_TTL: &str = "FLOWS_BRIDGE_IDEMPOTENCY_TTL";
pub const ENV_IDEMPOTENCY_CAPACITY: &str = "FLOWS_BRIDGE_IDEMPOTENCY_CAPACITY";
pub const ENV_IDEMPOTENCY_MEMORY: &str = "FLOWS_BRIDGE_IDEMPOTENCY_MEMORY";
pub const ENV_HEADER_TIMEOUT: &str = "FLOWS_BRIDGE_HEADER_TIMEOUT";
pub const ENV_BODY_TIMEOUT: &str = "FLOWS_BRIDGE_BODY_TIMEOUT";
pub const ENV_MAX_HEADERS: &str = "FLOWS_BRIDGE_MAX_HEADERS";
pub const ENV_MAX_HEADER_BYTES: &str = "FLOWS_BRIDGE_MAX_HEADER_BYTES";
pub const ENV_READY_INTERVAL: &str = "FLOWS_BRIDGE_READY_INTERVAL";
pub const ENV_SHUTDOWN_DELAY: &str = "FLOWS_BRIDGE_SHUTDOWN_DELAY";
pub const ENV_SHUTDOWN_GRACE: &str = "FLOWS_BRIDGE_SHUTDOWN_GRACE";
pub const ENV_JOURNAL: &str = "FLOWS_BRIDGE_JOURNAL";
pub const ENV_JOURNAL_MAX_SIZE: &str = "FLOWS_BRIDGE_JOURNAL_MAX_SIZE";
pub const ENV_JOURNAL_MAX_FILES: &str = "FLOWS_BRIDGE_JOURNAL_MAX_FILES";
pub const ENV_MAX_CONNECTIONS: &str = "FLOWS_BRIDGE_MAX_CONNECTIONS";
pub const ENV_WORKER_THREADS: &str = "FLOWS_BRIDGE_WORKER_THREADS";
pub const ENV_LOG_FORMAT: &str = "FLOWS_BRIDGE_LOG_FORMAT";
pub const ENV_LOG: &str = "FLOWS_BRIDGE_LOG";

/// All interfaces: in a pod the webhook port is reached through the Service.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Probes and Prometheus scrape the pod IP; a separate port keeps them off the Service.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9090";
/// Platica posts to the URL configured for the webhook; `/` keeps that URL short.
pub const DEFAULT_PATH: &str = "/";
/// The business container's gRPC port, in the same pod.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:50051";
/// Platica waits 700 ms; 600 ms leaves 100 ms for the network and Platica itself.
pub const DEFAULT_BUDGET: &str = "600ms";
/// Wide enough for clock skew and Platica's retries, narrow enough to stop replays.
pub const DEFAULT_TIMESTAMP_TOLERANCE: &str = "5m";
/// A delivery is ~2 KB; 1 MiB fits any flow payload and caps memory per request.
pub const DEFAULT_MAX_BODY: &str = "1MiB";
/// Past this many concurrent handler calls the bridge sheds with the fallback.
pub const DEFAULT_MAX_IN_FLIGHT: &str = "1024";
/// What Platica itself answers Meta when the endpoint is late.
pub const DEFAULT_FALLBACK: &str = r#"{"data":{"acknowledged":true}}"#;
/// At least the replay window (5 min), so a replayed delivery hits the cache.
pub const DEFAULT_IDEMPOTENCY_TTL: &str = "10m";
/// ~0.3 KB an entry with a small reply: 10 000 entries cap the cache near 3 MB.
pub const DEFAULT_IDEMPOTENCY_CAPACITY: &str = "10000";
/// All 10 000 entries while replies average under ~1.4 KB; fewer past that,
/// so the cache never outgrows the pod's memory whatever the screens weigh.
pub const DEFAULT_IDEMPOTENCY_MEMORY: &str = "16MiB";
/// Slowloris guard: a client gets this long to send its request headers.
pub const DEFAULT_HEADER_TIMEOUT: &str = "10s";
/// Slow-body guard: a client gets this long to send the body once headers are in.
pub const DEFAULT_BODY_TIMEOUT: &str = "10s";
/// Platica sends about ten headers; proxies may add a few dozen more.
pub const DEFAULT_MAX_HEADERS: &str = "64";
/// Bounds the header block (HTTP/1 read buffer, HTTP/2 header list).
pub const DEFAULT_MAX_HEADER_BYTES: &str = "16KiB";
/// How often readiness asks the upstream's health service.
pub const DEFAULT_READY_INTERVAL: &str = "1s";
/// How often a mounted secret file is re-read (Kubernetes updates them atomically).
pub const DEFAULT_SECRET_RELOAD_INTERVAL: &str = "5s";
/// Time for load balancers to see `/readyz` fail before the listener closes.
pub const DEFAULT_SHUTDOWN_DELAY: &str = "0s";
/// In-flight deliveries finish within one budget; the rest is slack.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "10s";
/// Rotate the fallback journal at this size...
pub const DEFAULT_JOURNAL_MAX_SIZE: &str = "64MiB";
/// ...and keep this many files: at most 256 MiB of journal on disk.
pub const DEFAULT_JOURNAL_MAX_FILES: &str = "4";
/// Open webhook connections (0: no cap). At the cap, idle connections are
/// closed to make room; a new one waits in the backlog while all are busy.
pub const DEFAULT_MAX_CONNECTIONS: &str = "1024";
/// `0`: one worker thread per core, tokio's default.
pub const DEFAULT_WORKER_THREADS: &str = "0";
pub const DEFAULT_LOG_FORMAT: &str = "text";
pub const DEFAULT_LOG: &str = "info";

/// Flags of `flows-bridge serve`; each one also reads its environment variable.
#[derive(Parser, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the webhook listener (host:port).
    #[arg(long, env = ENV_LISTEN, default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Address of the admin listener: /livez, /readyz, /metrics.
    #[arg(long, env = ENV_ADMIN_LISTEN, default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: String,
    /// HTTP path Platica posts webhooks to.
    #[arg(long, env = ENV_PATH, default_value = DEFAULT_PATH)]
    pub path: String,
    /// FlowHandler gRPC address: http://host:port or unix:///path/to/socket.
    #[arg(long, env = ENV_UPSTREAM, default_value = DEFAULT_UPSTREAM)]
    pub upstream: String,
    /// Webhook signing secret(s), comma-separated to accept several during a rotation.
    #[arg(long, env = ENV_SECRET, hide_env_values = true)]
    pub secret: Option<String>,
    /// File (one secret per line) or directory of such files; re-read while running.
    #[arg(long, env = ENV_SECRET_FILE)]
    pub secret_file: Option<PathBuf>,
    /// How often the secret file is re-read.
    #[arg(long, env = ENV_SECRET_RELOAD_INTERVAL, default_value = DEFAULT_SECRET_RELOAD_INTERVAL)]
    pub secret_reload_interval: String,
    /// DEVELOPMENT ONLY: accept unsigned webhooks when no secret is set.
    #[arg(long, env = ENV_INSECURE_SKIP_SIGNATURE, default_value = "false")]
    pub insecure_skip_signature: String,
    /// Time from a webhook's arrival to its reply, handler call included.
    #[arg(long, env = ENV_BUDGET, default_value = DEFAULT_BUDGET)]
    pub budget: String,
    /// Accepted distance between a delivery's timestamp and now; 0 disables the check.
    #[arg(long, env = ENV_TIMESTAMP_TOLERANCE, default_value = DEFAULT_TIMESTAMP_TOLERANCE)]
    pub timestamp_tolerance: String,
    /// Largest accepted request body (e.g. 1MiB, 65536).
    #[arg(long, env = ENV_MAX_BODY, default_value = DEFAULT_MAX_BODY)]
    pub max_body: String,
    /// Concurrent handler calls; past it deliveries get the fallback at once.
    #[arg(long, env = ENV_MAX_IN_FLIGHT, default_value = DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: String,
    /// JSON reply sent when the handler cannot answer in time or correctly.
    #[arg(long, env = ENV_FALLBACK, default_value = DEFAULT_FALLBACK)]
    pub fallback: String,
    /// How long a delivery id's reply is kept to answer duplicates.
    #[arg(long, env = ENV_IDEMPOTENCY_TTL, default_value = DEFAULT_IDEMPOTENCY_TTL)]
    pub idempotency_ttl: String,
    /// Most delivery ids kept for duplicates.
    #[arg(long, env = ENV_IDEMPOTENCY_CAPACITY, default_value = DEFAULT_IDEMPOTENCY_CAPACITY)]
    pub idempotency_capacity: String,
    /// Most memory the kept replies take (e.g. 16MiB).
    #[arg(long, env = ENV_IDEMPOTENCY_MEMORY, default_value = DEFAULT_IDEMPOTENCY_MEMORY)]
    pub idempotency_memory: String,
    /// Time a client has to send its request headers.
    #[arg(long, env = ENV_HEADER_TIMEOUT, default_value = DEFAULT_HEADER_TIMEOUT)]
    pub header_timeout: String,
    /// Time a client has to send its request body.
    #[arg(long, env = ENV_BODY_TIMEOUT, default_value = DEFAULT_BODY_TIMEOUT)]
    pub body_timeout: String,
    /// Most request headers accepted (HTTP/1.1).
    #[arg(long, env = ENV_MAX_HEADERS, default_value = DEFAULT_MAX_HEADERS)]
    pub max_headers: String,
    /// Largest accepted header block (at least 8KiB).
    #[arg(long, env = ENV_MAX_HEADER_BYTES, default_value = DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: String,
    /// How often readiness checks the upstream's gRPC health.
    #[arg(long, env = ENV_READY_INTERVAL, default_value = DEFAULT_READY_INTERVAL)]
    pub ready_interval: String,
    /// On SIGTERM, time between /readyz turning 503 and the listener closing.
    #[arg(long, env = ENV_SHUTDOWN_DELAY, default_value = DEFAULT_SHUTDOWN_DELAY)]
    pub shutdown_delay: String,
    /// On SIGTERM, time allowed for in-flight deliveries to finish after the listener closes.
    #[arg(long, env = ENV_SHUTDOWN_GRACE, default_value = DEFAULT_SHUTDOWN_GRACE)]
    pub shutdown_grace: String,
    /// Most open webhook connections (0: no cap); at the cap idle ones are closed to make room.
    #[arg(long, env = ENV_MAX_CONNECTIONS, default_value = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: String,
    /// Runtime worker threads; 0 means one per core, 1 runs everything on one
    /// thread (the least CPU per delivery). Set it to the pod's CPU share.
    #[arg(long, env = ENV_WORKER_THREADS, default_value = DEFAULT_WORKER_THREADS)]
    pub worker_threads: String,
    /// Append every delivery answered with the fallback to this file (JSON lines); off when unset.
    #[arg(long, env = ENV_JOURNAL)]
    pub journal: Option<PathBuf>,
    /// Rotate the journal when its file reaches this size.
    #[arg(long, env = ENV_JOURNAL_MAX_SIZE, default_value = DEFAULT_JOURNAL_MAX_SIZE)]
    pub journal_max_size: String,
    /// Journal files kept, the current one included.
    #[arg(long, env = ENV_JOURNAL_MAX_FILES, default_value = DEFAULT_JOURNAL_MAX_FILES)]
    pub journal_max_files: String,
    /// Log format: text or json.
    #[arg(long, env = ENV_LOG_FORMAT, default_value = DEFAULT_LOG_FORMAT)]
    pub log_format: String,
    /// Log filter (tracing EnvFilter syntax), e.g. info or flows_bridge=debug.
    #[arg(long, env = ENV_LOG, default_value = DEFAULT_LOG)]
    pub log: String,
}

/// Where the FlowHandler listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// `http://host:port`
    Tcp(http::Uri),
    /// `unix:///path`
    Unix(PathBuf),
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddr::Tcp(uri) => write!(f, "{uri}"),
            UpstreamAddr::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How webhooks are authenticated.
#[derive(Debug, Clone)]
pub enum SignatureMode {
    /// Verify `X-Webhook-Signature` against these secrets; `file` is re-read.
    Verify {
        secrets: Secrets,
        inline: Secrets,
        file: Option<PathBuf>,
    },
    /// Development only: accept every webhook.
    InsecureSkip,
}

/// Validated configuration of `flows-bridge serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub path: String,
    pub upstream: UpstreamAddr,
    pub signature: SignatureMode,
    pub secret_reload_interval: Duration,
    pub budget: Duration,
    /// `None`: the timestamp check is off.
    pub timestamp_tolerance: Option<Duration>,
    pub max_body: usize,
    pub max_in_flight: usize,
    /// The fallback reply, already rendered as JSON.
    pub fallback: Bytes,
    pub idempotency_ttl: Duration,
    pub idempotency_capacity: u64,
    pub idempotency_memory: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub ready_interval: Duration,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    /// `None`: one per core.
    pub worker_threads: Option<usize>,
    /// `None`: no fallback journal.
    pub journal: Option<crate::journal::JournalConfig>,
    pub log_format: LogFormat,
    pub log: String,
}

/// Every invalid setting, each naming its variable.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// hyper refuses HTTP/1 read buffers under 8 KiB.
const MIN_HEADER_BYTES: usize = 8 * 1024;

impl Config {
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();

        let listen = check(&mut errors, ENV_LISTEN, parse_socket_addr(&args.listen));
        let admin_listen = check(
            &mut errors,
            ENV_ADMIN_LISTEN,
            parse_socket_addr(&args.admin_listen),
        );
        let path = check(&mut errors, ENV_PATH, parse_path(&args.path));
        let upstream = check(&mut errors, ENV_UPSTREAM, parse_upstream(&args.upstream));
        let insecure = check(
            &mut errors,
            ENV_INSECURE_SKIP_SIGNATURE,
            parse_bool(&args.insecure_skip_signature),
        );
        let inline = check(
            &mut errors,
            ENV_SECRET,
            Ok(Secrets::from_list(args.secret.as_deref().unwrap_or(""))),
        );
        let from_file = args.secret_file.as_ref().and_then(|path| {
            check(
                &mut errors,
                ENV_SECRET_FILE,
                Secrets::read(path).map_err(|e| e.to_string()),
            )
        });
        let secret_reload_interval = check(
            &mut errors,
            ENV_SECRET_RELOAD_INTERVAL,
            parse_duration(&args.secret_reload_interval).and_then(positive),
        );
        let budget = check(
            &mut errors,
            ENV_BUDGET,
            parse_duration(&args.budget).and_then(positive),
        );
        let timestamp_tolerance = check(
            &mut errors,
            ENV_TIMESTAMP_TOLERANCE,
            parse_duration(&args.timestamp_tolerance),
        );
        let max_body = check(
            &mut errors,
            ENV_MAX_BODY,
            parse_size(&args.max_body).and_then(non_zero),
        );
        let max_in_flight = check(
            &mut errors,
            ENV_MAX_IN_FLIGHT,
            parse_number::<usize>(&args.max_in_flight).and_then(non_zero),
        );
        let fallback = check(
            &mut errors,
            ENV_FALLBACK,
            reply::parse_fallback(&args.fallback),
        );
        let idempotency_ttl = check(
            &mut errors,
            ENV_IDEMPOTENCY_TTL,
            parse_duration(&args.idempotency_ttl).and_then(positive),
        );
        let idempotency_capacity = check(
            &mut errors,
            ENV_IDEMPOTENCY_CAPACITY,
            parse_number::<u64>(&args.idempotency_capacity),
        );
        let idempotency_memory = check(
            &mut errors,
            ENV_IDEMPOTENCY_MEMORY,
            parse_size(&args.idempotency_memory).and_then(non_zero),
        );
        let header_timeout = check(
            &mut errors,
            ENV_HEADER_TIMEOUT,
            parse_duration(&args.header_timeout).and_then(positive),
        );
        let body_timeout = check(
            &mut errors,
            ENV_BODY_TIMEOUT,
            parse_duration(&args.body_timeout).and_then(positive),
        );
        let max_headers = check(
            &mut errors,
            ENV_MAX_HEADERS,
            parse_number::<usize>(&args.max_headers).and_then(non_zero),
        );
        let max_header_bytes = check(
            &mut errors,
            ENV_MAX_HEADER_BYTES,
            parse_size(&args.max_header_bytes).and_then(|n| {
                if n < MIN_HEADER_BYTES {
                    Err(format!("must be at least {MIN_HEADER_BYTES} bytes (8KiB)"))
                } else {
                    Ok(n)
                }
            }),
        );
        let ready_interval = check(
            &mut errors,
            ENV_READY_INTERVAL,
            parse_duration(&args.ready_interval).and_then(positive),
        );
        let shutdown_delay = check(
            &mut errors,
            ENV_SHUTDOWN_DELAY,
            parse_duration(&args.shutdown_delay).map(Option::unwrap_or_default),
        );
        let shutdown_grace = check(
            &mut errors,
            ENV_SHUTDOWN_GRACE,
            parse_duration(&args.shutdown_grace).map(Option::unwrap_or_default),
        );
        let max_connections = check(
            &mut errors,
            ENV_MAX_CONNECTIONS,
            parse_number::<usize>(&args.max_connections),
        );
        let worker_threads = check(
            &mut errors,
            ENV_WORKER_THREADS,
            parse_number::<usize>(&args.worker_threads).map(|n| (n > 0).then_some(n)),
        );
        let journal_max_size = check(
            &mut errors,
            ENV_JOURNAL_MAX_SIZE,
            parse_size(&args.journal_max_size).and_then(non_zero),
        );
        let journal_max_files = check(
            &mut errors,
            ENV_JOURNAL_MAX_FILES,
            parse_number::<usize>(&args.journal_max_files).and_then(non_zero),
        );
        let journal = match (&args.journal, journal_max_size, journal_max_files) {
            (None, _, _) => Some(None),
            (Some(path), Some(size), Some(files)) => Some(Some(crate::journal::JournalConfig {
                path: path.clone(),
                max_file_bytes: size as u64,
                max_files: files,
            })),
            _ => None,
        };
        let log_format = check(
            &mut errors,
            ENV_LOG_FORMAT,
            parse_log_format(&args.log_format),
        );
        let log = check(
            &mut errors,
            ENV_LOG,
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .map(|_| args.log.clone())
                .map_err(|e| e.to_string()),
        );

        let signature = match (inline, from_file, insecure) {
            (Some(inline), from_file, Some(insecure)) => {
                let secrets = inline.merged(from_file.as_ref());
                match (secrets.is_empty(), insecure) {
                    (false, _) => Some(SignatureMode::Verify {
                        secrets,
                        inline,
                        file: args.secret_file.clone(),
                    }),
                    (true, true) => Some(SignatureMode::InsecureSkip),
                    // A file that exists but is empty is already reported by Secrets::read.
                    (true, false) if args.secret_file.is_some() && from_file.is_none() => None,
                    (true, false) => {
                        errors.push(format!(
                            "{ENV_SECRET}: no webhook secret; set {ENV_SECRET} or {ENV_SECRET_FILE} \
                             (or, for local development only, {ENV_INSECURE_SKIP_SIGNATURE}=true)"
                        ));
                        None
                    }
                }
            }
            _ => None,
        };

        if let (Some(Some(tolerance)), Some(ttl)) = (timestamp_tolerance, idempotency_ttl)
            && ttl < tolerance
        {
            {
                errors.push(format!(
                    "{ENV_IDEMPOTENCY_TTL}: must be at least {ENV_TIMESTAMP_TOLERANCE} \
                     ({}), or a replay inside the window would reach the handler twice",
                    humantime::format_duration(tolerance)
                ));
            }
        }
        if let (Some(listen), Some(admin)) = (listen, admin_listen)
            && listen == admin
            && listen.port() != 0
        {
            {
                errors.push(format!(
                    "{ENV_ADMIN_LISTEN}: must differ from {ENV_LISTEN} ({listen})"
                ));
            }
        }

        // Every value was checked above; any `None` has its error recorded.
        let config = (|| {
            Some(Config {
                listen: listen?,
                admin_listen: admin_listen?,
                path: path?,
                upstream: upstream?,
                signature: signature?,
                secret_reload_interval: secret_reload_interval?,
                budget: budget?,
                timestamp_tolerance: timestamp_tolerance?,
                max_body: max_body?,
                max_in_flight: max_in_flight?,
                fallback: fallback?,
                idempotency_ttl: idempotency_ttl?,
                idempotency_capacity: idempotency_capacity?,
                idempotency_memory: idempotency_memory? as u64,
                header_timeout: header_timeout?,
                body_timeout: body_timeout?,
                max_headers: max_headers?,
                max_header_bytes: max_header_bytes?,
                ready_interval: ready_interval?,
                shutdown_delay: shutdown_delay?,
                shutdown_grace: shutdown_grace?,
                max_connections: max_connections?,
                worker_threads: worker_threads?,
                journal: journal?,
                log_format: log_format?,
                log: log?,
            })
        })();
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// Durations take units: `600ms`, `10s`, `5m`, `1h30m`. A bare `0` is zero.
pub fn parse_duration(value: &str) -> Result<Option<Duration>, String> {
    let value = value.trim();
    if value == "0" {
        return Ok(None);
    }
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(d) => Ok(Some(d)),
        Err(e) => Err(format!(
            "{value:?} is not a duration ({e}); use a unit, e.g. 600ms, 10s, 5m"
        )),
    }
}

/// Sizes in bytes, with an optional unit: `65536`, `64KiB`, `1MiB`, `1MB`.
pub fn parse_size(value: &str) -> Result<usize, String> {
    let parsed = bytesize::ByteSize::from_str(value.trim())
        .map_err(|e| format!("{value:?} is not a size ({e}); e.g. 65536, 64KiB, 1MiB"))?;
    usize::try_from(parsed.as_u64()).map_err(|_| format!("{value:?} is too large"))
}

fn parse_number<T: FromStr<Err = std::num::ParseIntError>>(value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|e| format!("{value:?} is not a whole number ({e})"))
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(format!("{value:?} is not true or false")),
    }
}

fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not an address like 0.0.0.0:8080 or [::]:8080"))
}

fn parse_path(value: &str) -> Result<String, String> {
    if value.starts_with('/')
        && value.parse::<http::uri::PathAndQuery>().is_ok()
        && !value.contains('?')
    {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not an absolute path like /webhooks/flows"
        ))
    }
}

pub fn parse_upstream(value: &str) -> Result<UpstreamAddr, String> {
    let value = value.trim();
    if let Some(path) = value.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(UpstreamAddr::Unix(PathBuf::from(path)))
        } else {
            Err(format!(
                "{value:?}: a unix socket needs an absolute path, e.g. unix:///run/app.sock"
            ))
        };
    }
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("{value:?} is not a URI ({e}); e.g. http://127.0.0.1:50051"))?;
    match (uri.scheme_str(), uri.host(), uri.path()) {
        (Some("http"), Some(_), "/" | "") => Ok(UpstreamAddr::Tcp(uri)),
        (Some("https"), _, _) => Err(format!(
            "{value:?}: TLS to the upstream is not supported; the business service is in the same pod, use http://"
        )),
        _ => Err(format!(
            "{value:?} must look like http://host:port or unix:///path"
        )),
    }
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    match value.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?} is not text or json")),
    }
}

/// Keeps a value, or records why it is bad under the variable's name.
fn check<T>(errors: &mut Vec<String>, name: &str, result: Result<T, String>) -> Option<T> {
    result.map_err(|e| errors.push(format!("{name}: {e}"))).ok()
}

fn positive(value: Option<Duration>) -> Result<Duration, String> {
    value.ok_or_else(|| "must be greater than zero".to_owned())
}

fn non_zero<T: Default + PartialEq>(value: T) -> Result<T, String> {
    if value == T::default() {
        Err("must be greater than zero".to_owned())
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(flags: &[&str]) -> Result<Config, ConfigErrors> {
        let mut argv = vec!["flows-bridge"];
        argv.extend_from_slice(flags);
        let cli = Cli::try_parse_from(argv).unwrap();
        Config::from_args(&cli.serve)
    }

    fn errors(flags: &[&str]) -> Vec<String> {
        config(flags).unwrap_err().0
    }

    #[test]
    fn defaults_with_a_secret() {
        let c = config(&["--secret", "s1"]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.admin_listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(c.path, "/");
        assert_eq!(
            c.upstream,
            UpstreamAddr::Tcp("http://127.0.0.1:50051".parse().unwrap())
        );
        assert_eq!(c.budget, Duration::from_millis(600));
        assert_eq!(c.timestamp_tolerance, Some(Duration::from_secs(300)));
        assert_eq!(c.max_body, 1024 * 1024);
        assert_eq!(c.max_in_flight, 1024);
        assert_eq!(&c.fallback[..], br#"{"data":{"acknowledged":true}}"#);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.idempotency_capacity, 10_000);
        assert_eq!(c.idempotency_memory, 16 * 1024 * 1024);
        assert_eq!(c.log_format, LogFormat::Text);
        match c.signature {
            SignatureMode::Verify { secrets, .. } => assert_eq!(secrets.len(), 1),
            SignatureMode::InsecureSkip => panic!("must verify"),
        }
    }

    #[test]
    fn no_secret_no_start() {
        let errs = errors(&[]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains(ENV_SECRET) && errs[0].contains(ENV_SECRET_FILE),
            "{errs:?}"
        );
        assert!(errs[0].contains(ENV_INSECURE_SKIP_SIGNATURE));
    }

    #[test]
    fn insecure_switch_allows_no_secret() {
        let c = config(&["--insecure-skip-signature", "true"]).unwrap();
        assert!(matches!(c.signature, SignatureMode::InsecureSkip));
    }

    #[test]
    fn a_secret_wins_over_the_insecure_switch() {
        let c = config(&["--insecure-skip-signature", "true", "--secret", "x"]).unwrap();
        assert!(matches!(c.signature, SignatureMode::Verify { .. }));
    }

    #[test]
    fn rotation_secrets_are_comma_separated() {
        let c = config(&["--secret", "old, new,,"]).unwrap();
        match c.signature {
            SignatureMode::Verify { secrets, .. } => assert_eq!(secrets.len(), 2),
            SignatureMode::InsecureSkip => panic!("must verify"),
        }
    }

    #[test]
    fn every_bad_value_is_named() {
        let errs = errors(&[
            "--listen",
            "nope",
            "--budget",
            "600",
            "--max-body",
            "lots",
            "--max-in-flight=-1",
            "--fallback",
            r#"{"screen":""}"#,
            "--log-format",
            "xml",
            "--upstream",
            "ftp://x",
            "--max-header-bytes",
            "1KiB",
            "--idempotency-memory",
            "0",
        ]);
        for name in [
            ENV_LISTEN,
            ENV_BUDGET,
            ENV_MAX_BODY,
            ENV_MAX_IN_FLIGHT,
            ENV_FALLBACK,
            ENV_LOG_FORMAT,
            ENV_UPSTREAM,
            ENV_MAX_HEADER_BYTES,
            ENV_IDEMPOTENCY_MEMORY,
            ENV_SECRET,
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(name)),
                "{name} not in {errs:?}"
            );
        }
        assert_eq!(errs.len(), 10, "{errs:?}");
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(
            parse_duration("600ms"),
            Ok(Some(Duration::from_millis(600)))
        );
        assert_eq!(parse_duration("10s"), Ok(Some(Duration::from_secs(10))));
        assert_eq!(parse_duration("5m"), Ok(Some(Duration::from_secs(300))));
        assert_eq!(
            parse_duration("1h 30m"),
            Ok(Some(Duration::from_secs(5400)))
        );
        assert_eq!(parse_duration("0"), Ok(None));
        assert_eq!(parse_duration("0s"), Ok(None));
        for bad in ["600", "", "ms", "-5s", "5 parsecs", "1e9s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        for bad in ["", "lots", "-1", "1.5.5MiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn zero_tolerance_disables_the_timestamp_check() {
        let c = config(&["--secret", "s", "--timestamp-tolerance", "0"]).unwrap();
        assert_eq!(c.timestamp_tolerance, None);
    }

    #[test]
    fn worker_threads_and_connections() {
        let c = config(&["--secret", "s"]).unwrap();
        assert_eq!((c.worker_threads, c.max_connections), (None, 1024));
        let c = config(&[
            "--secret",
            "s",
            "--worker-threads",
            "2",
            "--max-connections",
            "10",
        ])
        .unwrap();
        assert_eq!((c.worker_threads, c.max_connections), (Some(2), 10));
        let errs = errors(&[
            "--secret",
            "s",
            "--worker-threads",
            "two",
            "--max-connections=-1",
        ]);
        assert!(
            errs.iter().any(|e| e.starts_with(ENV_WORKER_THREADS)),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with(ENV_MAX_CONNECTIONS)),
            "{errs:?}"
        );
    }

    #[test]
    fn zero_budget_is_refused() {
        let errs = errors(&["--secret", "s", "--budget", "0ms"]);
        assert!(errs[0].starts_with(ENV_BUDGET), "{errs:?}");
    }

    #[test]
    fn idempotency_ttl_covers_the_replay_window() {
        let errs = errors(&["--secret", "s", "--idempotency-ttl", "1m"]);
        assert!(errs[0].starts_with(ENV_IDEMPOTENCY_TTL), "{errs:?}");
        assert!(
            config(&[
                "--secret",
                "s",
                "--idempotency-ttl",
                "1m",
                "--timestamp-tolerance",
                "30s"
            ])
            .is_ok()
        );
    }

    #[test]
    fn upstream_forms() {
        assert_eq!(
            parse_upstream("unix:///run/app.sock"),
            Ok(UpstreamAddr::Unix("/run/app.sock".into()))
        );
        assert!(parse_upstream("unix://relative.sock").is_err());
        assert!(parse_upstream("https://app:443").is_err());
        assert!(parse_upstream("http://app:50051/some/path").is_err());
        assert!(parse_upstream("127.0.0.1:50051").is_err());
        assert!(matches!(
            parse_upstream("http://[::1]:50051"),
            Ok(UpstreamAddr::Tcp(_))
        ));
    }

    #[test]
    fn paths_must_be_absolute() {
        assert_eq!(
            parse_path("/webhooks/flows"),
            Ok("/webhooks/flows".to_owned())
        );
        assert!(parse_path("webhooks").is_err());
        assert!(parse_path("/a?b=c").is_err());
    }

    #[test]
    fn missing_secret_file_is_named() {
        let errs = errors(&["--secret-file", "/nonexistent/flows-bridge-secret"]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(ENV_SECRET_FILE), "{errs:?}");
    }
}
