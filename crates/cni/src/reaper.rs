//! Deleting a veth is the slowest thing a CNI DEL does: the kernel unregisters the device and
//! then waits for an RCU grace period (`rcu_barrier` in `netdev_run_todo`), 20-40 ms here, for a
//! link nobody can reach any more once its route is gone and its address released. DEL does the
//! part that matters at once and leaves that wait to a detached process, so the runtime is not
//! held up by it (the kernel defers the same work when a runtime deletes a pod's namespace).
//!
//! The detached process deletes by interface index, not by name: a runtime that ADDs the same
//! attachment again right away gets a new veth under the same name, which must survive.

use weft_dataplane::{IfIndex, Netlink};

/// Delete link `index` of the current network namespace from a detached child process.
/// Returns at once; the outcome is not reported (a failure leaves a veth with no route or
/// address, which a later ADD of the attachment replaces).
///
/// One fork, not a daemon's double fork: the plugin exits right after DEL, so the child is
/// reparented (to init, or the runtime's subreaper) at that point and is never left as the
/// runtime's zombie. Waiting for an intermediate child to exit cost DEL a scheduling round trip,
/// milliseconds on a busy node. `setsid` takes the child out of the runtime's process group and
/// session, so signals meant for the plugin do not stop the deletion.
pub fn delete_link_detached(index: IfIndex) {
    // SAFETY: the plugin is single-threaded when DEL runs (no thread is alive at this point),
    // so fork is safe; the child only makes system calls and `_exit`s.
    unsafe {
        match libc::fork() {
            -1 => delete_now(index),
            0 => {
                libc::setsid();
                detach_stdio();
                delete_now(index);
                libc::_exit(0);
            }
            _ => {}
        }
    }
}

fn delete_now(index: IfIndex) {
    if let Ok(mut nl) = Netlink::open() {
        let _ = nl.link_del(index);
    }
}

/// The runtime reads our stdout until EOF: the worker must not hold it (or stdin/stderr).
unsafe fn detach_stdio() {
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    if null >= 0 {
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if null > 2 {
            libc::close(null);
        }
    }
}
