//! The access-control database (seed 001, "user profile data"): one role per
//! account, Argon2id password verifiers, failure counting, expiry and time-outs.

use postvault_crypto::password::{Argon2Params, PasswordVerifier};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::role::{Role, UserId};
use crate::wire::Password;

/// Default logon failure limit.
pub const DEFAULT_FAILURE_LIMIT: u32 = 5;
/// Default idle time before a logged-on user is logged off.
pub const DEFAULT_LOGON_TIMEOUT_SECS: u64 = 15 * 60;
/// Default password validity after a change.
pub const DEFAULT_PASSWORD_PERIOD_SECS: u64 = 90 * 24 * 3600;
/// Most accounts the module holds.
pub const MAX_ACCOUNTS: usize = 256;

/// One account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// User id.
    pub user: UserId,
    /// The one role of this account.
    pub role: Role,
    /// Argon2id verifier of the password (the host's hash of the passphrase).
    pub verifier: String,
    /// Consecutive failed logons.
    pub failures: u32,
    /// Failed logons after which the account locks.
    pub failure_limit: u32,
    /// Idle seconds after which a logged-on user is logged off.
    pub logon_timeout_secs: u64,
    /// The account expires at this module time (seconds), if set.
    pub account_expires: Option<u64>,
    /// The password expires at this module time (seconds), if set.
    pub password_expires: Option<u64>,
    /// Validity granted to a new password, in seconds.
    pub password_period_secs: u64,
    /// Last successful logon, module time.
    pub last_access: Option<u64>,
}

/// What an operator supplies to create an account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewAccount {
    /// User id.
    pub user: UserId,
    /// Role (an operator role).
    pub role: Role,
    /// Initial password.
    pub password: Password,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AccountChanges {
    /// New password (also renews its expiry).
    pub password: Option<Password>,
    /// New failure limit.
    pub failure_limit: Option<u32>,
    /// Clear the failure count (unlock).
    pub unlock: bool,
    /// New logon time-out.
    pub logon_timeout_secs: Option<u64>,
    /// New account expiry (`Some(None)` removes it).
    pub account_expires: Option<Option<u64>>,
    /// New password period.
    pub password_period_secs: Option<u64>,
}

/// A successful logon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logon {
    /// The account's role.
    pub role: Role,
    /// The password has expired: until it is changed, the user may only change
    /// it, query who they are, or log off.
    pub must_change_password: bool,
}

/// What View Access Control shows: everything but the verifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// User id.
    pub user: UserId,
    /// Role.
    pub role: Role,
    /// Consecutive failed logons.
    pub failures: u32,
    /// Failure limit.
    pub failure_limit: u32,
    /// Account expiry.
    pub account_expires: Option<u64>,
    /// Password expiry.
    pub password_expires: Option<u64>,
    /// Last successful logon.
    pub last_access: Option<u64>,
}

/// The database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDb {
    accounts: Vec<Account>,
}

impl AccountDb {
    /// Builds the initial database; it must hold the minimal set.
    ///
    /// # Errors
    /// [`Error::MinimalAccountSet`], or [`Error::Account`] for a duplicate or non-operator role.
    pub fn initial(new: &[NewAccount], params: Argon2Params, now: u64) -> Result<Self> {
        let mut db = Self::default();
        for a in new {
            db.insert(a, params, now)?;
        }
        db.check_minimal()?;
        Ok(db)
    }

    /// Whether any account exists.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Finds an account.
    #[must_use]
    pub fn get(&self, user: &UserId) -> Option<&Account> {
        self.accounts.iter().find(|a| &a.user == user)
    }

    fn get_mut(&mut self, user: &UserId) -> Result<&mut Account> {
        self.accounts
            .iter_mut()
            .find(|a| &a.user == user)
            .ok_or_else(|| Error::Account {
                user: user.to_string(),
                what: "no such account",
            })
    }

    /// Adds an account.
    ///
    /// # Errors
    /// [`Error::Account`] for a duplicate id, a non-operator role or a full database.
    pub fn insert(&mut self, new: &NewAccount, params: Argon2Params, now: u64) -> Result<()> {
        let user = new.user.to_string();
        if !new.role.is_operator() {
            return Err(Error::Account {
                user,
                what: "only operator roles (security-officer, key-custodian, administrator, auditor) hold module accounts",
            });
        }
        if self.get(&new.user).is_some() {
            return Err(Error::Account {
                user,
                what: "already exists",
            });
        }
        if self.accounts.len() >= MAX_ACCOUNTS {
            return Err(Error::Account {
                user,
                what: "the access-control database is full",
            });
        }
        new.password.check_strength()?;
        let verifier = PasswordVerifier::create(new.password.expose(), params)?;
        self.accounts.push(Account {
            user: new.user.clone(),
            role: new.role,
            verifier: verifier.as_phc().to_owned(),
            failures: 0,
            failure_limit: DEFAULT_FAILURE_LIMIT,
            logon_timeout_secs: DEFAULT_LOGON_TIMEOUT_SECS,
            account_expires: None,
            password_expires: now.checked_add(DEFAULT_PASSWORD_PERIOD_SECS),
            password_period_secs: DEFAULT_PASSWORD_PERIOD_SECS,
            last_access: None,
        });
        Ok(())
    }

    /// Removes an account, keeping the minimal set.
    ///
    /// # Errors
    /// [`Error::Account`] if absent, [`Error::MinimalAccountSet`] if it would break the minimal set.
    pub fn delete(&mut self, user: &UserId) -> Result<()> {
        self.get_mut(user)?;
        let mut next = self.clone();
        next.accounts.retain(|a| &a.user != user);
        next.check_minimal()?;
        *self = next;
        Ok(())
    }

    /// Applies changes to an account.
    ///
    /// # Errors
    /// [`Error::Account`] if absent; [`Error::InvalidArgument`] for a zero failure limit or time-out.
    pub fn modify(
        &mut self,
        user: &UserId,
        c: &AccountChanges,
        params: Argon2Params,
        now: u64,
    ) -> Result<()> {
        if c.failure_limit == Some(0) || c.logon_timeout_secs == Some(0) {
            return Err(Error::InvalidArgument {
                what: "failure limit and logon time-out must be at least 1",
            });
        }
        let account = self.get_mut(user)?;
        if let Some(p) = &c.password {
            set_password(account, p, params, now)?;
        }
        if let Some(v) = c.failure_limit {
            account.failure_limit = v;
        }
        if c.unlock {
            account.failures = 0;
        }
        if let Some(v) = c.logon_timeout_secs {
            account.logon_timeout_secs = v;
        }
        if let Some(v) = c.account_expires {
            account.account_expires = v;
        }
        if let Some(v) = c.password_period_secs {
            account.password_period_secs = v;
        }
        Ok(())
    }

    /// Checks a logon attempt and records its outcome (failure count, last access).
    /// The caller must persist the database whatever the result.
    ///
    /// Only someone who gives the right password learns more than "invalid
    /// credentials": an unknown user costs the same Argon2id work as a known one,
    /// and a locked account answers a wrong password like any other.
    ///
    /// # Errors
    /// [`Error::InvalidCredentials`], [`Error::AccountLocked`], [`Error::Expired`] (account).
    pub fn logon(
        &mut self,
        user: &UserId,
        password: &Password,
        params: Argon2Params,
        now: u64,
    ) -> Result<Logon> {
        let Some(account) = self.accounts.iter_mut().find(|a| &a.user == user) else {
            let _ = PasswordVerifier::create(password.expose(), params);
            return Err(Error::InvalidCredentials);
        };
        let right = PasswordVerifier::from_phc(&account.verifier)?
            .verify(password.expose())
            .is_ok();
        if account.failures >= account.failure_limit {
            return Err(if right {
                Error::AccountLocked {
                    user: account.user.to_string(),
                }
            } else {
                Error::InvalidCredentials
            });
        }
        if !right {
            account.failures = account.failures.saturating_add(1);
            return Err(Error::InvalidCredentials);
        }
        if account.account_expires.is_some_and(|t| now >= t) {
            return Err(Error::Expired {
                user: account.user.to_string(),
                what: "account",
            });
        }
        account.failures = 0;
        account.last_access = Some(now);
        Ok(Logon {
            role: account.role,
            must_change_password: account.password_expires.is_some_and(|t| now >= t),
        })
    }

    /// Changes a user's own password after checking the old one.
    ///
    /// # Errors
    /// [`Error::InvalidCredentials`] if the old password is wrong; [`Error::InvalidArgument`] if the new one is weak or equal to the old.
    pub fn change_password(
        &mut self,
        user: &UserId,
        old: &Password,
        new: &Password,
        params: Argon2Params,
        now: u64,
    ) -> Result<()> {
        let account = self.get_mut(user)?;
        PasswordVerifier::from_phc(&account.verifier)?
            .verify(old.expose())
            .map_err(|_| Error::InvalidCredentials)?;
        if old.expose() == new.expose() {
            return Err(Error::InvalidArgument {
                what: "the new password must differ from the old one",
            });
        }
        set_password(account, new, params, now)
    }

    /// The view without verifiers.
    #[must_use]
    pub fn view(&self) -> Vec<AccountView> {
        self.accounts
            .iter()
            .map(|a| AccountView {
                user: a.user.clone(),
                role: a.role,
                failures: a.failures,
                failure_limit: a.failure_limit,
                account_expires: a.account_expires,
                password_expires: a.password_expires,
                last_access: a.last_access,
            })
            .collect()
    }

    fn count(&self, role: Role) -> usize {
        self.accounts.iter().filter(|a| a.role == role).count()
    }

    fn check_minimal(&self) -> Result<()> {
        if self.count(Role::Administrator) >= 1
            && self.count(Role::SecurityOfficer) >= 1
            && self.count(Role::KeyCustodian) >= 2
        {
            Ok(())
        } else {
            Err(Error::MinimalAccountSet)
        }
    }
}

fn set_password(account: &mut Account, p: &Password, params: Argon2Params, now: u64) -> Result<()> {
    p.check_strength()?;
    account.verifier = PasswordVerifier::create(p.expose(), params)?
        .as_phc()
        .to_owned();
    account.password_expires = now.checked_add(account.password_period_secs);
    Ok(())
}
