//! Fixtures for the KMS tests: a KMS set up over the in-memory archive with
//! boxes in memory, and a software meter that does what a PSD does with its
//! domain keys (the vault's tests use the real PSD).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use postvault_crypto::Secret32;
use postvault_indicium::Date;
use postvault_indicium::token;
use postvault_kms::archive::{Directories, Entry};
use postvault_kms::computer::{Archive, MemArchive};
use postvault_kms::message::{InstallRecord, MeterEvidence, MeterInstall, RegistrationReport};
use postvault_kms::setup::{Plan, SetUp, set_up};
use postvault_kms::storage::MemStorage;
use postvault_kms::{BoxId, DomainId, Fault, Installed, KmsError, Request, Response, Signed};

pub type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

pub fn d(s: &str) -> DomainId {
    DomainId::new(s).unwrap()
}

/// VE, USPS and EARTH, with sub-domains VE.US, USPS.US, EARTH.GB and VE.GB.
pub async fn kms() -> Fallible<SetUp<MemArchive>> {
    let plan = Plan {
        domains: vec![
            (d("VE"), vec!["US".into(), "GB".into()]),
            (d("USPS"), vec!["US".into()]),
            (d("EARTH"), vec!["GB".into()]),
        ],
        meter_anchor: postvault_kms::softmeter::anchor()?,
    };
    Ok(set_up(MemArchive::default(), &plan, |_| {
        Box::new(MemStorage::default())
    })
    .await?)
}

/// The crate's software meter, with the tests' unwrapping.
pub struct SoftMeter(postvault_kms::softmeter::SoftMeter);

impl std::ops::Deref for SoftMeter {
    type Target = postvault_kms::softmeter::SoftMeter;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl SoftMeter {
    pub fn new(serial: u32) -> Self {
        Self(postvault_kms::softmeter::SoftMeter::new(serial).unwrap())
    }

    /// MI5 → MI6.
    pub fn install(&mut self, m: &MeterInstall) -> MeterEvidence {
        self.0.install(m).unwrap()
    }

    /// MR1 for the key of `domain`.
    pub fn report(
        &self,
        domain: &DomainId,
        indicia_number: &str,
        country: &str,
        date: Date,
    ) -> RegistrationReport {
        self.0
            .report(domain, indicia_number, country, date)
            .unwrap()
    }

    /// An indicium's signed part (51 bytes) dated `date`, with the tokens of
    /// every installed key in place.
    pub fn indicium(&self, date: Date, postage_tenths: u32) -> [u8; 51] {
        self.0.indicium(date, postage_tenths).unwrap()
    }

    /// MI5 → MI6 from a meter that installs a different, random key instead
    /// of the one it was sent (a failed write, a swapped part): its test
    /// tokens, registration reports and indicia are all under that key.
    pub fn install_other_key(&mut self, m: &MeterInstall) -> MeterEvidence {
        let honest = token::test_tokens(&Secret32::generate().unwrap(), m.domain.as_str()).unwrap();
        let evidence = self
            .0
            .install_raw(&m.domain, m.key_id, Secret32::generate().unwrap())
            .unwrap();
        assert_ne!(
            evidence.test_tokens, honest,
            "the random key is another key"
        );
        evidence
    }
}

/// MI4' → MI5: steel seals the key in `mi4` to `meter` (vouched for).
pub fn steel_seal(
    k: &SetUp<MemArchive>,
    steel: BoxId,
    mi4: &Signed,
    meter: &SoftMeter,
) -> Result<postvault_kms::message::MeterInstall, KmsError> {
    k.kms.steel_install(
        steel,
        mi4,
        meter.device,
        meter.public,
        &meter.vouch().unwrap(),
    )
}

/// Installs a key of `domain` into `meter` through oak, steel and brass.
pub async fn install(
    k: &SetUp<MemArchive>,
    meter: &mut SoftMeter,
    domain: &DomainId,
) -> Fallible<Installed> {
    let mi4 = k.kms.request_key(domain, k.steel).await?;
    let mi5 = steel_seal(k, k.steel, &mi4, meter)?;
    let mi6 = meter.install(&mi5);
    Ok(k.kms.finish_install(k.steel, &mi6).await?)
}

pub fn today() -> Date {
    Date::from_unix_seconds(i64::try_from(postvault_kms::computer::now_ms() / 1000).unwrap())
        .unwrap()
}

/// Sends one request straight to a connected box.
pub fn call(k: &SetUp<MemArchive>, id: BoxId, request: &Request) -> Result<Response, KmsError> {
    k.kms.with_box(id, |b| b.call(request))
}

/// MI1 → MI2 through the KMS computer (the New record archived): MI3 (as
/// archived), MI4 and the key id.
pub async fn generate(
    k: &SetUp<MemArchive>,
    domain: &DomainId,
    steel: BoxId,
) -> Fallible<(Signed, Signed, u64)> {
    let mi4 = k.kms.request_key(domain, steel).await?;
    let key_id = mi4.peek::<InstallRecord>()?.key_id;
    let history = k.kms.archive().history(domain, key_id).await?;
    assert_eq!(history.len(), 1);
    Ok((history[0].record.clone(), mi4, key_id))
}

/// MI6 → MI7 straight from the steel box (nothing archived).
pub fn steel_report(k: &SetUp<MemArchive>, steel: BoxId, mi6: &MeterEvidence) -> Fallible<Signed> {
    match call(
        k,
        steel,
        &Request::MeterEvidence {
            evidence: mi6.clone(),
            time: k.kms.time(),
        },
    )? {
        Response::KeyInstalled(mi7) => Ok(mi7),
        other => Err(format!("steel answered {other:?}").into()),
    }
}

/// MI8 → MI9, MI10 straight from the brass box (nothing archived).
pub fn brass_confirm(
    k: &SetUp<MemArchive>,
    mi3: &Signed,
    mi7: &Signed,
    time: u64,
) -> Result<(Signed, Signed), KmsError> {
    match call(
        k,
        k.brass,
        &Request::ConfirmInstalled {
            archive: mi3.clone(),
            installed: mi7.clone(),
            time,
        },
    )? {
        Response::Installed { archive, confirm } => Ok((archive, confirm)),
        _ => Err(KmsError::refused(
            Fault::Mismatch,
            "brass answered another message",
        )),
    }
}

/// Every message of one installation, taken step by step.
pub struct Steps {
    pub key_id: u64,
    /// MI3, as archived (New).
    pub mi3: Signed,
    /// MI4.
    pub mi4: Signed,
    /// MI5.
    pub mi5: MeterInstall,
    /// MI6.
    pub mi6: MeterEvidence,
    /// MI7, signed by steel.
    pub mi7: Signed,
    /// MI9, signed by brass and archived.
    pub mi9: Signed,
    /// MI10.
    pub mi10: Signed,
}

/// Installs a key of `domain` into `meter` with `k.steel`, one message at a
/// time, archiving MI3 and MI9 as the KMS computer does.
pub async fn install_steps(
    k: &SetUp<MemArchive>,
    meter: &mut SoftMeter,
    domain: &DomainId,
) -> Fallible<Steps> {
    let (mi3, mi4, key_id) = generate(k, domain, k.steel).await?;
    let mi5 = steel_seal(k, k.steel, &mi4, meter)?;
    let mi6 = meter.install(&mi5);
    let mi7 = steel_report(k, k.steel, &mi6)?;
    let (mi9, mi10) = brass_confirm(k, &mi3, &mi7, k.kms.time())?;
    k.kms.archive_record(domain, key_id, &mi9).await?;
    Ok(Steps {
        key_id,
        mi3,
        mi4,
        mi5,
        mi6,
        mi7,
        mi9,
        mi10,
    })
}

/// The archive's directories as the KMS computer holds them.
pub async fn directories(k: &SetUp<MemArchive>) -> Fallible<Directories> {
    let mut dirs = Directories::new(&k.dks);
    for s in k.kms.archive().directories().await? {
        dirs.add(&s)?;
    }
    Ok(dirs)
}

/// A key's archive history.
pub async fn history(k: &SetUp<MemArchive>, domain: &DomainId, key_id: u64) -> Vec<Entry> {
    k.kms.archive().history(domain, key_id).await.unwrap()
}
