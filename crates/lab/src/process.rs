//! Finding and stopping the lab's processes. A lab owns every process inside its namespaces, so
//! it finds them by namespace (the inode of /proc/<pid>/ns/net) rather than by remembered pids,
//! which also catches workloads forked by workloads and stray `weft exec` sessions.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    // A zombie is dead for our purposes.
    exists
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: sending a signal to a pid has no memory-safety implications.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// SIGTERM, then SIGKILL if it is still there after `grace`.
pub fn kill_and_wait(pid: u32, grace: Duration) {
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        signal(pid, libc::SIGKILL);
    }
}

/// Clears the signal mask in a child before exec: `lab up` blocks its interrupt signals (to
/// clean up on Ctrl-C), and a daemon inheriting that mask would ignore SIGTERM forever.
/// Async-signal-safe: one system call.
pub fn unblock_signals() -> std::io::Result<()> {
    // SAFETY: sigemptyset and sigprocmask on a local set; both async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pids of all processes whose network namespace is the one at `netns` (e.g. /run/netns/x).
pub fn pids_in_netns(netns: &Path) -> Vec<u32> {
    let Ok(target) = fs::metadata(netns) else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.ino() == target.ino() && m.dev() == target.dev())
                .unwrap_or(false)
        })
        .collect()
}

/// Kill every process in the namespace and wait (briefly) until they are gone.
pub fn kill_in_netns(netns: &Path) {
    let pids = pids_in_netns(netns);
    for pid in &pids {
        signal(*pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Does `pid` run a weft binary? Guards against killing a recycled pid from a stale pid file.
/// The pid in a daemon's pid file, if that process is alive and is one of ours (a stale file,
/// or a pid reused by something else, gives None).
pub fn running_daemon(pid_file: &Path) -> Option<u32> {
    fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|pid| alive(*pid) && is_weft(*pid))
}

pub fn is_weft(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .next()
                .and_then(|argv0| {
                    Path::new(std::str::from_utf8(argv0).ok()?)
                        .file_name()?
                        .to_str()
                        .map(|n| n.starts_with("weft"))
                })
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_found_in_our_netns() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(pids_in_netns(Path::new("/proc/self/ns/net")).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
