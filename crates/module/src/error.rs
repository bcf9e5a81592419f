//! The module's one error type. Three families are kept apart: the peer or the
//! operator sent something wrong (`Refused`, `Invalid*`, `Session*`, credentials,
//! ceremony mismatches), the host misused the API or its storage failed (`Nvm`,
//! `Encoding`), and an internal invariant broke (`Fatal`, `Crypto`).

use crate::command::{Command, Refusal};
use crate::role::Role;
use crate::state::ModuleState;

/// Result with the module's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// Everything that can go wrong in the module. Each message says what to do next.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The command table refused the command.
    #[error("{command:?} refused in {state} state{}: {}", role.map(|r| format!(" for role {r}")).unwrap_or_default(), refusal_help(*reason))]
    Refused {
        /// The refused command.
        command: Command,
        /// The module's current state.
        state: ModuleState,
        /// The logged-on role, if any.
        role: Option<Role>,
        /// Why.
        reason: Refusal,
    },
    /// An argument is out of range or malformed.
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What was wrong.
        what: &'static str,
    },
    /// Bytes from outside could not be decoded.
    #[error("malformed {what}: the input is truncated, oversized or not of this format")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
    },
    /// Unknown user or wrong password (one error for both, so a caller cannot probe for user ids).
    #[error("logon failed: unknown user or wrong password")]
    InvalidCredentials,
    /// The account reached its logon failure limit.
    #[error(
        "account {user} is locked after too many failed logons; an administrator must unlock it"
    )]
    AccountLocked {
        /// The locked account.
        user: String,
    },
    /// The account or its password has expired.
    #[error("account {user}: the {what} has expired; an administrator must renew it")]
    Expired {
        /// The account.
        user: String,
        /// "account" or "password".
        what: &'static str,
    },
    /// The logged-on user was idle longer than the account's logon time-out.
    #[error("logon timed out after inactivity; log on again")]
    LogonTimedOut,
    /// Someone is already logged on, or a session is already open with a user logged on.
    #[error("{what}")]
    Busy {
        /// What is in the way.
        what: &'static str,
    },
    /// A session message arrived but no operator session is open (never opened, closed, or lost at a reboot).
    #[error("no operator session is open; open one first")]
    NoSession,
    /// A session message had a bad MAC, bad seal or wrong session id (deliberately opaque).
    #[error("session message rejected: authentication failed")]
    SessionMessageRejected,
    /// A session message arrived out of order or was replayed.
    #[error(
        "session message out of order: expected counter {expected}, got {got} (replayed or reordered)"
    )]
    SessionOutOfOrder {
        /// The counter the module expected.
        expected: u64,
        /// The counter it got.
        got: u64,
    },
    /// A command carrying a password arrived MAC'd but not sealed.
    #[error("{command:?} carries a password and must be sent sealed")]
    MustBeSealed {
        /// The command.
        command: Command,
    },
    /// The access-control change would leave fewer than the minimal account set.
    #[error(
        "access control needs at least one administrator, one security officer and two key custodians"
    )]
    MinimalAccountSet,
    /// The named account does not exist or already exists.
    #[error("account {user}: {what}")]
    Account {
        /// The account.
        user: String,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A master-key-set precondition does not hold.
    #[error("master key set: {what}")]
    Mks {
        /// What is wrong.
        what: &'static str,
    },
    /// A share does not belong to this import: another module, another ceremony, or a mismatch.
    #[error("share refused: {what}")]
    ShareRefused {
        /// Which binding failed.
        what: &'static str,
    },
    /// Fewer shares than the threshold were imported.
    #[error("{have} of {threshold} shares imported; import more shares before combining")]
    NotEnoughShares {
        /// Shares imported so far.
        have: usize,
        /// Shares needed.
        threshold: u8,
    },
    /// A key token could not be opened (tampered, or under an MKS this module does not hold).
    #[error("key token refused: {what}")]
    Token {
        /// What went wrong.
        what: &'static str,
    },
    /// A PSD command's check failed (the audit entry says which; nothing changed).
    #[error("PSD package refused: {what}")]
    Psd {
        /// The failed check.
        what: &'static str,
    },
    /// One of the seed's checks of a PSD command failed; nothing changed.
    #[error("PSD command refused: {0}")]
    PsdCheck(PsdCheck),
    /// Non-volatile memory could not be read or written.
    #[error("non-volatile memory: {what}; check the module directory and its key file")]
    Nvm {
        /// What failed.
        what: String,
    },
    /// The module is in Error state or hit a fatal fault; Reset is required (or a reboot for a non-fatal error).
    #[error("module error: {what}")]
    Fatal {
        /// What happened.
        what: &'static str,
    },
    /// A cryptographic operation failed inside the module.
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] postvault_crypto::Error),
    /// Test-only: a crash injected at a failure point.
    #[error("injected crash at {0:?}")]
    InjectedCrash(crate::module::FailPoint),
}

fn refusal_help(r: Refusal) -> &'static str {
    match r {
        Refusal::WrongState => {
            "the command is not available in this state (see `postvault module status`)"
        }
        Refusal::NoSession => "open an operator session first",
        Refusal::NotLoggedOn => "log on first",
        Refusal::WrongRole => "log on as a user whose role may issue it",
    }
}

impl Error {
    /// A stable numeric reason code for the audit log.
    #[must_use]
    pub fn reason_code(&self) -> u16 {
        match self {
            Error::Refused { reason, .. } => match reason {
                Refusal::WrongState => 101,
                Refusal::NoSession => 102,
                Refusal::NotLoggedOn => 103,
                Refusal::WrongRole => 104,
            },
            Error::InvalidArgument { .. } => 201,
            Error::Malformed { .. } => 202,
            Error::InvalidCredentials => 301,
            Error::AccountLocked { .. } => 302,
            Error::Expired { .. } => 303,
            Error::LogonTimedOut => 304,
            Error::Busy { .. } => 305,
            Error::NoSession => 400,
            Error::SessionMessageRejected => 401,
            Error::SessionOutOfOrder { .. } => 402,
            Error::MustBeSealed { .. } => 403,
            Error::MinimalAccountSet => 501,
            Error::Account { .. } => 502,
            Error::Mks { .. } => 601,
            Error::ShareRefused { .. } => 602,
            Error::NotEnoughShares { .. } => 603,
            Error::Token { .. } => 604,
            Error::Psd { .. } => 701,
            Error::PsdCheck(c) => 710_u16.saturating_add(*c as u16),
            Error::Nvm { .. } => 901,
            Error::Fatal { .. } => 902,
            Error::Crypto(_) => 903,
            Error::InjectedCrash(_) => 999,
        }
    }
}

/// The checks of the PSD commands (seed 001), each its own refusal. The
/// numbering is stable: it is part of the audit reason code (710 + n).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u16)]
pub enum PsdCheck {
    /// Auto-recovery failed earlier; an operator must recover the module's checkpoint.
    Inhibited = 0,
    /// The database's checkpoint record is not the module's newest.
    CheckpointMismatch = 1,
    /// A checkpoint record's MAC does not verify.
    CheckpointMac = 2,
    /// The package's MAC does not verify (altered, or another vault's).
    PackageMac = 3,
    /// The package is older than the module's last transaction on this meter.
    PackageStale = 4,
    /// The package is not in a state in which the command runs.
    State = 5,
    /// The meter number in the command is not the package's.
    MeterNumber = 6,
    /// The challenge is not the one the last reply gave.
    Challenge = 7,
    /// The customer's MAC on the request does not verify.
    CustomerMac = 8,
    /// The client's AR differs from the package's, or its DR is above the package's.
    ClientRegisters = 9,
    /// The value is outside the crypto-card's indicium limits.
    ValueLimits = 10,
    /// The descending register holds less than the value.
    InsufficientFunds = 11,
    /// The provider's signature on the order does not verify.
    ProviderSignature = 12,
    /// The provider order is for another state of the package (replayed, stale, or another package).
    OrderPackage = 13,
    /// The control total is not AR + DR.
    ControlTotal = 14,
    /// The DR would exceed its ceiling or the meter's DR limit.
    DrCeiling = 15,
    /// The AR would exceed its ceiling once the new value is spent.
    ArCeiling = 16,
    /// The certificate does not chain to the postal CA or is not valid now.
    Certificate = 17,
    /// The certificate names another device id.
    CertificateDevice = 18,
    /// The certificate is for another key than the package's.
    CertificateKey = 19,
    /// The customer's sealed secrets do not open or are malformed.
    CustomerSecrets = 20,
    /// The new passphrase is on the package's repetition list.
    PassphraseReused = 21,
    /// A register or total would overflow.
    RegisterOverflow = 22,
    /// The redate request changes more than the date, or the original is not this meter's.
    Redate = 23,
    /// The crypto-card is not loaded.
    NoCryptoCard = 24,
    /// The PSD's certificate (and so its key) has expired; the meter needs a new key.
    KeyExpired = 25,
    /// Too many wrong passphrases at sign-on: the provider must reset the passphrase.
    AccountLocked = 26,
    /// The customer id is not the one the meter is assigned to.
    CustomerId = 27,
    /// The session token or a message under it does not open, or the session has expired.
    Session = 28,
    /// A domain master key for this role (vendor or postal) is already in the
    /// package: a key is installed once (seed 002).
    DomainKeyInstalled = 29,
    /// The installation message does not open for this meter and key, or the
    /// meter lacks the domain keys the command needs.
    DomainKey = 30,
    /// The meter's keys are already registered to a country; they never move again.
    KeysRegistered = 31,
}

impl core::fmt::Display for PsdCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PsdCheck::AccountLocked => "too many wrong passphrases: sign-on is locked until the provider resets the passphrase",
            PsdCheck::CustomerId => "the customer id is not the one this meter is assigned to",
            PsdCheck::Session => "the session or a message in it does not open (altered, replayed into another session, or expired)",
            PsdCheck::Inhibited => "the module is inhibited from PSD work after a failed checkpoint recovery; an operator must recover it",
            PsdCheck::CheckpointMismatch => "the database's checkpoint record is not the module's newest (checkpoint mismatch: a database restored from an older copy, or a transaction never committed)",
            PsdCheck::CheckpointMac => "the checkpoint record's MAC does not verify",
            PsdCheck::PackageMac => "the package MAC does not verify (altered, or not this vault's)",
            PsdCheck::PackageStale => "the package is older than the module's last transaction on this meter",
            PsdCheck::State => "the package is not in a state in which this command runs",
            PsdCheck::MeterNumber => "the meter number in the command is not the package's",
            PsdCheck::Challenge => "the challenge is not the one the last reply gave",
            PsdCheck::CustomerMac => "the customer's MAC on the request does not verify",
            PsdCheck::ClientRegisters => "the client's registers are not the meter's (its AR differs, or its DR is above the meter's)",
            PsdCheck::ValueLimits => "the value is outside the indicium value limits",
            PsdCheck::InsufficientFunds => "the descending register holds less than the value",
            PsdCheck::ProviderSignature => "the provider's signature on the order does not verify",
            PsdCheck::OrderPackage => "the provider order is for another state of this package (replayed or stale) or another package",
            PsdCheck::ControlTotal => "the control total is not AR + DR",
            PsdCheck::DrCeiling => "the descending register would exceed its ceiling or the meter's limit",
            PsdCheck::ArCeiling => "the ascending register would exceed its ceiling once this value is spent",
            PsdCheck::Certificate => "the certificate does not chain to the postal CA or is not valid now",
            PsdCheck::CertificateDevice => "the certificate names another device id",
            PsdCheck::CertificateKey => "the certificate is for another key than this PSD's",
            PsdCheck::CustomerSecrets => "the customer's sealed secrets do not open or are malformed",
            PsdCheck::PassphraseReused => "the new passphrase was used recently; choose another",
            PsdCheck::RegisterOverflow => "a register or total would overflow",
            PsdCheck::Redate => "a redate may change only the date of this meter's own indicium",
            PsdCheck::NoCryptoCard => "the crypto-card is not initialized; the security officer loads it first",
            PsdCheck::KeyExpired => "the meter's certificate has expired; its indicia would not verify",
            PsdCheck::DomainKeyInstalled => "a domain master key for that role is already installed in this meter (a key is installed once)",
            PsdCheck::DomainKey => "the domain master key does not open for this meter and key id, or the meter lacks its domain keys",
            PsdCheck::KeysRegistered => "the meter's keys are already registered to a country and cannot move again",
        })
    }
}
