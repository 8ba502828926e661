//! The plugin's error type and its mapping onto the CNI spec's error codes.

use crate::spec::{CniVersion, SUPPORTED_LIST};

/// CNI error codes: 1-99 are the spec's well-known ones, 100+ are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// STATUS: cannot service ADD.
    NotAvailable = 50,
    /// STATUS: cannot service ADD, and existing pods may have limited connectivity.
    NotAvailableLimited = 51,
    /// weft: the address range has no free address, or the requested one is taken.
    AddressUnavailable = 100,
    /// weft: CHECK found the attachment not as ADD left it.
    CheckFailed = 101,
    /// weft: the kernel refused a netlink/netns operation.
    Dataplane = 102,
}

/// Everything that can make a CNI command fail; `code()` gives the spec error code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("incompatible CNI version {0:?}: weft-cni supports {SUPPORTED_LIST}")]
    IncompatibleVersion(String),
    #[error("config version {version} does not allow {command} (needs {needs} or later)")]
    CommandNotInVersion {
        command: &'static str,
        version: CniVersion,
        needs: CniVersion,
    },
    #[error("missing environment variable {0}")]
    MissingEnv(&'static str),
    #[error("invalid environment variable {name}={value:?}: {reason}")]
    InvalidEnv {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("decoding network config from stdin: {0}")]
    Decode(String),
    #[error("network config: {0}")]
    Config(String),
    #[error("network config: {0}")]
    Unsupported(String),
    #[error("netns {0} does not exist")]
    NoNetns(String),
    #[error(transparent)]
    Ipam(#[from] crate::ipam::IpamError),
    #[error(transparent)]
    Dataplane(#[from] weft_dataplane::Error),
    #[error("CHECK {0}")]
    Check(String),
    #[error("{reason}")]
    Unavailable { limited: bool, reason: String },
    /// The node's agent did not program the pod's policy: try again later.
    #[error("{0}")]
    Agent(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        use crate::ipam::IpamError;
        match self {
            Error::IncompatibleVersion(_) | Error::CommandNotInVersion { .. } => {
                ErrorCode::IncompatibleVersion
            }
            Error::MissingEnv(_) | Error::InvalidEnv { .. } => ErrorCode::InvalidEnv,
            Error::Decode(_) => ErrorCode::Decode,
            Error::Config(_) => ErrorCode::InvalidConfig,
            Error::Unsupported(_) => ErrorCode::UnsupportedField,
            Error::NoNetns(_) => ErrorCode::UnknownContainer,
            Error::Ipam(IpamError::Exhausted { .. } | IpamError::RequestedTaken { .. }) => {
                ErrorCode::AddressUnavailable
            }
            // The spec's 7, "invalid network config": the request (runtimeConfig.ips,
            // args.cni.ips or CNI_ARGS IP=) asks for what the config's range cannot give, and no
            // retry or wait can change that; 100 is for what another pod holds right now.
            Error::Ipam(IpamError::RequestedOutOfRange { .. }) => ErrorCode::InvalidConfig,
            Error::Ipam(IpamError::Io { .. }) => ErrorCode::Io,
            Error::Dataplane(_) => ErrorCode::Dataplane,
            Error::Check(_) => ErrorCode::CheckFailed,
            Error::Unavailable { limited: false, .. } => ErrorCode::NotAvailable,
            Error::Unavailable { limited: true, .. } => ErrorCode::NotAvailableLimited,
            Error::Agent(_) => ErrorCode::TryAgainLater,
        }
    }

    /// The spec's error object: `{"cniVersion","code","msg","details"}`. `msg` is the short
    /// form; `details` the full chain when there is more to say.
    pub fn to_json(&self, version: CniVersion) -> serde_json::Value {
        let msg = self.to_string();
        let mut details = Vec::new();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            details.push(s.to_string());
            src = s.source();
        }
        let mut v = serde_json::json!({
            "cniVersion": version.as_str(),
            "code": self.code() as u32,
            "msg": msg,
        });
        if !details.is_empty() {
            v["details"] = serde_json::Value::String(details.join(": "));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::IpamError;
    use std::net::Ipv4Addr;

    #[test]
    fn a_requested_address_outside_the_range_is_an_invalid_config() {
        let e = Error::Ipam(IpamError::RequestedOutOfRange {
            ip: Ipv4Addr::new(10, 244, 2, 7),
            subnet: "10.244.1.0/24".parse().unwrap(),
            range: ".2-.254".into(),
        });
        assert_eq!(e.code(), ErrorCode::InvalidConfig);
        let json = e.to_json(CniVersion::LATEST);
        assert_eq!(json["code"], 7);
        assert_eq!(
            json["msg"],
            "requested address 10.244.2.7 is outside the range .2-.254 of 10.244.1.0/24"
        );
        // Taken is a different matter: another pod holds it, which is ours to report (100).
        let taken = Error::Ipam(IpamError::RequestedTaken {
            ip: Ipv4Addr::new(10, 244, 1, 7),
            owner: "c1/eth0".into(),
        });
        assert_eq!(taken.to_json(CniVersion::LATEST)["code"], 100);
    }
}
