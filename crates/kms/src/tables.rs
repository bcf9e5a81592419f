//! The command, configuration and record tables (seed 002, "KMS
//! Configuration Data"). The system tables list everything the KMS knows;
//! each component keeps the subset it expects, and rejects the rest: a
//! command outside its command table at level 2, a domain outside its
//! configuration table or a record outside its record table at level 3.

use crate::ids::BoxKind;
use crate::message::RecordKind;
use crate::request::Class;

/// The command table of a kind of box.
#[must_use]
pub fn commands(kind: BoxKind) -> &'static [Class] {
    use Class as C;
    match kind {
        BoxKind::Manufacturing => &[
            C::CreateDomain,
            C::SetBoxId,
            C::MakeDomainProcess,
            C::RecordStartup,
            C::StartupOf,
            C::Status,
        ],
        BoxKind::Oak => &[C::GenerateKey, C::AcceptDomainProcess, C::Status],
        BoxKind::Steel => &[
            C::InstallKey,
            C::MeterEvidence,
            C::SetMeterAnchor,
            C::AcceptDomainProcess,
            C::Status,
        ],
        BoxKind::Brass => &[
            C::ConfirmInstalled,
            C::RegistrationRequest,
            C::Obsolete,
            C::LoadRecords,
            C::Verify,
            C::ExportTokenKeys,
            C::AcceptDomainProcess,
            C::Status,
        ],
        BoxKind::Tin => &[
            C::LoadTokenKeys,
            C::Verify,
            C::AcceptDomainProcess,
            C::Status,
        ],
    }
}

/// The record table of a kind of box: the records it accepts inside messages.
#[must_use]
pub fn records(kind: BoxKind) -> &'static [RecordKind] {
    use RecordKind as R;
    match kind {
        BoxKind::Manufacturing => &[R::DomainDirectory, R::StartupReply],
        BoxKind::Oak => &[R::DomainDirectory, R::MakeDomainProcess],
        BoxKind::Steel => &[R::DomainDirectory, R::MakeDomainProcess, R::InstallRecord],
        BoxKind::Brass => &[
            R::DomainDirectory,
            R::MakeDomainProcess,
            R::ArchiveNew,
            R::KeyInstalled,
            R::ArchiveInstalled,
            R::ArchiveRegistered,
            R::StartupReply,
        ],
        BoxKind::Tin => &[R::DomainDirectory, R::MakeDomainProcess, R::TokenKey],
    }
}
