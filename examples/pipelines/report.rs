//! Reporting for the pipelines demo: percentiles, the comparison table, the
//! targets block and the SVG plot.

use super::*;

pub(super) fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(super) fn fmt_d(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

pub(super) fn fmt_mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

pub(super) struct Summary {
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    /// The longest append that overlapped a checkpoint.
    max_in_cp: Duration,
    /// With `--sched`: the same, less the time the writer waited for a CPU.
    max_in_cp_on_cpu: Option<Duration>,
    cp_mean: Duration,
    cp_max: Duration,
    cp_n: usize,
    blocked: Duration,
    blocked_n: usize,
    max_lag: Duration,
    peak_rss: u64,
    /// The state's size in memory, where measured.
    state: Option<u64>,
}

pub(super) fn summarize(r: &Run, state: Option<u64>) -> Summary {
    let mut l: Vec<Duration> = r.samples.iter().map(|s| s.1).collect();
    l.sort_unstable();
    let blocked: Vec<Duration> = l.iter().copied().filter(|d| *d > BLOCKED).collect();
    let cp: Vec<Duration> = r.checkpoints.iter().map(|c| c.1).collect();
    let in_cp = |(t, d): &(Duration, Duration)| {
        r.checkpoints
            .iter()
            .any(|(cs, cd)| *t <= *cs + *cd && *t + *d >= *cs)
    };
    let max_in_cp = r
        .samples
        .iter()
        .filter(|s| in_cp(s))
        .map(|s| s.1)
        .max()
        .unwrap_or_default();
    let max_in_cp_on_cpu = (!r.waits.is_empty()).then(|| {
        r.samples
            .iter()
            .zip(&r.waits)
            .filter(|(s, _)| in_cp(s))
            .map(|(s, w)| s.1.saturating_sub(*w))
            .max()
            .unwrap_or_default()
    });
    Summary {
        p50: pct(&l, 0.5),
        p99: pct(&l, 0.99),
        p999: pct(&l, 0.999),
        max: l.last().copied().unwrap_or_default(),
        max_in_cp,
        max_in_cp_on_cpu,
        cp_mean: if cp.is_empty() {
            Duration::ZERO
        } else {
            cp.iter().sum::<Duration>() / cp.len() as u32
        },
        cp_max: cp.iter().max().copied().unwrap_or_default(),
        cp_n: cp.len(),
        blocked: blocked.iter().sum(),
        blocked_n: blocked.len(),
        max_lag: r.max_lag,
        peak_rss: r.peak_rss,
        state,
    }
}

/// A ratio with about three significant digits.
pub(super) fn fmt_x(r: f64) -> String {
    match r {
        r if r < 10.0 => format!("{r:.2}x"),
        r if r < 100.0 => format!("{r:.1}x"),
        r => format!("{r:.0}x"),
    }
}

pub(super) fn ratio_f(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// A table cell.
pub(super) enum Cell {
    D(Duration),
    N(usize),
    Text(String),
}

pub(super) type Row = (&'static str, fn(&Summary) -> Cell);

pub(super) const ROWS: [Row; 15] = [
    ("append p50", |s| Cell::D(s.p50)),
    ("append p99", |s| Cell::D(s.p99)),
    ("append p99.9", |s| Cell::D(s.p999)),
    ("append max", |s| Cell::D(s.max)),
    ("append max during checkpoints", |s| Cell::D(s.max_in_cp)),
    ("  less run-queue wait (--sched)", |s| {
        Cell::Text(s.max_in_cp_on_cpu.map_or_else(|| "-".into(), fmt_d))
    }),
    ("max lag behind schedule", |s| Cell::D(s.max_lag)),
    ("checkpoints", |s| Cell::N(s.cp_n)),
    ("checkpoint mean", |s| Cell::D(s.cp_mean)),
    ("checkpoint max", |s| Cell::D(s.cp_max)),
    ("appends > 1 ms", |s| Cell::N(s.blocked_n)),
    ("writer blocked (sum > 1 ms)", |s| Cell::D(s.blocked)),
    ("peak RSS", |s| Cell::Text(fmt_mb(s.peak_rss))),
    ("state in memory", |s| {
        Cell::Text(s.state.map_or_else(|| "-".into(), fmt_mb))
    }),
    ("peak RSS / state", |s| {
        let r = s.state.and_then(|st| ratio_f(s.peak_rss as f64, st as f64));
        Cell::Text(r.map_or_else(|| "-".into(), fmt_x))
    }),
];

pub(super) fn print_table(runs: &[(&Run, Summary)]) {
    let mut head = format!("{:<31}", "");
    for (r, _) in runs {
        let _ = write!(head, "{:>17}", r.name);
    }
    println!("{head}");
    let sched = runs.iter().any(|(_, s)| s.max_in_cp_on_cpu.is_some());
    for (label, f) in ROWS {
        if label.ends_with("(--sched)") && !sched {
            continue;
        }
        let mut line = format!("{label:<31}");
        for (_, s) in runs {
            let text = match f(s) {
                Cell::D(d) => fmt_d(d),
                Cell::N(n) => n.to_string(),
                Cell::Text(t) => t,
            };
            let _ = write!(line, "{text:>17}");
        }
        println!("{line}");
    }
}

/// The issue's targets, for each snapwal state that ran: the measured ratio, the
/// target and whether it is met.
pub(super) fn print_targets(
    runs: &[(&Run, Summary)],
    kinds: &[(Kind, usize)],
    small: &[(Kind, usize)],
) {
    let find =
        |k: Kind, of: &[(Kind, usize)]| of.iter().find(|(x, _)| *x == k).map(|x| &runs[x.1].1);
    let base = find(Kind::Baseline, kinds);
    let states = [Kind::Imbl, Kind::Plain];
    let mut head = format!("{:<50}", "targets");
    for k in states {
        let _ = write!(head, "{:>17}", k.name());
    }
    println!("{head}");
    type Measure<'a> = Box<dyn Fn(Kind, &Summary) -> Option<(f64, bool)> + 'a>;
    let lines: [(&str, Measure); 5] = [
        (
            "append p50 / baseline's (<= 1.3x)",
            Box::new(|_, s| {
                let r = ratio_f(s.p50.as_secs_f64(), base?.p50.as_secs_f64())?;
                Some((r, r <= 1.3))
            }),
        ),
        (
            "append p99.9 / baseline's (<= 1.0x)",
            Box::new(|_, s| {
                let r = ratio_f(s.p999.as_secs_f64(), base?.p999.as_secs_f64())?;
                Some((r, r <= 1.0))
            }),
        ),
        (
            "baseline's / max during checkpoints (>= 100x)",
            Box::new(|_, s| {
                let r = ratio_f(base?.max_in_cp.as_secs_f64(), s.max_in_cp.as_secs_f64())?;
                Some((r, r >= 100.0))
            }),
        ),
        (
            "p99.9 at this N / at N=100 (<= 1.3x, --compare-n)",
            Box::new(|k, s| {
                let r = ratio_f(s.p999.as_secs_f64(), find(k, small)?.p999.as_secs_f64())?;
                Some((r, r <= 1.3))
            }),
        ),
        (
            "peak RSS / state (<= 1.5x imbl, <= 3x plain)",
            Box::new(|k, s| {
                let r = ratio_f(s.peak_rss as f64, s.state? as f64)?;
                Some((r, r <= if k == Kind::Imbl { 1.5 } else { 3.0 }))
            }),
        ),
    ];
    for (label, m) in &lines {
        let mut line = format!("{label:<50}");
        for k in states {
            let cell = find(k, kinds).and_then(|s| m(k, s)).map_or_else(
                || "-".to_string(),
                |(r, ok)| format!("{r:.2}x {}", if ok { "met" } else { "MISSED" }),
            );
            let _ = write!(line, "{cell:>17}");
        }
        println!("{line}");
    }
}

/// Hand-written SVG: append latency over time (log y), the maximum per 20 ms bucket
/// as a line and each checkpoint as a band along the bottom.
pub(super) fn write_svg(path: &Path, runs: &[&Run], seconds: u64) -> std::io::Result<()> {
    const W: f64 = 960.0;
    const H: f64 = 480.0;
    const L: f64 = 70.0;
    const R: f64 = 20.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    let (lo, hi) = (1e-6f64.log10(), 10f64.log10());
    let x = |t: f64| L + (W - L - R) * (t / seconds as f64).clamp(0.0, 1.0);
    let y = |d: f64| {
        let v = d.max(1e-6).log10().clamp(lo, hi);
        T + (H - T - B) * (1.0 - (v - lo) / (hi - lo))
    };
    let colors = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e"];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{L}" y="22" font-size="15">Append latency over time (max per 20 ms, log scale); checkpoints every second</text>"#
    );
    let labels = [
        "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s", "10 s",
    ];
    for (k, label) in labels.iter().enumerate() {
        let v = 10f64.powi(k as i32 - 6);
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - R,
            L - 6.0,
            yy + 4.0
        );
    }
    for sec in 0..=seconds {
        let xx = x(sec as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{T}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{sec}</text>"##,
            H - B,
            H - B + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds</text>"#,
        (L + W - R) / 2.0,
        H - 12.0
    );
    for (i, r) in runs.iter().enumerate() {
        let color = colors[i % colors.len()];
        let bucket = 0.02;
        let n = (seconds as f64 / bucket).ceil() as usize + 1;
        let mut max = vec![0f64; n];
        for (t, d) in &r.samples {
            let b = ((t.as_secs_f64() / bucket) as usize).min(n - 1);
            max[b] = max[b].max(d.as_secs_f64());
        }
        let mut pts = String::new();
        for (b, m) in max.iter().enumerate() {
            if *m > 0.0 {
                let _ = write!(pts, "{:.1},{:.1} ", x(b as f64 * bucket), y(*m));
            }
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{pts}"/>"#
        );
        let band = H - B - 6.0 - 5.0 * i as f64;
        for (start, d) in &r.checkpoints {
            let x0 = x(start.as_secs_f64());
            let x1 = x(start.as_secs_f64() + d.as_secs_f64()).max(x0 + 1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{band:.1}" width="{:.1}" height="4" fill="{color}" opacity="0.5"/>"#,
                x1 - x0
            );
        }
        let ly = T + 18.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            W - R - 230.0,
            W - R - 210.0,
            W - R - 204.0,
            ly + 4.0,
            r.name
        );
    }
    let _ = writeln!(s, "</svg>");
    std::fs::write(path, s)
}
