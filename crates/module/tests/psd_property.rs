//! Property: random sequences of downloads, indicia, corrections, redates,
//! refunds and password resets on several meters of one module. A model of each
//! meter (total downloaded, AR, DR, state, passphrase history) predicts every
//! outcome: a command the model accepts must run, a command it refuses must be
//! refused with the model's reason and change nothing (module, database, client).
//! After every step, for every meter: AR + DR equals the total downloaded, DR is
//! never negative, the registers equal the model's, and a Withdrawn meter refuses
//! every command. Every indicium produced verifies under the meter's certificate
//! and carries the model's value and registers. At the end the audit log verifies
//! and the module totals in the newest checkpoint are the sums over the meters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;

use common::postal::*;
use postvault_indicium::{Date, Indicium, IndiciumKind, Money};
use postvault_module::audit::{AuditData, verify_log};
use postvault_module::checkpoint::Transaction;
use postvault_module::postal::PostalCommand;
use postvault_module::psd::{PASSPHRASE_HISTORY, PsdState};
use postvault_module::{Error, PsdCheck, Result};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const MIN: u64 = MIN_VALUE.tenths();
const MAX: u64 = MAX_VALUE.tenths();
const LIMIT: u64 = DR_LIMIT.tenths();

/// An amount, some of them relative to the meter's registers when the step runs.
#[derive(Clone, Copy, Debug)]
enum Amount {
    Fixed(u64),
    /// DR + k: more than the DR holds.
    DrPlus(u64),
    /// Exactly the DR.
    Dr,
    /// What brings the DR exactly to the meter's DR limit.
    ToLimit,
    /// k more than that.
    OverLimit(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Download(Amount),
    Print(Amount),
    Correction(Amount),
    /// Redate the meter's last indicium this many days later (another meter's if it has none).
    Redate(u16),
    Refund,
    BeginReset,
    /// Complete a password reset with a new passphrase hash.
    CompleteReset(Passphrase),
}

/// A passphrase hash for a password reset.
#[derive(Clone, Copy, Debug)]
enum Passphrase {
    /// `[b; 32]`.
    Byte(u8),
    /// The k-th most recent this meter had (the oldest if it had fewer): on the
    /// repetition list for k < 5, off it after five newer ones.
    Used(usize),
}

fn download_amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        8 => (1..=3 * MAX).prop_map(Amount::Fixed),
        1 => Just(Amount::Fixed(0)),
        1 => (LIMIT / 2..=2 * LIMIT).prop_map(Amount::Fixed),
        1 => Just(Amount::Fixed(LIMIT + 1)),
        1 => Just(Amount::ToLimit),
        1 => (1..=MAX).prop_map(Amount::OverLimit),
    ]
}

fn postage_amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        8 => (MIN..=MAX / 10).prop_map(Amount::Fixed),
        3 => (MIN..=MAX).prop_map(Amount::Fixed),
        1 => Just(Amount::Fixed(0)),
        1 => (1..MIN).prop_map(Amount::Fixed),
        1 => Just(Amount::Fixed(MIN)),
        1 => Just(Amount::Fixed(MAX)),
        1 => (MAX + 1..=3 * MAX).prop_map(Amount::Fixed),
        2 => (1..=2 * MIN).prop_map(Amount::DrPlus),
        1 => Just(Amount::DrPlus(1)),
        1 => Just(Amount::Dr),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => download_amount().prop_map(Op::Download),
        8 => postage_amount().prop_map(Op::Print),
        3 => postage_amount().prop_map(Op::Correction),
        3 => (0..=3u16).prop_map(Op::Redate),
        1 => Just(Op::Refund),
        2 => Just(Op::BeginReset),
        3 => (0..3u8).prop_map(|b| Op::CompleteReset(Passphrase::Byte(b))),
        2 => (0..7usize).prop_map(|k| Op::CompleteReset(Passphrase::Used(k))),
    ]
}

/// Which meter a step goes to: an index (taken modulo the number of meters),
/// favouring the first meters so that one meter sees long sequences; and
/// whether to move the step on to the next meter in a state where the command
/// runs (if there is one), so that sequences get somewhere.
fn target() -> impl Strategy<Value = (usize, bool)> {
    (
        prop_oneof![3 => Just(0usize), 2 => Just(1usize), 2 => 0..5usize],
        prop::bool::weighted(0.7),
    )
}

/// The model of one meter.
struct Meter {
    d: [u8; 6],
    state: PsdState,
    downloaded: u64,
    printed: u64,
    refunded: u64,
    ar: u64,
    dr: u64,
    /// Every passphrase hash the meter had, newest first (the first
    /// [`PASSPHRASE_HISTORY`] are the package's repetition list).
    used: Vec<[u8; 32]>,
    /// The last indicium (postage, correction or redate) this meter made.
    last: Option<Indicium>,
    /// The refund indicium, once Withdrawn.
    refund: Option<Indicium>,
}

impl Meter {
    fn resolve(&self, a: Amount) -> u64 {
        match a {
            Amount::Fixed(n) => n,
            Amount::DrPlus(k) => self.dr + k,
            Amount::Dr => self.dr,
            Amount::ToLimit => LIMIT - self.dr,
            Amount::OverLimit(k) => LIMIT - self.dr + k,
        }
    }
}

fn check(c: PsdCheck) -> Error {
    Error::PsdCheck(c)
}

fn tenths(n: u64) -> Money {
    Money::from_tenths(n)
}

/// What the client holds that a refused command must not change.
fn client_view(v: &Vault, d: [u8; 6]) -> ([u8; 32], [u8; 32], [u8; 16], Money, Money) {
    let c = &v.clients[&d];
    (c.hmk, c.passphrase, c.challenge, c.ar, c.dr)
}

/// Runs `f`, which must fail with `expected`, and checks that it changed nothing:
/// the module (status and NVM but the audit head), the database (every package
/// and the checkpoint record) and the meter's client; and that the failure was
/// audited with its reason code.
fn expect_refusal<T: core::fmt::Debug>(
    v: &mut Vault,
    d: [u8; 6],
    expected: &Error,
    what: &str,
    f: impl FnOnce(&mut Vault) -> Result<T>,
) {
    let before = v.hsm.snapshot();
    let packages = v.packages.clone();
    let checkpoint = v.checkpoint.clone();
    let client = client_view(v, d);
    let n = v.hsm.entries().len();
    let err = match f(v) {
        Ok(r) => panic!("{what}: ran, but the model expected {expected:?}: {r:?}"),
        Err(e) => e,
    };
    assert_eq!(&err, expected, "{what}: the wrong refusal");
    assert!(
        v.hsm.entries().len() > n,
        "{what}: the refusal was not audited"
    );
    let body = v.hsm.last_body();
    assert_eq!(body.reason, err.reason_code(), "{what}");
    assert!(
        matches!(body.data, AuditData::Failure(_)),
        "{what}: {body:?}"
    );
    assert_eq!(
        v.hsm.snapshot(),
        before,
        "{what}: the refusal changed the module"
    );
    assert!(
        v.packages == packages,
        "{what}: the refusal changed a package"
    );
    assert_eq!(
        v.checkpoint, checkpoint,
        "{what}: the refusal changed the checkpoint"
    );
    assert_eq!(
        client_view(v, d),
        client,
        "{what}: the refusal changed the client"
    );
}

/// Tallies, to show the sequences reached every outcome.
#[derive(Default)]
struct Coverage(BTreeMap<String, usize>);

impl Coverage {
    fn hit(&mut self, what: impl Into<String>) {
        *self.0.entry(what.into()).or_default() += 1;
    }
}

struct Case {
    v: Vault,
    meters: Vec<Meter>,
    today: Date,
}

impl Case {
    fn new(meters: usize) -> Self {
        let mut v = Vault::new();
        let meters = (0..meters)
            .map(|i| {
                let d = device(1_000 + u32::try_from(i).unwrap());
                v.leased_meter(d);
                Meter {
                    d,
                    state: PsdState::Leased,
                    downloaded: 0,
                    printed: 0,
                    refunded: 0,
                    ar: 0,
                    dr: 0,
                    used: vec![v.clients[&d].passphrase],
                    last: None,
                    refund: None,
                }
            })
            .collect();
        let today = Date::from_unix_seconds(i64::try_from(v.hsm.status().time).unwrap()).unwrap();
        Self { v, meters, today }
    }

    /// After a command ran: the newest checkpoint names it, with the meter's registers.
    fn check_checkpoint(&self, i: usize, tx: Transaction, amount: u64) {
        let m = &self.meters[i];
        let body = self.v.checkpoint.as_ref().unwrap().peek().unwrap();
        assert_eq!(
            (
                body.device_id,
                body.transaction,
                body.amount,
                body.ar,
                body.dr
            ),
            (m.d, tx, tenths(amount), tenths(m.ar), tenths(m.dr)),
            "the checkpoint of the last transaction"
        );
        assert_eq!(body.package_sequence, self.v.body(m.d).sequence);
    }

    /// An indicium the module produced: it verifies and carries these values.
    fn check_indicium(&self, i: usize, ind: &Indicium, kind: IndiciumKind, values: [u64; 3]) {
        let d = self.meters[i].d;
        ind.verify_signature(&self.v.public_key(d))
            .unwrap_or_else(|e| panic!("an indicium of meter {i} does not verify: {e}"));
        let data = ind.data();
        assert_eq!(data.kind(), kind);
        assert_eq!(data.device_id.to_bytes(), d);
        assert_eq!(
            [
                data.postage,
                data.ascending_register,
                data.descending_register
            ],
            values.map(tenths),
            "{kind:?} indicium: postage, AR, DR"
        );
    }

    fn step(&mut self, i: usize, op: &Op, cov: &mut Coverage) {
        let d = self.meters[i].d;
        let what = format!("meter {i}: {op:?}");
        let m = &self.meters[i];
        let state = m.state;
        let leased = state == PsdState::Leased;
        let funded = matches!(state, PsdState::Leased | PsdState::PasswordReset);
        match *op {
            Op::Download(a) => {
                let x = m.resolve(a);
                let expected = if !funded {
                    Some(check(PsdCheck::State))
                } else if x == 0 {
                    Some(Error::InvalidArgument {
                        what: "a download adds a positive amount",
                    })
                } else if m.dr + x > LIMIT {
                    Some(check(PsdCheck::DrCeiling))
                } else {
                    None
                };
                match expected {
                    Some(e) => {
                        cov.hit(format!("download refused: {e:?}"));
                        expect_refusal(&mut self.v, d, &e, &what, |v| v.download(d, tenths(x)));
                    }
                    None => {
                        self.v
                            .download(d, tenths(x))
                            .unwrap_or_else(|e| panic!("{what}: refused: {e:?}"));
                        cov.hit("download");
                        let m = &mut self.meters[i];
                        m.downloaded += x;
                        m.dr += x;
                        self.check_checkpoint(i, Transaction::Download, x);
                    }
                }
            }
            Op::Print(a) | Op::Correction(a) => {
                let correction = matches!(op, Op::Correction(_));
                let x = m.resolve(a);
                let expected = if !leased {
                    Some(check(PsdCheck::State))
                } else if !(MIN..=MAX).contains(&x) {
                    Some(check(PsdCheck::ValueLimits))
                } else if x > m.dr {
                    Some(check(PsdCheck::InsufficientFunds))
                } else {
                    None
                };
                let run = |v: &mut Vault| {
                    if correction {
                        v.correction(d, tenths(x))
                    } else {
                        v.print(d, tenths(x))
                    }
                };
                let name = if correction { "correction" } else { "print" };
                match expected {
                    Some(e) => {
                        cov.hit(format!("{name} refused: {e:?}"));
                        expect_refusal(&mut self.v, d, &e, &what, run);
                    }
                    None => {
                        let ind =
                            run(&mut self.v).unwrap_or_else(|e| panic!("{what}: refused: {e:?}"));
                        cov.hit(name);
                        if x == m.dr {
                            cov.hit(format!("{name} of the whole DR"));
                        }
                        let m = &mut self.meters[i];
                        m.dr -= x;
                        m.ar += x;
                        m.printed += x;
                        let (kind, tx) = if correction {
                            (IndiciumKind::Correction, Transaction::Correction)
                        } else {
                            (IndiciumKind::Postage, Transaction::Indicium)
                        };
                        let values = [x, m.ar, m.dr];
                        self.check_indicium(i, &ind, kind, values);
                        self.check_checkpoint(i, tx, x);
                        self.meters[i].last = Some(ind);
                    }
                }
            }
            Op::Redate(days) => {
                let date = self.today.checked_add_days(days).unwrap();
                let own = m.last.clone();
                let foreign = self
                    .meters
                    .iter()
                    .filter(|o| o.d != d)
                    .find_map(|o| o.last.clone());
                let Some(original) = own.clone().or(foreign) else {
                    cov.hit("redate skipped: no indicium yet");
                    return;
                };
                let expected = if !leased {
                    Some(check(PsdCheck::State))
                } else if own.is_none() {
                    // Another meter's indicium does not verify under this meter's key.
                    Some(check(PsdCheck::Redate))
                } else if date < original.data().date || days > 1 {
                    // A redate never moves the date back, and is for today or tomorrow.
                    Some(check(PsdCheck::Redate))
                } else {
                    None
                };
                match expected {
                    Some(e) => {
                        cov.hit(format!("redate refused: {e:?}"));
                        expect_refusal(&mut self.v, d, &e, &what, |v| v.redate(d, &original, date));
                    }
                    None => {
                        let ind = self
                            .v
                            .redate(d, &original, date)
                            .unwrap_or_else(|e| panic!("{what}: refused: {e:?}"));
                        cov.hit("redate");
                        let o = original.data();
                        let values = [
                            o.postage.tenths(),
                            o.ascending_register.tenths(),
                            o.descending_register.tenths(),
                        ];
                        self.check_indicium(i, &ind, IndiciumKind::Redate, values);
                        assert_eq!(ind.data().date, date);
                        assert_eq!(ind.data().mail_piece_id, o.mail_piece_id);
                        self.check_checkpoint(i, Transaction::Redate, 0);
                        self.meters[i].last = Some(ind);
                    }
                }
            }
            Op::Refund => {
                if !funded {
                    cov.hit("refund refused: State");
                    expect_refusal(&mut self.v, d, &check(PsdCheck::State), &what, |v| {
                        v.refund(d)
                    });
                    return;
                }
                let ind = self
                    .v
                    .refund(d)
                    .unwrap_or_else(|e| panic!("{what}: refused: {e:?}"));
                cov.hit(format!("refund from {state:?}"));
                let m = &mut self.meters[i];
                let value = m.dr;
                m.ar += value;
                m.dr = 0;
                m.refunded += value;
                m.state = PsdState::Withdrawn;
                let values = [value, m.ar, 0];
                self.check_indicium(i, &ind, IndiciumKind::Refund, values);
                self.check_checkpoint(i, Transaction::Refund, value);
                self.meters[i].refund = Some(ind);
            }
            Op::BeginReset => {
                if !leased {
                    cov.hit("begin reset refused: State");
                    expect_refusal(&mut self.v, d, &check(PsdCheck::State), &what, |v| {
                        v.begin_password_reset(d)
                    });
                    return;
                }
                self.v
                    .begin_password_reset(d)
                    .unwrap_or_else(|e| panic!("{what}: refused: {e:?}"));
                cov.hit("begin reset");
                self.meters[i].state = PsdState::PasswordReset;
                self.check_checkpoint(i, Transaction::BeginPasswordReset, 0);
            }
            Op::CompleteReset(p) => {
                let passphrase = match p {
                    Passphrase::Byte(b) => [b; 32],
                    Passphrase::Used(k) => m.used[k.min(m.used.len() - 1)],
                };
                let on_list = m
                    .used
                    .iter()
                    .take(PASSPHRASE_HISTORY)
                    .any(|u| *u == passphrase);
                let expected = if state != PsdState::PasswordReset {
                    Some(check(PsdCheck::State))
                } else if on_list {
                    Some(check(PsdCheck::PassphraseReused))
                } else {
                    None
                };
                match expected {
                    Some(e) => {
                        cov.hit(format!("complete reset refused: {e:?}"));
                        expect_refusal(&mut self.v, d, &e, &what, |v| {
                            v.complete_password_reset(d, passphrase)
                        });
                    }
                    None => {
                        self.v
                            .complete_password_reset(d, passphrase)
                            .unwrap_or_else(|e| panic!("{what}: refused: {e:?}"));
                        cov.hit("complete reset");
                        let m = &mut self.meters[i];
                        if m.used.contains(&passphrase) {
                            cov.hit("complete reset with a passphrase off the list");
                        }
                        m.state = PsdState::Leased;
                        m.used.insert(0, passphrase);
                        self.check_checkpoint(i, Transaction::CompletePasswordReset, 0);
                    }
                }
            }
        }
    }

    /// The invariants, for every meter.
    fn check_meters(&mut self) {
        for i in 0..self.meters.len() {
            let m = &self.meters[i];
            let b = self.v.body(m.d);
            let (ar, dr) = (b.ar.tenths(), b.dr.tenths());
            assert_eq!(
                ar.checked_add(dr),
                Some(m.downloaded),
                "meter {i}: AR + DR is not the total downloaded"
            );
            assert_eq!(
                (b.state, ar, dr),
                (m.state, m.ar, m.dr),
                "meter {i}: the package differs from the model"
            );
            assert_eq!(m.ar, m.printed + m.refunded, "meter {i}: model AR");
            assert!(dr <= LIMIT, "meter {i}: DR above its limit");
            if m.state == PsdState::Leased {
                let c = &self.v.clients[&m.d];
                assert_eq!((c.ar, c.dr), (b.ar, b.dr), "meter {i}: client registers");
                assert_eq!(c.challenge, b.last_challenge, "meter {i}: client challenge");
            }
        }
        let status = self.v.hsm.status();
        assert_eq!(
            status.checkpoint, self.v.checkpoint,
            "the module's newest record"
        );
        assert!(!status.inhibited);
    }

    /// Every command on a Withdrawn meter is refused with `State`.
    fn withdrawn_refuses_everything(&mut self, i: usize) {
        let m = &self.meters[i];
        assert_eq!(m.state, PsdState::Withdrawn);
        let d = m.d;
        let original = m.refund.clone().unwrap();
        let date = self.today;
        let certificate = self.v.certificates[&d].clone();
        let state = check(PsdCheck::State);
        let v = &mut self.v;
        let what = |c: &str| format!("meter {i} (Withdrawn): {c}");
        expect_refusal(v, d, &state, &what("download"), |v| {
            v.download(d, MIN_VALUE)
        });
        expect_refusal(v, d, &state, &what("print"), |v| v.print(d, MIN_VALUE));
        expect_refusal(v, d, &state, &what("correction"), |v| {
            v.correction(d, MIN_VALUE)
        });
        expect_refusal(v, d, &state, &what("redate"), |v| {
            v.redate(d, &original, date)
        });
        expect_refusal(v, d, &state, &what("refund"), |v| v.refund(d));
        expect_refusal(v, d, &state, &what("begin reset"), |v| {
            v.begin_password_reset(d)
        });
        expect_refusal(v, d, &state, &what("complete reset"), |v| {
            v.complete_password_reset(d, [0xEE; 32])
        });
        expect_refusal(v, d, &state, &what("authorize customer"), |v| {
            v.authorize_customer(d)
        });
        expect_refusal(v, d, &state, &what("configure"), |v| v.configure(d));
        expect_refusal(v, d, &state, &what("authorize"), |v| {
            v.send(PostalCommand::Authorize {
                package: v.package(d),
                certificate,
            })
        });
    }

    /// The end of a case: the audit log verifies, records every transaction
    /// that ran, and the module totals are the sums over the meters.
    fn finish(&mut self, successes: usize) {
        let log = self.v.hsm.log();
        verify_log(&log, None).unwrap_or_else(|e| panic!("the audit log: {e}"));
        let psd_entries = self
            .v
            .hsm
            .entries()
            .iter()
            .filter(|e| matches!(e.decode_body().unwrap().data, AuditData::Psd(_)))
            .count();
        // Four set-up transactions per meter, then each command that ran.
        assert_eq!(psd_entries, 4 * self.meters.len() + successes);
        let newest = self.v.checkpoint.as_ref().unwrap().peek().unwrap();
        assert_eq!(newest.counter, u64::try_from(psd_entries).unwrap());
        let sum = |f: fn(&Meter) -> u64| tenths(self.meters.iter().map(f).sum());
        let totals = newest.totals;
        assert_eq!(totals.downloaded, sum(|m| m.downloaded), "total downloaded");
        assert_eq!(totals.printed, sum(|m| m.printed), "total printed");
        assert_eq!(totals.refunded, sum(|m| m.refunded), "total refunded");
    }
}

/// The states in which a command runs (none for a refund: retargeting it would
/// withdraw the meters too soon).
fn runs_in(op: &Op) -> &'static [PsdState] {
    match op {
        Op::Download(_) => &[PsdState::Leased, PsdState::PasswordReset],
        Op::Print(_) | Op::Correction(_) | Op::Redate(_) | Op::BeginReset => &[PsdState::Leased],
        Op::CompleteReset(_) => &[PsdState::PasswordReset],
        Op::Refund => &[],
    }
}

fn run_case(meters: usize, ops: &[((usize, bool), Op)], cov: &mut Coverage) {
    let mut case = Case::new(meters);
    case.check_meters();
    let mut successes = 0;
    for (k, ((i, retarget), op)) in ops.iter().enumerate() {
        let mut i = i % meters;
        if *retarget {
            let states = runs_in(op);
            if let Some(j) = (0..meters)
                .map(|j| (i + j) % meters)
                .find(|&j| states.contains(&case.meters[j].state))
            {
                i = j;
            }
        }
        let entries = case.v.hsm.entries().len();
        let counter = case.v.checkpoint.as_ref().unwrap().peek().unwrap().counter;
        case.step(i, op, cov);
        let now = case.v.checkpoint.as_ref().unwrap().peek().unwrap().counter;
        if now != counter {
            assert_eq!(now, counter + 1, "step {k}: the checkpoint counter");
            successes += 1;
        }
        assert!(case.v.hsm.entries().len() >= entries, "step {k}");
        case.check_meters();
        // Nothing runs on a Withdrawn package: every command, after every step.
        for w in 0..meters {
            if case.meters[w].state == PsdState::Withdrawn {
                case.withdrawn_refuses_everything(w);
                cov.hit("withdrawn battery");
            }
        }
    }
    case.finish(successes);
}

#[test]
fn registers_and_indicia_follow_the_model() {
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (2..=5usize, prop::collection::vec((target(), op()), 1..=40));
    let cov = RefCell::new(Coverage::default());
    runner
        .run(&strategy, |(meters, ops)| {
            run_case(meters, &ops, &mut cov.borrow_mut());
            Ok(())
        })
        .unwrap();
    // The sequences must have reached every outcome at least once.
    let cov = cov.into_inner().0;
    eprintln!("outcomes: {cov:#?}");
    let expected = [
        "download",
        "print",
        "correction",
        "redate",
        "refund from Leased",
        "begin reset",
        "complete reset",
        "withdrawn battery",
        "download refused: PsdCheck(DrCeiling)",
        "download refused: PsdCheck(State)",
        "print refused: PsdCheck(ValueLimits)",
        "print refused: PsdCheck(InsufficientFunds)",
        "print refused: PsdCheck(State)",
        "complete reset refused: PsdCheck(PassphraseReused)",
        "complete reset refused: PsdCheck(State)",
        "begin reset refused: State",
    ];
    let missing: Vec<_> = expected.iter().filter(|k| !cov.contains_key(**k)).collect();
    assert!(
        missing.is_empty(),
        "never reached {missing:?}; reached {cov:#?}"
    );
    assert!(
        cov.keys()
            .any(|k| k.starts_with("download refused: InvalidArgument")),
        "a zero download was never refused: {cov:#?}"
    );
}

/// The same checks over one fixed sequence that reaches the rarer outcomes:
/// the whole DR spent, a download to exactly the DR limit, a passphrase that
/// left the repetition list accepted again, a refund of an empty meter.
#[test]
fn a_fixed_sequence_reaches_the_rare_outcomes() {
    use Amount::*;
    use Op::*;
    let mut ops = vec![
        (0, Download(Fixed(50_000))),
        (0, Print(Fixed(1_000))),
        (0, Correction(Fixed(200))),
        (0, Redate(1)),
        (0, Redate(0)),
        (1, Redate(0)),
        (0, Print(DrPlus(1))),
        (0, Print(Dr)),
        (0, Print(Fixed(MIN))),
        (0, Download(Fixed(0))),
        (0, Download(ToLimit)),
        (0, Download(OverLimit(1))),
        (0, Print(DrPlus(1))),
        (0, Print(Fixed(MAX + 1))),
        (0, BeginReset),
        (0, Print(Fixed(MIN))),
        (0, CompleteReset(Passphrase::Used(0))),
    ];
    for b in 10..15 {
        ops.push((0, CompleteReset(Passphrase::Byte(b))));
        ops.push((0, BeginReset));
    }
    ops.extend([
        (0, CompleteReset(Passphrase::Byte(11))),
        (0, CompleteReset(Passphrase::Used(4))),
        (0, CompleteReset(Passphrase::Used(5))),
        (0, Print(Fixed(MIN))),
        (1, Refund),
        (0, Refund),
        (0, Refund),
    ]);
    let ops: Vec<_> = ops.into_iter().map(|(i, op)| ((i, false), op)).collect();
    let mut cov = Coverage::default();
    run_case(2, &ops, &mut cov);
    let cov = cov.0;
    for k in [
        "print of the whole DR",
        "redate",
        "redate refused: PsdCheck(Redate)",
        "download refused: PsdCheck(DrCeiling)",
        "print refused: PsdCheck(InsufficientFunds)",
        "print refused: PsdCheck(ValueLimits)",
        "print refused: PsdCheck(State)",
        "complete reset refused: PsdCheck(PassphraseReused)",
        "complete reset with a passphrase off the list",
        "refund from Leased",
        "refund refused: State",
        "withdrawn battery",
    ] {
        assert!(cov.contains_key(k), "never reached {k}: {cov:#?}");
    }
    assert_eq!(cov["redate refused: PsdCheck(Redate)"], 2, "{cov:#?}");
    assert_eq!(cov["complete reset"], 6, "{cov:#?}");
}
