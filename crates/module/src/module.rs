//! The module itself: boot detection, the command dispatcher, state transitions
//! with failure points, and each command. Everything it keeps between calls is in
//! non-volatile memory; the rest (current state, session, boot flag) is volatile
//! and lost at a reboot, which is simply dropping a `Module` and making a new one.

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_crypto::{Secret32, hpke, x25519};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::account::{AccountChanges, AccountDb};
use crate::audit::{
    AuditData, AuditEntry, Component, EntryBody, MAX_NOTE, REASON_BOOT, REASON_OK, REASON_RESUME,
};
use crate::checkpoint::{CheckpointRecord, CheckpointStore};
use crate::codec;
use crate::command::{Authorized, Command, authorize};
use crate::cryptocard::CryptoCard;
use crate::error::PsdCheck;
use crate::error::{Error, Result};
use crate::mks::{
    ExportCeremony, ImportCeremony, MasterKeySet, MksSlots, SharePackage, key_check_value,
};
use crate::nvm::{Nvm, Slot};
use crate::postal::{self, PostalReply, PostalRequest};
use crate::role::{Role, UserId};
use crate::session::{Direction, SessionKeys, SessionOpened, transcript};
use crate::state::{ModuleState, boot_detection};
use crate::token::{KeyToken, KeyType, KeyUsage};
use crate::wire::{ModuleConfig, Outer, OuterReply, Output, Request, Response, Status};

/// The module's source of time (seconds since the Unix epoch). The module clock
/// is this plus an offset the administrator sets.
pub trait Clock: Send {
    /// Now.
    fn now(&self) -> u64;
}

/// The host's system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Clone, Debug, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl ManualClock {
    /// A clock at `t`.
    #[must_use]
    pub fn at(t: u64) -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(t)))
    }
    /// Moves the clock forward.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Named points inside a state transition where a test can crash the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPoint {
    /// Right after the current state changed, before the transition's actions.
    AfterCurrentState,
    /// After the actions, before the persistent state is written.
    BeforePersistentState,
    /// After a PSD command wrote its checkpoint, before its audit entry (a
    /// power loss between the two NVM writes).
    AfterCheckpoint,
}

/// Module identity and configuration: the layout of NVM slot [`Slot::Identity`].
#[derive(Serialize, Deserialize)]
pub struct Identity {
    /// Module serial.
    pub serial: String,
    /// Audit signing algorithm id.
    pub audit_key_alg: u8,
    /// Audit signing key, PKCS#8.
    pub audit_key_pkcs8: Zeroizing<Vec<u8>>,
    /// Module clock minus host clock, seconds.
    pub clock_offset: i64,
    /// Configuration fixed at initialisation.
    pub config: ModuleConfig,
}

/// How many of its newest entries the module keeps in NVM beside the chain head.
pub const AUDIT_JOURNAL: usize = 8;

/// The audit chain head: the layout of NVM slot [`Slot::AuditHead`] (version 2).
///
/// The newest entries travel with the head, written in the same NVM record, so
/// a host that died between the module's write and its own append of the entry
/// takes them again at the next power-on ([`Outer::Resync`]). Version 1 (the
/// first three fields) is read and upgraded: an empty journal, and the newest
/// checkpoint taken as audited.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct AuditHead {
    /// Sequence number of the next entry.
    pub next_seq: u64,
    /// Hash of the last entry.
    pub last_hash: [u8; 32],
    /// Entries since the last signed one.
    pub since_signed: u32,
    /// The newest entries, oldest first (at most [`AUDIT_JOURNAL`]).
    pub journal: Vec<AuditEntry>,
    /// The checkpoint counter whose transaction the chain records last: a newer
    /// checkpoint in NVM is a transaction whose entry a power loss prevented,
    /// and the next boot records it.
    pub audited_checkpoint: u64,
}

/// Version 1 of [`AuditHead`].
#[derive(Deserialize)]
struct AuditHeadV1 {
    next_seq: u64,
    last_hash: [u8; 32],
    since_signed: u32,
}

/// Reads the audit head of any version.
fn read_audit_head<N: Nvm>(nvm: &N) -> Result<Option<AuditHead>> {
    let Some(bytes) = nvm.read(Slot::AuditHead)? else {
        return Ok(None);
    };
    if let Ok(h) = codec::decode::<AuditHead>(&bytes, "audit head") {
        return Ok(Some(h));
    }
    let v1: AuditHeadV1 = codec::decode(&bytes, "audit head v1")?;
    // The upgrade step: nothing journalled yet; whatever checkpoint is in NVM
    // was written by a version that audited it in the same command.
    let audited_checkpoint = match nvm.read(Slot::Checkpoints)? {
        Some(b) => codec::decode::<CheckpointStore>(&b, "checkpoints")?
            .newest()
            .map(|r| r.peek().map(|body| body.counter))
            .transpose()?
            .unwrap_or(0),
        None => 0,
    };
    Ok(Some(AuditHead {
        next_seq: v1.next_seq,
        last_hash: v1.last_hash,
        since_signed: v1.since_signed,
        journal: Vec::new(),
        audited_checkpoint,
    }))
}

/// The transport private key: the layout of NVM slot [`Slot::Transport`].
#[derive(Serialize, Deserialize)]
pub struct TransportRecord {
    /// X25519 private key.
    pub private: Zeroizing<[u8; 32]>,
}

/// An open operator session.
struct ModuleSession {
    keys: SessionKeys,
    expected: u64,
    user: Option<(UserId, Role)>,
    /// The logged-on user's password has expired and must be changed first.
    must_change_password: bool,
    last_activity: u64,
}

/// What the module keeps in memory after boot.
struct Loaded {
    serial: String,
    audit_key: SigningKey,
    config: ModuleConfig,
    clock_offset: i64,
}

/// A cryptographic module over a non-volatile memory `N`.
pub struct Module<N: Nvm> {
    nvm: N,
    clock: Box<dyn Clock>,
    booted: bool,
    current: ModuleState,
    loaded: Option<Loaded>,
    session: Option<ModuleSession>,
    crashed: bool,
    fail_at: Option<FailPoint>,
    force_sign_next: bool,
}

impl<N: Nvm> Module<N> {
    /// Powers a module on over its NVM. Nothing is read until the first command,
    /// which runs the self-tests and boot detection.
    pub fn new(nvm: N, clock: Box<dyn Clock>) -> Self {
        Self {
            nvm,
            clock,
            booted: false,
            current: ModuleState::Uninitialized,
            loaded: None,
            session: None,
            crashed: false,
            fail_at: None,
            force_sign_next: false,
        }
    }

    /// Arms a failure point: the next transition that reaches it fails with
    /// [`Error::InjectedCrash`] and the module refuses everything until it is
    /// dropped and powered on again (a reboot). For crash tests.
    pub fn crash_at(&mut self, point: FailPoint) {
        self.fail_at = Some(point);
    }

    /// The NVM, for the host (e.g. to reboot over the same memory).
    pub fn nvm(&self) -> &N {
        &self.nvm
    }

    /// Processes one request. The audit entries in the output must be stored by
    /// the host before it releases the result.
    pub fn process(&mut self, request: Outer) -> Output<OuterReply> {
        let mut audit = Vec::new();
        let result = self.process_inner(request, &mut audit);
        Output { result, audit }
    }

    fn process_inner(&mut self, request: Outer, audit: &mut Vec<AuditEntry>) -> Result<OuterReply> {
        if self.crashed {
            return Err(Error::Fatal {
                what: "the module crashed; power it on again",
            });
        }
        if !self.booted {
            let resync_from = match &request {
                Outer::Resync { host_next } => Some(*host_next),
                _ => None,
            };
            if let Err(e) = self.boot(request_command(&request), resync_from, audit) {
                // A power-on that could not complete leaves the module unusable
                // until the next power-on; nothing is recorded as a clean power-off.
                self.current = ModuleState::Error;
                self.crashed = true;
                return Err(e);
            }
            self.booted = true;
        }
        match request {
            Outer::GetStatus | Outer::Resync { .. } => {
                Ok(OuterReply::Status(Box::new(self.status())))
            }
            Outer::VendorKey => {
                let card = self.crypto_card()?;
                Ok(OuterReply::VendorKey {
                    public: card.public()?,
                    signature: card.sign_vendor_key()?,
                })
            }
            Outer::StartInitialization(config) => {
                let proof = self.guard(Command::StartInitialization, false, audit)?;
                self.start_initialization(&proof, config, audit)
            }
            Outer::Reset => {
                let proof = self.guard(Command::Reset, false, audit)?;
                self.reset(&proof, audit)
            }
            Outer::OpenSession { host_public } => {
                let proof = self.guard(Command::OpenSession, false, audit)?;
                let result = self.open_session(&proof, &host_public);
                self.finish(Command::OpenSession, result, audit)
                    .map(OuterReply::SessionOpened)
            }
            Outer::Session(msg) => self.session_request(&msg, audit).map(OuterReply::Session),
            Outer::Postal(request) => {
                let command = request.command.command();
                let proof = self.guard(command, false, audit)?;
                let result = self.postal(&proof, *request);
                self.finish(command, result, audit)
                    .map(|r| OuterReply::Postal(Box::new(r)))
            }
            Outer::SessionOpen {
                session,
                counter,
                sealed,
            } => {
                let proof = self.guard(Command::SessionOpen, false, audit)?;
                let result = self.session_crypto(&proof, &session, |s| {
                    Ok(OuterReply::MessageOpened {
                        device_id: s.device_id,
                        plaintext: s.open(counter, &sealed)?.to_vec(),
                    })
                });
                self.audit_if_failed(Command::SessionOpen, result, audit)
            }
            Outer::SessionSeal {
                session,
                counter,
                plaintext,
            } => {
                let proof = self.guard(Command::SessionSeal, false, audit)?;
                let result = self.session_crypto(&proof, &session, |s| {
                    Ok(OuterReply::MessageSealed(s.seal(counter, &plaintext)?))
                });
                self.audit_if_failed(Command::SessionSeal, result, audit)
            }
            Outer::AutoRecoverCheckpoint { checkpoint } => {
                let command = Command::AutoRecoverCheckpoint;
                let proof = self.guard(command, false, audit)?;
                let was_inhibited = self.checkpoints().is_ok_and(|s| s.inhibited);
                let result = self.auto_recover(&proof, &checkpoint, audit);
                if let Err(Error::PsdCheck(PsdCheck::Inhibited)) = &result
                    && !was_inhibited
                {
                    // Audited (signed, with the record) where the module was inhibited.
                    return result.map(|(discarded, _)| OuterReply::Recovered { discarded });
                }
                self.finish(command, result, audit)
                    .map(|discarded| OuterReply::Recovered { discarded })
            }
        }
    }

    // ----- time, NVM helpers ------------------------------------------------------

    fn now(&self) -> u64 {
        let offset = self.loaded.as_ref().map_or(0, |l| l.clock_offset);
        self.clock.now().saturating_add_signed(offset)
    }

    fn read<T: DeserializeOwned>(&self, slot: Slot) -> Result<Option<T>> {
        self.nvm
            .read(slot)?
            .map(|b| codec::decode(&b, slot.name()))
            .transpose()
    }

    /// Writes a slot. A failed NVM write is handled as a crash: the module
    /// refuses everything until it is powered on again, and boot detection then
    /// decides from what reached NVM (no clean power-off record is written).
    fn write<T: Serialize>(&mut self, slot: Slot, value: &T) -> Result<()> {
        let bytes = Zeroizing::new(codec::encode(value)?);
        let result = self.nvm.write(slot, &bytes);
        self.crashed |= result.is_err();
        result
    }

    /// Removes a slot; a failure is a crash, as for [`Self::write`].
    fn remove(&mut self, slot: Slot) -> Result<()> {
        let result = self.nvm.remove(slot);
        self.crashed |= result.is_err();
        result
    }

    /// Erases NVM; a failure is a crash, as for [`Self::write`].
    fn erase_all(&mut self) -> Result<()> {
        let result = self.nvm.erase_all();
        self.crashed |= result.is_err();
        result
    }

    fn persistent(&self) -> ModuleState {
        self.read(Slot::State)
            .ok()
            .flatten()
            .unwrap_or(ModuleState::Uninitialized)
    }

    fn mks(&self) -> Result<MksSlots> {
        Ok(self.read(Slot::Mks)?.unwrap_or_default())
    }

    fn loaded(&self) -> Result<&Loaded> {
        self.loaded.as_ref().ok_or(Error::Fatal {
            what: "module identity is not loaded",
        })
    }

    fn fail_point(&mut self, point: FailPoint) -> Result<()> {
        if self.fail_at == Some(point) {
            self.fail_at = None;
            self.crashed = true;
            return Err(Error::InjectedCrash(point));
        }
        Ok(())
    }

    /// A state transition: current state first, then the actions, then the
    /// persistent state. If the actions fail, the current state returns to the
    /// persistent one and nothing else changed that the actions did not commit.
    fn transition(
        &mut self,
        to: ModuleState,
        actions: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let before = self.current;
        self.current = to;
        self.fail_point(FailPoint::AfterCurrentState)?;
        if let Err(e) = actions(self) {
            self.current = before;
            return Err(e);
        }
        self.fail_point(FailPoint::BeforePersistentState)?;
        self.write(Slot::State, &to)
    }

    /// A fatal error: both states to Error (best effort on the persistent one).
    fn fatal(&mut self, what: &'static str) -> Error {
        self.current = ModuleState::Error;
        let _ = self.write(Slot::State, &ModuleState::Error);
        Error::Fatal { what }
    }

    // ----- boot ----------------------------------------------------------------

    /// Powers the module off cleanly: the current state is recorded so the next
    /// power-on resumes in it (like a suspended coprocessor) instead of running
    /// boot detection. Sessions are volatile and end here. Without this call,
    /// the next power-on is treated as a reboot after a crash.
    ///
    /// # Errors
    /// [`Error::Nvm`] if the record cannot be written (the next power-on then runs boot detection).
    pub fn shutdown(&mut self) -> Result<()> {
        self.session = None;
        if !self.booted || self.crashed {
            return Ok(());
        }
        let current = self.current;
        self.write(Slot::Power, &current)
    }

    /// Makes the next power-on a reboot even after a clean power-off (an
    /// operator power-cycling the module, e.g. to clear a non-fatal error):
    /// volatile state is forgotten and boot detection runs at the first command.
    ///
    /// # Errors
    /// [`Error::Nvm`]; [`Error::Busy`] if the module already ran a command since power-on.
    pub fn cold_boot(&mut self) -> Result<()> {
        if self.booted {
            return Err(Error::Busy {
                what: "cold boot is only possible before the first command",
            });
        }
        self.nvm.remove(Slot::Power)
    }

    fn boot(
        &mut self,
        command: Option<Command>,
        resync_from: Option<u64>,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<()> {
        let found: ModuleState = self
            .read(Slot::State)?
            .unwrap_or(ModuleState::Uninitialized);
        let power: Option<ModuleState> = self.read(Slot::Power).ok().flatten();
        if power.is_some() {
            // From here on a crash is a reboot.
            self.remove(Slot::Power)?;
        }
        // A clean power-off resumes, unless its record contradicts the persistent
        // state (it may differ only by a non-fatal Error): then it is a reboot.
        let outcome = match power {
            Some(resumed) if resumed == found || resumed == ModuleState::Error => {
                self.current = resumed;
                None
            }
            _ => {
                let has_active = self
                    .read::<MksSlots>(Slot::Mks)
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.active.is_some());
                let outcome = boot_detection(found, has_active);
                self.current = outcome.current;
                if outcome.persistent != found {
                    self.write(Slot::State, &outcome.persistent)?;
                }
                // Boot detection never lands in a ceremony state: an interrupted export
                // or import is abandoned, as Abort Export / Abort Import would.
                self.remove(Slot::Export)?;
                self.remove(Slot::Import)?;
                Some(outcome)
            }
        };
        if self.read::<ModuleState>(Slot::State)?.is_none() {
            return Ok(()); // never initialised: nothing to load, no audit chain yet
        }
        match self.load_identity() {
            Ok(l) => self.loaded = Some(l),
            Err(_) => {
                return Err(self.fatal(
                    "the module identity in NVM is missing or unreadable; reset the module",
                ));
            }
        }
        if postvault_crypto::selftest::run_all().is_err() {
            self.current = ModuleState::Error;
        }
        // The first command after every power-on gets a signed entry, so a damaged
        // audit capability lets at most one command run (seed 001).
        // A host that lost the newest entries (it died before appending them)
        // takes them again first, from the journal in NVM.
        if let Some(from) = resync_from {
            let head = read_audit_head(&self.nvm)?.unwrap_or_default();
            audit.extend(
                head.journal
                    .iter()
                    .filter(|e| e.decode_body().is_ok_and(|b| b.seq >= from))
                    .cloned(),
            );
        }
        // A transaction whose checkpoint reached NVM but whose entry did not
        // (power lost between the two writes) is recorded now, before the boot.
        let head = read_audit_head(&self.nvm)?.unwrap_or_default();
        if let Ok(store) = self.checkpoints()
            && let Some(newest) = store.newest()
            && let Ok(body) = newest.peek()
            && body.counter > head.audited_checkpoint
        {
            let command = transaction_command(body.transaction);
            let entry = self.record(
                Some(command),
                REASON_OK,
                AuditData::Psd(Box::new(body)),
                true,
            )?;
            audit.push(entry);
        }
        let (reason, data) = match outcome {
            Some(outcome) => (REASON_BOOT, AuditData::Boot(outcome)),
            None => (REASON_RESUME, AuditData::Resumed(self.current)),
        };
        let entry = self.record(command, reason, data, true)?;
        audit.push(entry);
        Ok(())
    }

    fn load_identity(&self) -> Result<Loaded> {
        let id: Identity = self.read(Slot::Identity)?.ok_or(Error::Fatal {
            what: "no identity",
        })?;
        let alg = SigAlg::from_id(id.audit_key_alg)?;
        Ok(Loaded {
            serial: id.serial,
            audit_key: SigningKey::from_pkcs8(alg, &id.audit_key_pkcs8)?,
            config: id.config,
            clock_offset: id.clock_offset,
        })
    }

    // ----- audit ---------------------------------------------------------------

    /// Makes one audit entry and advances the chain head in NVM.
    fn record(
        &mut self,
        command: Option<Command>,
        reason: u16,
        data: AuditData,
        force_sign: bool,
    ) -> Result<AuditEntry> {
        let head: AuditHead = match read_audit_head(&self.nvm) {
            Ok(Some(h)) => h,
            _ => return Err(self.fatal("the audit chain head is lost; the module must be reset")),
        };
        let (serial_ok, interval) = match &self.loaded {
            Some(l) => (true, l.config.audit_sign_interval.max(1)),
            None => (false, 1),
        };
        if !serial_ok {
            return Err(self.fatal("no audit signing key"));
        }
        let user = self.session.as_ref().and_then(|s| s.user.clone());
        let sign = force_sign
            || core::mem::take(&mut self.force_sign_next)
            || head.since_signed.saturating_add(1) >= interval;
        // The checkpoint this entry accounts for, if it is about one.
        let audited = match &data {
            AuditData::Psd(b) | AuditData::CheckpointAccepted(b) => Some(b.counter),
            AuditData::CheckpointRecovered { accepted, .. } => Some(accepted.counter),
            _ => None,
        };
        let body = EntryBody {
            seq: head.next_seq,
            prev_hash: head.last_hash,
            component: Component::of(command),
            command,
            user: user.as_ref().map(|u| u.0.clone()),
            role: user.map(|u| u.1),
            current: self.current,
            persistent: self.persistent(),
            time: self.now(),
            reason,
            signed: sign,
            data,
        };
        let body = codec::encode(&body)?;
        let signature = if sign {
            let key = &self.loaded()?.audit_key;
            match key.sign(&body) {
                Ok(s) => Some((s.alg().id(), s.as_bytes().to_vec())),
                Err(_) => {
                    // Non-fatal: the chain is intact, but no result is released.
                    self.current = ModuleState::Error;
                    return Err(Error::Fatal {
                        what: "the audit entry could not be signed",
                    });
                }
            }
        } else {
            None
        };
        let entry = AuditEntry { body, signature };
        let mut journal = head.journal;
        journal.push(entry.clone());
        let excess = journal.len().saturating_sub(AUDIT_JOURNAL);
        journal.drain(..excess);
        let next = AuditHead {
            next_seq: head.next_seq.saturating_add(1),
            last_hash: entry.hash(),
            since_signed: if sign {
                0
            } else {
                head.since_signed.saturating_add(1)
            },
            journal,
            audited_checkpoint: audited.unwrap_or(head.audited_checkpoint),
        };
        if self.write(Slot::AuditHead, &next).is_err() {
            return Err(self.fatal("the audit chain head could not be stored"));
        }
        Ok(entry)
    }

    /// Audits a command's outcome; a success is released only with its entry.
    fn finish<T>(
        &mut self,
        command: Command,
        result: Result<(T, AuditData)>,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<T> {
        match result {
            Ok((value, data)) => {
                let entry =
                    self.record(Some(command), REASON_OK, data, command.is_module_level())?;
                audit.push(entry);
                Ok(value)
            }
            Err(e) => {
                self.audit_failure(Some(command), &e, audit);
                Err(e)
            }
        }
    }

    /// Transport commands are audited only when they fail: a successful one
    /// changes nothing and uses no long-term key but the session's.
    fn audit_if_failed<T>(
        &mut self,
        command: Command,
        result: Result<T>,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<T> {
        if let Err(e) = &result {
            self.audit_failure(Some(command), e, audit);
        }
        result
    }

    /// Opens a session token (under the active or dormant MKS) and runs `f` with it.
    fn session_crypto<T>(
        &mut self,
        _proof: &Authorized,
        token: &[u8],
        f: impl FnOnce(&crate::signon::Session) -> Result<T>,
    ) -> Result<T> {
        let slots = self.mks()?;
        let session = crate::signon::open_session(&slots, token, self.now())?;
        f(&session)
    }

    fn audit_failure(&mut self, command: Option<Command>, e: &Error, audit: &mut Vec<AuditEntry>) {
        if self.loaded.is_some()
            && !matches!(e, Error::InjectedCrash(_) | Error::Fatal { .. })
            && let Ok(entry) = self.record(
                command,
                e.reason_code(),
                AuditData::Failure(e.to_string()),
                false,
            )
        {
            audit.push(entry);
        }
    }

    fn role(&self) -> Option<Role> {
        self.session
            .as_ref()
            .and_then(|s| s.user.as_ref().map(|u| u.1))
    }

    fn guard(
        &mut self,
        command: Command,
        in_session: bool,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<Authorized> {
        let role = self.role();
        authorize(command, self.current, in_session, role).map_err(|reason| {
            let e = Error::Refused {
                command,
                state: self.current,
                role,
                reason,
            };
            self.audit_failure(Some(command), &e, audit);
            e
        })
    }

    // ----- session-less commands ------------------------------------------------

    fn start_initialization(
        &mut self,
        _proof: &Authorized,
        config: ModuleConfig,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<OuterReply> {
        postvault_crypto::selftest::run_all()?;
        config.check()?;
        let audit_key = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
        let serial = hex::encode(postvault_crypto::rand::bytes::<8>()?);
        let identity = Identity {
            serial: serial.clone(),
            audit_key_alg: audit_key.alg().id(),
            audit_key_pkcs8: Zeroizing::new(audit_key.to_pkcs8()?.expose().to_vec()),
            clock_offset: 0,
            config,
        };
        let public = audit_key.public_key();
        let data = AuditData::Initialized {
            serial: serial.clone(),
            key_alg: public.alg().id(),
            key: public.as_bytes().to_vec(),
            sign_interval: config.audit_sign_interval,
        };
        let loaded = Loaded {
            serial: serial.clone(),
            audit_key,
            config,
            clock_offset: 0,
        };
        // The chain's first entry is made inside the transition, before the
        // persistent state says Initializing: an initialised module always has it.
        self.transition(ModuleState::Initializing, |m| {
            m.erase_all()?;
            m.write(Slot::Identity, &identity)?;
            m.write(Slot::AuditHead, &AuditHead::default())?;
            m.loaded = Some(loaded);
            audit.push(m.record(Some(Command::StartInitialization), REASON_OK, data, true)?);
            Ok(())
        })?;
        Ok(OuterReply::Initialized {
            serial,
            audit_key: (public.alg().id(), public.as_bytes().to_vec()),
        })
    }

    fn reset(&mut self, _proof: &Authorized, audit: &mut Vec<AuditEntry>) -> Result<OuterReply> {
        if self.loaded.is_some() {
            // The last entry of this chain; best effort, since a reset must work on a broken module.
            if let Ok(e) = self.record(Some(Command::Reset), REASON_OK, AuditData::None, true) {
                audit.push(e);
            }
        }
        self.session = None;
        self.loaded = None;
        self.erase_all()?;
        self.current = ModuleState::Uninitialized;
        Ok(OuterReply::ResetDone)
    }

    fn open_session(
        &mut self,
        _proof: &Authorized,
        host_public: &[u8; 32],
    ) -> Result<(SessionOpened, AuditData)> {
        if self.session.as_ref().is_some_and(|s| s.user.is_some()) {
            return Err(Error::Busy {
                what: "a user is logged on in the open session; they must log off first",
            });
        }
        let loaded = self.loaded()?;
        let secret = x25519::EphemeralSecret::generate()?;
        let module_public = secret.public_key()?;
        let t = transcript(&loaded.serial, host_public, &module_public);
        let signature = loaded.audit_key.sign(&t)?;
        let shared = secret.agree(host_public)?;
        let keys = SessionKeys::derive(&shared, &t)?;
        let id = keys.id();
        self.session = Some(ModuleSession {
            keys,
            expected: 1,
            user: None,
            must_change_password: false,
            last_activity: self.now(),
        });
        Ok((
            SessionOpened {
                session: id,
                module_public,
                signature: (signature.alg().id(), signature.as_bytes().to_vec()),
            },
            AuditData::Session(id),
        ))
    }

    // ----- session requests -----------------------------------------------------

    fn session_request(
        &mut self,
        msg: &crate::session::SessionMessage,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<crate::session::SessionMessage> {
        let now = self.now();
        let timeout = self.logon_timeout();
        let Some(session) = self.session.as_mut() else {
            let e = Error::NoSession;
            self.audit_failure(None, &e, audit);
            return Err(e);
        };
        let plain = match session.keys.unwrap(Direction::Request, msg) {
            Ok(p) => Zeroizing::new(p),
            Err(e) => {
                self.audit_failure(None, &e, audit);
                return Err(e);
            }
        };
        if msg.counter != session.expected {
            let e = Error::SessionOutOfOrder {
                expected: session.expected,
                got: msg.counter,
            };
            self.audit_failure(None, &e, audit);
            return Err(e);
        }
        session.expected = session.expected.saturating_add(1);
        let timed_out = session
            .user
            .as_ref()
            .is_some_and(|_| now.saturating_sub(session.last_activity) > timeout);
        session.last_activity = now;
        let request: Request = match codec::decode(&plain, "session request") {
            Ok(r) => r,
            Err(e) => {
                self.audit_failure(None, &e, audit);
                return Err(e);
            }
        };
        let command = request.command();
        if timed_out {
            let e = Error::LogonTimedOut;
            self.audit_failure(Some(command), &e, audit);
            if let Some(s) = self.session.as_mut() {
                s.user = None;
            }
            return Err(e);
        }
        if command.carries_password() && !msg.sealed {
            let e = Error::MustBeSealed { command };
            self.audit_failure(Some(command), &e, audit);
            return Err(e);
        }
        let proof = self.guard(command, true, audit)?;
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.must_change_password)
            && !matches!(
                command,
                Command::ChangePassword | Command::Logoff | Command::QueryCurrentUser
            )
        {
            let e = Error::Expired {
                user: self.user()?.to_string(),
                what: "password (change it before anything else)",
            };
            self.audit_failure(Some(command), &e, audit);
            return Err(e);
        }
        let result = self.execute(&proof, request);
        let response = self.finish(command, result, audit)?;
        let counter = msg.counter;
        let session = self.session.as_ref().ok_or(Error::Fatal {
            what: "session vanished",
        })?;
        let reply = session.keys.wrap(
            Direction::Response,
            counter,
            msg.sealed,
            &codec::encode(&response)?,
        );
        if command == Command::CloseSession {
            self.session = None;
        }
        reply
    }

    fn logon_timeout(&self) -> u64 {
        let Some((user, _)) = self.session.as_ref().and_then(|s| s.user.as_ref()) else {
            return u64::MAX;
        };
        self.read::<AccountDb>(Slot::Accounts)
            .ok()
            .flatten()
            .and_then(|db| db.get(user).map(|a| a.logon_timeout_secs))
            .unwrap_or(0)
    }

    fn user(&self) -> Result<UserId> {
        self.session
            .as_ref()
            .and_then(|s| s.user.as_ref().map(|u| u.0.clone()))
            .ok_or(Error::Fatal {
                what: "no logged-on user",
            })
    }

    fn accounts(&self) -> Result<AccountDb> {
        Ok(self.read(Slot::Accounts)?.unwrap_or_default())
    }

    fn params(&self) -> Result<postvault_crypto::password::Argon2Params> {
        Ok(self.loaded()?.config.argon2())
    }

    fn execute(&mut self, proof: &Authorized, request: Request) -> Result<(Response, AuditData)> {
        if proof.command() != request.command() {
            return Err(Error::Fatal {
                what: "a command ran on another command's authorization",
            });
        }
        let now = self.now();
        match request {
            Request::InitializeAccessControl(accounts) => {
                if !self.accounts()?.is_empty() {
                    return Err(Error::InvalidArgument {
                        what: "access control is already initialized",
                    });
                }
                let db = AccountDb::initial(&accounts, self.params()?, now)?;
                self.write(Slot::Accounts, &db)?;
                Ok((Response::Done, AuditData::None))
            }
            Request::Logon { user, password } => {
                if self.role().is_some() {
                    return Err(Error::Busy {
                        what: "someone is logged on; log off first",
                    });
                }
                let mut db = self.accounts()?;
                let outcome = db.logon(&user, &password, self.params()?, now);
                self.write(Slot::Accounts, &db)?;
                let logon = outcome?;
                let role = logon.role;
                if let Some(s) = self.session.as_mut() {
                    s.user = Some((user.clone(), role));
                    s.must_change_password = logon.must_change_password;
                }
                Ok((
                    Response::CurrentUser(user.clone(), role),
                    AuditData::Account(user),
                ))
            }
            Request::Logoff => {
                let user = self.user()?;
                if let Some(s) = self.session.as_mut() {
                    s.user = None;
                    s.must_change_password = false;
                }
                Ok((Response::Done, AuditData::Account(user)))
            }
            Request::QueryCurrentUser => {
                let (u, r) =
                    self.session
                        .as_ref()
                        .and_then(|s| s.user.clone())
                        .ok_or(Error::Fatal {
                            what: "no logged-on user",
                        })?;
                Ok((Response::CurrentUser(u, r), AuditData::None))
            }
            Request::CloseSession => {
                if self.role().is_some() {
                    return Err(Error::Busy {
                        what: "log off before closing the session",
                    });
                }
                Ok((Response::Done, AuditData::None))
            }
            Request::BeginAdmin => {
                self.transition(ModuleState::Administrative, |_| Ok(()))?;
                Ok((Response::Done, AuditData::None))
            }
            Request::EndAdmin => {
                self.transition(ModuleState::Operational, |_| Ok(()))?;
                Ok((Response::Done, AuditData::None))
            }
            Request::CreateAccount(new) => {
                let mut db = self.accounts()?;
                db.insert(&new, self.params()?, now)?;
                self.write(Slot::Accounts, &db)?;
                Ok((Response::Done, AuditData::Account(new.user)))
            }
            Request::DeleteAccount(user) => {
                if user == self.user()? {
                    return Err(Error::InvalidArgument {
                        what: "an administrator cannot delete their own account",
                    });
                }
                let mut db = self.accounts()?;
                db.delete(&user)?;
                self.write(Slot::Accounts, &db)?;
                Ok((Response::Done, AuditData::Account(user)))
            }
            Request::ModifyAccount(user, changes) => {
                let mut db = self.accounts()?;
                db.modify(&user, &changes, self.params()?, now)?;
                self.write(Slot::Accounts, &db)?;
                Ok((Response::Done, AuditData::Account(user)))
            }
            Request::UnlockAccount(user) => {
                let mut db = self.accounts()?;
                let unlock = AccountChanges {
                    unlock: true,
                    ..AccountChanges::default()
                };
                db.modify(&user, &unlock, self.params()?, now)?;
                self.write(Slot::Accounts, &db)?;
                Ok((Response::Done, AuditData::Account(user)))
            }
            Request::ViewAccounts => {
                Ok((Response::Accounts(self.accounts()?.view()), AuditData::None))
            }
            Request::ChangePassword { old, new } => {
                let user = self.user()?;
                let mut db = self.accounts()?;
                db.change_password(&user, &old, &new, self.params()?, now)?;
                self.write(Slot::Accounts, &db)?;
                if let Some(s) = self.session.as_mut() {
                    s.must_change_password = false;
                }
                Ok((Response::Done, AuditData::Account(user)))
            }
            Request::SetClock(t) => self.set_clock(t, now),
            Request::GenerateMks => self.generate_mks(),
            Request::GenerateTransportKey => self.generate_transport_key(),
            Request::ExportTransportKey => Ok((
                Response::TransportKey(self.transport()?.public_key()?.0),
                AuditData::None,
            )),
            Request::CreateMksShares {
                shares,
                threshold,
                exportable,
            } => {
                let active = self.mks()?.active.ok_or(Error::Mks {
                    what: "there is no active master key set",
                })?;
                let ceremony = ExportCeremony::create(&active, shares, threshold, exportable)?;
                let nonce = ceremony.ceremony;
                self.transition(ModuleState::ExportingShares, |m| {
                    m.write(Slot::Export, &ceremony)
                })?;
                Ok((
                    Response::SharesCreated { ceremony: nonce },
                    AuditData::Share {
                        ceremony: nonce,
                        share_id: None,
                        shares,
                        threshold,
                    },
                ))
            }
            Request::ExportShare { destination } => self.export_share(destination),
            Request::AbortExport => {
                self.transition(ModuleState::Operational, |m| m.remove(Slot::Export))?;
                Ok((Response::Done, AuditData::None))
            }
            Request::StartImportingMks => {
                self.transport()?;
                self.transition(ModuleState::ImportingShares, |m| m.remove(Slot::Import))?;
                Ok((Response::Done, AuditData::None))
            }
            Request::ImportShare(bytes) => self.import_share(&bytes),
            Request::CombineShares { source } => self.combine_shares(&source),
            Request::AbortImport => {
                let has_active = self.mks()?.active.is_some();
                if has_active {
                    self.transition(ModuleState::Operational, |m| m.remove(Slot::Import))?;
                } else {
                    self.remove(Slot::Import)?;
                }
                Ok((Response::Done, AuditData::None))
            }
            Request::ActivateMks => {
                let mut slots = self.mks()?;
                let new = slots.dormant.take().ok_or(Error::Mks {
                    what: "there is no dormant master key set to activate",
                })?;
                let info = new.info();
                slots.dormant = slots.active.replace(new);
                self.write(Slot::Mks, &slots)?;
                Ok((Response::Mks(info), AuditData::Mks(info)))
            }
            Request::DeleteDormantMks => {
                let mut slots = self.mks()?;
                let old = slots.dormant.take().ok_or(Error::Mks {
                    what: "there is no dormant master key set",
                })?;
                self.write(Slot::Mks, &slots)?;
                Ok((Response::Mks(old.info()), AuditData::Mks(old.info())))
            }
            Request::GenerateTestToken { owner } => {
                let active = self.mks()?.active.ok_or(Error::Mks {
                    what: "there is no active master key set",
                })?;
                let key = postvault_crypto::Secret32::generate()?;
                let token = KeyToken::seal(
                    &active,
                    KeyType::Secret32,
                    KeyUsage::Test,
                    &owner,
                    key.expose(),
                )?;
                let kcv = key_check_value(key.expose());
                Ok((
                    Response::Token {
                        token: token.encode()?,
                        kcv,
                    },
                    AuditData::Token {
                        mks_id: active.id,
                        kcv,
                        under: None,
                    },
                ))
            }
            Request::VerifyToken(bytes) => {
                let token = KeyToken::decode(&bytes)?;
                let (key, under) = token.open(&self.mks()?)?;
                let kcv = key_check_value(&key);
                Ok((
                    Response::TokenChecked { kcv, under },
                    AuditData::Token {
                        mks_id: token.header.mks_id,
                        kcv,
                        under: Some(under),
                    },
                ))
            }
            Request::TranslateToken(bytes) => {
                let token = KeyToken::decode(&bytes)?;
                let slots = self.mks()?;
                let (key, _) = token.open(&slots)?;
                let active = slots.active.ok_or(Error::Mks {
                    what: "there is no active master key set",
                })?;
                let h = &token.header;
                let new = KeyToken::seal(&active, h.key_type, h.usage, &h.owner, &key)?;
                let kcv = key_check_value(&key);
                Ok((
                    Response::Token {
                        token: new.encode()?,
                        kcv,
                    },
                    AuditData::Token {
                        mks_id: active.id,
                        kcv,
                        under: None,
                    },
                ))
            }
            Request::InitializeCryptoCard { settings, tokens } => {
                settings.check()?;
                let slots = self.mks()?;
                let card = match tokens {
                    None => CryptoCard::generate(settings)?,
                    Some(t) => CryptoCard::load(settings, &t, &slots)?,
                };
                // Settings may change; the shared keys may not while a card is
                // loaded: customers hold the registration keys and the module
                // table's records are MAC'd with the checkpoint key.
                if let Some(loaded) = self.read::<CryptoCard>(Slot::CryptoCard)?
                    && !loaded.same_keys(&card)
                {
                    return Err(Error::InvalidArgument {
                        what: "the crypto-card is loaded: its keys cannot change (load it with its own tokens to change settings; Reset the module to replace the keys)",
                    });
                }
                let tokens = card.tokens(&slots)?;
                let public = card.public()?;
                let settings = Box::new(card.settings.clone());
                self.write(Slot::CryptoCard, &card)?;
                Ok((
                    Response::CryptoCard { tokens, public },
                    AuditData::CryptoCard(settings),
                ))
            }
            Request::RecoverCheckpoint(record) => self.recover_checkpoint(record),
            Request::ExportAuditKey => {
                let pk = self.loaded()?.audit_key.public_key();
                Ok((
                    Response::AuditKey(pk.alg().id(), pk.as_bytes().to_vec()),
                    AuditData::None,
                ))
            }
            Request::CreateAuditEntry {
                note,
                force_signature,
            } => {
                if note.len() > MAX_NOTE {
                    return Err(Error::InvalidArgument {
                        what: "audit note: at most 1024 bytes",
                    });
                }
                self.force_sign_next = force_signature;
                Ok((Response::Done, AuditData::Note(note)))
            }
        }
    }

    fn set_clock(&mut self, t: u64, now: u64) -> Result<(Response, AuditData)> {
        let base = self.clock.now();
        let offset = i64::try_from(i128::from(t) - i128::from(base)).map_err(|_| {
            Error::InvalidArgument {
                what: "clock value out of range",
            }
        })?;
        let mut id: Identity = self.read(Slot::Identity)?.ok_or(Error::Fatal {
            what: "no identity",
        })?;
        id.clock_offset = offset;
        self.write(Slot::Identity, &id)?;
        if let Some(l) = self.loaded.as_mut() {
            l.clock_offset = offset;
        }
        Ok((Response::Done, AuditData::Clock { old: now, new: t }))
    }

    fn generate_mks(&mut self) -> Result<(Response, AuditData)> {
        let mks = MasterKeySet::generate(true)?;
        let info = mks.info();
        if self.current == ModuleState::Initializing {
            let slots = MksSlots {
                active: Some(mks),
                dormant: None,
            };
            self.transition(ModuleState::Operational, |m| m.write(Slot::Mks, &slots))?;
        } else {
            let mut slots = self.mks()?;
            if slots.dormant.is_some() {
                return Err(Error::Mks {
                    what: "a dormant master key set exists; delete it before generating another",
                });
            }
            slots.dormant = Some(mks);
            self.write(Slot::Mks, &slots)?;
        }
        Ok((Response::Mks(info), AuditData::Mks(info)))
    }

    fn generate_transport_key(&mut self) -> Result<(Response, AuditData)> {
        if self.read::<TransportRecord>(Slot::Transport)?.is_some() {
            return Err(Error::Mks {
                what: "this module already has a transport key",
            });
        }
        let (private, public) = hpke::PrivateKey::generate()?;
        let record = TransportRecord {
            private: Zeroizing::new(*private.secret().expose()),
        };
        if self.current == ModuleState::Initializing {
            self.transition(ModuleState::ImportingShares, |m| {
                m.write(Slot::Transport, &record)
            })?;
        } else {
            self.write(Slot::Transport, &record)?;
        }
        Ok((Response::TransportKey(public.0), AuditData::None))
    }

    fn transport(&self) -> Result<hpke::PrivateKey> {
        let record: TransportRecord = self.read(Slot::Transport)?.ok_or(Error::Mks {
            what: "this module has no transport key; generate one first",
        })?;
        Ok(hpke::PrivateKey::from_secret(
            postvault_crypto::Secret32::from_bytes(*record.private),
        )?)
    }

    fn export_share(&mut self, destination: [u8; 32]) -> Result<(Response, AuditData)> {
        let mut ceremony: ExportCeremony = self.read(Slot::Export)?.ok_or(Error::Mks {
            what: "no export ceremony is in progress",
        })?;
        let custodian = self.user()?;
        let loaded = self.loaded()?;
        let package =
            ceremony.export_next(&loaded.serial, &loaded.audit_key, &custodian, destination)?;
        let remaining = u8::try_from(ceremony.remaining.len()).unwrap_or(u8::MAX);
        let data = AuditData::Share {
            ceremony: ceremony.ceremony,
            share_id: Some(package.header.share_id),
            shares: ceremony.shares,
            threshold: ceremony.threshold,
        };
        if remaining == 0 {
            self.transition(ModuleState::Operational, |m| m.remove(Slot::Export))?;
        } else {
            self.write(Slot::Export, &ceremony)?;
        }
        Ok((
            Response::Share {
                share: codec::encode(&package)?,
                remaining,
            },
            data,
        ))
    }

    fn import_share(&mut self, bytes: &[u8]) -> Result<(Response, AuditData)> {
        let package = SharePackage::decode(bytes)?;
        let transport = self.transport()?;
        let custodian = self.user()?;
        let mut ceremony: ImportCeremony = self.read(Slot::Import)?.unwrap_or_default();
        ceremony.import(&package, &transport, &custodian)?;
        self.write(Slot::Import, &ceremony)?;
        let (received, threshold) = ceremony.progress().unwrap_or((0, 0));
        let h = &package.header;
        Ok((
            Response::ShareImported {
                received,
                threshold,
            },
            AuditData::Share {
                ceremony: h.ceremony,
                share_id: Some(h.share_id),
                shares: h.shares,
                threshold,
            },
        ))
    }

    fn combine_shares(&mut self, source: &[u8; 32]) -> Result<(Response, AuditData)> {
        let ceremony: ImportCeremony = self.read(Slot::Import)?.unwrap_or_default();
        let mks = ceremony.combine(source)?;
        let info = mks.info();
        let mut slots = self.mks()?;
        if [&slots.active, &slots.dormant]
            .iter()
            .any(|m| m.as_ref().is_some_and(|m| m.id == info.id))
        {
            return Err(Error::Mks {
                what: "this module already holds that master key set",
            });
        }
        if slots.active.is_none() {
            slots.active = Some(mks);
        } else if slots.dormant.is_none() {
            slots.dormant = Some(mks);
        } else {
            return Err(Error::Mks {
                what: "a dormant master key set exists; delete it before importing another",
            });
        }
        self.transition(ModuleState::Operational, |m| {
            m.write(Slot::Mks, &slots)?;
            m.remove(Slot::Import)
        })?;
        Ok((Response::Mks(info), AuditData::Mks(info)))
    }

    // ----- PSD commands ------------------------------------------------------

    fn crypto_card(&self) -> Result<CryptoCard> {
        self.read(Slot::CryptoCard)?
            .ok_or(Error::PsdCheck(PsdCheck::NoCryptoCard))
    }

    fn checkpoints(&self) -> Result<CheckpointStore> {
        Ok(self.read(Slot::Checkpoints)?.unwrap_or_default())
    }

    fn checkpoint_key(card: &CryptoCard) -> Secret32 {
        Secret32::from_bytes(*card.checkpoint_mac)
    }

    /// A PSD command: the checkpoint comparison (the seed's dispatch check),
    /// the command's own checks, then the one write: the new checkpoint into NVM.
    /// Any failure before that write leaves the module as it was.
    fn postal(
        &mut self,
        _proof: &Authorized,
        request: PostalRequest,
    ) -> Result<(PostalReply, AuditData)> {
        let card = self.crypto_card()?;
        let store = self.checkpoints()?;
        store.check(request.checkpoint.as_ref())?;
        let slots = self.mks()?;
        let serial = self.loaded()?.serial.clone();
        let ctx = postal::Context {
            card: &card,
            slots: &slots,
            store: &store,
            now: self.now(),
        };
        let step = postal::run(&ctx, request.command)?;
        let body = store.next_body(&serial, step.facts)?;
        let record = CheckpointRecord::seal(&body, &Self::checkpoint_key(&card))?;
        self.write(Slot::Checkpoints, &store.pushed(record.clone()))?;
        self.fail_point(FailPoint::AfterCheckpoint)?;
        Ok((
            PostalReply {
                package: step.package,
                checkpoint: record,
                outcome: step.outcome,
            },
            AuditData::Psd(Box::new(body)),
        ))
    }

    /// Auto-Recover Module Checkpoint (seed 001): accept the database's record
    /// if it is one of the two older records, with an audit entry for each
    /// discarded transaction; otherwise inhibit PSD work.
    fn auto_recover(
        &mut self,
        _proof: &Authorized,
        record: &CheckpointRecord,
        audit: &mut Vec<AuditEntry>,
    ) -> Result<(usize, AuditData)> {
        let card = self.crypto_card()?;
        let store = self.checkpoints()?;
        if store.inhibited {
            return Err(Error::PsdCheck(PsdCheck::Inhibited));
        }
        // A record that is not genuine, or is another module's, says nothing
        // about this module's place in the database: refuse it without
        // inhibiting, so garbage or a misrouted row cannot stop the module.
        let body = record.open(&Self::checkpoint_key(&card))?;
        self.check_own_record(&body)?;
        if store.newest() == Some(record) {
            return Ok((0, AuditData::CheckpointAccepted(Box::new(body))));
        }
        match store.recover_to(record) {
            Some((kept, discarded)) => {
                self.write(Slot::Checkpoints, &kept)?;
                // Signed, like every entry of a module-level command.
                for d in &discarded {
                    let data = AuditData::Discarded(Box::new(d.peek()?));
                    let entry =
                        self.record(Some(Command::AutoRecoverCheckpoint), REASON_OK, data, true)?;
                    audit.push(entry);
                }
                Ok((
                    discarded.len(),
                    AuditData::CheckpointAccepted(Box::new(body)),
                ))
            }
            None => {
                let inhibited = CheckpointStore {
                    inhibited: true,
                    ..store
                };
                self.write(Slot::Checkpoints, &inhibited)?;
                let entry = self.record(
                    Some(Command::AutoRecoverCheckpoint),
                    Error::PsdCheck(PsdCheck::Inhibited).reason_code(),
                    AuditData::Inhibited(Box::new(body)),
                    true,
                )?;
                audit.push(entry);
                Err(Error::PsdCheck(PsdCheck::Inhibited))
            }
        }
    }

    fn check_own_record(&self, body: &crate::checkpoint::CheckpointBody) -> Result<()> {
        if body.module_serial != self.loaded()?.serial {
            return Err(Error::InvalidArgument {
                what: "the checkpoint record is another module's",
            });
        }
        Ok(())
    }

    /// Disaster recovery (security officer) of an inhibited module: the
    /// database's record, genuine and this module's, becomes the newest; kept
    /// records newer than it are discarded (named in the signed audit entry),
    /// older ones stay, and PSD work resumes.
    fn recover_checkpoint(&mut self, record: CheckpointRecord) -> Result<(Response, AuditData)> {
        let card = self.crypto_card()?;
        let body = record.open(&Self::checkpoint_key(&card))?;
        self.check_own_record(&body)?;
        let store = self.checkpoints()?;
        if !store.inhibited {
            return Err(Error::InvalidArgument {
                what: "the module is not inhibited: a database one or two transactions behind is Auto-Recover's job",
            });
        }
        let mut discarded = Vec::new();
        let mut records = vec![record];
        for kept in &store.records {
            let b = kept.peek()?;
            if b.counter > body.counter {
                discarded.push(b);
            } else if b.counter < body.counter && records.len() < crate::checkpoint::KEPT {
                records.push(kept.clone());
            }
        }
        let recovered = CheckpointStore {
            records,
            inhibited: false,
        };
        self.write(Slot::Checkpoints, &recovered)?;
        Ok((
            Response::Done,
            AuditData::CheckpointRecovered {
                accepted: Box::new(body),
                discarded,
            },
        ))
    }

    // ----- status ------------------------------------------------------------

    fn status(&self) -> Status {
        let head: AuditHead = read_audit_head(&self.nvm)
            .ok()
            .flatten()
            .unwrap_or_default();
        let slots = self.mks().unwrap_or_default();
        let export: Option<ExportCeremony> = self.read(Slot::Export).ok().flatten();
        let import: Option<ImportCeremony> = self.read(Slot::Import).ok().flatten();
        let checkpoints = self.checkpoints().unwrap_or_default();
        Status {
            current: self.current,
            persistent: self.persistent(),
            serial: self.loaded.as_ref().map(|l| l.serial.clone()),
            time: self.now(),
            audit_key: self.loaded.as_ref().map(|l| {
                let pk = l.audit_key.public_key();
                (pk.alg().id(), pk.as_bytes().to_vec())
            }),
            audit_next_seq: head.next_seq,
            audit_head: head.last_hash,
            active_mks: slots.active.as_ref().map(MasterKeySet::info),
            dormant_mks: slots.dormant.as_ref().map(MasterKeySet::info),
            transport_key: self
                .transport()
                .ok()
                .and_then(|k| k.public_key().ok())
                .map(|p| p.0),
            export_progress: export.map(|e| {
                let left = u8::try_from(e.remaining.len()).unwrap_or(u8::MAX);
                (e.shares.saturating_sub(left), e.shares)
            }),
            import_progress: import.and_then(|i| i.progress()),
            accounts: self.accounts().map(|db| db.view().len()).unwrap_or(0),
            session_open: self.session.is_some(),
            logged_on: self.session.as_ref().and_then(|s| s.user.clone()),
            checkpoint: checkpoints.newest().cloned(),
            inhibited: checkpoints.inhibited,
        }
    }
}

/// The audit chain head as stored in a module's NVM, read without booting the
/// module (for auditors: `audit verify --dir` compares a log's last hash with it).
///
/// # Errors
/// [`Error::Nvm`] or [`Error::Malformed`].
pub fn stored_audit_head<N: Nvm>(nvm: &N) -> Result<Option<(u64, [u8; 32])>> {
    Ok(read_audit_head(nvm)?.map(|h| (h.next_seq, h.last_hash)))
}

/// The command that makes a transaction of this type.
fn transaction_command(t: crate::checkpoint::Transaction) -> Command {
    use crate::checkpoint::Transaction as T;
    match t {
        T::Initialize => Command::InitializePsd,
        T::Authorize => Command::AuthorizePsd,
        T::Configure => Command::ConfigurePsd,
        T::AuthorizeCustomer => Command::AuthorizeCustomer,
        T::Download => Command::PostageValueDownload,
        T::Indicium => Command::CreateIndicium,
        T::Correction => Command::CreateCorrectionIndicium,
        T::Refund => Command::CreateRefundIndicium,
        T::Redate => Command::RedateIndicium,
        T::BeginPasswordReset => Command::BeginPasswordReset,
        T::CompletePasswordReset => Command::CompletePasswordReset,
        T::SignOn | T::SignOnRefused => Command::SignOn,
        T::InstallDomainKey => Command::InstallDomainKey,
        T::RegisterDomainKeys => Command::RegisterDomainKeys,
    }
}

fn request_command(request: &Outer) -> Option<Command> {
    match request {
        Outer::GetStatus | Outer::Resync { .. } | Outer::VendorKey => Some(Command::GetStatus),
        Outer::StartInitialization(_) => Some(Command::StartInitialization),
        Outer::Reset => Some(Command::Reset),
        Outer::OpenSession { .. } => Some(Command::OpenSession),
        Outer::Session(_) => None,
        Outer::Postal(r) => Some(r.command.command()),
        Outer::AutoRecoverCheckpoint { .. } => Some(Command::AutoRecoverCheckpoint),
        Outer::SessionOpen { .. } => Some(Command::SessionOpen),
        Outer::SessionSeal { .. } => Some(Command::SessionSeal),
    }
}
