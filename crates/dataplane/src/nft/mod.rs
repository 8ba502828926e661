//! nftables: a typed model of a table ([`Table`], [`Chain`], [`Set`], [`Rule`]), its
//! rendering to nft script text, and an [`Applier`] that loads it whole or sends only the
//! difference as an nf_tables netlink batch of weft's own (`wire`, `encode`, `linearize`).
//!
//! The older text interface stays for callers not yet on the model: [`apply`] loads nft script
//! through the `nft` tool (`nft -f -`, one transaction), [`Session`] through libnftables
//! loaded into the process. Everything runs in the network namespace of the calling thread.

mod applier;
mod encode;
mod linearize;
mod model;
mod render;
mod rule;
mod tx;
mod wire;

pub use applier::{load, Applied, Applier, WholeLoad};
pub use model::{
    priority, BaseChain, Chain, ChainType, DataType, Elem, ElemData, Family, Field, Hook,
    Ipv4Prefix, Key, L4Proto, MapData, Policy, Set, Table, Value, Verdict,
};
pub use rule::{ct_state, CmpOp, Dnat, MarkOp, Match, Rule, Selector, Stmt};
pub use tx::Tx;

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Where to find `nft`: `WEFT_NFT` overrides the search of `PATH` (and the usual sbin dirs,
/// which a non-login root shell may lack).
fn nft_program() -> String {
    if let Ok(p) = std::env::var("WEFT_NFT") {
        return p;
    }
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = format!("{dir}/nft");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    "nft".to_string()
}

fn run(args: &[&str], stdin: Option<&str>, op: &str) -> Result<String> {
    let mut child = Command::new(nft_program())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::os(format!("{op}: running nft"), e))?;
    if let Some(text) = stdin {
        // Dropping the handle after the write closes nft's stdin.
        let mut input = child.stdin.take().expect("stdin was piped");
        input
            .write_all(text.as_bytes())
            .map_err(|e| Error::os(format!("{op}: writing to nft"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::os(format!("{op}: waiting for nft"), e))?;
    if !out.status.success() {
        return Err(Error::Nft {
            op: op.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Loads `ruleset` (nft script syntax) as one transaction.
pub fn apply(ruleset: &str) -> Result<()> {
    run(&["-f", "-"], Some(ruleset), "loading an nftables ruleset")?;
    Ok(())
}

/// The text of table `family name` (`nft list table`), or `None` when it does not exist.
pub fn table(family: &str, name: &str) -> Result<Option<String>> {
    match run(
        &["list", "table", family, name],
        None,
        &format!("listing table {family} {name}"),
    ) {
        Ok(text) => Ok(Some(text)),
        Err(Error::Nft { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes table `family name` if it exists (in one transaction, so it is never an error).
pub fn delete_table(family: &str, name: &str) -> Result<()> {
    apply(&format!(
        "table {family} {name}\ndelete table {family} {name}\n"
    ))
}

/// A long-lived nftables session for a process that loads many transactions (the agent's Service
/// proxy): libnftables, from the nftables package, is loaded into the process at first use and
/// one context is kept, so a transaction costs neither a process start nor loading the tool
/// (on a 10k-Service table: ~12 ms instead of ~30-45 ms per update, measured). Where the library
/// cannot be loaded, each transaction runs `nft -f -` as [`apply`] does.
///
/// The context's netlink socket belongs to the network namespace the first transaction ran in;
/// use one session per namespace.
#[derive(Default)]
pub struct Session {
    lib: Option<Library>,
    tried: bool,
}

// SAFETY: the context is only used through &mut self, never from two threads at once.
unsafe impl Send for Session {}

type CtxNew = unsafe extern "C" fn(u32) -> *mut libc::c_void;
type CtxInt = unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int;
type CtxBuf = unsafe extern "C" fn(*mut libc::c_void) -> *const libc::c_char;
type RunCmd = unsafe extern "C" fn(*mut libc::c_void, *const libc::c_char) -> libc::c_int;
type CtxFree = unsafe extern "C" fn(*mut libc::c_void);

struct Library {
    ctx: *mut libc::c_void,
    run: RunCmd,
    output: CtxBuf,
    error: CtxBuf,
    free: CtxFree,
}

impl Library {
    /// dlopen + dlsym of the handful of libnftables calls we need; None if any is missing.
    fn load() -> Option<Library> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; every symbol is checked for null
        // before being turned into a function pointer of the signature libnftables.h declares.
        unsafe {
            let handle = libc::dlopen(
                c"libnftables.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if handle.is_null() {
                return None;
            }
            let sym = |name: &std::ffi::CStr| {
                let p = libc::dlsym(handle, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            let new: CtxNew = std::mem::transmute(sym(c"nft_ctx_new")?);
            let buffer_output: CtxInt = std::mem::transmute(sym(c"nft_ctx_buffer_output")?);
            let buffer_error: CtxInt = std::mem::transmute(sym(c"nft_ctx_buffer_error")?);
            let run =
                std::mem::transmute::<*mut libc::c_void, RunCmd>(sym(c"nft_run_cmd_from_buffer")?);
            let output = std::mem::transmute::<*mut libc::c_void, CtxBuf>(sym(
                c"nft_ctx_get_output_buffer",
            )?);
            let error =
                std::mem::transmute::<*mut libc::c_void, CtxBuf>(sym(c"nft_ctx_get_error_buffer")?);
            let free = std::mem::transmute::<*mut libc::c_void, CtxFree>(sym(c"nft_ctx_free")?);
            let ctx = new(0);
            if ctx.is_null() {
                return None;
            }
            // Messages go to buffers we read, not to the agent's stdout/stderr.
            buffer_output(ctx);
            buffer_error(ctx);
            Some(Library {
                ctx,
                run,
                output,
                error,
                free,
            })
        }
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: ctx came from nft_ctx_new and is freed once.
        unsafe { (self.free)(self.ctx) }
    }
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// Loads `ruleset` (nft script syntax) as one transaction.
    pub fn apply(&mut self, ruleset: &str) -> Result<()> {
        if !self.tried {
            self.tried = true;
            self.lib = Library::load();
        }
        let Some(lib) = &self.lib else {
            return apply(ruleset);
        };
        let op = "loading an nftables ruleset";
        let script = std::ffi::CString::new(ruleset).map_err(|_| Error::Nft {
            op: op.into(),
            stderr: "the ruleset contains a NUL byte".into(),
        })?;
        // SAFETY: ctx is live; the buffers returned are owned by the context and copied out
        // before the next call.
        unsafe {
            let rc = (lib.run)(lib.ctx, script.as_ptr());
            let read = |f: CtxBuf| {
                let p = f(lib.ctx);
                if p.is_null() {
                    String::new()
                } else {
                    std::ffi::CStr::from_ptr(p)
                        .to_string_lossy()
                        .trim()
                        .to_string()
                }
            };
            let _ = read(lib.output);
            let errors = read(lib.error);
            if rc != 0 {
                return Err(Error::Nft {
                    op: op.into(),
                    stderr: errors,
                });
            }
        }
        Ok(())
    }
}
