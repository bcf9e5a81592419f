//! The key management system (seed 002, DESIGN §6).
//!
//! Security domains ([`ids::DomainId`]) keep their keys apart; secure boxes
//! ([`boxes::SecureBox`]) of five kinds hold them and act only on framed,
//! signed messages ([`frame`], [`request`], [`message`]) after the seed's
//! three levels of checks against their command, configuration and record
//! tables ([`tables`]); the domain archive's rules ([`archive`]) decide which
//! signed records may follow which. Nothing here does I/O except a box's own
//! [`storage::BoxStorage`].
#![forbid(unsafe_code)]

pub mod archive;
pub mod boxes;
pub mod computer;
pub mod error;
pub mod frame;
pub mod ids;
pub mod message;
pub mod request;
pub mod setup;
pub mod softmeter;
pub mod storage;
pub mod tables;

pub use boxes::{OperationShare, SecureBox, role_of};
pub use computer::{Archive, Installed, Kms, MemArchive};
pub use error::{Fault, KmsError, Result};
pub use ids::{BoxId, BoxKind, DomainId};
pub use message::{KeyStatus, Signed};
pub use request::{Request, Response, Verdict};
