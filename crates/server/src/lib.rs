//! The postvault vault server.
//!
//! Built so far: [`moduledir`], how a software module lives on disk (shared
//! with the ceremony CLI), and [`vault`], the module pool over the store that
//! runs every PSD transaction and commits it before releasing anything. The
//! HTTP API, sign-on and the audit service follow (issue 4).
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod http;
pub mod kms;
pub mod moduledir;
pub mod service;
pub mod vault;

pub use vault::{Vault, VaultError};
