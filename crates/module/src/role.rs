//! Roles and user ids. One role per account (seed 001: "disallow users to hold
//! multiple roles"); a person with two duties holds two accounts.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The module's roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Opens Administrative state, runs MKS and initialisation commands.
    SecurityOfficer,
    /// Exports and imports one share of the MKS each.
    KeyCustodian,
    /// Maintains accounts and the clock, in Administrative state only.
    Administrator,
    /// Reads and verifies the audit log.
    Auditor,
    /// The provider infrastructure (signed messages, command by command).
    Provider,
    /// A customer (MAC'd requests, command by command).
    User,
    /// The certificate authority (certificates verified against the CA certificate).
    CertificateAuthority,
    /// A customer's administrator of a multi-user meter.
    CustomerAdministrator,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 8] = [
        Role::SecurityOfficer,
        Role::KeyCustodian,
        Role::Administrator,
        Role::Auditor,
        Role::Provider,
        Role::User,
        Role::CertificateAuthority,
        Role::CustomerAdministrator,
    ];

    /// Roles that log on through an operator session and hold an account in the module.
    pub const OPERATORS: [Role; 4] = [
        Role::SecurityOfficer,
        Role::KeyCustodian,
        Role::Administrator,
        Role::Auditor,
    ];

    /// Whether this role holds a module account and logs on through an operator session.
    #[must_use]
    pub fn is_operator(self) -> bool {
        Self::OPERATORS.contains(&self)
    }

    /// The role's name as written in files and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Role::SecurityOfficer => "security-officer",
            Role::KeyCustodian => "key-custodian",
            Role::Administrator => "administrator",
            Role::Auditor => "auditor",
            Role::Provider => "provider",
            Role::User => "user",
            Role::CertificateAuthority => "certificate-authority",
            Role::CustomerAdministrator => "customer-administrator",
        }
    }

    /// Parses a role name as produced by [`Role::name`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown name.
    pub fn from_name(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s).ok_or(Error::InvalidArgument {
            what: "role: expected security-officer, key-custodian, administrator, auditor, provider, user, certificate-authority or customer-administrator",
        })
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A user id: 1 to 32 characters of `a-z`, `0-9`, `.`, `_`, `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct UserId(String);

impl UserId {
    /// Longest accepted user id.
    pub const MAX_LEN: usize = 32;

    /// Checks and wraps a user id.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if empty, too long or with other characters.
    pub fn new(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::InvalidArgument {
                what: "user id: 1 to 32 characters of a-z, 0-9, '.', '_' or '-'",
            })
        }
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UserId::new(&s).map_err(serde::de::Error::custom)
    }
}

impl core::fmt::Display for UserId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}
