//! Errors in the seed's three levels (fig. 21): framing (the message is not
//! one), command (the receiving component does not expect this command, or
//! its parameters do not parse), and configuration (the parameters, records,
//! signatures or state do not allow it: a command response with a code).

use serde::{Deserialize, Serialize};

/// Level 1: the frame itself is broken (the seed's non-acknowledgement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FramingError {
    /// No start-of-text byte.
    #[error("no STX at the start of the message")]
    NoStx,
    /// No end-of-text byte where the length says the message ends.
    #[error("no ETX where the message should end")]
    NoEtx,
    /// The length field disagrees with the bytes received.
    #[error("the length field does not match the message")]
    Length,
    /// Larger than any KMS message.
    #[error("message larger than the framing allows")]
    TooLarge,
    /// The error detection code does not match.
    #[error("the error detection code does not match (corrupted in transit)")]
    Check,
    /// The class code names no message.
    #[error("unknown class code {0}")]
    UnknownClass(u8),
}

/// Level 2: the command table refused the message, or its parameters do not parse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// This component's command table does not list the command.
    #[error("{component} does not accept {command} (not in its command table)")]
    NotExpected {
        /// The receiving component.
        component: String,
        /// The command.
        command: String,
    },
    /// The parameters do not parse as the command's.
    #[error("the parameters of {command} do not parse")]
    Syntax {
        /// The command.
        command: String,
    },
}

/// Level 3 response codes: why a well-formed, expected command was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// The domain is not in this component's configuration table.
    UnknownDomain,
    /// The record kind is not in this component's record table.
    UnknownRecord,
    /// The box needs its operation shares entered first.
    Disabled,
    /// A signature does not verify under the expected box's key.
    BadSignature,
    /// The message names a box other than the one that must act.
    WrongBox,
    /// The steel id in the message is not this steel box's.
    WrongSteelId,
    /// The key id is not newer than the last one this box has seen for the domain.
    KeyIdNotNew,
    /// The key is already installed.
    AlreadyInstalled,
    /// The status change is not one the key lifecycle allows.
    InvalidTransition,
    /// A time event precedes an earlier one.
    TimeOrder,
    /// Test tokens from the meter do not match the key's.
    TestTokens,
    /// Registration tokens from the meter do not match.
    RegistrationTokens,
    /// A sealed part does not open (wrong domain, wrong box, altered).
    BadSeal,
    /// The parts of a request do not belong together (different key ids, meters, domains).
    Mismatch,
    /// The key is not active for verification.
    NotActive,
    /// The token does not verify.
    BadToken,
    /// An operation share does not belong to this box or is repeated.
    BadShare,
    /// The box's stored state could not be read or written.
    Storage,
    /// Randomness or another primitive failed.
    Crypto,
}

impl Fault {
    /// A stable code for logs and the API.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Fault::UnknownDomain => "unknown_domain",
            Fault::UnknownRecord => "unknown_record",
            Fault::Disabled => "box_disabled",
            Fault::BadSignature => "bad_signature",
            Fault::WrongBox => "wrong_box",
            Fault::WrongSteelId => "wrong_steel_id",
            Fault::KeyIdNotNew => "key_id_not_new",
            Fault::AlreadyInstalled => "already_installed",
            Fault::InvalidTransition => "invalid_transition",
            Fault::TimeOrder => "time_order",
            Fault::TestTokens => "test_tokens",
            Fault::RegistrationTokens => "registration_tokens",
            Fault::BadSeal => "bad_seal",
            Fault::Mismatch => "mismatch",
            Fault::NotActive => "not_active",
            Fault::BadToken => "bad_token",
            Fault::BadShare => "bad_share",
            Fault::Storage => "storage",
            Fault::Crypto => "crypto",
        }
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.code())
    }
}

/// Everything that can go wrong in the KMS.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// Level 1.
    #[error("framing: {0}")]
    Framing(#[from] FramingError),
    /// Level 2.
    #[error("command error: {0}")]
    Command(#[from] CommandError),
    /// Level 3: a command response with a code.
    #[error("refused ({fault}): {detail}")]
    Refused {
        /// The response code.
        fault: Fault,
        /// What was wrong, for the operator. Never secret material.
        detail: String,
    },
    /// A value given by the caller is malformed (an id, a name).
    #[error("malformed {what}")]
    Syntax {
        /// What.
        what: &'static str,
    },
}

impl KmsError {
    /// A level-3 refusal.
    #[must_use]
    pub fn refused(fault: Fault, detail: impl Into<String>) -> Self {
        KmsError::Refused {
            fault,
            detail: detail.into(),
        }
    }

    /// The level-3 code, if this is a refusal.
    #[must_use]
    pub fn fault(&self) -> Option<Fault> {
        match self {
            KmsError::Refused { fault, .. } => Some(*fault),
            _ => None,
        }
    }
}

impl From<postvault_crypto::Error> for KmsError {
    fn from(e: postvault_crypto::Error) -> Self {
        match e {
            postvault_crypto::Error::VerificationFailed => {
                KmsError::refused(Fault::BadSeal, "a sealed or signed part does not verify")
            }
            other => KmsError::refused(Fault::Crypto, other.to_string()),
        }
    }
}

/// Result of KMS operations.
pub type Result<T> = core::result::Result<T, KmsError>;
