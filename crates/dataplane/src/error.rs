//! One error type for every kernel operation: what we were doing, to which object, and the errno.

use std::io;

/// Result alias for dataplane operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed dataplane operation. `op` names the operation and its object
/// (`creating veth weft1a2b/eth0`), so the message alone says what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel (or a syscall) refused; `source` carries the errno.
    #[error("{op}: {source}")]
    Os {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The kernel answered something we could not decode.
    #[error("{op}: malformed netlink reply: {detail}")]
    Protocol { op: String, detail: String },
    /// `nft` refused a ruleset or command; `stderr` is its explanation.
    #[error("{op}: nft: {stderr}")]
    Nft { op: String, stderr: String },
    /// nf_tables refused a batch (one transaction: nothing of it was applied). `message` is
    /// the 1-based index of the first refused message among `count`, `what` says what it did.
    #[error("{op}: message {message} of {count} ({what}) refused: {source}")]
    NftBatch {
        op: String,
        message: usize,
        count: usize,
        what: String,
        #[source]
        source: io::Error,
    },
    /// A rule of a typed nftables table that nft or the kernel would refuse (see
    /// `nft::Rule::check`); refused before anything is sent. `index` is the rule's position
    /// in its chain, from 0.
    #[error("table {table}, chain {chain}, rule {index}: {source}")]
    NftRule {
        table: String,
        chain: String,
        index: usize,
        #[source]
        source: Box<Error>,
    },
    /// A caller passed a value the kernel would reject anyway; refused before any syscall.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn os(op: impl Into<String>, source: io::Error) -> Self {
        Error::Os {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn errno(op: impl Into<String>, errno: i32) -> Self {
        Error::os(op, io::Error::from_raw_os_error(errno))
    }

    pub(crate) fn last_os(op: impl Into<String>) -> Self {
        Error::os(op, io::Error::last_os_error())
    }

    pub(crate) fn protocol(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Protocol {
            op: op.into(),
            detail: detail.into(),
        }
    }

    /// The errno behind this error, if the kernel produced one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } | Error::NftBatch { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The object did not exist (ENODEV for links, ENOENT/ESRCH for files, routes, addresses).
    /// Callers use this to make deletes idempotent.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.raw_os_error(),
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL)
        )
    }

    /// The object already existed (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.raw_os_error() == Some(libc::EEXIST)
    }
}

pub(crate) trait Context<T> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::errno(op(), e as i32))
    }
}

impl<T> Context<T> for io::Result<T> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::os(op(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_op_and_errno() {
        let e = Error::errno("creating veth weft1a2b/eth0", libc::EEXIST);
        assert_eq!(
            e.to_string(),
            "creating veth weft1a2b/eth0: File exists (os error 17)"
        );
        assert!(e.is_exists());
        assert!(!e.is_not_found());
        assert!(Error::errno("x", libc::ENODEV).is_not_found());
    }
}
