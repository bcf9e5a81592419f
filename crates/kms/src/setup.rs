//! Setting up a whole KMS in one go: the first manufacturing box, the
//! domains, and one oak, steel, brass and tin box with their processes, as
//! the seed's initialisation (figs. 22-23) does step by step. Used by the
//! vault's development ceremony, the demo and the tests.

use crate::boxes::{OperationShare, SecureBox};
use crate::computer::{Archive, Kms};
use crate::error::Result;
use crate::ids::{BoxId, BoxKind, DomainId};
use crate::storage::BoxStorage;

/// What to set up.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Install domains (vendor, posts, earth), each with its country sub-domains.
    pub domains: Vec<(DomainId, Vec<String>)>,
    /// The key that vouches for meter keys (the vault's registration signing
    /// key), given to the steel box.
    pub meter_anchor: (u8, Vec<u8>),
}

impl Plan {
    /// The vendor domain `VE` and one post with one country (e.g. `USPS`, `US`),
    /// and the meters' anchor.
    ///
    /// # Errors
    /// If the ids are malformed.
    pub fn vendor_and_post(post: &str, country: &str, meter_anchor: (u8, Vec<u8>)) -> Result<Self> {
        Ok(Self {
            meter_anchor,
            domains: vec![
                (DomainId::new(crate::ids::VENDOR)?, vec![country.to_owned()]),
                (DomainId::new(post)?, vec![country.to_owned()]),
            ],
        })
    }
}

/// A KMS that was set up, and every box's operation shares.
pub struct SetUp<A> {
    /// The KMS computer with its boxes connected and enabled.
    pub kms: Kms<A>,
    /// The domain key set's authentication key (checks directories).
    pub dks: Vec<u8>,
    /// The manufacturing box.
    pub manufacturing: BoxId,
    /// Oak, steel, brass and tin boxes.
    pub oak: BoxId,
    /// The steel box.
    pub steel: BoxId,
    /// The brass box.
    pub brass: BoxId,
    /// The tin box.
    pub tin: BoxId,
    /// Every box's shares.
    pub shares: Vec<(BoxId, Vec<OperationShare>)>,
}

/// Sets up a KMS over `archive` following `plan`; `storage` gives each box
/// its storage by id.
///
/// # Errors
/// Any box's or the archive's refusal.
pub async fn set_up<A: Archive>(
    archive: A,
    plan: &Plan,
    storage: impl Fn(BoxId) -> Box<dyn BoxStorage>,
) -> Result<SetUp<A>> {
    let m_id = BoxId {
        kind: BoxKind::Manufacturing,
        number: 1,
    };
    let (m, m_shares) = SecureBox::first_manufacturing(storage(m_id))?;
    let dks = m.domain_key_set_public()?;
    let kms = Kms::new(archive, &dks).await?;
    kms.add_box(m)?;
    let mut shares = vec![(m_id, m_shares)];
    let mut install = Vec::new();
    let mut subs = Vec::new();
    for (domain, countries) in &plan.domains {
        kms.create_domain(m_id, domain).await?;
        install.push(domain.clone());
        for c in countries {
            let sub = domain.sub_domain(c)?;
            kms.create_domain(m_id, &sub).await?;
            subs.push(sub);
        }
    }
    let mut ids = Vec::new();
    for kind in [BoxKind::Oak, BoxKind::Steel, BoxKind::Brass, BoxKind::Tin] {
        let (id, s) = kms.init_box(m_id, kind, &storage)?;
        shares.push((id, s));
        ids.push(id);
    }
    let [oak, steel, brass, tin] = ids.as_slice() else {
        return Err(crate::KmsError::refused(
            crate::Fault::WrongBox,
            "box setup",
        ));
    };
    kms.set_meter_anchor(*steel, &plan.meter_anchor)?;
    for d in &install {
        kms.make_process(m_id, *oak, d)?;
        kms.make_process(m_id, *steel, d)?;
        kms.make_process(m_id, *brass, d)?;
    }
    for d in &subs {
        kms.make_process(m_id, *brass, d)?;
        kms.make_process(m_id, *tin, d)?;
    }
    Ok(SetUp {
        kms,
        dks,
        manufacturing: m_id,
        oak: *oak,
        steel: *steel,
        brass: *brass,
        tin: *tin,
        shares,
    })
}
