//! weft's Ingress controller and proxy. [`routes`] compiles the cluster view's Ingresses,
//! IngressClasses, Services and EndpointSlices into a route table (pure); [`proxy`] serves it
//! with hyper (and `h1`, a path of its own for bodiless HTTP/1.1 requests), straight to the
//! ready endpoint pods; [`run`] is `weft ingress`, the process that
//! keeps the table current and writes each served Ingress's address into its status.

mod h1;
pub mod issuer;
pub mod metrics;
pub mod options;
pub mod proxy;
pub mod routes;
pub mod run;
pub mod tls;

pub use routes::{compile, RouteTable, Settings};
