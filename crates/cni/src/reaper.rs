//! Deleting a veth is the slowest thing a CNI DEL does: the kernel unregisters the device and
//! then waits for an RCU grace period (`rcu_barrier` in `netdev_run_todo`), 20-40 ms here, for a
//! link nobody can reach any more once its route is gone and its address released. DEL does the
//! part that matters at once and leaves that wait to a detached process, so the runtime is not
//! held up by it (the kernel defers the same work when a runtime deletes a pod's namespace).
//!
//! The detached process deletes by interface index, not by name: a runtime that ADDs the same
//! attachment again right away gets a new veth under the same name, which must survive.

use weft_dataplane::{IfIndex, Netlink};

/// Delete link `index` of the current network namespace from a detached grandchild process.
/// Returns once the grandchild exists; its outcome is not reported (a failure leaves a veth
/// with no route or address, which a later ADD of the attachment replaces).
pub fn delete_link_detached(index: IfIndex) {
    // SAFETY: the plugin is single-threaded when DEL runs (no thread is alive at this point),
    // so fork is safe; the children only make system calls and `_exit`.
    unsafe {
        match libc::fork() {
            -1 => delete_now(index),
            0 => {
                // First child: leave the runtime's session, fork the worker, and exit so the
                // worker is reparented and never becomes the runtime's zombie.
                libc::setsid();
                if libc::fork() == 0 {
                    detach_stdio();
                    delete_now(index);
                }
                libc::_exit(0);
            }
            child => {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
            }
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
