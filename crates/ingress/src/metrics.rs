//! What the ingress controller counts, in the Prometheus text format at `/metrics` on its
//! health port (10254, ingress-nginx's): requests by Ingress, Service and status code, their
//! duration as a histogram per Ingress, upstream errors by reason, and the route table's
//! compiles (count, last duration, Ingresses served, problems). Names are weft's own
//! (`weft_ingress_*`), labels as ingress-nginx's (`namespace`, `ingress`, `service`, `status`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use weft_view::metrics::escape;

/// Upper bounds of the duration buckets, in seconds (Prometheus's client defaults).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Who a request was for (empty strings for the proxy's own answers, without a route): made
/// once per route when the table is compiled, shared by its requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    /// `namespace-service-port`, as ingress-nginx names upstreams in its access log.
    pub upstream: String,
}

#[derive(Default)]
struct Histogram {
    /// Not cumulative; summed when rendered.
    buckets: [u64; BUCKETS.len()],
    over: u64,
    sum: f64,
    count: u64,
}

/// One Target's counts.
#[derive(Default)]
struct Counts {
    /// (status, requests), few.
    statuses: Vec<(u16, u64)>,
    duration: Histogram,
}

/// How many request-count shards there are: each thread counts into its own (so the proxy's
/// worker threads never wait for each other's lock, nor wake each other through the kernel),
/// and `/metrics` sums them.
const SHARDS: usize = 8;

#[derive(Default)]
pub struct Metrics {
    /// By target (its Arc shared with the routes: no copy per request), one map per shard.
    requests: [Mutex<FxHashMap<Arc<Target>, Counts>>; SHARDS],
    upstream_errors: Mutex<BTreeMap<(Target, &'static str), u64>>,
    compiles: AtomicU64,
    compile_nanos: AtomicU64,
    served: AtomicU64,
    problems: AtomicU64,
}

impl Metrics {
    pub fn request(&self, target: &Arc<Target>, status: u16, took: Duration) {
        let mut requests = lock(&self.requests[shard()]);
        let counts = match requests.get_mut(target) {
            Some(c) => c,
            None => requests.entry(target.clone()).or_default(),
        };
        counts.status(status, 1);
        let h = &mut counts.duration;
        let secs = took.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => h.buckets[i] += 1,
            None => h.over += 1,
        }
        h.sum += secs;
        h.count += 1;
    }

    /// An upstream that could not be used: `connect`, `timeout` or `broken`.
    pub fn upstream_error(&self, target: &Target, reason: &'static str) {
        *lock(&self.upstream_errors)
            .entry((target.clone(), reason))
            .or_default() += 1;
    }

    pub fn compiled(&self, took: Duration, served: usize, problems: usize) {
        self.compiles.fetch_add(1, Ordering::Relaxed);
        self.compile_nanos.store(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.served.store(served as u64, Ordering::Relaxed);
        self.problems.store(problems as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let labels = |t: &Target| {
            format!(
                "namespace=\"{}\",ingress=\"{}\",service=\"{}\"",
                escape(&t.namespace),
                escape(&t.ingress),
                escape(&t.service)
            )
        };
        // The shards summed, sorted for a stable exposition; several targets of one Ingress
        // (its services) sum into its histogram.
        let mut requests: BTreeMap<Arc<Target>, Counts> = BTreeMap::new();
        for shard in &self.requests {
            for (t, c) in lock(shard).iter() {
                requests.entry(t.clone()).or_default().add(c);
            }
        }
        let targets: Vec<(&Arc<Target>, &Counts)> = requests.iter().collect();
        out.push_str("# HELP weft_ingress_requests_total Requests answered, by Ingress, Service and status code.\n# TYPE weft_ingress_requests_total counter\n");
        let mut by_status: BTreeMap<(String, u16), u64> = BTreeMap::new();
        for (t, c) in &targets {
            for (status, n) in &c.statuses {
                *by_status.entry((labels(t), *status)).or_default() += n;
            }
        }
        for ((l, status), n) in by_status {
            let _ = writeln!(
                out,
                "weft_ingress_requests_total{{{l},status=\"{status}\"}} {n}"
            );
        }
        let mut histograms: BTreeMap<(String, String), Histogram> = BTreeMap::new();
        for (t, c) in &targets {
            let h = histograms
                .entry((t.namespace.clone(), t.ingress.clone()))
                .or_default();
            h.add(&c.duration);
        }
        out.push_str("# HELP weft_ingress_request_duration_seconds Time from the request to the response head, by Ingress.\n# TYPE weft_ingress_request_duration_seconds histogram\n");
        for ((ns, ing), h) in histograms.iter() {
            let l = format!("namespace=\"{}\",ingress=\"{}\"", escape(ns), escape(ing));
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "weft_ingress_request_duration_seconds_bucket{{{l},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "weft_ingress_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}\nweft_ingress_request_duration_seconds_sum{{{l}}} {}\nweft_ingress_request_duration_seconds_count{{{l}}} {}",
                h.count, h.sum, h.count
            );
        }
        out.push_str("# HELP weft_ingress_upstream_errors_total Backend endpoints that could not be used, by reason (connect, timeout, broken).\n# TYPE weft_ingress_upstream_errors_total counter\n");
        for ((t, reason), n) in lock(&self.upstream_errors).iter() {
            let _ = writeln!(
                out,
                "weft_ingress_upstream_errors_total{{{},reason=\"{reason}\"}} {n}",
                labels(t)
            );
        }
        let _ = write!(
            out,
            "# HELP weft_ingress_route_table_compiles_total Route tables compiled and swapped in.\n# TYPE weft_ingress_route_table_compiles_total counter\nweft_ingress_route_table_compiles_total {}\n\
             # HELP weft_ingress_route_table_compile_seconds How long the last compile took.\n# TYPE weft_ingress_route_table_compile_seconds gauge\nweft_ingress_route_table_compile_seconds {}\n\
             # HELP weft_ingress_ingresses Ingresses served.\n# TYPE weft_ingress_ingresses gauge\nweft_ingress_ingresses {}\n\
             # HELP weft_ingress_problems Problems of the served Ingresses (see weft describe ingress).\n# TYPE weft_ingress_problems gauge\nweft_ingress_problems {}\n",
            self.compiles.load(Ordering::Relaxed),
            self.compile_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            self.served.load(Ordering::Relaxed),
            self.problems.load(Ordering::Relaxed),
        );
        out
    }
}

impl Histogram {
    fn add(&mut self, other: &Histogram) {
        for (mine, n) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += n;
        }
        self.over += other.over;
        self.sum += other.sum;
        self.count += other.count;
    }
}

impl Counts {
    fn status(&mut self, status: u16, n: u64) {
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, mine)) => *mine += n,
            None => self.statuses.push((status, n)),
        }
    }

    fn add(&mut self, other: &Counts) {
        for (status, n) in &other.statuses {
            self.status(*status, *n);
        }
        self.duration.add(&other.duration);
    }
}

/// This thread's shard of the request counts, given out in turn as threads first count.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        let t = Arc::new(Target {
            namespace: "default".into(),
            ingress: "web".into(),
            service: "web".into(),
            upstream: "default-web-80".into(),
        });
        m.request(&t, 200, Duration::from_millis(3));
        m.request(&t, 200, Duration::from_millis(30));
        m.request(&t, 503, Duration::from_secs(20));
        m.upstream_error(&t, "connect");
        m.compiled(Duration::from_millis(2), 1, 0);
        let text = m.render();
        for line in [
            "weft_ingress_requests_total{namespace=\"default\",ingress=\"web\",service=\"web\",status=\"200\"} 2",
            "weft_ingress_requests_total{namespace=\"default\",ingress=\"web\",service=\"web\",status=\"503\"} 1",
            "weft_ingress_request_duration_seconds_bucket{namespace=\"default\",ingress=\"web\",le=\"0.005\"} 1",
            "weft_ingress_request_duration_seconds_bucket{namespace=\"default\",ingress=\"web\",le=\"0.05\"} 2",
            "weft_ingress_request_duration_seconds_bucket{namespace=\"default\",ingress=\"web\",le=\"+Inf\"} 3",
            "weft_ingress_request_duration_seconds_count{namespace=\"default\",ingress=\"web\"} 3",
            "weft_ingress_upstream_errors_total{namespace=\"default\",ingress=\"web\",service=\"web\",reason=\"connect\"} 1",
            "weft_ingress_ingresses 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }
}
