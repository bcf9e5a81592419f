//! The postvault cryptographic module: a software HSM in the shape of seed 001's
//! IBM 4758 application.
//!
//! It never does I/O except through its non-volatile-memory trait ([`nvm::Nvm`]);
//! every secret it holds leaves it only sealed (key tokens, HPKE-sealed shares,
//! encrypted NVM records). Map:
//!
//! - [`state`]: the seven states and boot detection;
//! - [`command`]: every command and the one table of (state, role) permissions;
//! - [`role`], [`account`]: roles, user ids, the access-control database;
//! - [`session`]: operator sessions (X25519, HKDF transaction keys, counters);
//! - [`mks`], [`token`]: the master key set, share ceremonies, key tokens;
//! - [`audit`]: the hash-chained, periodically signed audit log and its verifier;
//! - [`module`]: the dispatcher, transitions and failure points;
//! - [`wire`]: requests, replies, status; [`codec`]: checked decoding;
//! - [`cryptocard`], [`psd`], [`postal`], [`checkpoint`]: postal work: the
//!   shared postal keys, PSD packages, the PSD commands, checkpoints;
//! - [`signon`]: customer sign-on and the sealed messages of a session;
//! - [`nvm`]: the NVM trait, an in-memory and a file implementation;
//! - [`host`]: the host side: audit storage before release, session driving.
#![forbid(unsafe_code)]

pub mod account;
pub mod audit;
pub mod checkpoint;
pub mod codec;
pub mod command;
pub mod cryptocard;
pub mod error;
pub mod host;
pub mod mks;
pub mod module;
pub mod nvm;
pub mod postal;
pub mod psd;
pub mod role;
pub mod session;
pub mod signon;
pub mod state;
pub mod token;
pub mod wire;

pub use error::{Error, PsdCheck, Result};
pub use module::{Clock, FailPoint, ManualClock, Module, SystemClock};
