//! Every module command and the single table that says which command may run in
//! which state, for which role (seed 001: "the state and the current user role
//! together provide sufficient information to decide whether an action is allowed").
//! The decision to start a command depends on the state and the role alone; the
//! validity of its input is checked afterwards, by the command itself.

use serde::{Deserialize, Serialize};

use crate::role::Role;
use crate::state::ModuleState;

/// Every command the module knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Report state, identity and progress. Not audited except as the first command after boot.
    GetStatus,
    /// Erase NVM, set the clock, create the audit signing key, first audit entry.
    StartInitialization,
    /// Erase everything and return to Uninitialized.
    Reset,
    /// Open an operator session (ephemeral X25519).
    OpenSession,
    /// Close the operator session; refused while someone is logged on.
    CloseSession,
    /// Create the minimal account set; first command in Initializing state.
    InitializeAccessControl,
    /// Log on inside a session.
    Logon,
    /// Log off.
    Logoff,
    /// Query the logged-on user's id and role.
    QueryCurrentUser,
    /// Security officer opens Administrative state.
    BeginAdmin,
    /// Security officer closes Administrative state.
    EndAdmin,
    /// Administrator creates an account.
    CreateAccount,
    /// Administrator deletes an account.
    DeleteAccount,
    /// Administrator modifies an account.
    ModifyAccount,
    /// List accounts (never passwords).
    ViewAccounts,
    /// Security officer clears an account's logon failures.
    UnlockAccount,
    /// A logged-on operator changes their own password.
    ChangePassword,
    /// Administrator sets the module clock.
    SetClock,
    /// Generate a master key set (master module, or a new MKS for rollover).
    GenerateMks,
    /// Generate the transport key pair (clone module).
    GenerateTransportKey,
    /// Output the transport public key.
    ExportTransportKey,
    /// Split the active MKS into n shares with a threshold.
    CreateMksShares,
    /// A key custodian exports one share sealed to a destination module.
    ExportShare,
    /// Abandon an export ceremony.
    AbortExport,
    /// Enter Importing Shares state.
    StartImportingMks,
    /// A key custodian imports one sealed share.
    ImportShare,
    /// Combine the imported shares into an MKS.
    CombineShares,
    /// Discard a half-finished import.
    AbortImport,
    /// Make the dormant MKS active (the active one becomes dormant).
    ActivateMks,
    /// Delete the dormant MKS.
    DeleteDormantMks,
    /// Create a key token of a fresh random test key under the active MKS.
    GenerateTestToken,
    /// Open a key token inside the module and report its key check value.
    VerifyToken,
    /// Re-seal a token from the dormant MKS under the active one.
    TranslateToken,
    /// Output the audit verification public key.
    ExportAuditKey,
    /// Security officer loads the postal settings and the shared postal keys.
    InitializeCryptoCard,
    /// Create a PSD package (not authenticated, as in the seed).
    InitializePsd,
    /// Load a PSD's certificate (authenticated by the CA's signature on it).
    AuthorizePsd,
    /// Add an operator note to the audit log, optionally forcing a signature.
    CreateAuditEntry,
    /// Assign a customer to a PSD and take their sealed secrets.
    ConfigurePsd,
    /// Provider: licensing ZIP and DR limit; the meter may print.
    AuthorizeCustomer,
    /// Provider: add value to a meter's descending register.
    PostageValueDownload,
    /// Customer: an indicium.
    CreateIndicium,
    /// Customer: a correction indicium.
    CreateCorrectionIndicium,
    /// Provider: the refund indicium that takes a meter out of service.
    CreateRefundIndicium,
    /// Provider: a lost passphrase is to be replaced.
    BeginPasswordReset,
    /// Provider: the customer's new secrets.
    CompletePasswordReset,
    /// Customer: sign a redated indicium (no register change).
    RedateIndicium,
    /// Roll the checkpoints back to the database's older record, if the module kept it.
    AutoRecoverCheckpoint,
    /// Security officer: disaster recovery of an inhibited module's checkpoint.
    RecoverCheckpoint,
    /// Customer: sign-on (seed 000): the passphrase checked, a session key taken in.
    SignOn,
    /// Open a customer's message sealed under a session's per-message key.
    SessionOpen,
    /// Seal the reply to a customer's message under the session's per-message key.
    SessionSeal,
    /// KMS steel box: install a domain master key into a PSD (seed 002, MI5 and MI6).
    InstallDomainKey,
    /// KMS: register the PSD's domain keys to an indicia number and country (MR1).
    RegisterDomainKeys,
}

impl Command {
    /// All commands, for tables and tests.
    pub const ALL: [Command; 54] = [
        Command::GetStatus,
        Command::StartInitialization,
        Command::Reset,
        Command::OpenSession,
        Command::CloseSession,
        Command::InitializeAccessControl,
        Command::Logon,
        Command::Logoff,
        Command::QueryCurrentUser,
        Command::BeginAdmin,
        Command::EndAdmin,
        Command::CreateAccount,
        Command::DeleteAccount,
        Command::ModifyAccount,
        Command::ViewAccounts,
        Command::UnlockAccount,
        Command::ChangePassword,
        Command::SetClock,
        Command::GenerateMks,
        Command::GenerateTransportKey,
        Command::ExportTransportKey,
        Command::CreateMksShares,
        Command::ExportShare,
        Command::AbortExport,
        Command::StartImportingMks,
        Command::ImportShare,
        Command::CombineShares,
        Command::AbortImport,
        Command::ActivateMks,
        Command::DeleteDormantMks,
        Command::GenerateTestToken,
        Command::VerifyToken,
        Command::TranslateToken,
        Command::ExportAuditKey,
        Command::CreateAuditEntry,
        Command::InitializeCryptoCard,
        Command::InitializePsd,
        Command::AuthorizePsd,
        Command::ConfigurePsd,
        Command::AuthorizeCustomer,
        Command::PostageValueDownload,
        Command::CreateIndicium,
        Command::CreateCorrectionIndicium,
        Command::CreateRefundIndicium,
        Command::BeginPasswordReset,
        Command::CompletePasswordReset,
        Command::RedateIndicium,
        Command::AutoRecoverCheckpoint,
        Command::RecoverCheckpoint,
        Command::SignOn,
        Command::SessionOpen,
        Command::SessionSeal,
        Command::InstallDomainKey,
        Command::RegisterDomainKeys,
    ];

    /// Module-level commands always get a signed audit entry (seed 001: "Audit
    /// records for commands that affect the module ... are always signed").
    #[must_use]
    pub fn is_module_level(self) -> bool {
        !matches!(
            self,
            Command::GetStatus
                | Command::SessionOpen
                | Command::SessionSeal
                | Command::OpenSession
                | Command::CloseSession
                | Command::Logon
                | Command::Logoff
                | Command::QueryCurrentUser
                | Command::ViewAccounts
                | Command::ExportTransportKey
                | Command::ExportAuditKey
                | Command::VerifyToken
                | Command::CreateAuditEntry
        ) && !self.is_postal()
    }

    /// The PSD commands: they run on a package, are authenticated per command
    /// (or not at all, as the seed says), and make a checkpoint.
    #[must_use]
    pub fn is_postal(self) -> bool {
        matches!(
            self,
            Command::InitializePsd
                | Command::AuthorizePsd
                | Command::ConfigurePsd
                | Command::AuthorizeCustomer
                | Command::PostageValueDownload
                | Command::CreateIndicium
                | Command::CreateCorrectionIndicium
                | Command::CreateRefundIndicium
                | Command::BeginPasswordReset
                | Command::CompletePasswordReset
                | Command::RedateIndicium
                | Command::SignOn
                | Command::InstallDomainKey
                | Command::RegisterDomainKeys
        )
    }

    /// Commands whose request carries a password must arrive sealed, not only MAC'd.
    #[must_use]
    pub fn carries_password(self) -> bool {
        matches!(
            self,
            Command::InitializeAccessControl
                | Command::Logon
                | Command::CreateAccount
                | Command::ModifyAccount
                | Command::ChangePassword
        )
    }
}

/// Who may issue a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No session needed (physical access to the module).
    Anyone,
    /// Inside an operator session; nobody needs to be logged on.
    Session,
    /// Inside an operator session, logged on with one of these roles.
    Roles(&'static [Role]),
    /// Inside an operator session, logged on with any role.
    LoggedOn,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The command.
    pub command: Command,
    /// States in which it runs.
    pub states: &'static [ModuleState],
    /// Who may issue it.
    pub access: Access,
}

use ModuleState::{
    Administrative as Adm, Error as Er, ExportingShares as Exp, ImportingShares as Imp,
    Initializing as Ini, Operational as Op, Uninitialized as Un,
};
use Role::{Administrator, Auditor, KeyCustodian, SecurityOfficer};

/// States in which session management, logon and queries are available (all but
/// Uninitialized and Error).
const LIVE: &[ModuleState] = &[Ini, Op, Adm, Exp, Imp];
const SO: &[Role] = &[SecurityOfficer];
const KC: &[Role] = &[KeyCustodian];
const ADMIN: &[Role] = &[Administrator];

/// The table. One row per command; [`rule`] finds it.
#[rustfmt::skip]
pub const TABLE: &[Rule] = &[
    Rule { command: Command::GetStatus, states: &[Un, Ini, Op, Adm, Exp, Imp, Er], access: Access::Anyone },
    Rule { command: Command::StartInitialization, states: &[Un], access: Access::Anyone },
    Rule { command: Command::Reset, states: &[Un, Ini, Op, Adm, Exp, Imp, Er], access: Access::Anyone },
    Rule { command: Command::OpenSession, states: LIVE, access: Access::Anyone },
    Rule { command: Command::CloseSession, states: &[Ini, Op, Adm, Exp, Imp, Er], access: Access::Session },
    Rule { command: Command::InitializeAccessControl, states: &[Ini], access: Access::Session },
    Rule { command: Command::Logon, states: LIVE, access: Access::Session },
    Rule { command: Command::Logoff, states: &[Ini, Op, Adm, Exp, Imp, Er], access: Access::LoggedOn },
    Rule { command: Command::QueryCurrentUser, states: &[Ini, Op, Adm, Exp, Imp, Er], access: Access::LoggedOn },
    Rule { command: Command::BeginAdmin, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::EndAdmin, states: &[Adm], access: Access::Roles(SO) },
    Rule { command: Command::CreateAccount, states: &[Adm], access: Access::Roles(ADMIN) },
    Rule { command: Command::DeleteAccount, states: &[Adm], access: Access::Roles(ADMIN) },
    Rule { command: Command::ModifyAccount, states: &[Adm], access: Access::Roles(ADMIN) },
    Rule { command: Command::ViewAccounts, states: &[Op, Adm], access: Access::Roles(&[Administrator, SecurityOfficer, Auditor]) },
    Rule { command: Command::UnlockAccount, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::ChangePassword, states: &[Op, Adm], access: Access::LoggedOn },
    Rule { command: Command::SetClock, states: &[Adm], access: Access::Roles(ADMIN) },
    Rule { command: Command::GenerateMks, states: &[Ini, Op], access: Access::Roles(SO) },
    Rule { command: Command::GenerateTransportKey, states: &[Ini, Op], access: Access::Roles(SO) },
    Rule { command: Command::ExportTransportKey, states: &[Op, Imp], access: Access::Roles(&[SecurityOfficer, KeyCustodian]) },
    Rule { command: Command::CreateMksShares, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::ExportShare, states: &[Exp], access: Access::Roles(KC) },
    Rule { command: Command::AbortExport, states: &[Exp], access: Access::Roles(SO) },
    Rule { command: Command::StartImportingMks, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::ImportShare, states: &[Imp], access: Access::Roles(KC) },
    Rule { command: Command::CombineShares, states: &[Imp], access: Access::Roles(SO) },
    Rule { command: Command::AbortImport, states: &[Imp], access: Access::Roles(SO) },
    Rule { command: Command::ActivateMks, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::DeleteDormantMks, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::GenerateTestToken, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::VerifyToken, states: &[Op], access: Access::Roles(&[SecurityOfficer, KeyCustodian, Auditor]) },
    Rule { command: Command::TranslateToken, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::ExportAuditKey, states: &[Op, Adm], access: Access::Roles(&[Auditor]) },
    Rule { command: Command::InitializeCryptoCard, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::InitializePsd, states: &[Op], access: Access::Anyone },
    Rule { command: Command::AuthorizePsd, states: &[Op], access: Access::Anyone },
    Rule { command: Command::ConfigurePsd, states: &[Op], access: Access::Anyone },
    Rule { command: Command::AuthorizeCustomer, states: &[Op], access: Access::Anyone },
    Rule { command: Command::PostageValueDownload, states: &[Op], access: Access::Anyone },
    Rule { command: Command::CreateIndicium, states: &[Op], access: Access::Anyone },
    Rule { command: Command::CreateCorrectionIndicium, states: &[Op], access: Access::Anyone },
    Rule { command: Command::CreateRefundIndicium, states: &[Op], access: Access::Anyone },
    Rule { command: Command::BeginPasswordReset, states: &[Op], access: Access::Anyone },
    Rule { command: Command::CompletePasswordReset, states: &[Op], access: Access::Anyone },
    Rule { command: Command::RedateIndicium, states: &[Op], access: Access::Anyone },
    Rule { command: Command::AutoRecoverCheckpoint, states: &[Op], access: Access::Anyone },
    Rule { command: Command::RecoverCheckpoint, states: &[Op], access: Access::Roles(SO) },
    Rule { command: Command::SignOn, states: &[Op], access: Access::Anyone },
    Rule { command: Command::SessionOpen, states: &[Op], access: Access::Anyone },
    Rule { command: Command::SessionSeal, states: &[Op], access: Access::Anyone },
    Rule { command: Command::InstallDomainKey, states: &[Op], access: Access::Anyone },
    Rule { command: Command::RegisterDomainKeys, states: &[Op], access: Access::Anyone },
    Rule { command: Command::CreateAuditEntry, states: LIVE, access: Access::LoggedOn },
];

/// The table row of a command.
#[must_use]
pub fn rule(command: Command) -> Option<&'static Rule> {
    TABLE.iter().find(|r| r.command == command)
}

/// Why the table refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The command does not run in the module's current state.
    WrongState,
    /// The command needs an operator session.
    NoSession,
    /// The command needs a logged-on user.
    NotLoggedOn,
    /// The logged-on user's role may not issue the command.
    WrongRole,
}

/// Proof that the table allowed a command. Only [`authorize`] makes one, and the
/// module's command functions take it as an argument, so a command cannot run
/// without passing the table first.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorized {
    command: Command,
}

impl Authorized {
    /// The command the table allowed.
    #[must_use]
    pub fn command(&self) -> Command {
        self.command
    }
}

/// Decides from the state, the session and the role alone whether a command may
/// start. `in_session` says whether the request came through an operator session.
///
/// # Errors
/// The [`Refusal`] saying why not.
pub fn authorize(
    command: Command,
    state: ModuleState,
    in_session: bool,
    role: Option<Role>,
) -> core::result::Result<Authorized, Refusal> {
    allowed(command, state, in_session, role).map(|()| Authorized { command })
}

fn allowed(
    command: Command,
    state: ModuleState,
    in_session: bool,
    role: Option<Role>,
) -> core::result::Result<(), Refusal> {
    let rule = rule(command).ok_or(Refusal::WrongState)?;
    if !rule.states.contains(&state) {
        return Err(Refusal::WrongState);
    }
    match rule.access {
        Access::Anyone => Ok(()),
        Access::Session if in_session => Ok(()),
        Access::LoggedOn | Access::Roles(_) if !in_session => Err(Refusal::NoSession),
        Access::Session => Err(Refusal::NoSession),
        Access::LoggedOn => role.map(|_| ()).ok_or(Refusal::NotLoggedOn),
        Access::Roles(roles) => match role {
            None => Err(Refusal::NotLoggedOn),
            Some(r) if roles.contains(&r) => Ok(()),
            Some(_) => Err(Refusal::WrongRole),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_exactly_one_rule() {
        for c in Command::ALL {
            assert_eq!(TABLE.iter().filter(|r| r.command == c).count(), 1, "{c:?}");
        }
        assert_eq!(TABLE.len(), Command::ALL.len());
    }

    #[test]
    fn administrators_act_only_in_administrative_state() {
        for r in TABLE {
            if let Access::Roles(roles) = r.access
                && roles == ADMIN
            {
                assert_eq!(r.states, &[Adm], "{:?}", r.command);
            }
        }
    }

    #[test]
    fn refusal_reasons() {
        assert_eq!(
            authorize(Command::CreateAccount, Op, true, Some(Administrator)),
            Err(Refusal::WrongState)
        );
        assert_eq!(
            authorize(Command::CreateAccount, Adm, true, Some(SecurityOfficer)),
            Err(Refusal::WrongRole)
        );
        assert_eq!(
            authorize(Command::CreateAccount, Adm, true, None),
            Err(Refusal::NotLoggedOn)
        );
        assert_eq!(
            authorize(Command::Logon, Op, false, None),
            Err(Refusal::NoSession)
        );
        assert_eq!(
            authorize(Command::BeginAdmin, Op, true, Some(SecurityOfficer)).map(|a| a.command()),
            Ok(Command::BeginAdmin)
        );
    }
}
