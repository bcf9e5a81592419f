//! The postvault vault server.
//!
//! Built so far: [`moduledir`], how a software module lives on disk (shared
//! with the ceremony CLI). The module pool over the store, the HTTP API,
//! sign-on and the audit service follow (issue 4).
#![forbid(unsafe_code)]

pub mod moduledir;
