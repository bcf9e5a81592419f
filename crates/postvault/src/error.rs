//! The CLI's error, and the one place that maps errors to exit codes.

use std::path::Path;

use postvault_module::audit::VerifyError;

/// Exit codes scripts can rely on.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The module refused the command, or a verification failed.
    pub const REFUSED: u8 = 1;
    /// The input could not be read or parsed (bad file, bad argument).
    pub const BAD_INPUT: u8 = 2;
    /// Storage or I/O failed.
    pub const IO: u8 = 3;
    /// The module is in Error state or an internal invariant broke.
    pub const FAULT: u8 = 4;
}

/// Everything the CLI reports.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The module said no.
    #[error("{0}")]
    Module(#[from] postvault_module::Error),
    /// An audit log failed verification.
    #[error("audit log verification failed: {0}")]
    Audit(#[from] VerifyError),
    /// A check the CLI itself makes failed.
    #[error("{0}")]
    Check(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        message: String,
    },
    /// An argument or input file is malformed.
    #[error("{0}")]
    Input(String),
    /// The indicium library refused (an unreadable image, a malformed field, a failed check).
    #[error("{0}")]
    Indicium(#[from] postvault_indicium::Error),
}

impl CliError {
    /// An I/O error on a path.
    pub fn io(path: &Path, e: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// The exit code for this error.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        use postvault_indicium::ErrorKind as I;
        use postvault_module::Error as M;
        match self {
            CliError::Indicium(e) => match e.kind() {
                I::BadInput | I::Misuse => exit::BAD_INPUT,
                I::Rejected => exit::REFUSED,
                _ => exit::FAULT,
            },
            CliError::Module(M::Nvm { .. }) | CliError::Io { .. } => exit::IO,
            CliError::Module(M::Fatal { .. } | M::Crypto(_) | M::InjectedCrash(_)) => exit::FAULT,
            CliError::Module(M::Malformed { .. }) | CliError::Input(_) => exit::BAD_INPUT,
            CliError::Module(_) | CliError::Audit(_) | CliError::Check(_) => exit::REFUSED,
        }
    }
}

impl From<postvault_crypto::Error> for CliError {
    fn from(e: postvault_crypto::Error) -> Self {
        Self::Module(e.into())
    }
}
