//! Arbitrary bytes never panic: they decode to a JSON object or return an error.

use proptest::prelude::*;

use super::{body, Msg};
use crate::{decode, MAGIC};

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(value) = decode(bytes) {
        // Whatever decodes is an object carrying its type.
        prop_assert!(value.get("apiVersion").is_some_and(|v| v.is_string()));
        prop_assert!(value.get("kind").is_some_and(|v| v.is_string()));
    }
    Ok(())
}

/// Bodies kubectl really sent (tests/kubectl.rs), for mutation.
const CAPTURES: &[&[u8]] = &[
    include_bytes!("../../tests/kubectl/create-cronjob.bin"),
    include_bytes!("../../tests/kubectl/create-ingress.bin"),
    include_bytes!("../../tests/kubectl/create-service-loadbalancer.bin"),
    include_bytes!("../../tests/kubectl/create-pdb-max-unavailable.bin"),
];

const KINDS: &[(&str, &str)] = &[
    ("apps/v1", "Deployment"),
    ("v1", "Pod"),
    ("v1", "Service"),
    ("v1", "List"),
    ("v1", "Secret"),
    ("batch/v1", "CronJob"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("meta.k8s.io/v1", "DeleteOptions"),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn any_bytes_after_the_prefix(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&bytes);
        check(&body)?;
    }

    /// Past the envelope, into the schema walk of a real kind.
    #[test]
    fn any_object_bytes(
        kind in proptest::sample::select(KINDS),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        check(&body(kind.0, kind.1, &Msg::new().raw(&bytes)))?;
    }

    /// A real body with a few bytes changed, cut or inserted.
    #[test]
    fn mutated_capture(
        capture in proptest::sample::select(CAPTURES),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = capture.to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i.max(MAGIC.len())),
            }
        }
        check(&bytes)?;
    }
}
