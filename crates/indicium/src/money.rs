//! Money: an integer count of tenths of a cent, with checked arithmetic.

use core::fmt;

use crate::{Error, Result};

/// An amount of money in tenths of a cent (mills): `Money(1234)` is $1.234.
///
/// Arithmetic is checked; there are no floats. [`Display`](fmt::Display) prints
/// dollars with exactly three decimals and no grouping: `$0.500`, `$1.234`,
/// `$1234.000`. Postage meters print value to the tenth of a cent, so the
/// third decimal is always shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub u64);

impl Money {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// An amount of tenths of a cent.
    #[must_use]
    pub const fn from_tenths(tenths: u64) -> Self {
        Self(tenths)
    }

    /// An amount of whole cents.
    ///
    /// # Errors
    /// [`Error::MoneyOverflow`] if the amount does not fit.
    pub fn from_cents(cents: u64) -> Result<Self> {
        cents.checked_mul(10).map(Self).ok_or(Error::MoneyOverflow)
    }

    /// The amount in tenths of a cent.
    #[must_use]
    pub const fn tenths(self) -> u64 {
        self.0
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`Error::MoneyOverflow`] on overflow.
    pub fn checked_add(self, other: Self) -> Result<Self> {
        self.0
            .checked_add(other.0)
            .map(Self)
            .ok_or(Error::MoneyOverflow)
    }

    /// `self - other`.
    ///
    /// # Errors
    /// [`Error::MoneyOverflow`] if `other > self`.
    pub fn checked_sub(self, other: Self) -> Result<Self> {
        self.0
            .checked_sub(other.0)
            .map(Self)
            .ok_or(Error::MoneyOverflow)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_three_decimals() {
        assert_eq!(Money(0).to_string(), "$0.000");
        assert_eq!(Money(500).to_string(), "$0.500");
        assert_eq!(Money(1234).to_string(), "$1.234");
        assert_eq!(Money(7).to_string(), "$0.007");
        assert_eq!(Money(1_234_000).to_string(), "$1234.000");
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Money(5).checked_add(Money(7)), Ok(Money(12)));
        assert_eq!(
            Money(u64::MAX).checked_add(Money(1)),
            Err(Error::MoneyOverflow)
        );
        assert_eq!(Money(5).checked_sub(Money(6)), Err(Error::MoneyOverflow));
        assert_eq!(Money::from_cents(73), Ok(Money(730)));
        assert_eq!(Money::from_cents(u64::MAX), Err(Error::MoneyOverflow));
    }
}
