//! This terminal while `weft exec -it` is attached: raw mode (every key goes to the remote
//! command as typed, Ctrl-C included, and the remote terminal does the echoing), restored
//! however the command ends; and the terminal's size, which the remote terminal follows.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use nix::sys::termios::{self, SetArg, Termios};

/// Raw mode on stdin until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn stdin_is_terminal() -> bool {
        std::io::stdin().is_terminal()
    }

    pub fn enter() -> Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing better to do if this fails: the shell's `reset` restores it.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

nix::ioctl_read_bad!(window_size, libc::TIOCGWINSZ, libc::winsize);

/// (columns, rows) of the terminal on stdout (else stdin), if either is one.
pub fn size() -> Option<(u16, u16)> {
    use std::os::fd::AsRawFd;
    let fds = [std::io::stdout().as_raw_fd(), std::io::stdin().as_raw_fd()];
    fds.into_iter().find_map(|fd| {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the struct we own; a descriptor that is
        // not a terminal only makes it fail.
        let ok = unsafe { window_size(fd, &mut ws) }.is_ok();
        (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
    })
}
