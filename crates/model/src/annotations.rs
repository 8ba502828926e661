//! The annotations weft writes to tell users why something does not work, read back by
//! `weft describe` and the tests: one definition each.

/// On a Service: why its EndpointSlices are empty or partial (no matching pods, a named
/// targetPort no pod has).
pub const ENDPOINTS_PROBLEM: &str = "endpoints.weft.dev/problem";

/// On a LoadBalancer Service: why it has no address (pool exhausted, requested address taken).
pub const LB_PROBLEM: &str = "loadbalancer.weft.dev/problem";
