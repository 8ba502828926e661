//! The repository's example manifests must parse and validate: they are what users try first.

use std::path::PathBuf;

#[test]
fn repository_examples_parse() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    if !dir.is_dir() {
        return;
    }
    let objects = weft_model::manifest::read_files(&[dir]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!objects.is_empty());
}
