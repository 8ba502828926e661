//! Generates the schema table the decoder walks (`$OUT_DIR/schema.rs`): for every Kubernetes
//! protobuf message, its fields' numbers, types and JSON names, and the (apiVersion, kind) of
//! every top-level object. Nothing generated is committed: the facts come from the sources of two
//! crates.io dependencies, read from cargo's registry at build time.

mod emit;
mod locate;
mod model;
mod openapi;
mod pb;

use std::env;
use std::fs;
use std::path::PathBuf;

use locate::Wanted;

/// The k8s-openapi module whose JSON names we use: the Kubernetes version the lab serves.
/// Keep in step with the `v1_34` feature the workspace enables.
const OPENAPI_VERSION_MODULE: &str = "v1_34";

fn main() {
    println!("cargo:rerun-if-changed=build");
    let pb_dir = locate::find(&Wanted {
        name: "k8s-pb",
        version_prefix: "0.9.",
        override_var: "WEFT_KUBEPROTO_K8S_PB_DIR",
    });
    let openapi_dir = locate::find(&Wanted {
        name: "k8s-openapi",
        version_prefix: "0.29.",
        override_var: "WEFT_KUBEPROTO_K8S_OPENAPI_DIR",
    });
    let pb = pb::parse(&pb_dir);
    let openapi = openapi::parse(&openapi_dir.join("src").join(OPENAPI_VERSION_MODULE));
    let value_fields =
        fs::read_to_string("build/value_fields.txt").expect("reading build/value_fields.txt");
    let schema = model::build(&pb, &openapi, &value_fields);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("schema.rs");
    fs::write(&out, emit::render(&schema))
        .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
