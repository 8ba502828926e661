//! The pod name as the workload sees it: the hostname of its UTS namespace.

use std::fmt;
use std::sync::Arc;

use crate::WorkloadError;

/// Where the kernel shows the calling process's UTS-namespace hostname; reading it needs no libc call,
/// and the lab sets it to the pod name before starting the workload.
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

/// A hostname, cheap to share between connection threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(Arc<str>);

impl Hostname {
    pub fn new(name: &str) -> Hostname {
        Hostname(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The hostname of this process's UTS namespace (the pod name, inside a lab pod).
pub fn os_hostname() -> Result<Hostname, WorkloadError> {
    let raw = std::fs::read_to_string(HOSTNAME_PATH).map_err(|source| WorkloadError::Hostname {
        path: HOSTNAME_PATH,
        source,
    })?;
    Ok(Hostname::new(raw.trim_end_matches('\n')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_hostname_has_no_newline_and_is_not_empty() {
        let name = os_hostname().unwrap();
        assert!(!name.as_str().is_empty());
        assert!(!name.as_str().contains('\n'));
    }
}
