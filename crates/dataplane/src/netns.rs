//! Network namespaces: create/delete named ones exactly like `ip netns add/delete`, open any
//! netns by path, and run code inside one.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Context, Error, Result};

/// Where iproute2 keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// `statfs` magic of nsfs: a real namespace file, not a leftover regular file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// An open network namespace (holding its fd keeps it alive).
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    path: PathBuf,
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains('/')
        && !name.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "netns name",
            value: name.to_string(),
            reason: "must be a non-empty file name without '/'",
        })
    }
}

fn named_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Makes /run/netns a shared mount point, as iproute2 does, so namespaces bound there are
/// visible in mount namespaces created later (e.g. by container runtimes).
fn prepare_run_dir() -> Result<()> {
    std::fs::create_dir_all(NETNS_RUN_DIR).op(|| format!("creating {NETNS_RUN_DIR}"))?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then make it shared.
        Err(nix::Error::EINVAL) => {
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .op(|| format!("bind-mounting {NETNS_RUN_DIR} onto itself"))?;
            shared().op(|| format!("making {NETNS_RUN_DIR} a shared mount"))
        }
        Err(e) => Err(Error::errno(
            format!("making {NETNS_RUN_DIR} a shared mount"),
            e as i32,
        )),
    }
}

impl NetNs {
    /// Creates the named netns `/run/netns/<name>` (like `ip netns add`). Fails with EEXIST
    /// when the name is taken. The caller's own namespace is untouched: the new namespace is
    /// made on a short-lived thread.
    pub fn create(name: &str) -> Result<NetNs> {
        check_name(name)?;
        prepare_run_dir()?;
        let path = named_path(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .op(|| format!("creating netns {name}"))?;
        let made = std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .op(|| format!("creating netns {name}: unshare"))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    Some("none"),
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .op(|| format!("creating netns {name}: bind mount onto {}", path.display()))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::protocol(
                    format!("creating netns {name}"),
                    "namespace thread panicked",
                ))
            })
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        NetNs::open(&path)
    }

    /// Opens a netns by path (`/run/netns/x`, `/proc/<pid>/ns/net`, `/var/run/netns/x`).
    /// ENOENT when the path does not exist or is not a namespace (e.g. an unmounted leftover).
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).op(|| format!("opening netns {}", path.display()))?;
        let fd = OwnedFd::from(file);
        // SAFETY: statfs is plain old data; fstatfs fills it for a valid fd.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open and st is a valid out-pointer.
        if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(Error::last_os(format!("opening netns {}", path.display())));
        }
        #[allow(clippy::unnecessary_cast)]
        if st.f_type as i64 != NSFS_MAGIC {
            return Err(Error::errno(
                format!("opening netns {}: not a namespace file", path.display()),
                libc::ENOENT,
            ));
        }
        Ok(NetNs {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens `/run/netns/<name>`.
    pub fn open_named(name: &str) -> Result<NetNs> {
        check_name(name)?;
        NetNs::open(named_path(name))
    }

    /// The netns of the calling thread.
    pub fn current() -> Result<NetNs> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// Whether `/run/netns/<name>` exists and is a mounted namespace.
    pub fn exists(name: &str) -> bool {
        check_name(name).is_ok() && NetNs::open(named_path(name)).is_ok()
    }

    /// Removes `/run/netns/<name>` (like `ip netns delete`): Ok(false) if it did not exist.
    /// The namespace itself lives on while processes or open fds still use it.
    pub fn delete(name: &str) -> Result<bool> {
        check_name(name)?;
        let path = named_path(name);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(false);
        }
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => {
                return Err(Error::errno(
                    format!("deleting netns {name}: umount"),
                    e as i32,
                ));
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::os(format!("deleting netns {name}"), e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Runs `f` with the calling thread switched into this netns, then switches back (also
    /// when `f` panics). Sockets opened inside stay bound to this netns after return.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let origin = NetNs::current()?;
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET)
            .op(|| format!("entering netns {}", self.path.display()))?;
        let _back = Restore { origin: &origin };
        Ok(f())
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Switches the thread back to its namespace when `run` returns or unwinds.
struct Restore<'a> {
    origin: &'a NetNs,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if setns(self.origin.fd.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
            // Continuing in the wrong namespace could configure the wrong network.
            std::process::abort();
        }
    }
}

/// A named namespace that is deleted when this value is dropped (also while unwinding from a
/// panic): for tests, benchmarks and tools that must remove exactly what they created.
pub struct ScopedNetNs {
    name: String,
    ns: NetNs,
}

impl ScopedNetNs {
    /// Creates `<prefix>-<pid>-<n>`, unique within this machine while the process lives.
    pub fn create_unique(prefix: &str) -> Result<ScopedNetNs> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let ns = NetNs::create(&name)?;
        Ok(ScopedNetNs { name, ns })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for ScopedNetNs {
    type Target = NetNs;
    fn deref(&self) -> &NetNs {
        &self.ns
    }
}

impl Drop for ScopedNetNs {
    fn drop(&mut self) {
        let _ = NetNs::delete(&self.name);
    }
}
