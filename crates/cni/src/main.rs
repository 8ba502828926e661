//! `weft-cni`: the binary the container runtime executes. All logic is in the library.

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    // A runtime always pipes the config; a human typing `weft-cni` at a terminal with
    // CNI_COMMAND=VERSION should not hang waiting for it.
    // SAFETY: isatty only inspects fd 0.
    if unsafe { libc::isatty(0) } == 0 {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let out = weft_cni::run(|k| std::env::var(k).ok(), &stdin);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.stdout.as_bytes());
    if !out.stdout.is_empty() {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
    std::process::exit(out.exit_code);
}
