//! What can be wrong with a patch, where, and which HTTP status kube-apiserver answers with.

use thiserror::Error;

/// A patch that could not be applied. Nothing is half-applied: the functions return a new
/// document only when every operation and directive succeeded.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum PatchError {
    #[error("a JSON patch must be a list of operations, not {found}")]
    JsonPatchNotAList { found: &'static str },

    #[error("a JSON patch may hold at most {max} operations, this one holds {count}")]
    TooManyOperations { count: usize, max: usize },

    /// The operation itself is not well formed (no `op`, unknown `op`, `path` not a pointer…).
    #[error("JSON patch operation {index}: {problem}")]
    MalformedOperation { index: usize, problem: String },

    /// A well-formed operation that does not apply to the document as it is at that point.
    #[error("JSON patch operation {index} ({op} {path}): {failure}")]
    OperationFailed {
        index: usize,
        op: &'static str,
        path: String,
        failure: JsonPatchFailure,
    },

    #[error("a JSON merge patch must not be null")]
    NullMergePatch,

    #[error("a strategic merge patch must be a JSON object, not {found}")]
    StrategicPatchNotAnObject { found: &'static str },

    #[error("a strategic merge patch applies to a JSON object, but the stored object is {found}")]
    DocumentNotAnObject { found: &'static str },

    /// `path` is the field path in the patch (`spec.template.spec.containers[0].env`; list
    /// indexes count elements of the list the problem was found in).
    #[error("{}: {problem}", location(.path))]
    Strategic {
        path: String,
        problem: StrategicProblem,
    },
}

fn location(path: &str) -> &str {
    if path.is_empty() {
        "top level of the patch"
    } else {
        path
    }
}

/// Why a JSON patch operation did not apply; pointers are JSON pointers into the document.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum JsonPatchFailure {
    #[error("{0} does not exist")]
    Missing(String),

    #[error("{at} is {found}, which has no members to address")]
    NotAContainer { at: String, found: &'static str },

    #[error("{token:?} is not an index of the list at {at}")]
    BadIndex { at: String, token: String },

    #[error("index {index} is past the end of the list at {at} (length {len})")]
    OutOfRange {
        at: String,
        index: usize,
        len: usize,
    },

    #[error("{from} cannot be moved into one of its own children")]
    MoveIntoItself { from: String },

    #[error("the whole document cannot be removed")]
    RemoveRoot,

    #[error("the value there differs from the one the test expects")]
    TestMismatch,
}

/// What is wrong at one place of a strategic merge patch.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum StrategicProblem {
    #[error("unknown directive {0:?}")]
    UnknownDirective(String),

    #[error("$patch must be \"replace\", \"delete\" or \"merge\", not {0}")]
    BadPatchValue(String),

    #[error("{directive} must be {expected}, not {found}")]
    BadDirectiveValue {
        directive: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("{0} names no field")]
    DirectiveWithoutField(String),

    #[error("{0:?} is set by the patch but not listed in $retainKeys")]
    NotRetained(String),

    #[error("the element has no merge key {0:?}")]
    MissingMergeKey(String),

    #[error("the list's elements are not all of one type: {first} and {other}")]
    MixedElements {
        first: &'static str,
        other: &'static str,
    },

    #[error("lists of lists cannot be merged")]
    ListOfLists,

    #[error("the list holds objects, but its patch strategy merges primitive values only")]
    ObjectsInPrimitiveSet,

    #[error("the patch list's order does not follow $setElementOrder/{0}")]
    OrderMismatch(String),

    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
}

impl PatchError {
    /// The HTTP status kube-apiserver answers this error with: 400 when the patch document
    /// itself is malformed, 413 for too many JSON patch operations, 422 when a well-formed
    /// patch does not apply to this object. (kube-apiserver answers 500 for some strategic
    /// merge errors it does not classify, such as a missing merge key; those are the client's
    /// patch, so they are 422 here.) A stored object that is not a JSON object is the
    /// server's fault: 500.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::JsonPatchNotAList { .. }
            | PatchError::NullMergePatch
            | PatchError::StrategicPatchNotAnObject { .. } => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::MalformedOperation { .. } | PatchError::OperationFailed { .. } => 422,
            PatchError::DocumentNotAnObject { .. } => 500,
            PatchError::Strategic { problem, .. } => match problem {
                StrategicProblem::BadDirectiveValue { .. }
                | StrategicProblem::DirectiveWithoutField(_)
                | StrategicProblem::NotRetained(_) => 400,
                _ => 422,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_place() {
        let e = PatchError::Strategic {
            path: "spec.containers[1]".into(),
            problem: StrategicProblem::MissingMergeKey("name".into()),
        };
        assert_eq!(
            e.to_string(),
            "spec.containers[1]: the element has no merge key \"name\""
        );
        let e = PatchError::Strategic {
            path: String::new(),
            problem: StrategicProblem::UnknownDirective("$foo".into()),
        };
        assert_eq!(
            e.to_string(),
            "top level of the patch: unknown directive \"$foo\""
        );
        let e = PatchError::OperationFailed {
            index: 2,
            op: "remove",
            path: "/spec/x".into(),
            failure: JsonPatchFailure::Missing("/spec/x".into()),
        };
        assert_eq!(
            e.to_string(),
            "JSON patch operation 2 (remove /spec/x): /spec/x does not exist"
        );
    }

    #[test]
    fn malformed_documents_are_bad_requests_and_misfits_unprocessable() {
        assert_eq!(PatchError::NullMergePatch.status_code(), 400);
        assert_eq!(
            PatchError::TooManyOperations {
                count: 10_001,
                max: 10_000
            }
            .status_code(),
            413
        );
        let misfit = PatchError::Strategic {
            path: "spec".into(),
            problem: StrategicProblem::ListOfLists,
        };
        assert_eq!(misfit.status_code(), 422);
        let malformed = PatchError::Strategic {
            path: "spec".into(),
            problem: StrategicProblem::NotRetained("x".into()),
        };
        assert_eq!(malformed.status_code(), 400);
    }
}
