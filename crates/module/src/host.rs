//! The host side of a module: it stores each call's audit entries before it
//! releases the call's result (fail closed), and drives operator sessions.

use postvault_crypto::sig::{PublicKey, SigAlg};

use crate::audit::AuditEntry;
use crate::error::{Error, Result};
use crate::module::Module;
use crate::nvm::Nvm;
use crate::session::{HostOpening, HostSession};
use crate::wire::{Outer, OuterReply, Request, Response, Status};

/// Where the host keeps audit entries. Storage must be durable before `store` returns.
pub trait AuditSink {
    /// Appends entries, oldest first.
    ///
    /// # Errors
    /// Any storage failure; the host then withholds the command's result.
    fn store(&mut self, entries: &[AuditEntry]) -> Result<()>;
}

impl AuditSink for Vec<AuditEntry> {
    fn store(&mut self, entries: &[AuditEntry]) -> Result<()> {
        self.extend_from_slice(entries);
        Ok(())
    }
}

/// A module with its audit storage.
pub struct Host<N: Nvm, S: AuditSink> {
    /// The module.
    pub module: Module<N>,
    /// Audit storage.
    pub sink: S,
}

impl<N: Nvm, S: AuditSink> Host<N, S> {
    /// Pairs a module with its audit storage.
    pub fn new(module: Module<N>, sink: S) -> Self {
        Self { module, sink }
    }

    /// One call: process, store the audit entries, then release the result.
    ///
    /// # Errors
    /// The module's error, or the sink's if the entries could not be stored.
    pub fn call(&mut self, request: Outer) -> Result<OuterReply> {
        let out = self.module.process(request);
        self.sink.store(&out.audit)?;
        out.result
    }

    /// Powers the module off cleanly (see [`Module::shutdown`]).
    ///
    /// # Errors
    /// [`Error::Nvm`].
    pub fn shutdown(&mut self) -> Result<()> {
        self.module.shutdown()
    }

    /// Get Status.
    ///
    /// # Errors
    /// As [`Host::call`].
    pub fn status(&mut self) -> Result<Status> {
        match self.call(Outer::GetStatus)? {
            OuterReply::Status(s) => Ok(*s),
            _ => Err(unexpected()),
        }
    }

    /// Opens an operator session, checking the module's transcript signature
    /// against the audit key the module itself reports (trust on first use: this
    /// catches nothing if the path to the module is already in an attacker's
    /// hands; prefer [`Host::open_session_pinned`]).
    ///
    /// # Errors
    /// As [`Host::call`], or [`Error::SessionMessageRejected`].
    pub fn open_session(&mut self) -> Result<HostSession> {
        let status = self.status()?;
        let key = status
            .audit_key
            .map(|(alg, bytes)| SigAlg::from_id(alg).and_then(|a| PublicKey::from_bytes(a, &bytes)))
            .transpose()?
            .ok_or(NOT_INITIALIZED)?;
        self.handshake(&status.serial.ok_or(NOT_INITIALIZED)?, &key)
    }

    /// Opens an operator session with a module whose audit key the host already
    /// knows (from the first entry of its audit log): a module that cannot sign
    /// the handshake with it is refused.
    ///
    /// # Errors
    /// As [`Host::call`], or [`Error::SessionMessageRejected`].
    pub fn open_session_pinned(&mut self, key: &PublicKey) -> Result<HostSession> {
        let serial = self.status()?.serial.ok_or(NOT_INITIALIZED)?;
        self.handshake(&serial, key)
    }

    fn handshake(&mut self, serial: &str, key: &PublicKey) -> Result<HostSession> {
        let opening = HostOpening::new()?;
        match self.call(Outer::OpenSession {
            host_public: opening.public(),
        })? {
            OuterReply::SessionOpened(opened) => opening.finish(serial, &opened, key),
            _ => Err(unexpected()),
        }
    }

    /// Sends a request inside a session, sealed, and checks the response.
    ///
    /// # Errors
    /// As [`Host::call`], or [`Error::SessionMessageRejected`] for a bad response.
    pub fn send(&mut self, session: &mut HostSession, request: &Request) -> Result<Response> {
        self.send_with(session, request, true)
    }

    /// Sends a request inside a session, sealed or only MAC'd.
    ///
    /// # Errors
    /// As [`Host::send`].
    pub fn send_with(
        &mut self,
        session: &mut HostSession,
        request: &Request,
        sealed: bool,
    ) -> Result<Response> {
        let msg = session.request(request, sealed)?;
        match self.call(Outer::Session(msg))? {
            OuterReply::Session(reply) => session.response(&reply),
            _ => Err(unexpected()),
        }
    }
}

const NOT_INITIALIZED: Error = Error::Busy {
    what: "the module is not initialized",
};

fn unexpected() -> Error {
    Error::Malformed {
        what: "module reply of an unexpected kind",
    }
}
