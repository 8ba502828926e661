//! Bodies kubectl v1.34.5 really sent. Each `tests/kubectl/<command>.bin` is the body of the
//! POST that `kubectl <command>` made (captured by a local HTTPS endpoint that saved request
//! bodies), and `<command>.json` is what `kubectl <command> --dry-run=client -o json` printed
//! for the same command: the JSON the client would have sent. Decoding one must give the other.

use std::fs;
use std::path::Path;

use serde_json::Value;

#[test]
fn captured_kubectl_bodies_decode_to_kubectls_own_json() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubectl");
    let mut checked = 0;
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    entries.sort();
    for bin in entries {
        let body = fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let expected_path = bin.with_extension("json");
        let expected: Value = serde_json::from_slice(
            &fs::read(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        assert_eq!(
            &body[..4],
            weft_kubeproto::MAGIC,
            "{} is not protobuf",
            bin.display()
        );
        match weft_kubeproto::decode(&body) {
            Ok(json) => assert_eq!(json, expected, "{}", bin.display()),
            Err(e) => panic!("{}: {e}", bin.display()),
        }
        checked += 1;
    }
    assert!(
        checked >= 20,
        "only {checked} captures in {}",
        dir.display()
    );
}
