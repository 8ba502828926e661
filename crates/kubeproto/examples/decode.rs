//! Prints the JSON of Kubernetes protobuf bodies saved to files (e.g. captured from kubectl):
//! `cargo run -p weft-kubeproto --example decode -- body.bin...`

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for path in std::env::args().skip(1) {
        let result = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|body| weft_kubeproto::decode(&body).map_err(|e| e.to_string()));
        match result {
            Ok(json) => println!("{path}: {json}"),
            Err(e) => {
                eprintln!("{path}: {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
