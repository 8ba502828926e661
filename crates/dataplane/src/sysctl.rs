//! Network sysctls of the calling thread's CURRENT netns (`/proc/sys/net/...` resolves to the
//! netns of the thread that opens the file, so call these inside [`crate::NetNs::run`] to
//! change a pod's or test namespace's settings).

use std::io::{Read, Write};

use crate::error::{Context, Error, Result};

fn path_of(key: &str) -> Result<String> {
    let ok = key.starts_with("net/")
        && !key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if !ok {
        return Err(Error::Invalid {
            what: "sysctl key",
            value: key.to_string(),
            reason: "must be a net/... path like net/ipv4/ip_forward",
        });
    }
    Ok(format!("/proc/sys/{key}"))
}

/// Reads a network sysctl such as `net/ipv4/ip_forward` (trailing newline removed).
pub fn read(key: &str) -> Result<String> {
    let path = path_of(key)?;
    // Plain reads into a buffer that fits a typical value: `read_to_string` would first stat
    // and seek the file for a size hint, which /proc files do not have.
    let mut bytes = Vec::with_capacity(64);
    std::fs::File::open(&path)
        .and_then(|mut f| {
            let mut chunk = [0u8; 64];
            loop {
                match f.read(&mut chunk) {
                    Ok(0) => return Ok(()),
                    Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .op(|| format!("reading sysctl {key}"))?;
    Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
}

/// Writes a network sysctl (e.g. `write("net/ipv4/conf/eth0/proxy_arp", "1")`).
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = path_of(key)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .op(|| format!("writing sysctl {key}={value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_confined_to_net() {
        assert!(path_of("net/ipv4/ip_forward").is_ok());
        assert!(path_of("kernel/hostname").is_err());
        assert!(path_of("net/../kernel/hostname").is_err());
        assert!(path_of("net//x").is_err());
    }

    #[test]
    fn reads_a_net_sysctl() {
        // Reading is harmless in any namespace.
        assert!(matches!(
            read("net/ipv4/ip_forward").as_deref(),
            Ok("0") | Ok("1")
        ));
    }
}
