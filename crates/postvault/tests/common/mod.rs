//! Shared by the binary's tests: run `postvault`, read what it printed.
#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use std::process::{Command, Output};

pub mod server;

/// Runs the `postvault` binary with `args`.
pub fn postvault(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postvault"))
        .args(args)
        .output()
        .unwrap()
}

/// Standard output and standard error together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
