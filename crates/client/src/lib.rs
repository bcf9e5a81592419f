//! The customer's side of postvault: the vault's HTTP API types ([`api`],
//! shared with the server), the passphrase-sealed wallet ([`wallet`]) and the
//! client that registers, signs on, buys and prints ([`client`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod wallet;

pub use client::{Connection, Customer, Printed, Registration, passphrase_hash};

/// What the client reports.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, or its reply was unreadable.
    #[error("transport: {0}")]
    Http(String),
    /// The server refused (outside a session, or the session itself).
    #[error("{} ({})", error.message, error.code)]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's error.
        error: api::ApiError,
    },
    /// The vault refused a call; nothing changed.
    #[error("{message} ({code})")]
    Refused {
        /// Stable code.
        code: String,
        /// What happened.
        message: String,
    },
    /// Something the server sent does not verify.
    #[error("check failed: {0}")]
    Check(String),
    /// The wallet file.
    #[error("wallet: {0}")]
    Wallet(String),
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(#[from] postvault_crypto::Error),
    /// A module-side helper refused (malformed key, ...).
    #[error("{0}")]
    Module(#[from] postvault_module::Error),
    /// An indicium or certificate is malformed.
    #[error("{0}")]
    Indicium(#[from] postvault_indicium::Error),
}

impl ClientError {
    /// The stable code of a refusal, if it is one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}
