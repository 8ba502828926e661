//! Helpers the store's integration tests share.

use weft_model::Object;

/// An object's resourceVersion as the store's revision number.
pub fn rv(object: &Object) -> u64 {
    object
        .metadata()
        .resource_version
        .as_deref()
        .expect("a stored object has a resourceVersion")
        .parse()
        .expect("resourceVersions are revision numbers")
}
