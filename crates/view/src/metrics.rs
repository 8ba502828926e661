//! What a weft process counts, in the Prometheus text format (version 0.0.4), served at
//! `/metrics` on its health port ([`route`]): every reconciler it hosts (its syncs by outcome
//! and their durations, recorded by [`crate::reconciler::run`]), and families of the process's
//! own, written with [`Family`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::health::Route;

/// The text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written: its `# HELP` and `# TYPE` lines once, then samples.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl<'a> Family<'a> {
    /// Starts family `name` of `kind` (`counter`, `gauge`, `histogram`) in `out`.
    pub fn new(out: &'a mut String, name: &'a str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family { out, name }
    }

    /// A sample of the family with `labels`.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.line("", labels, None, value);
    }

    /// A histogram's samples: cumulative buckets, `+Inf`, sum and count.
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            self.line(
                "_bucket",
                labels,
                Some(&bound.to_string()),
                cumulative as f64,
            );
        }
        self.line("_bucket", labels, Some("+Inf"), h.count as f64);
        self.line("_sum", labels, None, h.sum);
        self.line("_count", labels, None, h.count as f64);
    }

    fn line(&mut self, suffix: &str, labels: &[(&str, &str)], le: Option<&str>, value: f64) {
        let out = &mut *self.out;
        out.push_str(self.name);
        out.push_str(suffix);
        let le = le.map(|b| ("le", b));
        let mut all = labels.iter().copied().chain(le).peekable();
        if all.peek().is_some() {
            out.push('{');
            for (i, (k, v)) in all.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

/// A label value as the text format wants it.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Observations counted into buckets with upper bounds `bounds` (non-cumulative here).
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

/// Bounds of the sync duration buckets, in seconds: a label change applies in about a
/// millisecond, a whole policy table at 1,000 x 1,000 in about a tenth of a second.
const SYNC_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

struct Syncs {
    ok: u64,
    failed: u64,
    duration: Histogram,
}

/// The process's reconcilers' syncs, by reconciler name.
static SYNCS: Mutex<BTreeMap<&'static str, Syncs>> = Mutex::new(BTreeMap::new());

/// Records one sync of reconciler `name`.
pub fn record_sync(name: &'static str, ok: bool, took: Duration) {
    let mut syncs = SYNCS.lock().unwrap_or_else(|e| e.into_inner());
    let s = syncs.entry(name).or_insert_with(|| Syncs {
        ok: 0,
        failed: 0,
        duration: Histogram::new(SYNC_BOUNDS),
    });
    if ok {
        s.ok += 1;
    } else {
        s.failed += 1;
    }
    s.duration.observe(took.as_secs_f64());
}

/// The reconcilers' families: `weft_reconciler_syncs_total{reconciler,result}` and
/// `weft_reconciler_sync_duration_seconds{reconciler}`.
pub fn render_reconcilers(out: &mut String) {
    let syncs = SYNCS.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = Family::new(
        out,
        "weft_reconciler_syncs_total",
        "counter",
        "Syncs of each reconciler (compile from the cluster view, apply), by result.",
    );
    for (name, s) in syncs.iter() {
        f.sample(&[("reconciler", name), ("result", "ok")], s.ok as f64);
        f.sample(
            &[("reconciler", name), ("result", "error")],
            s.failed as f64,
        );
    }
    let mut f = Family::new(
        out,
        "weft_reconciler_sync_duration_seconds",
        "histogram",
        "How long each reconciler's syncs took.",
    );
    for (name, s) in syncs.iter() {
        f.histogram(&[("reconciler", name)], &s.duration);
    }
}

/// `GET /metrics` for a health server: the reconcilers' families, then what `extra` writes.
pub fn route(extra: impl Fn(&mut String) + Send + Sync + 'static) -> Route {
    Route {
        path: "/metrics",
        content_type: CONTENT_TYPE,
        answer: Arc::new(move |_: &str| {
            let mut out = String::new();
            render_reconcilers(&mut out);
            extra(&mut out);
            ("200 OK", out)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_write_help_type_labels_and_histograms() {
        let mut out = String::new();
        let mut f = Family::new(&mut out, "weft_x_total", "counter", "Xs.");
        f.sample(&[("a", "q\"uote"), ("b", "2")], 3.0);
        f.sample(&[], 1.5);
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let mut f = Family::new(&mut out, "weft_y_seconds", "histogram", "Ys.");
        f.histogram(&[("r", "net")], &h);
        assert_eq!(
            out,
            "# HELP weft_x_total Xs.\n# TYPE weft_x_total counter\n\
             weft_x_total{a=\"q\\\"uote\",b=\"2\"} 3\nweft_x_total 1.5\n\
             # HELP weft_y_seconds Ys.\n# TYPE weft_y_seconds histogram\n\
             weft_y_seconds_bucket{r=\"net\",le=\"0.1\"} 1\n\
             weft_y_seconds_bucket{r=\"net\",le=\"1\"} 2\n\
             weft_y_seconds_bucket{r=\"net\",le=\"+Inf\"} 3\n\
             weft_y_seconds_sum{r=\"net\"} 7.55\nweft_y_seconds_count{r=\"net\"} 3\n"
        );
    }

    #[test]
    fn syncs_are_counted_by_reconciler_and_result() {
        record_sync("metrics-test", true, Duration::from_millis(2));
        record_sync("metrics-test", false, Duration::from_millis(30));
        let mut out = String::new();
        render_reconcilers(&mut out);
        for want in [
            "weft_reconciler_syncs_total{reconciler=\"metrics-test\",result=\"ok\"} 1",
            "weft_reconciler_syncs_total{reconciler=\"metrics-test\",result=\"error\"} 1",
            "weft_reconciler_sync_duration_seconds_bucket{reconciler=\"metrics-test\",le=\"0.0025\"} 1",
            "weft_reconciler_sync_duration_seconds_count{reconciler=\"metrics-test\"} 2",
        ] {
            assert!(out.lines().any(|l| l == want), "{want}\n{out}");
        }
    }
}
