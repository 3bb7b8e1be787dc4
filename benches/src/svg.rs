//! Just enough SVG for the report's plots: grouped (optionally stacked) bars
//! and panels of lines on a logarithmic axis. No fonts or libraries needed.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// One value per group (bars) or per x position (lines); `None` = absent.
    pub values: Vec<Option<f64>>,
    /// Bars only: a lighter segment stacked on top of each value.
    pub stacked: Vec<Option<f64>>,
}

const W: f64 = 900.0;
const FONT: &str = "font-family=\"sans-serif\"";

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" viewBox=\"0 0 {W} {height}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\" {FONT}>{}</text>\n",
        W / 2.0,
        esc(title)
    )
}

/// A "nice" upper bound and tick step for a linear axis.
fn nice(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 0.2);
    }
    let magnitude = 10f64.powf(max.log10().floor());
    let step = [0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0]
        .iter()
        .map(|f| f * magnitude)
        .find(|s| max / s <= 6.0)
        .unwrap_or(magnitude);
    ((max / step).ceil() * step, step)
}

fn format_value(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn legend(out: &mut String, series: &[Series], y: f64, note: Option<&str>) {
    let mut x = 80.0;
    for s in series {
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"13\" {FONT}>{}</text>",
            y - 11.0,
            s.color,
            x + 20.0,
            y,
            esc(&s.name)
        );
        x += 30.0 + 7.5 * s.name.len() as f64;
    }
    if let Some(note) = note {
        let _ = writeln!(
            out,
            "<text x=\"{x}\" y=\"{y}\" font-size=\"12\" fill=\"#555\" {FONT}>{}</text>",
            esc(note)
        );
    }
}

/// Grouped bars on a linear axis, one group per label, one bar per series.
pub fn bars(
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[Series],
    note: Option<&str>,
) -> String {
    let height = 420.0;
    let (left, right, top, bottom) = (80.0, W - 20.0, 50.0, height - 70.0);
    let max = series
        .iter()
        .flat_map(|s| {
            s.values
                .iter()
                .zip(s.stacked.iter().chain(std::iter::repeat(&None)))
                .map(|(v, st)| v.unwrap_or(0.0) + st.unwrap_or(0.0))
        })
        .fold(0.0, f64::max);
    let (top_value, step) = nice(max * 1.1);
    let y = |v: f64| bottom - (bottom - top) * v / top_value;
    let mut out = header(height, title);
    let mut tick = 0.0;
    while tick <= top_value + step / 2.0 {
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" x2=\"{right}\" y1=\"{0}\" y2=\"{0}\" stroke=\"#ddd\"/><text x=\"{1}\" y=\"{2}\" text-anchor=\"end\" font-size=\"11\" {FONT}>{3}</text>",
            y(tick),
            left - 6.0,
            y(tick) + 4.0,
            format_value(tick)
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        "<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\" {FONT}>{}</text>",
        (top + bottom) / 2.0,
        esc(y_label)
    );
    let group_w = (right - left) / groups.len().max(1) as f64;
    let bar_w = group_w * 0.8 / series.len().max(1) as f64;
    for (g, label) in groups.iter().enumerate() {
        let gx = left + group_w * g as f64 + group_w * 0.1;
        for (i, s) in series.iter().enumerate() {
            let x = gx + bar_w * i as f64;
            let Some(v) = s.values.get(g).copied().flatten() else {
                continue;
            };
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                y(v),
                bar_w - 2.0,
                bottom - y(v),
                s.color
            );
            let mut total = v;
            if let Some(extra) = s.stacked.get(g).copied().flatten() {
                total += extra;
                let _ = writeln!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"0.35\"/>",
                    y(total),
                    bar_w - 2.0,
                    y(v) - y(total),
                    s.color
                );
            }
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" {FONT}>{}</text>",
                x + (bar_w - 2.0) / 2.0,
                y(total) - 3.0,
                format_value(total)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" {FONT}>{}</text>",
            gx + group_w * 0.4,
            bottom + 18.0,
            esc(label)
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{left}\" x2=\"{right}\" y1=\"{bottom}\" y2=\"{bottom}\" stroke=\"#333\"/>"
    );
    legend(&mut out, series, height - 20.0, note);
    out.push_str("</svg>\n");
    out
}

/// Panels side by side, each with lines over the same x labels, on a shared
/// logarithmic y axis.
pub fn log_lines(
    title: &str,
    y_label: &str,
    x_labels: &[&str],
    panels: &[(String, Vec<Series>)],
    note: Option<&str>,
) -> String {
    let height = 440.0;
    let (left, right, top, bottom) = (80.0, W - 20.0, 60.0, height - 80.0);
    let values = panels
        .iter()
        .flat_map(|(_, series)| {
            series
                .iter()
                .flat_map(|s| s.values.iter().flatten().copied())
        })
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi <= 0.0 { (1.0, 10.0) } else { (lo, hi) };
    let lo_exp = lo.log10().floor();
    let hi_exp = hi.log10().ceil().max(lo_exp + 1.0);
    let y = |v: f64| bottom - (bottom - top) * (v.max(1e-9).log10() - lo_exp) / (hi_exp - lo_exp);
    let mut out = header(height, title);
    let mut exp = lo_exp;
    while exp <= hi_exp {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powf(exp);
            if v.log10() > hi_exp + 1e-9 {
                break;
            }
            let major = m == 1.0;
            let _ = writeln!(
                out,
                "<line x1=\"{left}\" x2=\"{right}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"{1}\"/><text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\" font-size=\"11\" {FONT}>{4}</text>",
                y(v),
                if major { "#ccc" } else { "#eee" },
                left - 6.0,
                y(v) + 4.0,
                format_value(v)
            );
        }
        exp += 1.0;
    }
    let _ = writeln!(
        out,
        "<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\" {FONT}>{}</text>",
        (top + bottom) / 2.0,
        esc(y_label)
    );
    let panel_w = (right - left) / panels.len().max(1) as f64;
    for (p, (panel_title, series)) in panels.iter().enumerate() {
        let px = left + panel_w * p as f64;
        let _ = writeln!(
            out,
            "<rect x=\"{px:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#999\"/>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" {FONT}>{}</text>",
            panel_w,
            bottom - top,
            px + panel_w / 2.0,
            top - 8.0,
            esc(panel_title)
        );
        let step = panel_w / x_labels.len().max(1) as f64;
        let x = |i: usize| px + step * (i as f64 + 0.5);
        for (i, label) in x_labels.iter().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" {FONT}>{}</text>",
                x(i),
                bottom + 16.0,
                esc(label)
            );
        }
        for s in series {
            let points: Vec<String> = s
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
                .collect();
            let _ = writeln!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
                points.join(" "),
                s.color
            );
            for point in &points {
                let (cx, cy) = point.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    out,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{}\"/>",
                    s.color
                );
            }
        }
    }
    let all: Vec<Series> = panels
        .first()
        .map(|(_, series)| {
            series
                .iter()
                .map(|s| Series {
                    name: s.name.clone(),
                    color: s.color,
                    values: vec![],
                    stacked: vec![],
                })
                .collect()
        })
        .unwrap_or_default();
    legend(&mut out, &all, height - 22.0, note);
    out.push_str("</svg>\n");
    out
}
