//! Checkpoints (seed 001): each module keeps records of its three most recent
//! PSD transactions in NVM, and outputs the newest, MAC'd with the crypto-card's
//! checkpoint key, for the database's module table. Before every PSD command the
//! record the database holds must equal the module's newest, so a database that
//! lost transactions (a switchover to a stale replica) is noticed before any
//! package from it is trusted. Auto-Recover accepts one of the two older records
//! and documents each discarded transaction; a genuine record of this module
//! matching none of them inhibits the module until the security officer
//! recovers it (a record that is not genuine, or another module's, is refused
//! without inhibiting).

use postvault_crypto::{Secret32, mac};
use postvault_indicium::Money;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, PsdCheck, Result};

/// Checkpoint record format version.
pub const CHECKPOINT_VERSION: u8 = 1;
/// How many records the module keeps.
pub const KEPT: usize = 3;
const MAC_LABEL: &[u8] = b"postvault checkpoint v1";

/// The PSD transactions that make a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transaction {
    /// Initialize PSD.
    Initialize,
    /// Authorize PSD.
    Authorize,
    /// Configure PSD.
    Configure,
    /// Authorize Customer.
    AuthorizeCustomer,
    /// Postage value download.
    Download,
    /// Create indicium.
    Indicium,
    /// Create correction indicium.
    Correction,
    /// Create refund indicium.
    Refund,
    /// Sign a redated indicium (no register changes).
    Redate,
    /// Begin password reset.
    BeginPasswordReset,
    /// Complete password reset.
    CompletePasswordReset,
    /// Sign-on with the right passphrase (a new challenge; the failure count cleared).
    SignOn,
    /// Sign-on with a wrong passphrase (the failure count raised).
    SignOnRefused,
    /// A domain master key installed (seed 002).
    InstallDomainKey,
    /// The domain keys registered to an indicia number and country.
    RegisterDomainKeys,
}

/// Module-wide sums since initialisation (seed 001: total reset, printed, refunded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Postage downloaded into meters ("amount reset").
    #[serde(with = "crate::codec::tenths")]
    pub downloaded: Money,
    /// Postage printed (indicia and corrections).
    #[serde(with = "crate::codec::tenths")]
    pub printed: Money,
    /// Postage refunded.
    #[serde(with = "crate::codec::tenths")]
    pub refunded: Money,
}

/// One transaction as the module remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    /// Format version.
    pub version: u8,
    /// The module that made it.
    pub module_serial: String,
    /// The module's checkpoint counter (1 for its first PSD transaction).
    pub counter: u64,
    /// The meter.
    pub device_id: [u8; 6],
    /// The package's transaction count after this transaction.
    pub package_sequence: u64,
    /// The MAC of the package after this transaction: names it exactly.
    pub package_mac: [u8; 32],
    /// What happened.
    pub transaction: Transaction,
    /// The amount it moved (zero for transactions that move none).
    #[serde(with = "crate::codec::tenths")]
    pub amount: Money,
    /// The meter's ascending register after it.
    #[serde(with = "crate::codec::tenths")]
    pub ar: Money,
    /// The meter's descending register after it.
    #[serde(with = "crate::codec::tenths")]
    pub dr: Money,
    /// Module time.
    pub time: u64,
    /// Module totals after it.
    pub totals: Totals,
}

/// A record as the database keeps it: the encoded body and its MAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Encoded [`CheckpointBody`].
    pub body: Vec<u8>,
    /// HMAC-SHA-256 under the checkpoint key over a label and the body.
    pub mac: [u8; 32],
}

impl CheckpointRecord {
    /// MACs a body.
    ///
    /// # Errors
    /// [`Error::Malformed`] (never for the module's own bodies).
    pub fn seal(body: &CheckpointBody, key: &Secret32) -> Result<Self> {
        let bytes = codec::encode(body)?;
        let mac = mac::hmac_sha256(key, &[MAC_LABEL, &bytes]);
        Ok(Self { body: bytes, mac })
    }

    /// Checks the MAC and returns the body.
    ///
    /// # Errors
    /// [`Error::PsdCheck`] with [`PsdCheck::CheckpointMac`].
    pub fn open(&self, key: &Secret32) -> Result<CheckpointBody> {
        mac::verify_hmac_sha256(key, &[MAC_LABEL, &self.body], &self.mac)
            .map_err(|_| Error::PsdCheck(PsdCheck::CheckpointMac))?;
        let body: CheckpointBody = codec::decode(&self.body, "checkpoint record")?;
        if body.version != CHECKPOINT_VERSION {
            return Err(Error::PsdCheck(PsdCheck::CheckpointMac));
        }
        Ok(body)
    }

    /// The body, decoded without checking the MAC (for the module's own NVM
    /// copies and for displays; never to decide anything about a database record).
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn peek(&self) -> Result<CheckpointBody> {
        codec::decode(&self.body, "checkpoint record")
    }
}

/// NVM slot [`crate::nvm::Slot::Checkpoints`]: the last records, newest first,
/// and whether the module is inhibited from PSD work.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStore {
    /// Newest first; at most [`KEPT`].
    pub records: Vec<CheckpointRecord>,
    /// Auto-recovery failed: no PSD command runs until an operator recovers.
    pub inhibited: bool,
}

impl CheckpointStore {
    /// The newest record.
    #[must_use]
    pub fn newest(&self) -> Option<&CheckpointRecord> {
        self.records.first()
    }

    /// The dispatch check: the database's record must be the module's newest.
    ///
    /// # Errors
    /// [`PsdCheck::Inhibited`] while inhibited; [`PsdCheck::CheckpointMismatch`]
    /// when the records differ (including one side having none).
    pub fn check(&self, from_database: Option<&CheckpointRecord>) -> Result<()> {
        if self.inhibited {
            return Err(Error::PsdCheck(PsdCheck::Inhibited));
        }
        if self.newest() != from_database {
            return Err(Error::PsdCheck(PsdCheck::CheckpointMismatch));
        }
        Ok(())
    }

    /// The package (transaction count, MAC) the module last produced for a
    /// meter, if any kept record names it.
    #[must_use]
    pub fn last_package_of(&self, device_id: &[u8; 6]) -> Option<(u64, [u8; 32])> {
        self.records
            .iter()
            .filter_map(|r| r.peek().ok())
            .find(|b| &b.device_id == device_id)
            .map(|b| (b.package_sequence, b.package_mac))
    }

    /// The body of the next record after a transaction.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the newest stored record is unreadable;
    /// [`Error::PsdCheck`] with [`PsdCheck::RegisterOverflow`] if a total would overflow.
    pub fn next_body(&self, serial: &str, tx: TransactionFacts) -> Result<CheckpointBody> {
        let (counter, mut totals) = match self.newest() {
            Some(r) => {
                let b = r.peek()?;
                (b.counter, b.totals)
            }
            None => (0, Totals::default()),
        };
        let add = |a: Money, b: Money| {
            a.checked_add(b)
                .map_err(|_| Error::PsdCheck(PsdCheck::RegisterOverflow))
        };
        match tx.transaction {
            Transaction::Download => totals.downloaded = add(totals.downloaded, tx.amount)?,
            Transaction::Indicium | Transaction::Correction => {
                totals.printed = add(totals.printed, tx.amount)?;
            }
            Transaction::Refund => totals.refunded = add(totals.refunded, tx.amount)?,
            _ => {}
        }
        Ok(CheckpointBody {
            version: CHECKPOINT_VERSION,
            module_serial: serial.to_owned(),
            counter: counter.saturating_add(1),
            device_id: tx.device_id,
            package_sequence: tx.package_sequence,
            package_mac: tx.package_mac,
            transaction: tx.transaction,
            amount: tx.amount,
            ar: tx.ar,
            dr: tx.dr,
            time: tx.time,
            totals,
        })
    }

    /// The store after a new record: it goes first, the oldest beyond [`KEPT`] drops.
    #[must_use]
    pub fn pushed(&self, record: CheckpointRecord) -> Self {
        let mut records = Vec::with_capacity(KEPT);
        records.push(record);
        records.extend(self.records.iter().take(KEPT.saturating_sub(1)).cloned());
        Self {
            records,
            inhibited: false,
        }
    }

    /// Auto-Recover: if the database's record is one of the two older records,
    /// returns the store rolled back to it and the discarded transactions, newest first.
    /// `None` if it matches neither (the caller inhibits the module).
    #[must_use]
    pub fn recover_to(
        &self,
        from_database: &CheckpointRecord,
    ) -> Option<(Self, Vec<CheckpointRecord>)> {
        let at = self
            .records
            .iter()
            .skip(1)
            .position(|r| r == from_database)?
            .saturating_add(1);
        let (discarded, kept) = self.records.split_at(at);
        Some((
            Self {
                records: kept.to_vec(),
                inhibited: false,
            },
            discarded.to_vec(),
        ))
    }
}

/// What a transaction did, for its checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct TransactionFacts {
    /// The meter.
    pub device_id: [u8; 6],
    /// Package sequence after.
    pub package_sequence: u64,
    /// Package MAC after.
    pub package_mac: [u8; 32],
    /// Type.
    pub transaction: Transaction,
    /// Amount moved.
    pub amount: Money,
    /// AR after.
    pub ar: Money,
    /// DR after.
    pub dr: Money,
    /// Module time.
    pub time: u64,
}
