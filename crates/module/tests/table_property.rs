//! Property: the permission table alone decides whether a command may start.
//! Random sequences of logons (right and wrong passwords, unknown users), session
//! requests, session-less requests and reboots; before each step the table is
//! asked. A table refusal must be the module's refusal, with nothing changed; a
//! command that ran must have been allowed by the table. At the end every audit
//! chain (one per initialisation) verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Hsm, Snapshot, TEAM, password, stored_log, uid};
use postvault_crypto::sig::{PublicKey, SigAlg};
use postvault_module::account::{AccountChanges, NewAccount};
use postvault_module::audit::verify_log;
use postvault_module::command::{Command, authorize};
use postvault_module::nvm::MemNvm;
use postvault_module::role::Role;
use postvault_module::session::HostOpening;
use postvault_module::state::ModuleState;
use postvault_module::wire::{ModuleConfig, Outer, OuterReply, Password, Request, Response};
use postvault_module::{Error, Result};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Clone, Debug)]
enum Step {
    Status,
    StartInitialization,
    Reset,
    OpenSession,
    Reboot,
    /// Log on as `TEAM[user]` (or an unknown user for 6).
    Logon {
        user: usize,
        correct: bool,
    },
    Logoff,
    /// Request number `which` (see `Case::request`), with `arg` choosing details;
    /// if `fit`, `which` picks among the requests the table would allow right now
    /// (so that sequences get somewhere), otherwise among all.
    Request {
        which: u8,
        arg: u8,
        sealed: bool,
        fit: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Status),
        2 => Just(Step::StartInitialization),
        1 => Just(Step::Reset),
        2 => Just(Step::OpenSession),
        2 => Just(Step::Reboot),
        10 => (0..7usize, prop::bool::weighted(0.85)).prop_map(|(user, correct)| Step::Logon { user, correct }),
        4 => Just(Step::Logoff),
        40 => (any::<u8>(), any::<u8>(), prop::bool::weighted(0.7), prop::bool::weighted(0.7))
            .prop_map(|(which, arg, sealed, fit)| Step::Request { which, arg, sealed, fit }),
    ]
}

/// How many kinds of request `Case::request` makes.
const REQUESTS: u8 = 29;

/// The requests that are not available to everyone logged on everywhere (all but
/// Initialize Access Control, Logoff, Query Current User, Close Session and Create Audit Entry).
const SPECIFIC: [u8; 24] = [
    4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
];

static ALLOWED_OK: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);
static ALLOWED_FAILED: AtomicUsize = AtomicUsize::new(0);
static RAN: Mutex<Vec<Command>> = Mutex::new(Vec::new());

struct Case {
    hsm: Hsm<MemNvm>,
    shares: Vec<Vec<u8>>,
    tokens: Vec<Vec<u8>>,
    elsewhere: [u8; 32],
}

impl Case {
    fn new(setup: usize) -> Self {
        let hsm = match setup {
            0 => Hsm::fresh(),
            1 => Hsm::initialized(),
            2..=4 => common::new_master(),
            _ => common::master_and_clone().1,
        };
        let elsewhere = *postvault_crypto::hpke::PrivateKey::generate()
            .unwrap()
            .1
            .as_bytes();
        Self {
            hsm,
            shares: Vec::new(),
            tokens: Vec::new(),
            elsewhere,
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        self.hsm.snapshot()
    }

    /// Asks the table, runs the step, and checks the module agreed with the table.
    fn checked<T: core::fmt::Debug>(
        &mut self,
        command: Command,
        in_session: bool,
        run: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let before = self.snapshot();
        let role = before.logged_on.as_ref().map(|u| u.1);
        let table = authorize(command, before.current, in_session, role).map(|_| ());
        let result = run(self);
        match (table, &result) {
            (
                Err(reason),
                Err(Error::Refused {
                    command: c,
                    state,
                    role: r,
                    reason: got,
                }),
            ) => {
                assert_eq!(
                    (*c, *state, *r, *got),
                    (command, before.current, role, reason)
                );
                assert_eq!(
                    self.snapshot(),
                    before,
                    "a refused {command:?} changed the module"
                );
                REFUSED.fetch_add(1, Ordering::Relaxed);
            }
            (Err(reason), other) => panic!(
                "the table refuses {command:?} ({reason:?}) but the module answered {other:?}"
            ),
            (Ok(()), Err(e @ Error::Refused { .. })) => {
                panic!("the table allows {command:?} but the module refused: {e}")
            }
            (Ok(()), Ok(_)) => {
                ALLOWED_OK.fetch_add(1, Ordering::Relaxed);
                let mut ran = RAN.lock().unwrap();
                if !ran.contains(&command) {
                    ran.push(command);
                }
            }
            (Ok(()), Err(_)) => {
                ALLOWED_FAILED.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn open_session(&mut self) {
        let status = self.hsm.status();
        let opening = HostOpening::new().unwrap();
        let reply = self.checked(Command::OpenSession, false, |c| {
            c.hsm.host.call(Outer::OpenSession {
                host_public: opening.public(),
            })
        });
        if let Ok(OuterReply::SessionOpened(opened)) = reply {
            let key = status
                .audit_key
                .map(|(alg, k)| PublicKey::from_bytes(SigAlg::from_id(alg).unwrap(), &k).unwrap());
            self.hsm.session = Some(
                opening
                    .finish(&status.serial.unwrap(), &opened, key.as_ref().unwrap())
                    .unwrap(),
            );
        }
    }

    fn send(&mut self, request: Request, sealed: bool) {
        if self.hsm.session.is_none() {
            self.open_session();
            if self.hsm.session.is_none() {
                return; // no session in this state: nothing to send through
            }
        }
        let command = request.command();
        let sealed = sealed || command.carries_password();
        let out = self.checked(command, true, |c| c.hsm.send_with(request, sealed));
        match out {
            Ok(Response::Share { share, .. }) => self.shares.push(share),
            Ok(Response::Token { token, .. }) => self.tokens.push(token),
            Ok(Response::Done) if command == Command::CloseSession => self.hsm.session = None,
            _ => {}
        }
    }

    fn request(&self, which: u8, arg: u8, me: &str, own_transport: Option<[u8; 32]>) -> Request {
        let pick = |v: &[Vec<u8>]| {
            v.get(usize::from(arg) % v.len().max(1))
                .cloned()
                .unwrap_or_else(|| vec![arg; 40])
        };
        let roles = [
            Role::SecurityOfficer,
            Role::KeyCustodian,
            Role::Administrator,
            Role::Auditor,
        ];
        match which {
            0 => Request::InitializeAccessControl(common::team_accounts()),
            1 => Request::Logoff,
            2 => Request::QueryCurrentUser,
            3 => Request::CloseSession,
            4 => Request::BeginAdmin,
            5 => Request::EndAdmin,
            6 => Request::CreateAccount(NewAccount {
                user: uid(&format!("extra{}", arg % 8)),
                role: roles[usize::from(arg) % 4],
                password: password("extra"),
            }),
            7 => Request::DeleteAccount(uid(TEAM[usize::from(arg) % TEAM.len()].0)),
            8 => Request::ModifyAccount(
                uid(TEAM[usize::from(arg) % TEAM.len()].0),
                AccountChanges {
                    unlock: true,
                    ..AccountChanges::default()
                },
            ),
            9 => Request::ViewAccounts,
            10 => Request::ChangePassword {
                old: password(me),
                new: password(me),
            },
            11 => Request::SetClock(common::T0 + u64::from(arg)),
            12 => Request::GenerateMks,
            13 => Request::GenerateTransportKey,
            14 => Request::ExportTransportKey,
            15 => Request::CreateMksShares {
                shares: 2 + arg % 2,
                threshold: 2,
                exportable: arg.is_multiple_of(3),
            },
            16 => Request::ExportShare {
                destination: own_transport
                    .filter(|_| !arg.is_multiple_of(4))
                    .unwrap_or(self.elsewhere),
            },
            17 => Request::AbortExport,
            18 => Request::StartImportingMks,
            19 => Request::ImportShare(pick(&self.shares)),
            20 => Request::CombineShares {
                source: self
                    .shares
                    .last()
                    .and_then(|s| postvault_module::mks::SharePackage::decode(s).ok())
                    .map(|p| {
                        postvault_module::mks::key_fingerprint(
                            p.header.source_key.0,
                            &p.header.source_key.1,
                        )
                    })
                    .unwrap_or([0; 32]),
            },
            21 => Request::AbortImport,
            22 => Request::ActivateMks,
            23 => Request::DeleteDormantMks,
            24 => Request::GenerateTestToken {
                owner: format!("owner {arg}"),
            },
            25 => Request::VerifyToken(pick(&self.tokens)),
            26 => Request::TranslateToken(pick(&self.tokens)),
            27 => Request::ExportAuditKey,
            _ => Request::CreateAuditEntry {
                note: format!("note {arg}"),
                force_signature: arg.is_multiple_of(2),
            },
        }
    }

    fn step(&mut self, step: &Step) {
        match *step {
            Step::Status => {
                self.checked(Command::GetStatus, false, |c| {
                    c.hsm.host.call(Outer::GetStatus)
                })
                .unwrap();
            }
            Step::StartInitialization => {
                let _ = self.checked(Command::StartInitialization, false, |c| {
                    c.hsm.host.call(Outer::StartInitialization(ModuleConfig {
                        audit_sign_interval: 3,
                        ..ModuleConfig::for_tests()
                    }))
                });
            }
            Step::Reset => {
                if self
                    .checked(Command::Reset, false, |c| c.hsm.host.call(Outer::Reset))
                    .is_ok()
                {
                    self.hsm.session = None;
                }
            }
            Step::OpenSession => self.open_session(),
            Step::Reboot => {
                let hsm = std::mem::replace(&mut self.hsm, Hsm::fresh());
                self.hsm = hsm.reboot();
                self.hsm.status(); // the first command after power-on runs boot detection
            }
            Step::Logon { user, correct } => {
                let (name, pw) = match TEAM.get(user) {
                    Some((u, _)) if correct => (*u, password(u)),
                    Some((u, _)) => (*u, Password::new(b"a wrong password".to_vec())),
                    None => ("nobody", password("nobody")),
                };
                self.send(
                    Request::Logon {
                        user: uid(name),
                        password: pw,
                    },
                    true,
                );
            }
            Step::Logoff => self.send(Request::Logoff, true),
            Step::Request {
                which,
                arg,
                sealed,
                fit,
            } => self.request_step(which, arg, sealed, fit),
        }
    }

    /// The kind of request `which` would be, for the table.
    fn command_of(&self, which: u8) -> Command {
        self.request(which, 0, "so", None).command()
    }

    /// A random request. If `fit`, help the sequence along: leave the states
    /// without sessions, initialise access control, log on someone who can do
    /// something specific here (favouring the security officer, who drives the
    /// transitions), log off now and then, and pick among the requests the table
    /// would allow.
    fn request_step(&mut self, which: u8, arg: u8, sealed: bool, fit: bool) {
        let status = self.hsm.status();
        let role = status.logged_on.as_ref().map(|u| u.1);
        let state = status.current;
        let in_session = self.hsm.session.is_some();
        if fit {
            match state {
                ModuleState::Uninitialized => return self.step(&Step::StartInitialization),
                ModuleState::Error if arg.is_multiple_of(2) => return self.step(&Step::Reset),
                ModuleState::Error => return self.step(&Step::Reboot),
                ModuleState::Initializing if status.accounts == 0 => {
                    let init = Request::InitializeAccessControl(common::team_accounts());
                    return self.send(init, true);
                }
                _ if role.is_none() && status.accounts > 0 => {
                    let able: Vec<usize> = (0..TEAM.len())
                        .filter(|u| {
                            let r = Some(TEAM[*u].1);
                            SPECIFIC
                                .iter()
                                .any(|w| authorize(self.command_of(*w), state, true, r).is_ok())
                        })
                        .collect();
                    let user = if which.is_multiple_of(2) && able.contains(&1) {
                        1
                    } else {
                        able.get(usize::from(which) % able.len().max(1))
                            .copied()
                            .unwrap_or(0)
                    };
                    return self.step(&Step::Logon {
                        user,
                        correct: true,
                    });
                }
                _ => {}
            }
        }
        let allowed: Vec<u8> = SPECIFIC
            .into_iter()
            .filter(|w| authorize(self.command_of(*w), state, in_session, role).is_ok())
            .collect();
        if fit && role.is_some() && (allowed.is_empty() || arg.is_multiple_of(8)) {
            return self.send(Request::Logoff, sealed); // make way for another role
        }
        let which = match allowed.len() {
            n if fit && n > 0 => allowed[usize::from(which) % n],
            _ => which % REQUESTS,
        };
        let me = status
            .logged_on
            .as_ref()
            .map_or("so", |u| u.0.as_str())
            .to_owned();
        let request = self.request(which, arg, &me, status.transport_key);
        self.send(request, sealed);
    }

    /// Every audit chain verifies; the last one up to the module's head.
    fn verify_audit(&mut self) {
        let entries = self.hsm.entries().to_vec();
        let starts: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                let b = e.decode_body().unwrap();
                b.seq == 0 && b.command == Some(Command::StartInitialization)
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            starts.first().copied().unwrap_or(entries.len()),
            0,
            "entries before the first initialisation"
        );
        let status = self.hsm.status();
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(entries.len());
            let last = k + 1 == starts.len() && status.current != ModuleState::Uninitialized;
            let head = last.then_some(&status.audit_head);
            if let Err(e) = verify_log(&stored_log(&entries[start..end]), head) {
                panic!("audit chain {k} (entries {start}..{end}): {e}");
            }
        }
    }
}

#[test]
fn the_table_alone_decides_whether_a_command_starts() {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    let strategy = (0..7usize, prop::collection::vec(step(), 1..=40));
    runner
        .run(&strategy, |(setup, steps)| {
            let mut case = Case::new(setup);
            for s in &steps {
                case.step(s);
            }
            case.verify_audit();
            Ok(())
        })
        .unwrap();
    let (ok, refused, failed) = (
        ALLOWED_OK.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
        ALLOWED_FAILED.load(Ordering::Relaxed),
    );
    assert!(
        ok > 100 && refused > 100 && failed > 10,
        "too little coverage: {ok} ran, {refused} refused, {failed} failed later"
    );
    let ran = RAN.lock().unwrap();
    assert!(ran.len() >= 18, "only these commands ever ran: {ran:?}");
}
