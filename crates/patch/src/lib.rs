//! The three PATCH formats of the Kubernetes API, applied to an object's JSON. The lab's API
//! server reads the stored object, calls one of these with the request body, then validates and
//! stores the result, so `kubectl apply`/`patch`/`scale`/`label`/`edit`, helm and client
//! libraries get the answers kube-apiserver would give them:
//! - [`json_patch`]: RFC 6902 operations (`application/json-patch+json`);
//! - [`merge_patch`]: RFC 7386 (`application/merge-patch+json`);
//! - [`strategic_merge_patch`]: Kubernetes' own format (`application/strategic-merge-patch+json`),
//!   which merges lists element-wise where the kind's [`Schema`] says so and understands the
//!   `$patch`, `$retainKeys`, `$setElementOrder/…` and `$deleteFromPrimitiveList/…` directives
//!   that kubectl's client-side apply sends.
//!
//! Everything here is pure: JSON in, JSON or a typed [`PatchError`] out; the error names the
//! operation or field path that was wrong and carries the HTTP status kube-apiserver answers
//! with ([`PatchError::status_code`]).

mod error;
mod json_patch;
mod kinds;
mod merge_patch;
mod pointer;
mod schema;
mod strategic;
mod value;

pub use error::{JsonPatchFailure, PatchError, StrategicProblem};
pub use json_patch::{json_patch, MAX_JSON_PATCH_OPERATIONS};
pub use kinds::strategic_merge_patch_kinds;
pub use merge_patch::merge_patch;
pub use schema::{FieldStrategy, Schema};
pub use strategic::strategic_merge_patch;
