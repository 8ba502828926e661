//! What the DNS server counts, in the Prometheus text format on :9153 (CoreDNS's port): requests
//! by type and response code, the time to answer as a histogram, the cache of upstream answers
//! (hits, misses, entries) and the questions forwarded upstream and the failures. Scraped by the same
//! Prometheus that scrapes CoreDNS; the names are weft's own (`weft_dns_*`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds (CoreDNS's, from 0.25 ms doubling to 8 s).
const BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

#[derive(Default)]
pub struct Metrics {
    /// (type, rcode) -> requests.
    requests: Mutex<BTreeMap<(String, String), u64>>,
    /// Requests answered within each bucket's bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    /// Requests slower than the last bound.
    over: AtomicU64,
    sum_nanos: AtomicU64,
    count: AtomicU64,
    /// Records in the zone being served.
    records: AtomicU64,
    /// Cache hits: [positive, negative].
    cache_hits: [AtomicU64; 2],
    cache_misses: AtomicU64,
    cache_entries: AtomicU64,
    /// Upstream -> questions sent to it.
    forwards: Mutex<BTreeMap<String, u64>>,
    /// (upstream, reason) -> questions it did not answer.
    forward_failures: Mutex<BTreeMap<(String, String), u64>>,
    /// Questions refused a turn upstream: too many were waiting already.
    forward_overloaded: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, qtype: &str, rcode: &str, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((qtype.to_string(), rcode.to_string()))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_records(&self, n: usize) {
        self.records
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn cache_hit(&self, negative: bool) {
        self.cache_hits[usize::from(negative)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_cache_entries(&self, n: usize) {
        self.cache_entries
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn forward_request(&self, to: std::net::SocketAddr) {
        *self
            .forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(to.to_string())
            .or_default() += 1;
    }

    pub fn forward_failure(&self, to: std::net::SocketAddr, reason: &str) {
        *self
            .forward_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((to.to_string(), reason.to_string()))
            .or_default() += 1;
    }

    pub fn forward_overloaded(&self) {
        self.forward_overloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of everything counted so far.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP weft_dns_requests_total DNS requests answered, by query type and response code.\n");
        out.push_str("# TYPE weft_dns_requests_total counter\n");
        for ((qtype, rcode), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "weft_dns_requests_total{{type=\"{qtype}\",rcode=\"{rcode}\"}} {n}"
            );
        }
        out.push_str("# HELP weft_dns_request_duration_seconds Time from a request's arrival to its answer.\n");
        out.push_str("# TYPE weft_dns_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "weft_dns_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "weft_dns_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "weft_dns_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "weft_dns_request_duration_seconds_count {count}");
        out.push_str("# HELP weft_dns_zone_records Records in the zone being served.\n");
        out.push_str("# TYPE weft_dns_zone_records gauge\n");
        let _ = writeln!(
            out,
            "weft_dns_zone_records {}",
            self.records.load(Ordering::Relaxed)
        );
        out.push_str("# HELP weft_dns_cache_hits_total Questions answered from the cache of upstream answers, by kind (success, denial).\n");
        out.push_str("# TYPE weft_dns_cache_hits_total counter\n");
        for (kind, n) in ["success", "denial"].iter().zip(&self.cache_hits) {
            let _ = writeln!(
                out,
                "weft_dns_cache_hits_total{{type=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP weft_dns_cache_misses_total Questions for names outside the cluster not in the cache.\n");
        out.push_str("# TYPE weft_dns_cache_misses_total counter\n");
        let _ = writeln!(
            out,
            "weft_dns_cache_misses_total {}",
            self.cache_misses.load(Ordering::Relaxed)
        );
        out.push_str("# HELP weft_dns_cache_entries Upstream answers in the cache.\n");
        out.push_str("# TYPE weft_dns_cache_entries gauge\n");
        let _ = writeln!(
            out,
            "weft_dns_cache_entries {}",
            self.cache_entries.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP weft_dns_forward_requests_total Questions sent to an upstream resolver.\n",
        );
        out.push_str("# TYPE weft_dns_forward_requests_total counter\n");
        for (to, n) in self
            .forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "weft_dns_forward_requests_total{{to=\"{to}\"}} {n}");
        }
        out.push_str("# HELP weft_dns_forward_failures_total Questions an upstream resolver did not answer, by reason (timeout, error, bad_answer).\n");
        out.push_str("# TYPE weft_dns_forward_failures_total counter\n");
        for ((to, reason), n) in self
            .forward_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "weft_dns_forward_failures_total{{to=\"{to}\",reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP weft_dns_forward_overloaded_total Questions answered SERVFAIL without asking upstream: too many were waiting for it.\n");
        out.push_str("# TYPE weft_dns_forward_overloaded_total counter\n");
        let _ = writeln!(
            out,
            "weft_dns_forward_overloaded_total {}",
            self.forward_overloaded.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_type_and_rcode_and_buckets_cumulatively() {
        let m = Metrics::default();
        m.observe("A", "NOERROR", Duration::from_micros(100));
        m.observe("A", "NOERROR", Duration::from_millis(3));
        m.observe("AAAA", "NXDOMAIN", Duration::from_secs(10));
        m.set_records(42);
        let text = m.render();
        assert!(
            text.contains("weft_dns_requests_total{type=\"A\",rcode=\"NOERROR\"} 2"),
            "{text}"
        );
        assert!(text.contains("weft_dns_requests_total{type=\"AAAA\",rcode=\"NXDOMAIN\"} 1"));
        assert!(text.contains("weft_dns_request_duration_seconds_bucket{le=\"0.00025\"} 1"));
        assert!(text.contains("weft_dns_request_duration_seconds_bucket{le=\"0.004\"} 2"));
        assert!(text.contains("weft_dns_request_duration_seconds_bucket{le=\"8.192\"} 2"));
        assert!(text.contains("weft_dns_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("weft_dns_request_duration_seconds_count 3"));
        assert!(text.contains("weft_dns_zone_records 42"));
    }

    #[test]
    fn counts_the_cache_and_the_upstreams() {
        let m = Metrics::default();
        let up: std::net::SocketAddr = "203.0.113.10:53".parse().unwrap();
        m.cache_miss();
        m.forward_request(up);
        m.forward_request(up);
        m.forward_failure(up, "timeout");
        m.cache_hit(false);
        m.cache_hit(true);
        m.cache_hit(true);
        m.set_cache_entries(7);
        let text = m.render();
        for line in [
            "weft_dns_cache_hits_total{type=\"success\"} 1",
            "weft_dns_cache_hits_total{type=\"denial\"} 2",
            "weft_dns_cache_misses_total 1",
            "weft_dns_cache_entries 7",
            "weft_dns_forward_requests_total{to=\"203.0.113.10:53\"} 2",
            "weft_dns_forward_failures_total{to=\"203.0.113.10:53\",reason=\"timeout\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
