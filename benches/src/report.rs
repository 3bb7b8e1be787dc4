//! Tables (Markdown) and plots (SVG) from a run's results, and the results
//! section of benches/README.md between its markers.

use std::{fmt::Write, fs, path::Path};

use crate::{
    run::{Results, Run, only},
    svg::{self, Series},
};

pub const BEGIN: &str = "<!-- results:begin (written by `benches/run`; do not edit by hand) -->";
pub const END: &str = "<!-- results:end -->";

const CONFIGS: [(&str, &str, &str); 3] = [
    ("direct", "direct gRPC (floor)", "#7f7f7f"),
    ("bridge", "flows-bridge", "#1f77b4"),
    ("envoy", "Envoy transcoder", "#ff7f0e"),
];

fn find<'a>(runs: &'a [Run], config: &str, load: &str) -> Option<&'a Run> {
    runs.iter().find(|r| r.config == config && r.load == load)
}

fn loads(results: &Results) -> Vec<String> {
    let mut loads: Vec<String> = Vec::new();
    for run in &results.runs {
        if !loads.contains(&run.load) {
            loads.push(run.load.clone());
        }
    }
    loads
}

fn load_title(load: &str) -> String {
    if let Some(c) = load.strip_prefix('c') {
        format!("{c} connection{}", if c == "1" { "" } else { "s" })
    } else if let Some(rate) = load.strip_prefix("rate") {
        format!("{rate} req/s fixed rate")
    } else {
        load.to_owned()
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

fn outcomes(run: &Run) -> String {
    run.result
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One target's verdict.
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

pub fn verdicts(results: &Results) -> Vec<Verdict> {
    let runs = &results.runs;
    let rps = |config: &str, load: &str| find(runs, config, load).map(|r| r.result.rps);
    let cpu = |config: &str, load: &str| find(runs, config, load).and_then(|r| r.proxy_cpu_us);
    let mut out = Vec::new();
    for load in ["c16", "c64"] {
        let r = ratio(rps("bridge", load), rps("envoy", load));
        out.push(Verdict {
            target: format!("throughput at {}: ≥ 2× Envoy's", load_title(load)),
            measured: format!("{}×", opt(r, 2)),
            met: r.map(|r| r >= 2.0),
        });
    }
    for load in loads(results) {
        let r = ratio(cpu("bridge", &load), cpu("envoy", &load));
        out.push(Verdict {
            target: format!(
                "bridge CPU per request, {}: ≤ 0.4× Envoy's",
                load_title(&load)
            ),
            measured: format!(
                "{}× ({} vs {} µs)",
                opt(r, 2),
                opt(cpu("bridge", &load), 1),
                opt(cpu("envoy", &load), 1)
            ),
            met: r.map(|r| r <= 0.4),
        });
    }
    let lat = |config, f: fn(&Run) -> f64| find(runs, config, "c1").map(f);
    let p50 = |r: &Run| r.result.latency_us.p50;
    let p99 = |r: &Run| r.result.latency_us.p99;
    for (name, f, limit) in [("p50", p50 as fn(&Run) -> f64, 100.0), ("p99", p99, 250.0)] {
        let added = lat("bridge", f).zip(lat("direct", f)).map(|(b, d)| b - d);
        out.push(Verdict {
            target: format!(
                "added latency over the direct call at 1 connection, {name}: ≤ {limit} µs"
            ),
            measured: format!(
                "{} µs ({} vs {} µs)",
                opt(added, 1),
                opt(lat("bridge", f), 1),
                opt(lat("direct", f), 1)
            ),
            met: added.map(|a| a <= limit),
        });
    }
    let rss = |config| find(runs, config, "c64").and_then(|r| mib(r.proxy_rss_kib));
    let r = ratio(rss("bridge"), rss("envoy"));
    out.push(Verdict {
        target: "peak RSS at 64 connections: ≤ 1/6 of Envoy's".into(),
        measured: format!(
            "1/{} ({} vs {} MiB)",
            opt(r.map(|r| 1.0 / r), 1),
            opt(rss("bridge"), 1),
            opt(rss("envoy"), 1)
        ),
        met: r.map(|r| r <= 1.0 / 6.0),
    });
    let slow = results
        .fallback
        .iter()
        .find(|r| r.config == "bridge" && r.load.starts_with("slow"));
    if let Some(slow) = slow {
        let l = &slow.result.latency_us;
        let all_fallback = only(slow, &["fallback"]) && slow.result.measured > 0;
        let within = l.min >= 595_000.0 && l.max <= 605_000.0;
        out.push(Verdict {
            target: "handler slower than the budget: fallback at 600 ± 5 ms, 100% 200 with the fallback JSON".into(),
            measured: format!(
                "{} of {} fallback; {:.1}–{:.1} ms (p50 {:.1}, p99.9 {:.1})",
                slow.result.count("fallback"),
                slow.result.measured,
                l.min / 1000.0,
                l.max / 1000.0,
                l.p50 / 1000.0,
                l.p999 / 1000.0
            ),
            met: Some(all_fallback && within),
        });
    }
    // At the fixed rate when measured (latency), else flat out.
    let down = results
        .fallback
        .iter()
        .find(|r| r.config == "bridge" && r.load.starts_with("down_rate"))
        .or_else(|| {
            results
                .fallback
                .iter()
                .find(|r| r.config == "bridge" && r.load.starts_with("down"))
        });
    if let Some(down) = down {
        let p99 = down.result.latency_us.p99;
        let all_fallback = only(down, &["fallback"]) && down.result.measured > 0;
        out.push(Verdict {
            target: format!(
                "handler down: fallback p99 < 2 ms ({})",
                load_title(down.load.trim_start_matches("down_"))
            ),
            measured: format!(
                "p99 {:.3} ms, {} of {} fallback",
                p99 / 1000.0,
                down.result.count("fallback"),
                down.result.measured
            ),
            met: Some(all_fallback && p99 < 2000.0),
        });
    }
    out
}

pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let m = &results.machine;
    let s = &results.settings;
    let _ = writeln!(md, "### The run\n");
    let _ = writeln!(
        md,
        "- {}; commit `{}`; {}{}.",
        m.date,
        m.commit,
        if s.smoke {
            "**smoke run (too short to mean anything)**; "
        } else {
            ""
        },
        s.command
    );
    let _ = writeln!(
        md,
        "- Machine: {} × {}, {:.0} GiB, {}. Load generator, handler and proxies share these {} cores (no pinning).",
        m.cores, m.cpu, m.memory_gib, m.kernel, m.cores
    );
    let _ = writeln!(
        md,
        "- Load average (1, 5, 15 min) before: {:.2} {:.2} {:.2}; after: {:.2} {:.2} {:.2}.",
        m.load_before[0],
        m.load_before[1],
        m.load_before[2],
        m.load_after[0],
        m.load_after[1],
        m.load_after[2]
    );
    let _ = writeln!(
        md,
        "- {}; `{}`; {}.",
        m.rustc, m.bridge_version, m.envoy_version
    );
    let _ = writeln!(
        md,
        "- Each point: {:.1} s warm-up, then {:.1} s measured. Closed model: N keep-alive HTTP/1.1 connections (the floor: N concurrent calls on one HTTP/2 channel). Open model: {:.0} req/s on a schedule over {} connections, latency counted from the scheduled send time. Fallback runs: {} connections, {:.1} s.",
        s.warmup_s,
        s.window_s,
        s.rate,
        s.open_connections,
        s.fallback_connections,
        s.fallback_window_s
    );
    let _ = writeln!(
        md,
        "- flows-bridge: `FLOWS_BRIDGE_WORKER_THREADS={}`, `MALLOC_ARENA_MAX=2`, `GLIBC_TUNABLES=glibc.malloc.tcache_count=200` (the manifests' settings), JSON logs at info (one line per delivery, to a file), metrics, HMAC, freshness, idempotency cache. Envoy: `--concurrency {}`, no access log, **does not verify the HMAC and receives proto JSON** (it does less work).\n",
        s.bridge_worker_threads, s.envoy_concurrency
    );

    let _ = writeln!(md, "### Throughput, latency, CPU and memory\n");
    let _ = writeln!(
        md,
        "| load | configuration | req/s | × floor | × Envoy | p50 µs | p90 µs | p99 µs | p99.9 µs | proxy CPU µs/req | handler CPU µs/req | generator CPU µs/req | proxy peak RSS MiB | outcomes |"
    );
    let _ = writeln!(
        md,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    );
    for load in loads(results) {
        let floor = find(&results.runs, "direct", &load).map(|r| r.result.rps);
        let envoy = find(&results.runs, "envoy", &load).map(|r| r.result.rps);
        for (config, name, _) in CONFIGS {
            let Some(run) = find(&results.runs, config, &load) else {
                continue;
            };
            let l = &run.result.latency_us;
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {} | {} |",
                load_title(&load),
                name,
                run.result.rps,
                opt(ratio(Some(run.result.rps), floor), 2),
                if config == "envoy" {
                    "1.00".into()
                } else {
                    opt(ratio(Some(run.result.rps), envoy), 2)
                },
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                opt(run.proxy_cpu_us, 1),
                opt(run.handler_cpu_us, 1),
                run.loadgen_cpu_us,
                opt(mib(run.proxy_rss_kib), 1),
                outcomes(run)
            );
        }
    }
    let _ = writeln!(
        md,
        "\nEnvoy transcoder: **does not verify the HMAC, check freshness, de-duplicate or log per request, and receives the `ExchangeRequest` as proto JSON** rather than Platica's delivery: it does less work per request than flows-bridge. Both proxies get the same worker threads (`--concurrency {}`, `FLOWS_BRIDGE_WORKER_THREADS={}`, the manifests' setting) on the same two cores, shared with the handler and the load generator.",
        s.envoy_concurrency, s.bridge_worker_threads
    );
    let rate_lag = results
        .runs
        .iter()
        .filter_map(|r| r.result.send_lag_us.as_ref().map(|lag| (r, lag)))
        .map(|(r, lag)| format!("{} p50 {:.0} µs / p99 {:.0} µs", r.config, lag.p50, lag.p99))
        .collect::<Vec<_>>()
        .join("; ");
    if !rate_lag.is_empty() {
        let _ = writeln!(
            md,
            "\nFixed-rate latencies include the generator's own lateness in sending (its pacing thread sleeps; included, not subtracted): {rate_lag}."
        );
    }

    let _ = writeln!(md, "\n### Added latency over the direct call, and ratios\n");
    let _ = writeln!(
        md,
        "| load | proxy | + p50 µs | + p90 µs | + p99 µs | + p99.9 µs | req/s vs Envoy | CPU vs Envoy |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|");
    for load in loads(results) {
        let direct = find(&results.runs, "direct", &load);
        let envoy = find(&results.runs, "envoy", &load);
        for (config, name, _) in &CONFIGS[1..] {
            let (Some(run), Some(direct)) = (find(&results.runs, config, &load), direct) else {
                continue;
            };
            let (l, d) = (&run.result.latency_us, &direct.result.latency_us);
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
                load_title(&load),
                name,
                l.p50 - d.p50,
                l.p90 - d.p90,
                l.p99 - d.p99,
                l.p999 - d.p999,
                opt(ratio(Some(run.result.rps), envoy.map(|e| e.result.rps)), 2),
                opt(
                    ratio(run.proxy_cpu_us, envoy.and_then(|e| e.proxy_cpu_us)),
                    2
                ),
            );
        }
    }

    let _ = writeln!(md, "\n### Targets\n");
    let _ = writeln!(md, "| target | measured (same run) | met |");
    let _ = writeln!(md, "|---|---|---|");
    for v in verdicts(results) {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(md, "| {} | {} | {} |", v.target, v.measured, met);
    }
    let anon = |config| find(&results.runs, config, "c64").and_then(|r| mib(r.proxy_anon_kib));
    if let (Some(bridge), Some(envoy)) = (anon("bridge"), anon("envoy")) {
        let _ = writeln!(
            md,
            "\nNot a target, for sizing: at the end of the 64-connection run the bridge's own (anonymous) memory was {bridge:.1} MiB and Envoy's {envoy:.1} MiB (1/{:.1}). The rest of each peak RSS is the pages of the binary and its libraries, which every process of the same image on a node shares.",
            envoy / bridge
        );
    }

    let _ = writeln!(md, "\n### Fallback path\n");
    let _ = writeln!(
        md,
        "| case | configuration | answered | p50 ms | p99 ms | p99.9 ms | min ms | max ms | proxy CPU µs/req | handler CPU µs/req |"
    );
    let _ = writeln!(md, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|");
    for run in &results.fallback {
        let load = run
            .load
            .trim_start_matches("slow_")
            .trim_start_matches("down_");
        let case = if run.load.starts_with("slow") {
            format!(
                "handler sleeps {} ms (budget 600 ms), {}",
                s.slow_handler_ms,
                load_title(load)
            )
        } else {
            format!("handler down (connection refused), {}", load_title(load))
        };
        let name = CONFIGS
            .iter()
            .find(|(c, _, _)| *c == run.config)
            .map_or(run.config.as_str(), |(_, n, _)| n);
        let l = &run.result.latency_us;
        let _ = writeln!(
            md,
            "| {case} | {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            outcomes(run),
            l.p50 / 1000.0,
            l.p99 / 1000.0,
            l.p999 / 1000.0,
            l.min / 1000.0,
            l.max / 1000.0,
            opt(run.proxy_cpu_us, 1),
            opt(run.handler_cpu_us, 1),
        );
    }
    let _ = writeln!(
        md,
        "\n`fallback` = 200 with `{}`; Envoy answers its route timeout with a 504 and an unreachable cluster with a 503.",
        flows_bridge::config::DEFAULT_FALLBACK
    );

    let _ = writeln!(md, "\n### Start-up and size\n");
    let _ = writeln!(
        md,
        "| | spawn → ready (median ms) | spawn → first reply (median ms) | runs | binary | stripped |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|");
    for st in &results.startup {
        let bin = results.binaries.iter().find(|b| b.name == st.name);
        let size =
            |b: Option<u64>| b.map_or("–".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {} | {} | {} |",
            st.name,
            median(&st.to_ready_ms),
            median(&st.to_first_reply_ms),
            st.to_ready_ms.len(),
            size(bin.map(|b| b.bytes)),
            size(bin.and_then(|b| b.stripped_bytes)),
        );
    }
    let _ = writeln!(
        md,
        "\nReady: flows-bridge's `/readyz` (which waits for the handler's health check), Envoy's `/ready`."
    );
    md
}

fn plots(results: &Results, out: &Path) -> Result<(), String> {
    let loads = loads(results);
    let closed: Vec<&String> = loads.iter().filter(|l| l.starts_with('c')).collect();
    let series = |f: &dyn Fn(&Run) -> Option<f64>,
                  stacked: &dyn Fn(&Run) -> Option<f64>,
                  loads: &[&String]|
     -> Vec<Series> {
        CONFIGS
            .iter()
            .map(|(config, name, color)| Series {
                name: (*name).into(),
                color,
                values: loads
                    .iter()
                    .map(|l| find(&results.runs, config, l).and_then(f))
                    .collect(),
                stacked: loads
                    .iter()
                    .map(|l| find(&results.runs, config, l).and_then(stacked))
                    .collect(),
            })
            .collect()
    };
    let note = format!(
        "{} · load avg {:.2}{}",
        results.machine.date,
        results.machine.load_before[0],
        if results.settings.smoke {
            " · SMOKE"
        } else {
            ""
        }
    );
    let throughput = svg::bars(
        "Throughput (closed model), seed delivery, 2 shared cores",
        "requests per second",
        &closed.iter().map(|l| load_title(l)).collect::<Vec<_>>(),
        &series(&|r| Some(r.result.rps), &|_| None, &closed),
        Some(&note),
    );
    let all: Vec<&String> = loads.iter().collect();
    let cpu = svg::bars(
        "CPU per request: proxy (solid) + handler (light)",
        "CPU µs per request",
        &all.iter().map(|l| load_title(l)).collect::<Vec<_>>(),
        &series(
            &|r| r.proxy_cpu_us.or(Some(0.0)),
            &|r| r.handler_cpu_us,
            &all,
        ),
        Some(&note),
    );
    let panels: Vec<(String, Vec<Series>)> = loads
        .iter()
        .map(|load| {
            let series = CONFIGS
                .iter()
                .map(|(config, name, color)| {
                    let run = find(&results.runs, config, load);
                    Series {
                        name: (*name).into(),
                        color,
                        values: match run {
                            Some(r) => {
                                let l = &r.result.latency_us;
                                vec![Some(l.p50), Some(l.p90), Some(l.p99), Some(l.p999)]
                            }
                            None => vec![],
                        },
                        stacked: vec![],
                    }
                })
                .collect();
            (load_title(load), series)
        })
        .collect();
    let latency = svg::log_lines(
        "Latency percentiles per configuration (µs, log scale)",
        "latency µs",
        &["p50", "p90", "p99", "p99.9"],
        &panels,
        Some(&note),
    );
    for (name, text) in [
        ("throughput.svg", throughput),
        ("latency.svg", latency),
        ("cpu.svg", cpu),
    ] {
        fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Writes results.json, results.md and the plots into `out`, and the tables
/// into `readme` between the markers.
pub fn write(results: &Results, out: &Path, readme: Option<&Path>) -> Result<(), String> {
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(results).map_err(|e| e.to_string())?;
    fs::write(out.join("results.json"), json + "\n").map_err(|e| e.to_string())?;
    let md = markdown(results);
    fs::write(out.join("results.md"), &md).map_err(|e| e.to_string())?;
    plots(results, out)?;
    if let Some(readme) = readme {
        let text = fs::read_to_string(readme).map_err(|e| format!("{}: {e}", readme.display()))?;
        let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
            return Err(format!(
                "{}: the results markers are missing",
                readme.display()
            ));
        };
        let updated = format!("{}{BEGIN}\n\n{md}\n{}", &text[..begin], &text[end..]);
        fs::write(readme, updated).map_err(|e| e.to_string())?;
    }
    eprintln!("\n{md}");
    Ok(())
}
