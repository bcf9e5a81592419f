//! Addresses (seed 002, "Key Management System Addresses"): domain ids,
//! secure box types and secure box ids.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Fault, KmsError};

/// A logical security domain: `VE` (the vendor), a postal service (`USPS`,
/// `UKRM`), `EARTH` (meters not yet assigned to a country), or a country
/// sub-domain of one of them (`USPS.US`, `EARTH.GB`), where keys are
/// registered to indicia numbers and tokens verified.
///
/// Each part is 2-8 capital letters or digits; at most one sub-domain level.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainId(String);

/// The vendor domain.
pub const VENDOR: &str = "VE";
/// The earth domain: meters made without a country, assigned to one later.
pub const EARTH: &str = "EARTH";

impl DomainId {
    /// Parses and checks a domain id.
    ///
    /// # Errors
    /// [`KmsError::Syntax`] if it is not 1-2 parts of 2-8 capital letters or digits.
    pub fn new(s: &str) -> Result<Self, KmsError> {
        let parts: Vec<&str> = s.split('.').collect();
        let ok_part = |p: &&str| {
            (2..=8).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        if parts.len() > 2 || !parts.iter().all(ok_part) {
            return Err(KmsError::Syntax {
                what: "domain id: 2-8 capital letters or digits, optionally '.' and a country sub-domain",
            });
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The install domain of a sub-domain (`USPS` for `USPS.US`); itself for an install domain.
    #[must_use]
    pub fn install_domain(&self) -> DomainId {
        match self.0.split_once('.') {
            Some((parent, _)) => DomainId(parent.to_owned()),
            None => self.clone(),
        }
    }

    /// Whether this is a country sub-domain.
    #[must_use]
    pub fn is_sub_domain(&self) -> bool {
        self.0.contains('.')
    }

    /// The country of a sub-domain (`US` for `USPS.US`).
    #[must_use]
    pub fn country(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, c)| c)
    }

    /// The country sub-domain `self.country` of this install domain.
    ///
    /// # Errors
    /// [`KmsError::Syntax`] if `self` is already a sub-domain or `country` is malformed.
    pub fn sub_domain(&self, country: &str) -> Result<DomainId, KmsError> {
        if self.is_sub_domain() {
            return Err(KmsError::Syntax {
                what: "a sub-domain has no sub-domains",
            });
        }
        DomainId::new(&format!("{}.{country}", self.0))
    }
}

impl TryFrom<String> for DomainId {
    type Error = KmsError;
    fn try_from(s: String) -> Result<Self, KmsError> {
        DomainId::new(&s)
    }
}

impl From<DomainId> for String {
    fn from(d: DomainId) -> String {
        d.0
    }
}

impl FromStr for DomainId {
    type Err = KmsError;
    fn from_str(s: &str) -> Result<Self, KmsError> {
        DomainId::new(s)
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The function of a secure box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BoxKind {
    /// Creates domains and domain keys; initialises the other boxes.
    Manufacturing,
    /// Generates domain master keys and their test tokens.
    Oak,
    /// Installs domain master keys into meters.
    Steel,
    /// Checks installation and registration; verifies tokens.
    Brass,
    /// Verifies tokens remotely with temporal token keys only.
    Tin,
}

impl BoxKind {
    /// Every kind.
    pub const ALL: [BoxKind; 5] = [
        BoxKind::Manufacturing,
        BoxKind::Oak,
        BoxKind::Steel,
        BoxKind::Brass,
        BoxKind::Tin,
    ];

    /// The letter of its box ids.
    #[must_use]
    pub fn letter(self) -> char {
        match self {
            BoxKind::Manufacturing => 'M',
            BoxKind::Oak => 'O',
            BoxKind::Steel => 'S',
            BoxKind::Brass => 'B',
            BoxKind::Tin => 'T',
        }
    }

    /// The kind's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            BoxKind::Manufacturing => "manufacturing",
            BoxKind::Oak => "oak",
            BoxKind::Steel => "steel",
            BoxKind::Brass => "brass",
            BoxKind::Tin => "tin",
        }
    }

    /// How many operation shares the box's operation combination is split into
    /// (all of them are needed): three for a manufacturing box, two otherwise.
    #[must_use]
    pub fn operation_shares(self) -> u8 {
        match self {
            BoxKind::Manufacturing => 3,
            _ => 2,
        }
    }
}

/// A physical secure box: its kind and number, written `O00000001`. Number 0
/// is a box whose id is not yet set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BoxId {
    /// Kind.
    pub kind: BoxKind,
    /// Number, 1..=99 999 999 once set.
    pub number: u32,
}

/// Largest box number (eight digits).
pub const MAX_BOX_NUMBER: u32 = 99_999_999;

impl BoxId {
    /// The id of a box of `kind` not yet initialised (`O00000000`).
    #[must_use]
    pub fn unset(kind: BoxKind) -> Self {
        Self { kind, number: 0 }
    }

    /// Whether the id has been set.
    #[must_use]
    pub fn is_set(self) -> bool {
        self.number != 0
    }
}

impl fmt::Display for BoxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:08}", self.kind.letter(), self.number)
    }
}

impl FromStr for BoxId {
    type Err = KmsError;
    fn from_str(s: &str) -> Result<Self, KmsError> {
        let bad = KmsError::Syntax {
            what: "box id: a letter (M, O, S, B, T) and eight digits",
        };
        let mut chars = s.chars();
        let letter = chars.next().ok_or_else(|| bad.clone())?;
        let digits = chars.as_str();
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad);
        }
        let kind = BoxKind::ALL
            .into_iter()
            .find(|k| k.letter() == letter)
            .ok_or_else(|| bad.clone())?;
        let number = digits.parse().map_err(|_| bad)?;
        Ok(Self { kind, number })
    }
}

/// Checks that `id` is a set id of `kind`.
///
/// # Errors
/// [`KmsError::Refused`] with [`Fault::WrongBox`] otherwise.
pub fn expect_kind(id: BoxId, kind: BoxKind) -> Result<(), KmsError> {
    if id.kind == kind && id.is_set() {
        Ok(())
    } else {
        Err(KmsError::refused(
            Fault::WrongBox,
            format!("{id} is not a {} box", kind.name()),
        ))
    }
}
