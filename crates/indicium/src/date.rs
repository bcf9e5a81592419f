//! Dates of mailing: whole days since 2000-01-01 (UTC), as the indicium stores them.

use core::fmt;
use core::str::FromStr;

use crate::{Error, Result};

/// Days from 1970-01-01 to 2000-01-01.
const EPOCH_2000_FROM_UNIX: i64 = 10_957;
const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar day (proleptic Gregorian, UTC): days since 2000-01-01, so
/// 2000-01-01 through 2179-06-06. Displays and parses as `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(u16);

impl Date {
    /// The first representable day, 2000-01-01.
    pub const EPOCH: Self = Self(0);

    /// The day `days` after 2000-01-01.
    #[must_use]
    pub const fn from_days(days: u16) -> Self {
        Self(days)
    }

    /// Days since 2000-01-01.
    #[must_use]
    pub const fn days(self) -> u16 {
        self.0
    }

    /// The day with this year, month (1-12) and day of month.
    ///
    /// # Errors
    /// [`Error::InvalidDate`] for an impossible date or one outside the range.
    pub fn from_ymd(year: i64, month: u8, day: u8) -> Result<Self> {
        let invalid = Error::InvalidDate { year, month, day };
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(invalid);
        }
        let days = days_from_civil(year, i64::from(month), i64::from(day)) - EPOCH_2000_FROM_UNIX;
        u16::try_from(days).map(Self).map_err(|_| invalid)
    }

    /// (year, month, day).
    #[must_use]
    pub fn ymd(self) -> (i64, u8, u8) {
        civil_from_days(i64::from(self.0) + EPOCH_2000_FROM_UNIX)
    }

    /// The day containing `secs` seconds after 1970-01-01T00:00:00Z.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if that day is outside the range.
    pub fn from_unix_seconds(secs: i64) -> Result<Self> {
        let days = secs.div_euclid(SECONDS_PER_DAY) - EPOCH_2000_FROM_UNIX;
        u16::try_from(days)
            .map(Self)
            .map_err(|_| Error::InvalidArgument {
                what: "time outside 2000-01-01 ..= 2179-06-06",
            })
    }

    /// Seconds after 1970-01-01T00:00:00Z at the start (00:00:00Z) of this day.
    #[must_use]
    pub fn unix_seconds_at_start(self) -> i64 {
        (i64::from(self.0) + EPOCH_2000_FROM_UNIX) * SECONDS_PER_DAY
    }

    /// The day `n` days later, if representable.
    #[must_use]
    pub fn checked_add_days(self, n: u16) -> Option<Self> {
        self.0.checked_add(n).map(Self)
    }

    /// The day `n` days earlier, if representable.
    #[must_use]
    pub fn checked_sub_days(self, n: u16) -> Option<Self> {
        self.0.checked_sub(n).map(Self)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=31, 1..=12).
    let day = u8::try_from(day).unwrap_or(0);
    let month = u8::try_from(month).unwrap_or(0);
    (year, month, day)
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for Date {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidDateText { text: s.to_owned() };
        let mut parts = s.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(y, 4) || !digits(m, 2) || !digits(d, 2) {
            return Err(bad());
        }
        let year = y.parse::<i64>().map_err(|_| bad())?;
        let month = m.parse::<u8>().map_err(|_| bad())?;
        let day = d.parse::<u8>().map_err(|_| bad())?;
        Self::from_ymd(year, month, day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days() {
        assert_eq!(Date::from_ymd(2000, 1, 1), Ok(Date(0)));
        assert_eq!(Date::from_ymd(2000, 3, 1), Ok(Date(60)));
        assert_eq!(Date::from_ymd(2001, 1, 1), Ok(Date(366)));
        assert_eq!(Date::from_ymd(2026, 5, 14).map(Date::days), Ok(9630));
        assert_eq!(Date::from_ymd(2179, 6, 6), Ok(Date(u16::MAX)));
        assert!(Date::from_ymd(2179, 6, 7).is_err());
        assert!(Date::from_ymd(1999, 12, 31).is_err());
        assert!(Date::from_ymd(2023, 2, 29).is_err());
        assert!(Date::from_ymd(2024, 2, 29).is_ok());
        assert!(Date::from_ymd(2100, 2, 29).is_err());
        assert!(Date::from_ymd(2024, 13, 1).is_err());
        assert!(Date::from_ymd(2024, 4, 31).is_err());
    }

    #[test]
    fn every_day_round_trips_through_text_and_unix_time() {
        for days in 0..=u16::MAX {
            let d = Date(days);
            let (y, m, dd) = d.ymd();
            assert_eq!(Date::from_ymd(y, m, dd), Ok(d));
            assert_eq!(d.to_string().parse::<Date>(), Ok(d));
            assert_eq!(Date::from_unix_seconds(d.unix_seconds_at_start()), Ok(d));
            assert_eq!(
                Date::from_unix_seconds(d.unix_seconds_at_start() + 86_399),
                Ok(d)
            );
        }
        assert_eq!(Date(0).unix_seconds_at_start(), 946_684_800);
    }

    #[test]
    fn text_is_strict() {
        for bad in [
            "2024-1-01",
            "24-01-01",
            "2024/01/01",
            "2024-01-01-",
            "",
            "2024-02-30",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad}");
        }
    }
}
