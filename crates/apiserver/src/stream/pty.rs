//! Pseudo-terminals for `exec -t`: a master the server reads and writes asynchronously, a
//! slave that becomes the child's stdin, stdout, stderr and controlling terminal.
//!
//! Both ends are opened close-on-exec, so no other process the server spawns meanwhile holds
//! them: the master only reads end-of-file (EIO) once the child and its descendants have
//! closed the slave, which is how we know the terminal's output is complete.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;

use super::websocket::TermSize;

/// The server's end of a pseudo-terminal.
#[derive(Clone)]
pub(crate) struct Master {
    fd: Arc<AsyncFd<File>>,
}

/// Opens a pseudo-terminal pair: the master (non-blocking, registered with tokio) and the slave.
pub(crate) fn open() -> io::Result<(Master, OwnedFd)> {
    // SAFETY: plain libc calls on fds we own; every return value is checked, and each fd is
    // wrapped in an OwnedFd as soon as it exists so error paths close it.
    let master = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    let raw = master.as_raw_fd();
    // SAFETY: as above; `name` is a local buffer of the length we pass.
    let slave = unsafe {
        if libc::grantpt(raw) != 0 || libc::unlockpt(raw) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        let rc = libc::ptsname_r(raw, name.as_mut_ptr(), name.len());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let fd = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    set_nonblocking(&master)?;
    // SAFETY: the File owns the master fd and keeps it open, unchanged, as long as the AsyncFd.
    let fd = unsafe { AsyncFd::register(File::from(master)) }.map_err(|e| e.into_parts().1)?;
    Ok((Master { fd: Arc::new(fd) }, slave))
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// For `Command::pre_exec` in the child: a new session whose controlling terminal is the
/// slave already installed as fd 0, so the shell gets job control and SIGWINCH, and a hangup
/// reaches the whole session when the terminal goes away.
pub(crate) fn take_controlling_terminal() -> io::Result<()> {
    // SAFETY: async-signal-safe syscalls only, as pre_exec requires.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Master {
    /// Reads what the terminal has output; `Ok(0)` once every slave is closed (Linux reports
    /// that as EIO).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|f| f.get_ref().read(buf)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Types `data` into the terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|f| f.get_ref().write(data)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the window size; the kernel signals SIGWINCH to the terminal's foreground group.
    pub fn resize(&self, size: TermSize) -> io::Result<()> {
        let ws = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which lives across the call.
        let rc = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
