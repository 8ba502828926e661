//! weft's desired state: the typed Kubernetes objects everything else works on, and the pure logic
//! around them. Sources (the embedded store, the Kubernetes API) produce [`Object`]s; manifests are
//! parsed and validated here ([`manifest`]); the cluster's shape and address ranges live in
//! [`config`] with the one CIDR type ([`cidr`]); label selection is done once, in [`selector`]; and
//! the Deployment controller's decision ([`deployment`]) is a pure function. No I/O happens in this
//! crate apart from [`manifest::read_files`] reading the files it is given.

pub mod annotations;
pub mod cidr;
pub mod config;
pub mod daemonset;
pub mod defaults;
pub mod deployment;
pub mod endpoints;
pub mod ingress_class;
pub mod manifest;
pub mod names;
pub mod node;
pub mod object;
pub mod pod;
pub mod selector;
pub mod service;
pub mod time;

/// The `k8s-openapi` this crate is built on, so every part uses the same object types.
pub use k8s_openapi;

pub use cidr::{CidrError, Ipv4Cidr};
pub use config::{ClusterConfig, ClusterName, ConfigError};
pub use manifest::ManifestError;
pub use object::{Object, ObjectError, ObjectKey, OtherObject};
