//! A real vault server for the binary's tests: `postvault vault init` into a
//! temporary directory, then `postvault serve` on 127.0.0.1 with a free port,
//! stopped cleanly, killed with SIGKILL, or restarted on the same data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A data directory with a vault in it, and maybe a running server.
pub struct TestVault {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub url: String,
    pub auto_approve: bool,
}

impl TestVault {
    /// A new development vault (two modules), not started.
    pub fn init(auto_approve: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let o = super::postvault(&["vault", "init", "--data-dir", dir.path().to_str().unwrap()]);
        assert!(o.status.success(), "vault init: {}", super::text(&o));
        Self {
            dir,
            child: None,
            url: String::new(),
            auto_approve,
        }
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the data directory.
    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Starts `postvault serve` and waits until it listens; returns its URL.
    pub fn start(&mut self) -> String {
        assert!(self.child.is_none(), "already running");
        let mut args = vec![
            "serve".to_owned(),
            "--data-dir".to_owned(),
            self.path().to_str().unwrap().to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        if self.auto_approve {
            args.push("--auto-approve".to_owned());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.join("server.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_postvault"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("server did not start: {line:?}; log: {}", self.log()))
            .to_owned();
        self.child = Some(child);
        self.url = url.clone();
        url
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.join("server.log")).unwrap_or_default()
    }

    /// Stops the server with SIGINT (clean power-off) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Kills the server with SIGKILL: no clean anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            let _ = c.wait();
        }
    }

    /// Runs the binary with `args` (and `POSTVAULT_PASSPHRASE` if given).
    pub fn run(&self, args: &[&str], passphrase: Option<&str>) -> std::process::Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_postvault"));
        c.args(args).current_dir(self.path());
        if let Some(p) = passphrase {
            c.env("POSTVAULT_PASSPHRASE", p);
        }
        c.output().unwrap()
    }
}

impl Drop for TestVault {
    fn drop(&mut self) {
        self.kill9();
    }
}
