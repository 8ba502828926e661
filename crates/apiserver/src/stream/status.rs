//! The `metav1.Status` that ends an exec or attach session on the error stream, shaped as the
//! kubelet shapes it, because client-go's v4/v5 decoder reads exactly these fields: `Success`,
//! or `Failure` with reason `NonZeroExitCode` and a cause of type `ExitCode` whose message is
//! the code in decimal (parsed as a u8), or any other `Failure`, whose message kubectl prints.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

pub(crate) fn success() -> Status {
    Status {
        status: Some("Success".into()),
        ..Status::default()
    }
}

/// The status for a process that exited with `code` (0 is success).
pub(crate) fn exited(code: i32) -> Status {
    if code == 0 {
        return success();
    }
    Status {
        status: Some("Failure".into()),
        reason: Some("NonZeroExitCode".into()),
        message: Some(format!(
            "command terminated with non-zero exit code: exit status {code}"
        )),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ExitCode".into()),
                message: Some(code.to_string()),
                field: None,
            }]),
            ..StatusDetails::default()
        }),
        ..Status::default()
    }
}

/// The status for a command that could not run at all (apierrors.NewInternalError).
pub(crate) fn internal_error(what: &str) -> Status {
    Status {
        status: Some("Failure".into()),
        code: Some(500),
        reason: Some("InternalError".into()),
        message: Some(format!("Internal error occurred: {what}")),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                message: Some(what.to_string()),
                ..StatusCause::default()
            }]),
            ..StatusDetails::default()
        }),
        ..Status::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzero_exit_has_the_exit_code_cause() {
        let json = serde_json::to_value(exited(3)).expect("json");
        assert_eq!(json["status"], "Failure");
        assert_eq!(json["reason"], "NonZeroExitCode");
        assert_eq!(json["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(json["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn zero_exit_is_success() {
        let json = serde_json::to_value(exited(0)).expect("json");
        assert_eq!(json["status"], "Success");
        assert!(json.get("details").is_none());
    }
}
