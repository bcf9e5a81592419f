//! The audit service: checks over the audit logs of the whole pool.
//!
//! [`check_register_history`] is the AR history check (DESIGN §8): it follows
//! each meter's registers across the audit entries of every module, so a PSD
//! package that was replayed (a restored database, a request routed to a module
//! whose checkpoint does not know the meter) or forked shows as one package
//! state used twice, even though each module on its own saw nothing wrong.
//!
//! The check reads what the modules recorded, nothing else: each successful
//! PSD command's `Psd` entry (the transaction's checkpoint body), less the
//! transactions Auto-Recover or the security officer later discarded. It
//! assumes each log is complete and verified ([`postvault_module::audit::verify_log`]);
//! it does not check chains or signatures itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use postvault_indicium::{DeviceId, Money};
use postvault_module::audit::{AuditData, AuditEntry};
use postvault_module::checkpoint::{CheckpointBody, Transaction};

/// A meter, by its device id (the six bytes of the indicium layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeterId(pub [u8; 6]);

impl MeterId {
    /// The device id in lowercase hex (twelve digits).
    #[must_use]
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for MeterId {
    /// Hex, then the printed form (`PV00000042`) when the bytes are a valid device id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DeviceId::from_bytes(self.0) {
            Ok(id) => write!(f, "{} ({id})", self.hex()),
            Err(_) => f.write_str(&self.hex()),
        }
    }
}

/// Where an entry is: the module's serial and the entry's audit sequence number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryRef {
    /// Module serial (of the log the entry is in).
    pub module: String,
    /// The entry's sequence number in that module's log.
    pub seq: u64,
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "module {} entry {}", self.module, self.seq)
    }
}

/// A meter's two registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// Ascending register.
    pub ar: Money,
    /// Descending register.
    pub dr: Money,
}

impl fmt::Display for Registers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AR {}, DR {}", self.ar, self.dr)
    }
}

/// What a consistent history contains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryReport {
    /// Meters with at least one transaction that stands.
    pub meters: usize,
    /// Transactions checked (those that stand: discarded ones are not counted).
    pub transactions: usize,
    /// Transactions recorded and later discarded (Auto-Recover or the security
    /// officer's recovery): as far as the database is concerned they never happened.
    pub discarded: usize,
}

/// Why the pool's audit logs do not make a consistent register history.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// An entry's body could not be decoded.
    #[error(
        "module {module}: audit entry at position {index} is unreadable; verify the log (audit verify) first"
    )]
    Unreadable {
        /// Module serial.
        module: String,
        /// Position of the entry in the log given.
        index: usize,
    },
    /// Two logs were given for one module.
    #[error("module {module}: its audit log was given twice; pass each module's log once")]
    DuplicateModule {
        /// Module serial.
        module: String,
    },
    /// A PSD entry names a module other than the one whose log holds it.
    #[error(
        "{entry}: records a transaction of module {named}: the entry is not this module's; the logs were mixed up or altered"
    )]
    ForeignTransaction {
        /// The entry.
        entry: EntryRef,
        /// The module serial the transaction names.
        named: String,
    },
    /// A discard names a transaction that no earlier entry of the module's log records.
    #[error(
        "{entry}: discards transaction {counter} of this module, which no earlier entry of its log records as it was: the log is incomplete or altered"
    )]
    UnknownDiscard {
        /// The entry that discards.
        entry: EntryRef,
        /// The module's checkpoint counter of the transaction it names.
        counter: u64,
    },
    /// Two transactions that stand left the meter's package at the same
    /// transaction count: one package state was used twice.
    #[error(
        "meter {meter}: package sequence {sequence} used twice ({first}, {second}): a replayed or forked package"
    )]
    SequenceReused {
        /// The meter.
        meter: MeterId,
        /// The package sequence (transaction count after the transaction).
        sequence: u64,
        /// The first transaction (earlier in the logs' order).
        first: EntryRef,
        /// The second transaction.
        second: EntryRef,
    },
    /// The meter's transactions skip package sequences: a transaction is missing
    /// (a module's log was not given, or entries were removed).
    #[error(
        "meter {meter}: package sequence jumps from {previous} to {next} ({entry}): transactions are missing; give every module's complete log"
    )]
    SequenceGap {
        /// The meter.
        meter: MeterId,
        /// The last sequence before the gap.
        previous: u64,
        /// The next sequence found.
        next: u64,
        /// The transaction after the gap.
        entry: EntryRef,
    },
    /// The ascending register went down.
    #[error(
        "meter {meter}: AR falls from {before} to {after} at package sequence {sequence} ({entry}): registers were rolled back"
    )]
    ArDecreased {
        /// The meter.
        meter: MeterId,
        /// Package sequence of the transaction.
        sequence: u64,
        /// AR after the previous transaction.
        before: Money,
        /// AR after this one.
        after: Money,
        /// The transaction.
        entry: EntryRef,
    },
    /// A transaction's registers (or amount) do not follow from the previous
    /// transaction's registers and its own amount.
    #[error(
        "meter {meter}: package sequence {sequence} ({transaction:?} of {amount}) records {after}, {} ({entry}): the registers do not add up",
        expected_text(*.before, *.expected)
    )]
    Registers {
        /// The meter.
        meter: MeterId,
        /// Package sequence of the transaction.
        sequence: u64,
        /// Transaction type.
        transaction: Transaction,
        /// Amount recorded.
        amount: Money,
        /// Registers before it (zero for Initialize PSD).
        before: Registers,
        /// Registers recorded after it.
        after: Registers,
        /// What they should have been; `None` if the amount itself is not
        /// possible from `before` (more than the DR, a refund of other than the
        /// whole DR, an amount on a transaction that moves none, an overflow).
        expected: Option<Registers>,
        /// The transaction.
        entry: EntryRef,
    },
}

fn expected_text(before: Registers, expected: Option<Registers>) -> String {
    match expected {
        Some(e) => format!("but {before} and its amount give {e}"),
        None => format!("but its amount is not possible from {before}"),
    }
}

/// One recorded transaction.
struct Recorded {
    body: CheckpointBody,
    entry: EntryRef,
    stands: bool,
}

/// The registers after `tx`, from the registers `before` it, as the postal
/// commands change them (`postvault_module::postal`); `None` if its amount is
/// not possible from `before`.
fn expected_after(before: Registers, tx: &CheckpointBody) -> Option<Registers> {
    let amount = tx.amount;
    match tx.transaction {
        // A new package starts at zero.
        Transaction::Initialize => (amount == Money::ZERO).then_some(Registers::default()),
        // Provider download: DR += v (v > 0).
        Transaction::Download => (amount > Money::ZERO)
            .then(|| before.dr.checked_add(amount).ok())
            .flatten()
            .map(|dr| Registers { dr, ..before }),
        // (Correction) indicium: DR -= v, AR += v.
        Transaction::Indicium | Transaction::Correction => Some(Registers {
            ar: before.ar.checked_add(amount).ok()?,
            dr: before.dr.checked_sub(amount).ok()?,
        }),
        // Refund indicium for the whole DR: AR += DR, DR = 0.
        Transaction::Refund => (amount == before.dr)
            .then(|| before.ar.checked_add(amount).ok())
            .flatten()
            .map(|ar| Registers {
                ar,
                dr: Money::ZERO,
            }),
        // Everything else moves no value: Authorize and Configure PSD,
        // Authorize Customer, redating, password reset, sign-on. (A wildcard
        // so a transaction type added later is held to "moves nothing": one
        // that moves value shows as a register error here, never passes.)
        _ => (amount == Money::ZERO).then_some(before),
    }
}

fn registers_of(tx: &CheckpointBody) -> Registers {
    Registers {
        ar: tx.ar,
        dr: tx.dr,
    }
}

/// Marks the transaction a discard names (this module's, by checkpoint
/// counter, recorded earlier in the log and not yet discarded) as not standing.
fn discard(
    recorded: &mut [Recorded],
    standing: &mut HashMap<u64, usize>,
    named: &CheckpointBody,
    entry: &EntryRef,
) -> Result<(), HistoryError> {
    let unknown = || HistoryError::UnknownDiscard {
        entry: entry.clone(),
        counter: named.counter,
    };
    let at = standing.remove(&named.counter).ok_or_else(unknown)?;
    match recorded.get_mut(at) {
        Some(r) if r.body == *named => {
            r.stands = false;
            Ok(())
        }
        _ => Err(unknown()),
    }
}

/// The AR history check over the pool's audit logs.
///
/// `logs` holds, per module, its serial and its complete audit log in order
/// (for a log as the store keeps it, [`postvault_module::audit::parse_log`]
/// over the concatenated stored entries). The check gathers every meter's
/// PSD transactions from all modules' `Psd` entries, drops each one that a
/// later `Discarded` or `CheckpointRecovered` entry of the same module names
/// (by module serial and checkpoint counter; a transaction done again from
/// the same package after that is not a replay), and then, per meter in
/// package-sequence order, checks that:
///
/// - no two transactions left the package at the same sequence: the same
///   package state (and so the same package MAC) was the starting point of
///   two different transactions, i.e. a replayed or forked package;
/// - sequences have no gaps after the first one seen;
/// - the AR never decreases;
/// - each transaction's registers follow from the previous one's and its
///   amount, as the postal commands change them: Initialize PSD starts at zero;
///   a download adds its amount to the DR; an indicium or correction moves its
///   amount from the DR to the AR; a refund moves the whole DR to the AR; every
///   other transaction moves nothing and has no amount.
///
/// A transaction that a module ran but the database never committed, before
/// Auto-Recover on that module discards it, looks like a fork if the meter's
/// older package was used elsewhere meanwhile: recover the module first.
///
/// # Errors
/// The first [`HistoryError`] found: per meter in device-id order, the earliest
/// problem in sequence order; it names the meter, the package sequence and the
/// offending entries.
pub fn check_register_history(
    logs: &[(String, Vec<AuditEntry>)],
) -> Result<HistoryReport, HistoryError> {
    let mut recorded: Vec<Recorded> = Vec::new();
    let mut discarded = 0usize;
    let mut modules = BTreeSet::new();
    for (serial, entries) in logs {
        if !modules.insert(serial.as_str()) {
            return Err(HistoryError::DuplicateModule {
                module: serial.clone(),
            });
        }
        // This module's transactions that stand, by checkpoint counter.
        let mut standing: HashMap<u64, usize> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let body = entry.decode_body().map_err(|_| HistoryError::Unreadable {
                module: serial.clone(),
                index,
            })?;
            let at = EntryRef {
                module: serial.clone(),
                seq: body.seq,
            };
            match body.data {
                AuditData::Psd(tx) => {
                    if tx.module_serial != *serial {
                        return Err(HistoryError::ForeignTransaction {
                            entry: at,
                            named: tx.module_serial,
                        });
                    }
                    standing.insert(tx.counter, recorded.len());
                    recorded.push(Recorded {
                        body: *tx,
                        entry: at,
                        stands: true,
                    });
                }
                AuditData::Discarded(tx) => {
                    discard(&mut recorded, &mut standing, &tx, &at)?;
                    discarded = discarded.saturating_add(1);
                }
                AuditData::CheckpointRecovered {
                    discarded: list, ..
                } => {
                    for tx in &list {
                        discard(&mut recorded, &mut standing, tx, &at)?;
                        discarded = discarded.saturating_add(1);
                    }
                }
                _ => {}
            }
        }
    }

    let mut meters: BTreeMap<[u8; 6], Vec<&Recorded>> = BTreeMap::new();
    for r in recorded.iter().filter(|r| r.stands) {
        meters.entry(r.body.device_id).or_default().push(r);
    }
    let mut transactions = 0usize;
    for (device_id, history) in &mut meters {
        // Stable: transactions at the same sequence stay in the logs' order.
        history.sort_by_key(|r| r.body.package_sequence);
        check_meter(MeterId(*device_id), history)?;
        transactions = transactions.saturating_add(history.len());
    }
    Ok(HistoryReport {
        meters: meters.len(),
        transactions,
        discarded,
    })
}

/// One meter's standing transactions, in sequence order.
fn check_meter(meter: MeterId, history: &[&Recorded]) -> Result<(), HistoryError> {
    let mut previous: Option<&Recorded> = None;
    for r in history {
        let tx = &r.body;
        let before = match previous {
            None if tx.transaction != Transaction::Initialize => {
                // The first transaction seen (the package's start is in a log not given).
                previous = Some(r);
                continue;
            }
            None => Registers::default(),
            Some(p) => {
                let prev = &p.body;
                if tx.package_sequence == prev.package_sequence {
                    return Err(HistoryError::SequenceReused {
                        meter,
                        sequence: tx.package_sequence,
                        first: p.entry.clone(),
                        second: r.entry.clone(),
                    });
                }
                if tx.package_sequence != prev.package_sequence.saturating_add(1) {
                    return Err(HistoryError::SequenceGap {
                        meter,
                        previous: prev.package_sequence,
                        next: tx.package_sequence,
                        entry: r.entry.clone(),
                    });
                }
                if tx.ar < prev.ar {
                    return Err(HistoryError::ArDecreased {
                        meter,
                        sequence: tx.package_sequence,
                        before: prev.ar,
                        after: tx.ar,
                        entry: r.entry.clone(),
                    });
                }
                registers_of(prev)
            }
        };
        let expected = expected_after(before, tx);
        let after = registers_of(tx);
        if expected != Some(after) {
            return Err(HistoryError::Registers {
                meter,
                sequence: tx.package_sequence,
                transaction: tx.transaction,
                amount: tx.amount,
                before,
                after,
                expected,
                entry: r.entry.clone(),
            });
        }
        previous = Some(r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(transaction: Transaction, amount: u64) -> CheckpointBody {
        CheckpointBody {
            version: 1,
            module_serial: "M".into(),
            counter: 1,
            device_id: *b"PV\0\0\0\x2a",
            package_sequence: 1,
            package_mac: [0; 32],
            transaction,
            amount: Money(amount),
            ar: Money::ZERO,
            dr: Money::ZERO,
            time: 0,
            totals: postvault_module::checkpoint::Totals::default(),
        }
    }

    fn regs(ar: u64, dr: u64) -> Registers {
        Registers {
            ar: Money(ar),
            dr: Money(dr),
        }
    }

    #[test]
    fn each_transaction_type_moves_the_registers_as_the_postal_commands_do() {
        let before = regs(100, 50);
        let cases = [
            (Transaction::Initialize, 0, Some(regs(0, 0))),
            (Transaction::Initialize, 1, None),
            (Transaction::Download, 30, Some(regs(100, 80))),
            (Transaction::Download, 0, None),
            (Transaction::Indicium, 20, Some(regs(120, 30))),
            (Transaction::Correction, 50, Some(regs(150, 0))),
            (Transaction::Indicium, 51, None),
            (Transaction::Refund, 50, Some(regs(150, 0))),
            (Transaction::Refund, 40, None),
            (Transaction::Redate, 0, Some(before)),
            (Transaction::Redate, 5, None),
            (Transaction::Configure, 0, Some(before)),
            (Transaction::CompletePasswordReset, 0, Some(before)),
        ];
        for (t, amount, want) in cases {
            assert_eq!(
                expected_after(before, &tx(t, amount)),
                want,
                "{t:?} {amount}"
            );
        }
        assert_eq!(
            expected_after(regs(u64::MAX, 5), &tx(Transaction::Indicium, 1)),
            None,
            "an AR overflow is not possible"
        );
    }

    #[test]
    fn messages_name_the_meter_in_hex_and_the_entries() {
        let e = HistoryError::SequenceReused {
            meter: MeterId(*b"PV\0\0\0\x2a"),
            sequence: 7,
            first: EntryRef {
                module: "M1".into(),
                seq: 42,
            },
            second: EntryRef {
                module: "M2".into(),
                seq: 57,
            },
        };
        assert_eq!(
            e.to_string(),
            "meter 50560000002a (PV00000042): package sequence 7 used twice \
             (module M1 entry 42, module M2 entry 57): a replayed or forked package"
        );
        assert_eq!(MeterId([0; 6]).to_string(), "000000000000");
    }
}

/// One module's log as the audit database holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ModuleLog {
    /// Module serial.
    pub module: String,
    /// Entries stored.
    pub entries: usize,
    /// Signed entries.
    pub signed: usize,
    /// Hash of the last stored entry, hex.
    pub head: String,
}

/// What a verification of the audit database found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditReport {
    /// Each module's log.
    pub modules: Vec<ModuleLog>,
    /// Meters followed.
    pub meters: usize,
    /// Transactions followed.
    pub transactions: usize,
    /// Transactions discarded by recovery.
    pub discarded: usize,
}

/// Why the audit database does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditFailure {
    /// The store could not be read.
    #[error("store: {0}")]
    Store(#[from] postvault_store::StoreError),
    /// A module's log fails: chain, signature, policy or framing; names the entry.
    #[error("audit log of module {module}: {error}")]
    Log {
        /// The module.
        module: String,
        /// The first failure.
        error: postvault_module::audit::VerifyError,
    },
    /// The registers across the logs show a replayed or doctored package.
    #[error("register history: {0}")]
    History(#[from] HistoryError),
}

/// Verifies every module's log in the store (framing, hash chain, signatures,
/// signing policy) and then follows each meter's registers across all of them.
///
/// # Errors
/// [`AuditFailure`] naming the module and entry, or the meter, that fail.
pub async fn verify_store<S: postvault_store::Store>(
    store: &S,
) -> Result<AuditReport, AuditFailure> {
    let mut modules = Vec::new();
    let mut logs = Vec::new();
    for m in store.modules().await? {
        let bytes = store.audit_entries(&m.serial, 0, u32::MAX).await?.concat();
        let fail = |error| AuditFailure::Log {
            module: m.serial.clone(),
            error,
        };
        let s = postvault_module::audit::verify_log(&bytes, None).map_err(fail)?;
        modules.push(ModuleLog {
            module: m.serial.clone(),
            entries: s.entries,
            signed: s.signed,
            head: hex::encode(s.head),
        });
        logs.push((
            m.serial.clone(),
            postvault_module::audit::parse_log(&bytes).map_err(fail)?,
        ));
    }
    let h = check_register_history(&logs)?;
    Ok(AuditReport {
        modules,
        meters: h.meters,
        transactions: h.transactions,
        discarded: h.discarded,
    })
}
