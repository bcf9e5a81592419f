//! What a secure box is asked and what it answers, framed ([`crate::frame`]).
//! A request's class code is its command; the box checks it against its
//! command table before it decodes the parameters.

use serde::{Deserialize, Serialize};

use crate::error::{CommandError, FramingError, KmsError, Result};
use crate::frame;
use crate::ids::{BoxId, BoxKind, DomainId};
use crate::message::{MeterEvidence, MeterInstall, RegistrationReport, Signed, StartupReply};

/// Command codes (the system command table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Class {
    /// MI1.
    GenerateKey = 1,
    /// MI4' (the install record handed to the steel box at the line).
    InstallKey = 2,
    /// MI6.
    MeterEvidence = 3,
    /// MI8.
    ConfirmInstalled = 4,
    /// MR2.
    RegistrationRequest = 5,
    /// A meter leaves service.
    Obsolete = 6,
    /// Active records into a brass box's verification table.
    LoadRecords = 7,
    /// Token verification (mail-processing data capture).
    Verify = 8,
    /// Temporal token keys for a tin box.
    ExportTokenKeys = 9,
    /// Token key records into a tin box.
    LoadTokenKeys = 10,
    /// Create a domain (manufacturing).
    CreateDomain = 20,
    /// Set Secure Box ID for a new box (manufacturing).
    SetBoxId = 21,
    /// Make a domain process for a box (manufacturing).
    MakeDomainProcess = 22,
    /// A domain process from the manufacturing box.
    AcceptDomainProcess = 30,
    /// Who the box is and what it holds.
    Status = 31,
    /// The key that vouches for meter keys (steel).
    SetMeterAnchor = 32,
    /// Record a new box's startup key (manufacturing).
    RecordStartup = 23,
    /// A box's recorded startup key (manufacturing).
    StartupOf = 24,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 18] = [
        Class::GenerateKey,
        Class::InstallKey,
        Class::MeterEvidence,
        Class::ConfirmInstalled,
        Class::RegistrationRequest,
        Class::Obsolete,
        Class::LoadRecords,
        Class::Verify,
        Class::ExportTokenKeys,
        Class::LoadTokenKeys,
        Class::CreateDomain,
        Class::SetBoxId,
        Class::MakeDomainProcess,
        Class::AcceptDomainProcess,
        Class::Status,
        Class::SetMeterAnchor,
        Class::RecordStartup,
        Class::StartupOf,
    ];

    /// The class with this code.
    #[must_use]
    pub fn from_code(code: u8) -> Option<Class> {
        Class::ALL.into_iter().find(|c| *c as u8 == code)
    }
}

/// One request to a box.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// MI1: generate a master key for `steel` with `key_id` in `domain`.
    GenerateKey {
        /// The install domain.
        domain: DomainId,
        /// The steel box that will install it.
        steel: BoxId,
        /// The key id from the archive.
        key_id: u64,
        /// Time event (Unix milliseconds).
        time: u64,
    },
    /// MI4': install this key into the meter with this HPKE key.
    InstallKey {
        /// MI4, signed by oak.
        record: Signed,
        /// The meter.
        device: [u8; 6],
        /// Vendor (1) or postal (2).
        role: u8,
        /// The meter's HPKE public key (the vault's vendor key).
        meter_key: [u8; 32],
        /// The vault's registration signing key's signature over it
        /// (`postvault_indicium::token::meter_key_message`): (algorithm id, bytes).
        meter_key_signature: (u8, Vec<u8>),
        /// Time event.
        time: u64,
    },
    /// The key that vouches for meter keys (the vault's registration signing
    /// key: algorithm id, bytes); a steel box takes it once.
    SetMeterAnchor {
        /// The anchor.
        anchor: (u8, Vec<u8>),
    },
    /// MI6: the meter's test tokens.
    MeterEvidence {
        /// MI6.
        evidence: MeterEvidence,
        /// Time event.
        time: u64,
    },
    /// MI8: MI3 and MI7 for the same key.
    ConfirmInstalled {
        /// MI3, signed by oak.
        archive: Signed,
        /// MI7, signed by steel.
        installed: Signed,
        /// Time event.
        time: u64,
    },
    /// MR2: MR1 and MI9 for the same meter, to the country's brass process.
    RegistrationRequest {
        /// The country sub-domain.
        domain: DomainId,
        /// MR1.
        report: RegistrationReport,
        /// MI9, signed by the install domain's brass.
        installed: Signed,
        /// Time event.
        time: u64,
    },
    /// The meter left service: its Active record becomes Obsolete.
    Obsolete {
        /// MR3, signed by this brass process.
        record: Signed,
        /// The last day its tokens verify (days since 2000-01-01).
        last_day: u16,
        /// Time event.
        time: u64,
    },
    /// Active and Obsolete records into the verification table.
    LoadRecords {
        /// The country sub-domain.
        domain: DomainId,
        /// MR3 records.
        records: Vec<Signed>,
    },
    /// Verify the tokens of indicia (their signed parts).
    Verify {
        /// The country sub-domain.
        domain: DomainId,
        /// The indicia's signed parts (51 bytes each).
        indicia: Vec<Vec<u8>>,
    },
    /// Temporal token keys of the loaded meters for one month, for a tin box.
    ExportTokenKeys {
        /// The country sub-domain.
        domain: DomainId,
        /// The tin box and its startup key, as the manufacturing box recorded them.
        tin: Signed,
        /// The month (`year * 100 + month`).
        period: u32,
    },
    /// Record the startup key a new box answered with (manufacturing).
    RecordStartup {
        /// The box's answer.
        reply: StartupReply,
    },
    /// A box's recorded startup key, signed (manufacturing).
    StartupOf {
        /// The box.
        id: BoxId,
    },
    /// Token key records into a tin box.
    LoadTokenKeys {
        /// The country sub-domain.
        domain: DomainId,
        /// Token key records signed by the domain's brass.
        records: Vec<Signed>,
    },
    /// Create a domain.
    CreateDomain {
        /// The domain (a sub-domain needs its install domain first).
        domain: DomainId,
        /// Time event.
        time: u64,
    },
    /// Allocate a box id of this kind.
    SetBoxId {
        /// The kind.
        kind: BoxKind,
        /// Time event.
        time: u64,
    },
    /// Make a domain process for a box.
    MakeDomainProcess {
        /// The domain.
        domain: DomainId,
        /// The box's startup reply.
        reply: StartupReply,
        /// The box's kind.
        kind: BoxKind,
        /// Time event.
        time: u64,
    },
    /// Take a domain process.
    AcceptDomainProcess {
        /// The process, signed by the manufacturing box.
        process: Signed,
    },
    /// Status.
    Status,
}

impl Request {
    /// The request's command code.
    #[must_use]
    pub fn class(&self) -> Class {
        match self {
            Request::GenerateKey { .. } => Class::GenerateKey,
            Request::InstallKey { .. } => Class::InstallKey,
            Request::MeterEvidence { .. } => Class::MeterEvidence,
            Request::ConfirmInstalled { .. } => Class::ConfirmInstalled,
            Request::RegistrationRequest { .. } => Class::RegistrationRequest,
            Request::Obsolete { .. } => Class::Obsolete,
            Request::LoadRecords { .. } => Class::LoadRecords,
            Request::Verify { .. } => Class::Verify,
            Request::ExportTokenKeys { .. } => Class::ExportTokenKeys,
            Request::LoadTokenKeys { .. } => Class::LoadTokenKeys,
            Request::CreateDomain { .. } => Class::CreateDomain,
            Request::SetBoxId { .. } => Class::SetBoxId,
            Request::MakeDomainProcess { .. } => Class::MakeDomainProcess,
            Request::AcceptDomainProcess { .. } => Class::AcceptDomainProcess,
            Request::Status => Class::Status,
            Request::SetMeterAnchor { .. } => Class::SetMeterAnchor,
            Request::RecordStartup { .. } => Class::RecordStartup,
            Request::StartupOf { .. } => Class::StartupOf,
        }
    }

    /// The request with its time event set to `t` (requests without one
    /// are unchanged).
    #[must_use]
    pub fn at(mut self, t: u64) -> Self {
        match &mut self {
            Request::GenerateKey { time, .. }
            | Request::InstallKey { time, .. }
            | Request::MeterEvidence { time, .. }
            | Request::ConfirmInstalled { time, .. }
            | Request::RegistrationRequest { time, .. }
            | Request::Obsolete { time, .. }
            | Request::CreateDomain { time, .. }
            | Request::SetBoxId { time, .. }
            | Request::MakeDomainProcess { time, .. } => *time = t,
            Request::LoadRecords { .. }
            | Request::Verify { .. }
            | Request::ExportTokenKeys { .. }
            | Request::LoadTokenKeys { .. }
            | Request::AcceptDomainProcess { .. }
            | Request::Status
            | Request::SetMeterAnchor { .. }
            | Request::RecordStartup { .. }
            | Request::StartupOf { .. } => {}
        }
        self
    }

    /// The framed request.
    ///
    /// # Errors
    /// If it is too large to frame.
    pub fn to_frame(&self) -> Result<Vec<u8>> {
        let body = crate::message::encode(self)?;
        Ok(frame::encode(self.class() as u8, &body)?)
    }
}

/// What a token verification found, per indicium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The token verifies under an active key.
    Good,
    /// The token does not verify.
    BadToken,
    /// No record for this meter in this domain.
    UnknownMeter,
    /// The meter's key is not active at the date of mailing (before its
    /// registration, or after it left service).
    NotActive,
    /// The bytes are not an indicium's signed part.
    Malformed,
}

impl Verdict {
    /// The verdict's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::BadToken => "bad token",
            Verdict::UnknownMeter => "unknown meter",
            Verdict::NotActive => "key not active at the date of mailing",
            Verdict::Malformed => "not an indicium",
        }
    }
}

/// A box's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// MI2: MI3 and MI4 for the same key.
    NewKey {
        /// MI3.
        archive: Signed,
        /// MI4.
        install: Signed,
    },
    /// MI5.
    MeterInstall(MeterInstall),
    /// MI7.
    KeyInstalled(Signed),
    /// MI9 and MI10.
    Installed {
        /// MI9.
        archive: Signed,
        /// MI10.
        confirm: Signed,
    },
    /// MR3 and MR4.
    Registered {
        /// MR3.
        archive: Signed,
        /// MR4.
        confirm: Signed,
    },
    /// An archive record (Obsolete).
    Archive(Signed),
    /// How many records were loaded.
    Loaded(usize),
    /// One verdict per indicium.
    Verdicts(Vec<Verdict>),
    /// Token key records.
    TokenKeys(Vec<Signed>),
    /// A new domain: its signed directory and its keys sealed for the archive.
    Domain {
        /// The directory.
        directory: Signed,
        /// The domain keys, HPKE-sealed to the domain key set.
        sealed_keys: Vec<u8>,
    },
    /// A signed Set Secure Box ID.
    BoxId(Signed),
    /// A signed Make Domain Process.
    Process(Signed),
    /// A box's startup key, signed by the manufacturing box.
    Startup(Signed),
    /// Done.
    Done,
    /// Status.
    Status {
        /// The box.
        id: BoxId,
        /// Whether its operation shares are in.
        enabled: bool,
        /// Its configuration table (domains), if enabled.
        domains: Vec<DomainId>,
    },
}

/// Class code of a successful answer.
pub const ANSWER_OK: u8 = 0x80;
/// Class code of a refusal.
pub const ANSWER_ERR: u8 = 0x81;

/// A refusal as it travels.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Refusal {
    /// Level 1.
    Framing(FramingError),
    /// Level 2.
    Command(CommandError),
    /// Level 3.
    Refused {
        /// Code.
        fault: crate::error::Fault,
        /// Detail.
        detail: String,
    },
    /// Malformed value.
    Syntax(String),
}

impl From<&KmsError> for Refusal {
    fn from(e: &KmsError) -> Self {
        match e {
            KmsError::Framing(f) => Refusal::Framing(*f),
            KmsError::Command(c) => Refusal::Command(c.clone()),
            KmsError::Refused { fault, detail } => Refusal::Refused {
                fault: *fault,
                detail: detail.clone(),
            },
            KmsError::Syntax { what } => Refusal::Syntax((*what).to_owned()),
        }
    }
}

impl From<Refusal> for KmsError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Framing(f) => KmsError::Framing(f),
            Refusal::Command(c) => KmsError::Command(c),
            Refusal::Refused { fault, detail } => KmsError::Refused { fault, detail },
            Refusal::Syntax(what) => {
                KmsError::refused(crate::error::Fault::Mismatch, format!("malformed: {what}"))
            }
        }
    }
}

/// Reads a box's framed answer.
///
/// # Errors
/// The box's refusal, or a framing error if the answer itself is broken.
pub fn read_answer(frame: &[u8]) -> Result<Response> {
    let (class, body) = frame::decode(frame)?;
    match class {
        ANSWER_OK => crate::message::decode(body),
        ANSWER_ERR => Err(crate::message::decode::<Refusal>(body)?.into()),
        other => Err(FramingError::UnknownClass(other).into()),
    }
}
