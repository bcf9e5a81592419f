//! The audit log (seed 001, "Audit support"): every sensitive action makes an
//! entry; entries are chained by SHA-256 and some are signed with the module's
//! audit signing key (module-level commands, the first command after a boot, and
//! at least every N entries). Entries are *outputs* of the command that made them;
//! the host stores them, and [`verify_log`] checks a stored log.
//!
//! Stored form, per entry: `u32 length (big-endian) || postcard(StoredEntry)`,
//! where a stored entry keeps the exact body bytes that were hashed and signed,
//! the optional signature, and the entry's hash.

use postvault_crypto::hash;
use postvault_crypto::sig::{PublicKey, SigAlg, Signature};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::command::Command;
use crate::mks::MksInfo;
use crate::role::{Role, UserId};
use crate::state::{BootOutcome, ModuleState};
use crate::wire::OpenedUnder;

const HASH_LABEL: &[u8] = b"postvault audit entry v1";
/// Reason code of a successful command.
pub const REASON_OK: u16 = 0;
/// Reason code of the boot-detection entry (power-on after a crash).
pub const REASON_BOOT: u16 = 1;
/// Reason code of the entry made at power-on after a clean power-off.
pub const REASON_RESUME: u16 = 2;
/// Longest operator note.
pub const MAX_NOTE: usize = 1024;

/// The software component that made an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Component {
    /// Boot detection, initialisation, reset, status.
    System,
    /// Sessions.
    Session,
    /// Accounts, logon, clock.
    AccessControl,
    /// MKS, shares, tokens.
    KeyManagement,
    /// Audit support.
    Audit,
    /// Postal work: crypto-card, PSD packages, checkpoints.
    Postal,
}

impl Component {
    /// The component that runs a command.
    #[must_use]
    pub fn of(command: Option<Command>) -> Self {
        use Command as C;
        match command {
            None | Some(C::OpenSession | C::CloseSession) => Component::Session,
            Some(C::GetStatus | C::StartInitialization | C::Reset) => Component::System,
            Some(
                C::InitializeAccessControl
                | C::Logon
                | C::Logoff
                | C::QueryCurrentUser
                | C::BeginAdmin
                | C::EndAdmin
                | C::CreateAccount
                | C::DeleteAccount
                | C::ModifyAccount
                | C::ViewAccounts
                | C::UnlockAccount
                | C::ChangePassword
                | C::SetClock,
            ) => Component::AccessControl,
            Some(C::ExportAuditKey | C::CreateAuditEntry) => Component::Audit,
            Some(C::InitializeCryptoCard | C::AutoRecoverCheckpoint | C::RecoverCheckpoint) => {
                Component::Postal
            }
            Some(c) if c.is_postal() => Component::Postal,
            Some(_) => Component::KeyManagement,
        }
    }
}

/// Command-specific data of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditData {
    /// Nothing more.
    None,
    /// Start Initialization: the module serial and its audit verification key.
    Initialized {
        /// Module serial.
        serial: String,
        /// Signature algorithm id.
        key_alg: u8,
        /// Public key bytes.
        key: Vec<u8>,
        /// The module signs at least every this many entries.
        sign_interval: u32,
    },
    /// First command after a boot: what boot detection found and decided.
    Boot(BootOutcome),
    /// First command after a clean power-off: the state resumed.
    Resumed(ModuleState),
    /// A session was opened.
    Session([u8; 16]),
    /// An account was named (logon attempt, creation, deletion, change).
    Account(UserId),
    /// An MKS was generated, combined, activated or deleted.
    Mks(MksInfo),
    /// A share ceremony event.
    Share {
        /// Ceremony nonce.
        ceremony: [u8; 16],
        /// Share id, if one share was concerned.
        share_id: Option<u8>,
        /// Shares in all.
        shares: u8,
        /// Threshold.
        threshold: u8,
    },
    /// A key token was made, checked or translated.
    Token {
        /// MKS of the token.
        mks_id: [u8; 16],
        /// Key check value.
        kcv: [u8; 8],
        /// Which slot opened it, for checks.
        under: Option<OpenedUnder>,
    },
    /// The clock changed.
    Clock {
        /// Old module time.
        old: u64,
        /// New module time.
        new: u64,
    },
    /// A PSD transaction: its checkpoint (meter, type, amount, registers after, totals).
    Psd(Box<crate::checkpoint::CheckpointBody>),
    /// An operator's note.
    Note(String),
    /// Why a command failed (the full, internal reason: the network reply may say less).
    Failure(String),
    /// Auto-Recover discarded this transaction (newer than the database's record).
    Discarded(Box<crate::checkpoint::CheckpointBody>),
    /// The checkpoints now end at this record (Auto-Recover or operator recovery).
    CheckpointAccepted(Box<crate::checkpoint::CheckpointBody>),
    /// Auto-Recover found no kept record matching the database's: the module is inhibited.
    Inhibited(Box<crate::checkpoint::CheckpointBody>),
    /// The security officer recovered an inhibited module to this record; the
    /// kept records newer than it were discarded.
    CheckpointRecovered {
        /// The record accepted as the newest.
        accepted: Box<crate::checkpoint::CheckpointBody>,
        /// The discarded transactions, newest first.
        discarded: Vec<crate::checkpoint::CheckpointBody>,
    },
    /// Initialize Crypto-Card: the settings loaded (public data only).
    CryptoCard(Box<crate::cryptocard::CardSettings>),
}

/// The signed and hashed part of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBody {
    /// Sequence number, from 0 at Start Initialization.
    pub seq: u64,
    /// Hash of the previous entry (zeros for the first).
    pub prev_hash: [u8; 32],
    /// Component.
    pub component: Component,
    /// Command (none if the request could not be read).
    pub command: Option<Command>,
    /// Logged-on user.
    pub user: Option<UserId>,
    /// Logged-on role.
    pub role: Option<Role>,
    /// Current state after the command.
    pub current: ModuleState,
    /// Persistent state after the command.
    pub persistent: ModuleState,
    /// Module time, seconds since the Unix epoch.
    pub time: u64,
    /// 0 success, 1 boot, 2 resume, otherwise the error's reason code.
    pub reason: u16,
    /// Whether this entry is signed: part of the hashed body, so a signature
    /// cannot be stripped without breaking the chain.
    pub signed: bool,
    /// Command-specific data.
    pub data: AuditData,
}

/// One audit entry as the module outputs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Encoded [`EntryBody`]: the exact bytes that are hashed and signed.
    pub body: Vec<u8>,
    /// Signature (algorithm id, bytes) over the body, if this entry is signed.
    pub signature: Option<(u8, Vec<u8>)>,
}

impl AuditEntry {
    /// The entry's hash: SHA-256 over a label and the body bytes.
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        hash::sha256(&[HASH_LABEL, &self.body])
    }

    /// The decoded body.
    ///
    /// # Errors
    /// [`crate::Error::Malformed`].
    pub fn decode_body(&self) -> crate::Result<EntryBody> {
        codec::decode(&self.body, "audit entry body")
    }

    /// Stored form: length-prefixed record with the hash.
    ///
    /// # Errors
    /// [`crate::Error::Malformed`] (never for an entry the module made).
    pub fn to_stored(&self) -> crate::Result<Vec<u8>> {
        let rec = codec::encode(&StoredEntry {
            body: self.body.clone(),
            signature: self.signature.clone(),
            hash: self.hash(),
        })?;
        let len = u32::try_from(rec.len()).map_err(|_| crate::Error::Malformed {
            what: "audit entry",
        })?;
        Ok([&len.to_be_bytes()[..], &rec].concat())
    }
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    body: Vec<u8>,
    signature: Option<(u8, Vec<u8>)>,
    hash: [u8; 32],
}

/// Why a stored log failed verification, and at which entry (0-based position in the file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The record could not be read.
    #[error("entry {index}: unreadable record (truncated, corrupted framing or encoding)")]
    Unreadable {
        /// Position.
        index: usize,
    },
    /// The stored hash does not match the body.
    #[error("entry {index}: stored hash does not match its contents")]
    HashMismatch {
        /// Position.
        index: usize,
    },
    /// The sequence number is not the next one.
    #[error("entry {index}: sequence number {found}, expected {expected}")]
    Sequence {
        /// Position.
        index: usize,
        /// Expected.
        expected: u64,
        /// Found.
        found: u64,
    },
    /// The chain link to the previous entry is broken.
    #[error("entry {index}: previous-entry hash does not match entry {}", index.saturating_sub(1))]
    BrokenChain {
        /// Position.
        index: usize,
    },
    /// A signature does not verify.
    #[error("entry {index}: signature does not verify")]
    BadSignature {
        /// Position.
        index: usize,
    },
    /// An entry that the signing policy requires to be signed is not, or the
    /// entry's signed flag disagrees with its signature.
    #[error(
        "entry {index}: missing signature (the module signs this kind of entry, or its body says it is signed)"
    )]
    MissingSignature {
        /// Position.
        index: usize,
    },
    /// The first entry is not a signed Start Initialization entry carrying the audit key.
    #[error("entry {index}: the log must start with a signed Start Initialization entry")]
    BadStart {
        /// Position.
        index: usize,
    },
    /// The log is empty.
    #[error("the audit log is empty")]
    Empty,
    /// No entry has the expected head hash (entries removed or replaced).
    #[error(
        "no entry has the expected head {expected} (the last, entry {index}, has {found}): entries were removed or replaced"
    )]
    HeadMismatch {
        /// Position of the last entry.
        index: usize,
        /// Hex of the found hash.
        found: String,
        /// Hex of the expected hash.
        expected: String,
    },
}

/// What a verified log contains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSummary {
    /// Entries in the log.
    pub entries: usize,
    /// Signed entries.
    pub signed: usize,
    /// Entries after the last signed one (authenticated only by the chain and the head).
    pub unsigned_tail: usize,
    /// Hash of the last entry.
    pub head: [u8; 32],
    /// Where the expected head was found, if one was given.
    pub expected_head_at: Option<usize>,
    /// The module serial from the first entry.
    pub serial: String,
    /// The decoded bodies, in order.
    pub bodies: Vec<EntryBody>,
}

/// Reads the record at the front of `rest` (entry `index` of the log).
fn read_record(rest: &[u8], index: usize) -> Result<(AuditEntry, &[u8]), VerifyError> {
    let bad = VerifyError::Unreadable { index };
    let (len, tail) = rest.split_first_chunk::<4>().ok_or(bad.clone())?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad.clone())?;
    if len > codec::MAX_MESSAGE || len > tail.len() {
        return Err(bad);
    }
    let (rec, tail) = tail.split_at(len);
    let stored: StoredEntry = codec::decode(rec, "audit record").map_err(|_| bad)?;
    let entry = AuditEntry {
        body: stored.body,
        signature: stored.signature,
    };
    if entry.hash() != stored.hash {
        return Err(VerifyError::HashMismatch { index });
    }
    Ok((entry, tail))
}

/// Splits a stored log into records.
///
/// # Errors
/// [`VerifyError::Unreadable`] naming the first record that cannot be read.
pub fn parse_log(bytes: &[u8]) -> Result<Vec<AuditEntry>, VerifyError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (entry, tail) = read_record(rest, out.len())?;
        out.push(entry);
        rest = tail;
    }
    Ok(out)
}

/// What a log's first entry establishes: the module serial, its audit key, and
/// the signing interval it promised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStart {
    /// Module serial.
    pub serial: String,
    /// Audit verification key.
    pub key: PublicKey,
    /// At least every this many entries are signed.
    pub sign_interval: u32,
}

/// Checks that `first` is a signed Start Initialization entry and reads it.
fn log_start(first: &AuditEntry) -> Result<LogStart, VerifyError> {
    let start = first
        .decode_body()
        .map_err(|_| VerifyError::Unreadable { index: 0 })?;
    match start.data {
        AuditData::Initialized {
            serial,
            key_alg,
            key,
            sign_interval,
        } if start.seq == 0
            && start.prev_hash == [0; 32]
            && start.command == Some(Command::StartInitialization) =>
        {
            let key = SigAlg::from_id(key_alg)
                .and_then(|alg| PublicKey::from_bytes(alg, &key))
                .map_err(|_| VerifyError::BadStart { index: 0 })?;
            if !verify_signature(first, &key) {
                return Err(VerifyError::BadSignature { index: 0 });
            }
            Ok(LogStart {
                serial,
                key,
                sign_interval: sign_interval.max(1),
            })
        }
        _ => Err(VerifyError::BadStart { index: 0 }),
    }
}

/// Reads only a log's first entry and checks it is a signed Start
/// Initialization: what a host pins a module's audit key from.
///
/// # Errors
/// [`VerifyError`] for an empty log or a first entry that is not a valid start.
pub fn read_log_start(bytes: &[u8]) -> Result<LogStart, VerifyError> {
    if bytes.is_empty() {
        return Err(VerifyError::Empty);
    }
    log_start(&read_record(bytes, 0)?.0)
}

fn verify_signature(entry: &AuditEntry, key: &PublicKey) -> bool {
    entry.signature.as_ref().is_some_and(|(alg, bytes)| {
        SigAlg::from_id(*alg)
            .and_then(|alg| Signature::from_bytes(alg, bytes))
            .and_then(|sig| key.verify(&entry.body, &sig))
            .is_ok()
    })
}

/// Whether the module's signing policy requires this entry to be signed:
/// module-level commands that succeeded, every power-on, and at least every
/// `interval` entries.
fn must_be_signed(body: &EntryBody, since_signed: u32, interval: u32) -> bool {
    body.reason == REASON_BOOT
        || body.reason == REASON_RESUME
        || (body.reason == REASON_OK && body.command.is_some_and(Command::is_module_level))
        || since_signed.saturating_add(1) >= interval
}

/// Verifies a stored log: framing and stored hashes, the start entry and its key,
/// sequence numbers, the hash chain, the signing policy and every signature, and
/// optionally that the chain contains an expected head (a hash recorded earlier).
///
/// # Errors
/// The first [`VerifyError`], naming the entry.
pub fn verify_log(bytes: &[u8], expect_head: Option<&[u8; 32]>) -> Result<LogSummary, VerifyError> {
    let entries = parse_log(bytes)?;
    let first = entries.first().ok_or(VerifyError::Empty)?;
    let LogStart {
        serial,
        key,
        sign_interval: interval,
    } = log_start(first)?;
    let mut bodies = Vec::with_capacity(entries.len());
    let (mut signed, mut since_signed) = (0usize, 0u32);
    let mut prev_hash = [0u8; 32];
    let mut expected_head_at = None;
    for (index, entry) in entries.iter().enumerate() {
        let body = entry
            .decode_body()
            .map_err(|_| VerifyError::Unreadable { index })?;
        let expected = u64::try_from(index).map_err(|_| VerifyError::Unreadable { index })?;
        if body.seq != expected {
            return Err(VerifyError::Sequence {
                index,
                expected,
                found: body.seq,
            });
        }
        if body.prev_hash != prev_hash {
            return Err(VerifyError::BrokenChain { index });
        }
        if body.signed != entry.signature.is_some()
            || (!body.signed && must_be_signed(&body, since_signed, interval))
        {
            return Err(VerifyError::MissingSignature { index });
        }
        if body.signed {
            if !verify_signature(entry, &key) {
                return Err(VerifyError::BadSignature { index });
            }
            signed += 1;
            since_signed = 0;
        } else {
            since_signed = since_signed.saturating_add(1);
        }
        prev_hash = entry.hash();
        if expect_head == Some(&prev_hash) {
            expected_head_at = Some(index);
        }
        bodies.push(body);
    }
    if let Some(expected) = expect_head
        && expected_head_at.is_none()
    {
        return Err(VerifyError::HeadMismatch {
            index: entries.len().saturating_sub(1),
            found: hex::encode(prev_hash),
            expected: hex::encode(expected),
        });
    }
    Ok(LogSummary {
        entries: entries.len(),
        signed,
        unsigned_tail: usize::try_from(since_signed).unwrap_or(usize::MAX),
        head: prev_hash,
        expected_head_at,
        serial,
        bodies,
    })
}
