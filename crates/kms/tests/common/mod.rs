//! Fixtures for the KMS tests: a KMS set up over the in-memory archive with
//! boxes in memory, and a software meter that does what a PSD does with its
//! domain keys (the vault's tests use the real PSD).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use postvault_crypto::{Secret32, hpke};
use postvault_indicium::token::{self, Period, RegistrationFacts, TokenKey};
use postvault_indicium::{Date, DeviceId};
use postvault_kms::computer::MemArchive;
use postvault_kms::message::{MeterEvidence, MeterInstall, RegistrationReport};
use postvault_kms::setup::{Plan, SetUp, set_up};
use postvault_kms::storage::MemStorage;
use postvault_kms::{DomainId, Installed, role_of};

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
    };
    Ok(set_up(MemArchive::default(), &plan, |_| {
        Box::new(MemStorage::default())
    })
    .await?)
}

/// A meter's domain keys, as a PSD keeps them.
pub struct SoftMeter {
    pub device: [u8; 6],
    pub key: hpke::PrivateKey,
    pub public: [u8; 32],
    pub keys: Vec<(DomainId, u64, Secret32)>,
}

impl SoftMeter {
    pub fn new(serial: u32) -> Self {
        let (key, public) = hpke::PrivateKey::generate().unwrap();
        let mut device = *b"PV\0\0\0\0";
        device[2..].copy_from_slice(&serial.to_be_bytes());
        Self {
            device,
            key,
            public: public.0,
            keys: Vec::new(),
        }
    }

    /// MI5 → MI6.
    pub fn install(&mut self, m: &MeterInstall) -> MeterEvidence {
        let aad = token::install_aad(m.domain.as_str(), m.key_id, m.device, m.role);
        let k = hpke::open(&self.key, token::INSTALL_INFO, &aad, &m.sealed_key).unwrap();
        let k = Secret32::from_slice(k.expose()).unwrap();
        let test_tokens = token::test_tokens(&k, m.domain.as_str()).unwrap();
        self.keys.push((m.domain.clone(), m.key_id, k));
        MeterEvidence {
            device: self.device,
            domain: m.domain.clone(),
            key_id: m.key_id,
            test_tokens,
        }
    }

    /// MR1 for the key of `domain`.
    pub fn report(
        &self,
        domain: &DomainId,
        indicia_number: &str,
        country: &str,
        date: Date,
    ) -> RegistrationReport {
        let (_, key_id, k) = self.keys.iter().find(|(dd, _, _)| dd == domain).unwrap();
        let facts = RegistrationFacts {
            device: DeviceId::from_bytes(self.device).unwrap(),
            indicia_number: indicia_number.into(),
            country: country.into(),
            date,
        };
        RegistrationReport {
            domain: domain.clone(),
            key_id: *key_id,
            device: self.device,
            indicia_number: indicia_number.into(),
            country: country.into(),
            date: date.days(),
            token: token::registration_token(k, domain.as_str(), &facts).unwrap(),
        }
    }

    /// An indicium's signed part (51 bytes) dated `date`, with the tokens of
    /// every installed key in place.
    pub fn indicium(&self, date: Date, postage_tenths: u32) -> [u8; 51] {
        let mut b = [0u8; 51];
        b[0] = 1;
        b[1] = 1;
        b[6..12].copy_from_slice(&self.device);
        b[17..20].copy_from_slice(&postage_tenths.to_be_bytes()[1..]);
        b[20..22].copy_from_slice(&date.days().to_be_bytes());
        let covered = token::covered(&b);
        for (domain, _, k) in &self.keys {
            let tk = token::token_key(
                k,
                domain.as_str(),
                DeviceId::from_bytes(self.device).unwrap(),
                Period::of(date),
            )
            .unwrap();
            let t = TokenKey::new(&tk).token(&covered);
            let at = if role_of(domain) == 1 { 43 } else { 47 };
            b[at..at + 4].copy_from_slice(&t);
        }
        b
    }
}

/// Installs a key of `domain` into `meter` through oak, steel and brass.
pub async fn install(
    k: &SetUp<MemArchive>,
    meter: &mut SoftMeter,
    domain: &DomainId,
) -> Fallible<Installed> {
    let mi4 = k.kms.request_key(domain, k.steel).await?;
    let mi5 = k
        .kms
        .steel_install(k.steel, &mi4, meter.device, meter.public)?;
    let mi6 = meter.install(&mi5);
    Ok(k.kms.finish_install(k.steel, &mi6).await?)
}

pub fn today() -> Date {
    Date::from_unix_seconds(i64::try_from(postvault_kms::computer::now_ms() / 1000).unwrap())
        .unwrap()
}
