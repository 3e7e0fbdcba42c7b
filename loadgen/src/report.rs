//! What loadgen writes: a summary table on standard output, an HdrHistogram interval log, and
//! an SVG plot of throughput and latency percentiles over time.
//!
//! The interval log is the standard format (`HistogramLogProcessor`, HdrHistogram_py's
//! `HistogramLogReader` and HistogramLogAnalyzer read it): one line per interval and latency
//! kind, tagged `request` or `e2e`, values in microseconds, each interval's start relative to
//! the run's start (the log's base time). The SVG is drawn by hand (no plotting dependency):
//! records offered (dashed) and accepted per second above, latency percentiles (log scale,
//! milliseconds) below.

use crate::record::{Interval, Recorder, Totals};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// The percentiles of the summary table and of the plot.
pub const QUANTILES: [(f64, &str); 4] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")];

/// One latency row of the summary, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
            count: h.len(),
        }
    }
}

/// The summary table: what was offered, what was taken, and the latency percentiles.
pub fn summary(title: &str, rec: &Recorder, elapsed: Duration, landed: Option<(u64, u64)>) -> String {
    let Totals {
        requests,
        accepted,
        accepted_good,
        refused,
        errors,
    } = rec.totals();
    let mut s = String::new();
    let _ = writeln!(s, "{title}");
    let secs = elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        s,
        "requests {requests}, records accepted {accepted} ({:.0}/s over {:.1} s), refused {refused}, errors {errors}",
        accepted as f64 / secs,
        secs
    );
    let _ = writeln!(
        s,
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "latency ms", "p50", "p90", "p99", "p99.9", "max", "count"
    );
    let mut row = |name: &str, h: &Histogram<u64>| {
        if h.is_empty() {
            let _ = writeln!(s, "{name:<12} {:>10}", "-");
            return;
        }
        let p = Percentiles::of(h);
        let _ = writeln!(
            s,
            "{name:<12} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10}",
            p.p50, p.p90, p.p99, p.p999, p.max, p.count
        );
    };
    row("request", &rec.request_histogram());
    row("end-to-end", &rec.e2e_histogram());
    if let Some((landed, good)) = landed {
        let _ = writeln!(
            s,
            "landed in the lake: {landed} of the {good} good records accepted{}",
            if landed == good { "" } else { "  (MISSING RECORDS)" }
        );
    } else {
        let _ = writeln!(
            s,
            "end-to-end: not measured (no local lake given); {accepted_good} good records accepted"
        );
    }
    s
}

/// The interval log of `rec`, started at wall time `started`.
pub fn interval_log(rec: &Recorder, started: SystemTime) -> String {
    let mut out = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment("loadgen latencies in microseconds from each request's due time")
            .add_comment("tags: request = until the target answered; e2e = until durable in the lake's ETL zone")
            .with_start_time(started)
            .with_base_time(started)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut out, &mut ser)
            .expect("writing to memory");
        let step = rec.interval();
        for (i, iv) in rec.intervals().iter().enumerate() {
            for (tag, h) in [("request", &iv.request), ("e2e", &iv.e2e)] {
                if !h.is_empty() {
                    w.write_histogram(h, step * i as u32, step, Tag::new(tag))
                        .expect("a histogram serializes to memory");
                }
            }
        }
    }
    String::from_utf8(out).expect("the log is text")
}

const W: f64 = 960.0;
const H: f64 = 600.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 150.0;
/// Latency axis bounds (ms): 0.1 ms to 100 s, log scale.
const LAT_MIN_MS: f64 = 0.1;
const LAT_MAX_MS: f64 = 100_000.0;

fn polyline(points: &[(f64, f64)], color: &str, dash: &str) -> String {
    let mut s =
        format!(r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}" points=""#);
    for (x, y) in points {
        let _ = write!(s, "{x:.1},{y:.1} ");
    }
    s.push_str("\"/>\n");
    s
}

/// Throughput (records accepted per second) and latency percentiles over time, as SVG.
pub fn plot(title: &str, rec: &Recorder) -> String {
    let ivs = rec.intervals();
    let step_s = rec.interval().as_secs_f64();
    let n = ivs.len().max(1) as f64;
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * (i as f64 + 0.5) / n;
    let (top0, top1, bot0, bot1) = (40.0, 220.0, 270.0, H - 40.0);
    let peak = ivs.iter().map(|i| i.accepted.max(i.offered)).max().unwrap_or(0).max(1) as f64 / step_s;
    let y_rate = |r: f64| top1 - (top1 - top0) * r / peak;
    let y_lat = |ms: f64| {
        let f =
            (ms.clamp(LAT_MIN_MS, LAT_MAX_MS).log10() - LAT_MIN_MS.log10()) / (LAT_MAX_MS.log10() - LAT_MIN_MS.log10());
        bot1 - (bot1 - bot0) * f
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="14">{}</text>
"#,
        escape(title)
    );
    // Axes, grid and labels.
    for (y0, y1) in [(top0, top1), (bot0, bot1)] {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y0}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            W - LEFT - RIGHT,
            y1 - y0
        );
    }
    for f in [0.0, 0.5, 1.0] {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"#,
            LEFT - 6.0,
            y_rate(peak * f) + 4.0,
            peak * f
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="10" y="{}" transform="rotate(-90 14 {})">records/s</text>"#,
        top1 - 40.0,
        top1 - 40.0
    );
    let mut ms = LAT_MIN_MS;
    while ms <= LAT_MAX_MS {
        let y = y_lat(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{ms}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
        ms *= 10.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="10" y="{}" transform="rotate(-90 14 {})">latency ms (log)</text>"#,
        bot1 - 60.0,
        bot1 - 60.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since start ({} s intervals; latency by due time)</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 10.0,
        step_s
    );
    let t_end = n * step_s;
    for f in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}</text>"#,
            LEFT + (W - LEFT - RIGHT) * f,
            bot1 + 14.0,
            t_end * f
        );
    }
    // Offered (the schedule) and accepted (throughput).
    for (name, dash, pick) in [
        ("offered", "6 3", (|i: &Interval| i.offered) as fn(&Interval) -> u64),
        ("accepted", "", |i: &Interval| i.accepted),
    ] {
        let pts: Vec<(f64, f64)> = ivs
            .iter()
            .enumerate()
            .map(|(i, iv)| (x(i), y_rate(pick(iv) as f64 / step_s)))
            .collect();
        s.push_str(&polyline(&pts, "#1f77b4", dash));
        let ly = if dash.is_empty() { top0 + 26.0 } else { top0 + 10.0 };
        let _ = writeln!(
            s,
            r##"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="#1f77b4" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{name}/s</text>"##,
            W - RIGHT + 8.0,
            W - RIGHT + 30.0,
            W - RIGHT + 34.0,
            ly + 4.0
        );
    }
    // Latency percentiles: request solid, end-to-end dashed.
    let colors = ["#2ca02c", "#ff7f0e", "#d62728", "#9467bd"];
    let mut legend = 0.0;
    for (kind, dash, pick) in [
        (
            "request",
            "",
            (|i: &Interval| &i.request) as fn(&Interval) -> &Histogram<u64>,
        ),
        ("e2e", "6 3", |i: &Interval| &i.e2e),
    ] {
        for ((q, name), color) in QUANTILES.iter().zip(colors) {
            let pts: Vec<(f64, f64)> = ivs
                .iter()
                .enumerate()
                .filter(|(_, iv)| !pick(iv).is_empty())
                .map(|(i, iv)| (x(i), y_lat(pick(iv).value_at_quantile(*q) as f64 / 1000.0)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            s.push_str(&polyline(&pts, color, dash));
            let ly = bot0 + 10.0 + legend;
            let _ = writeln!(
                s,
                r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{kind} {name}</text>"#,
                W - RIGHT + 8.0,
                W - RIGHT + 30.0,
                W - RIGHT + 34.0,
                ly + 4.0
            );
            legend += 16.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Answer;

    fn recorder() -> Recorder {
        let mut r = Recorder::new(Duration::from_secs(1));
        for i in 0..100u64 {
            let due = i * 50_000_000;
            r.request(
                due,
                due + 2_000_000 + i * 10_000,
                Answer {
                    accepted: 10,
                    accepted_good: 10,
                    ..Answer::default()
                },
            );
            r.e2e(due, 900_000 + i);
        }
        r
    }

    #[test]
    fn the_summary_states_rates_and_percentiles() {
        let s = summary("t", &recorder(), Duration::from_secs(5), Some((100, 100)));
        assert!(s.contains("records accepted 1000 (200/s over 5.0 s)"), "{s}");
        // 100 requests of 2.00–2.99 ms: p50 about 2.5 ms.
        let row = s.lines().find(|l| l.starts_with("request ")).unwrap();
        let p50: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!((2.4..2.6).contains(&p50), "{row}");
        assert!(s.contains("landed in the lake: 100 of the 100"), "{s}");
        let short = summary("t", &recorder(), Duration::from_secs(5), Some((90, 100)));
        assert!(short.contains("MISSING RECORDS"), "{short}");
    }

    #[test]
    fn the_interval_log_round_trips() {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        let log = interval_log(&recorder(), SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let mut tags = std::collections::HashMap::new();
        for e in IntervalLogIterator::new(log.as_bytes()) {
            if let LogEntry::Interval(i) = e.unwrap() {
                *tags.entry(i.tag().unwrap().as_str().to_string()).or_insert(0) += 1;
            }
        }
        // 100 requests 50 ms apart: five one-second intervals of each kind.
        assert_eq!(tags["request"], 5);
        assert_eq!(tags["e2e"], 5);
    }

    #[test]
    fn the_plot_is_svg_with_a_line_per_series() {
        let svg = plot("run", &recorder());
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Offered and accepted, plus four percentiles of each latency kind.
        assert_eq!(svg.matches("<polyline").count(), 10);
        assert!(svg.contains(">offered/s<") && svg.contains(">accepted/s<"));
    }
}
