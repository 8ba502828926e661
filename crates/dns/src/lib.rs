//! weft's cluster DNS. [`zone`] compiles the records of the Kubernetes DNS-Based Service
//! Discovery specification (schema 1.1.0) from Services, EndpointSlices and Pods: pure, a
//! [`zone::Zone`] out, swapped whole when the cluster changes. [`zone::Zone::lookup`] answers
//! one question from it, negative answers included.

pub mod forward;
pub mod lookups;
pub mod master;
pub mod metrics;
pub mod run;
pub mod server;
pub mod udp;
pub mod zone;

pub use zone::{Answer, Data, Record, Zone, ZoneConfig};
