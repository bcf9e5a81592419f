//! The commands and replies that cross the module boundary. Requests other than
//! the four session-less ones travel inside [`crate::session::SessionMessage`]s.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::account::{AccountChanges, AccountView, NewAccount};
use crate::audit::AuditEntry;
use crate::command::Command;
use crate::error::{Error, Result};
use crate::mks::MksInfo;
use crate::role::{Role, UserId};
use crate::session::SessionMessage;
use crate::state::ModuleState;

/// A password: the host's hash of an operator's passphrase. Zeroizes on drop, prints redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Shortest accepted password.
    pub const MIN_LEN: usize = 12;
    /// Longest accepted password.
    pub const MAX_LEN: usize = 256;

    /// Wraps password bytes.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes, for hashing inside the module.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length bounds.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if shorter than 12 or longer than 256 bytes.
    pub fn check_strength(&self) -> Result<()> {
        if (Self::MIN_LEN..=Self::MAX_LEN).contains(&self.0.len()) {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: "passwords must be 12 to 256 bytes long",
            })
        }
    }
}

impl core::fmt::Debug for Password {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Configuration fixed at Start Initialization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleConfig {
    /// Sign an audit entry at least every this many entries (seed: every 100th).
    pub audit_sign_interval: u32,
    /// Argon2id memory cost, KiB.
    pub argon2_m_cost_kib: u32,
    /// Argon2id passes.
    pub argon2_t_cost: u32,
}

impl Default for ModuleConfig {
    fn default() -> Self {
        let p = postvault_crypto::password::Argon2Params::RECOMMENDED;
        Self {
            audit_sign_interval: 100,
            argon2_m_cost_kib: p.m_cost_kib,
            argon2_t_cost: p.t_cost,
        }
    }
}

impl ModuleConfig {
    /// Argon2id parameters of this configuration.
    #[must_use]
    pub fn argon2(&self) -> postvault_crypto::password::Argon2Params {
        postvault_crypto::password::Argon2Params {
            m_cost_kib: self.argon2_m_cost_kib,
            t_cost: self.argon2_t_cost,
            p_cost: 1,
        }
    }

    /// Checks the configuration is usable: a signing interval of at least 1, and
    /// Argon2id costs between the algorithm's minimum and 1 GiB / 10 passes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`].
    pub fn check(&self) -> Result<()> {
        if self.audit_sign_interval == 0 {
            return Err(Error::InvalidArgument {
                what: "audit signing interval must be at least 1",
            });
        }
        if !(8..=1024 * 1024).contains(&self.argon2_m_cost_kib)
            || !(1..=10).contains(&self.argon2_t_cost)
        {
            return Err(Error::InvalidArgument {
                what: "Argon2id costs: memory 8 KiB to 1 GiB, 1 to 10 passes",
            });
        }
        Ok(())
    }

    /// Cheap parameters for tests.
    #[must_use]
    pub fn for_tests() -> Self {
        let p = postvault_crypto::password::Argon2Params::FAST_FOR_TESTS;
        Self {
            audit_sign_interval: 100,
            argon2_m_cost_kib: p.m_cost_kib,
            argon2_t_cost: p.t_cost,
        }
    }
}

/// Requests that need no session.
#[derive(Debug, Serialize, Deserialize)]
pub enum Outer {
    /// Status report.
    GetStatus,
    /// Status report, sent by a host as the first request after power-on: the
    /// audit output starts with the journalled entries from `host_next` on that
    /// the host's log lacks (it died before appending them), then the boot's.
    Resync {
        /// The sequence number the host's log expects next.
        host_next: u64,
    },
    /// The crypto-card's public keys and the registration signing key's
    /// signature over the vendor key, for clients (a fixed public statement:
    /// not audited, like Get Status).
    VendorKey,
    /// Start Initialization with this configuration.
    StartInitialization(ModuleConfig),
    /// Erase everything.
    Reset,
    /// Open an operator session with the host's ephemeral X25519 public key.
    OpenSession {
        /// Host ephemeral public key.
        host_public: [u8; 32],
    },
    /// A MAC'd (and maybe sealed) request inside the session.
    Session(SessionMessage),
    /// A PSD command with the database's checkpoint record.
    Postal(Box<crate::postal::PostalRequest>),
    /// Auto-Recover: roll the module's checkpoints back to the database's record.
    AutoRecoverCheckpoint {
        /// The module table's record for this module.
        checkpoint: crate::checkpoint::CheckpointRecord,
    },
    /// Open a customer's sealed message (not audited when it opens, like Get Status).
    SessionOpen {
        /// The session token from sign-on.
        session: Vec<u8>,
        /// The message counter.
        counter: u64,
        /// The sealed message.
        sealed: Vec<u8>,
    },
    /// Seal the reply to a customer's message.
    SessionSeal {
        /// The session token from sign-on.
        session: Vec<u8>,
        /// The request's counter.
        counter: u64,
        /// The reply.
        plaintext: Vec<u8>,
    },
}

/// Replies to [`Outer`] requests.
#[derive(Debug, Serialize, Deserialize)]
pub enum OuterReply {
    /// Status report.
    Status(Box<Status>),
    /// Start Initialization done: the audit verification key and module serial.
    Initialized {
        /// Module serial.
        serial: String,
        /// Audit verification public key (algorithm id, bytes).
        audit_key: (u8, Vec<u8>),
    },
    /// Reset done.
    ResetDone,
    /// Session opened.
    SessionOpened(crate::session::SessionOpened),
    /// A MAC'd (and maybe sealed) reply inside the session.
    Session(SessionMessage),
    /// A PSD command's result: store the package and checkpoint, then release the outcome.
    Postal(Box<crate::postal::PostalReply>),
    /// Auto-Recover accepted the record; this many newer transactions were discarded.
    Recovered {
        /// Discarded transactions (each has an audit entry).
        discarded: usize,
    },
    /// A customer's message, opened.
    MessageOpened {
        /// The meter the session is for.
        device_id: [u8; 6],
        /// The message.
        plaintext: Vec<u8>,
    },
    /// A reply, sealed.
    MessageSealed(Vec<u8>),
    /// The crypto-card's public keys and the signature over the vendor key.
    VendorKey {
        /// The public keys.
        public: crate::cryptocard::CardPublic,
        /// The registration signing key's signature over the vendor key.
        signature: (u8, Vec<u8>),
    },
}

/// A module status report (Get Status).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// Current state.
    pub current: ModuleState,
    /// Persistent state.
    pub persistent: ModuleState,
    /// Module serial (none before initialisation).
    pub serial: Option<String>,
    /// Module clock, seconds since the Unix epoch.
    pub time: u64,
    /// Audit verification public key (algorithm id, bytes).
    pub audit_key: Option<(u8, Vec<u8>)>,
    /// Next audit sequence number.
    pub audit_next_seq: u64,
    /// Hash of the last audit entry.
    pub audit_head: [u8; 32],
    /// Active master key set.
    pub active_mks: Option<MksInfo>,
    /// Dormant master key set.
    pub dormant_mks: Option<MksInfo>,
    /// Transport public key, if generated.
    pub transport_key: Option<[u8; 32]>,
    /// Export in progress: (shares exported, shares in all).
    pub export_progress: Option<(u8, u8)>,
    /// Import in progress: (shares received, threshold), once the first share is in.
    pub import_progress: Option<(u8, u8)>,
    /// Number of accounts.
    pub accounts: usize,
    /// Whether a session is open, and who is logged on.
    pub session_open: bool,
    /// Logged-on user.
    pub logged_on: Option<(UserId, Role)>,
    /// The newest checkpoint record: what the module table must hold for this module.
    pub checkpoint: Option<crate::checkpoint::CheckpointRecord>,
    /// PSD work is inhibited until an operator recovers the checkpoint.
    pub inhibited: bool,
}

/// Requests inside a session.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Create the minimal account set.
    InitializeAccessControl(Vec<NewAccount>),
    /// Log on.
    Logon {
        /// User id.
        user: UserId,
        /// Password.
        password: Password,
    },
    /// Log off.
    Logoff,
    /// Query the logged-on user.
    QueryCurrentUser,
    /// Close the session.
    CloseSession,
    /// Open Administrative state.
    BeginAdmin,
    /// Close Administrative state.
    EndAdmin,
    /// Create an account.
    CreateAccount(NewAccount),
    /// Delete an account.
    DeleteAccount(UserId),
    /// Modify an account.
    ModifyAccount(UserId, AccountChanges),
    /// List accounts.
    ViewAccounts,
    /// Security officer: clear an account's logon failures (e.g. the only administrator's).
    UnlockAccount(UserId),
    /// Change own password.
    ChangePassword {
        /// Current password.
        old: Password,
        /// New password.
        new: Password,
    },
    /// Set the module clock (seconds since the Unix epoch).
    SetClock(u64),
    /// Generate an MKS.
    GenerateMks,
    /// Generate the transport key pair.
    GenerateTransportKey,
    /// Output the transport public key.
    ExportTransportKey,
    /// Split the active MKS.
    CreateMksShares {
        /// Number of shares (one per key custodian), at least 2.
        shares: u8,
        /// Shares needed to combine, at least 2.
        threshold: u8,
        /// Whether the destination may export the MKS again.
        exportable: bool,
    },
    /// Export the next share sealed to a transport public key.
    ExportShare {
        /// Destination module's transport public key.
        destination: [u8; 32],
    },
    /// Abandon the export.
    AbortExport,
    /// Enter Importing Shares state.
    StartImportingMks,
    /// Import one sealed share (the bytes of a share file).
    ImportShare(Vec<u8>),
    /// Combine the imported shares, which must come from the module whose audit
    /// key has this fingerprint ([`crate::mks::key_fingerprint`]).
    CombineShares {
        /// Fingerprint of the exporting module's audit key.
        source: [u8; 32],
    },
    /// Discard imported shares.
    AbortImport,
    /// Activate the dormant MKS.
    ActivateMks,
    /// Delete the dormant MKS.
    DeleteDormantMks,
    /// Make a test key token.
    GenerateTestToken {
        /// Owner label written in the token header.
        owner: String,
    },
    /// Open a token and report its key check value.
    VerifyToken(Vec<u8>),
    /// Re-seal a token under the active MKS.
    TranslateToken(Vec<u8>),
    /// Output the audit verification key.
    ExportAuditKey,
    /// Load the postal settings; generate the shared postal keys (master) or
    /// load them from another module's tokens (clone).
    InitializeCryptoCard {
        /// Settings.
        settings: crate::cryptocard::CardSettings,
        /// Tokens from the master; `None` on the master.
        tokens: Option<crate::cryptocard::CardTokens>,
    },
    /// Disaster recovery of an inhibited module: accept the database's record as the newest.
    RecoverCheckpoint(crate::checkpoint::CheckpointRecord),
    /// Add an operator note to the audit log.
    CreateAuditEntry {
        /// The note (at most 1 KiB).
        note: String,
        /// Force a signature on this entry.
        force_signature: bool,
    },
}

impl Request {
    /// The command this request asks for.
    #[must_use]
    pub fn command(&self) -> Command {
        match self {
            Request::InitializeAccessControl(_) => Command::InitializeAccessControl,
            Request::Logon { .. } => Command::Logon,
            Request::Logoff => Command::Logoff,
            Request::QueryCurrentUser => Command::QueryCurrentUser,
            Request::CloseSession => Command::CloseSession,
            Request::BeginAdmin => Command::BeginAdmin,
            Request::EndAdmin => Command::EndAdmin,
            Request::CreateAccount(_) => Command::CreateAccount,
            Request::DeleteAccount(_) => Command::DeleteAccount,
            Request::ModifyAccount(..) => Command::ModifyAccount,
            Request::ViewAccounts => Command::ViewAccounts,
            Request::UnlockAccount(_) => Command::UnlockAccount,
            Request::ChangePassword { .. } => Command::ChangePassword,
            Request::SetClock(_) => Command::SetClock,
            Request::GenerateMks => Command::GenerateMks,
            Request::GenerateTransportKey => Command::GenerateTransportKey,
            Request::ExportTransportKey => Command::ExportTransportKey,
            Request::CreateMksShares { .. } => Command::CreateMksShares,
            Request::ExportShare { .. } => Command::ExportShare,
            Request::AbortExport => Command::AbortExport,
            Request::StartImportingMks => Command::StartImportingMks,
            Request::ImportShare(_) => Command::ImportShare,
            Request::CombineShares { .. } => Command::CombineShares,
            Request::AbortImport => Command::AbortImport,
            Request::ActivateMks => Command::ActivateMks,
            Request::DeleteDormantMks => Command::DeleteDormantMks,
            Request::GenerateTestToken { .. } => Command::GenerateTestToken,
            Request::VerifyToken(_) => Command::VerifyToken,
            Request::TranslateToken(_) => Command::TranslateToken,
            Request::ExportAuditKey => Command::ExportAuditKey,
            Request::InitializeCryptoCard { .. } => Command::InitializeCryptoCard,
            Request::CreateAuditEntry { .. } => Command::CreateAuditEntry,
            Request::RecoverCheckpoint(_) => Command::RecoverCheckpoint,
        }
    }
}

/// Which MKS slot opened a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpenedUnder {
    /// The active MKS.
    Active,
    /// The dormant (previous) MKS: translate the token before deleting it.
    Dormant,
}

/// Replies inside a session.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Done, nothing to return.
    Done,
    /// The logged-on user.
    CurrentUser(UserId, Role),
    /// The accounts.
    Accounts(Vec<AccountView>),
    /// An MKS was generated, combined or activated.
    Mks(MksInfo),
    /// The transport public key.
    TransportKey([u8; 32]),
    /// The export ceremony started.
    SharesCreated {
        /// Ceremony nonce, printed for the custodians.
        ceremony: [u8; 16],
    },
    /// One sealed share (the bytes of a share file), and how many remain.
    Share {
        /// The share file bytes.
        share: Vec<u8>,
        /// Shares still to export.
        remaining: u8,
    },
    /// Import progress after a share.
    ShareImported {
        /// Shares received.
        received: u8,
        /// Threshold.
        threshold: u8,
    },
    /// A key token and its key check value.
    Token {
        /// Token bytes.
        token: Vec<u8>,
        /// Key check value of the key inside.
        kcv: [u8; 8],
    },
    /// A token opened.
    TokenChecked {
        /// Key check value of the key inside.
        kcv: [u8; 8],
        /// Which MKS opened it.
        under: OpenedUnder,
    },
    /// The audit verification key (algorithm id, bytes).
    AuditKey(u8, Vec<u8>),
    /// The crypto-card is loaded: its tokens for other modules and its public keys.
    CryptoCard {
        /// Tokens of the shared keys under the active MKS.
        tokens: crate::cryptocard::CardTokens,
        /// Public keys for customers' software.
        public: crate::cryptocard::CardPublic,
    },
}

/// What a module call produces: the result, and the audit entries the host must
/// store before it releases the result (fail closed).
#[derive(Debug)]
pub struct Output<T> {
    /// The command's result.
    pub result: Result<T>,
    /// Audit entries made by the command, oldest first.
    pub audit: Vec<AuditEntry>,
}
