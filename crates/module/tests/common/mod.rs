//! Shared setup for the module's integration tests: a module with its host and
//! clock, the standard operator team, the clone ceremony, and a checker for
//! refused commands.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

pub mod postal;

use postvault_module::account::NewAccount;
use postvault_module::audit::{AuditData, AuditEntry, EntryBody};
use postvault_module::codec;
use postvault_module::host::Host;
use postvault_module::mks::{MksInfo, MksSlots};
use postvault_module::nvm::{MemNvm, Nvm, Slot};
use postvault_module::role::{Role, UserId};
use postvault_module::session::HostSession;
use postvault_module::state::ModuleState;
use postvault_module::wire::{
    ModuleConfig, Outer, OuterReply, Password, Request, Response, Status,
};
use postvault_module::{Error, ManualClock, Module, Result};
use serde::de::DeserializeOwned;

/// Module time at power-on in every test.
pub const T0: u64 = 1_700_000_000;

/// The operators every test module gets.
pub const TEAM: [(&str, Role); 6] = [
    ("admin", Role::Administrator),
    ("so", Role::SecurityOfficer),
    ("kc1", Role::KeyCustodian),
    ("kc2", Role::KeyCustodian),
    ("kc3", Role::KeyCustodian),
    ("auditor", Role::Auditor),
];

pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// The (correct) password of a team member.
pub fn password(user: &str) -> Password {
    Password::new(format!("{user}: correct horse battery staple").into_bytes())
}

pub fn team_accounts() -> Vec<NewAccount> {
    TEAM.iter()
        .map(|(u, role)| NewAccount {
            user: uid(u),
            role: *role,
            password: password(u),
        })
        .collect()
}

/// The logon request of a team member with their correct password.
pub fn logon_request(user: &str) -> Request {
    Request::Logon {
        user: uid(user),
        password: password(user),
    }
}

/// Reads and decodes one NVM slot directly (what a reboot would find).
pub fn read_slot<T: DeserializeOwned>(nvm: &impl Nvm, slot: Slot) -> Option<T> {
    nvm.read(slot)
        .unwrap()
        .map(|b| codec::decode(&b, "test slot").unwrap())
}

/// The persistent state a reboot would find, and whether an active MKS is stored.
pub fn stored_state(nvm: &impl Nvm) -> (ModuleState, bool) {
    let state = read_slot(nvm, Slot::State).unwrap_or(ModuleState::Uninitialized);
    let active = read_slot::<MksSlots>(nvm, Slot::Mks).is_some_and(|m| m.active.is_some());
    (state, active)
}

/// What must not change when a command is refused: the reported status and every
/// NVM record except the audit chain head.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub current: ModuleState,
    pub persistent: ModuleState,
    pub active_mks: Option<MksInfo>,
    pub dormant_mks: Option<MksInfo>,
    pub transport_key: Option<[u8; 32]>,
    pub export_progress: Option<(u8, u8)>,
    pub import_progress: Option<(u8, u8)>,
    pub accounts: usize,
    pub session_open: bool,
    pub logged_on: Option<(UserId, Role)>,
    pub nvm: Vec<(Slot, Option<Vec<u8>>)>,
}

/// A module, its host (collecting audit entries in a `Vec`), its clock, and the
/// host's side of the current operator session.
pub struct Hsm<N: Nvm> {
    pub host: Host<N, Vec<AuditEntry>>,
    pub clock: ManualClock,
    pub session: Option<HostSession>,
}

impl Hsm<MemNvm> {
    /// A fresh, uninitialised module over empty memory.
    pub fn fresh() -> Self {
        Self::over(MemNvm::new())
    }

    /// A module through Start Initialization and Initialize Access Control.
    pub fn initialized() -> Self {
        Self::initialized_with(ModuleConfig::for_tests())
    }

    pub fn initialized_with(config: ModuleConfig) -> Self {
        let mut hsm = Self::fresh();
        hsm.initialize(config);
        hsm
    }

    /// Power cycle: drop the module, power a new one on over the same memory. The
    /// host keeps its audit entries; the session is gone.
    #[must_use]
    pub fn reboot(self) -> Self {
        let nvm = self.host.module.nvm().clone();
        let module = Module::new(nvm, Box::new(self.clock.clone()));
        Self {
            host: Host::new(module, self.host.sink),
            clock: self.clock,
            session: None,
        }
    }

    pub fn nvm(&self) -> MemNvm {
        self.host.module.nvm().clone()
    }
}

impl<N: Nvm> Hsm<N> {
    pub fn over(nvm: N) -> Self {
        let clock = ManualClock::at(T0);
        let module = Module::new(nvm, Box::new(clock.clone()));
        Self {
            host: Host::new(module, Vec::new()),
            clock,
            session: None,
        }
    }

    /// Start Initialization, then the team's accounts (module left in Initializing).
    pub fn initialize(&mut self, config: ModuleConfig) {
        let reply = self.host.call(Outer::StartInitialization(config)).unwrap();
        assert!(matches!(reply, OuterReply::Initialized { .. }), "{reply:?}");
        let r = self
            .send(Request::InitializeAccessControl(team_accounts()))
            .unwrap();
        assert!(matches!(r, Response::Done), "{r:?}");
        assert_eq!(self.status().current, ModuleState::Initializing);
    }

    /// Opens a session unless the host has one.
    pub fn ensure_session(&mut self) {
        if self.session.is_none() {
            self.session = Some(self.host.open_session().unwrap());
        }
    }

    /// Sends a sealed request, opening a session first if the host has none.
    pub fn send(&mut self, req: Request) -> Result<Response> {
        self.send_with(req, true)
    }

    /// Sends a request sealed or only MAC'd.
    pub fn send_with(&mut self, req: Request, sealed: bool) -> Result<Response> {
        if self.session.is_none() {
            self.session = Some(self.host.open_session()?);
        }
        let session = self.session.as_mut().unwrap();
        self.host.send_with(session, &req, sealed)
    }

    pub fn logon(&mut self, user: &str) -> Result<Response> {
        self.send(logon_request(user))
    }

    pub fn logoff(&mut self) {
        let r = self.send(Request::Logoff).unwrap();
        assert!(matches!(r, Response::Done), "{r:?}");
    }

    /// Logs `user` on, sends one request, logs off (also when the request failed).
    pub fn as_user(&mut self, user: &str, req: Request) -> Result<Response> {
        let r = self.logon(user).unwrap();
        assert!(
            matches!(&r, Response::CurrentUser(u, _) if u.as_str() == user),
            "{r:?}"
        );
        let out = self.send(req);
        self.logoff();
        out
    }

    pub fn status(&mut self) -> Status {
        self.host.status().unwrap()
    }

    pub fn snapshot(&mut self) -> Snapshot {
        let s = self.status();
        let nvm = Slot::ALL
            .into_iter()
            .filter(|s| *s != Slot::AuditHead)
            .map(|slot| {
                (
                    slot,
                    self.host
                        .module
                        .nvm()
                        .read(slot)
                        .unwrap()
                        .map(|b| b.to_vec()),
                )
            })
            .collect();
        Snapshot {
            current: s.current,
            persistent: s.persistent,
            active_mks: s.active_mks,
            dormant_mks: s.dormant_mks,
            transport_key: s.transport_key,
            export_progress: s.export_progress,
            import_progress: s.import_progress,
            accounts: s.accounts,
            session_open: s.session_open,
            logged_on: s.logged_on,
            nvm,
        }
    }

    pub fn entries(&self) -> &[AuditEntry] {
        &self.host.sink
    }

    pub fn last_body(&self) -> EntryBody {
        self.entries()
            .last()
            .expect("an audit entry")
            .decode_body()
            .unwrap()
    }

    /// The stored audit log: every collected entry in stored form, in order.
    pub fn log(&self) -> Vec<u8> {
        stored_log(self.entries())
    }

    /// Security officer: Generate MKS (a master leaves Initializing for Operational).
    pub fn generate_mks(&mut self) -> MksInfo {
        match self.as_user("so", Request::GenerateMks).unwrap() {
            Response::Mks(info) => info,
            r => panic!("{r:?}"),
        }
    }

    /// Security officer: Generate Transport Key (a clone leaves Initializing for Importing Shares).
    pub fn generate_transport_key(&mut self) -> [u8; 32] {
        match self.as_user("so", Request::GenerateTransportKey).unwrap() {
            Response::TransportKey(k) => k,
            r => panic!("{r:?}"),
        }
    }

    /// Security officer creates the shares, then custodians kc1..kcN export one each to `destination`.
    pub fn export_shares(
        &mut self,
        destination: [u8; 32],
        shares: u8,
        threshold: u8,
        exportable: bool,
    ) -> Vec<Vec<u8>> {
        let r = self
            .as_user(
                "so",
                Request::CreateMksShares {
                    shares,
                    threshold,
                    exportable,
                },
            )
            .unwrap();
        assert!(matches!(r, Response::SharesCreated { .. }), "{r:?}");
        assert_eq!(self.status().current, ModuleState::ExportingShares);
        (1..=shares)
            .map(|i| {
                match self
                    .as_user(&format!("kc{i}"), Request::ExportShare { destination })
                    .unwrap()
                {
                    Response::Share { share, remaining } => {
                        assert_eq!(remaining, shares - i);
                        share
                    }
                    r => panic!("{r:?}"),
                }
            })
            .collect()
    }

    pub fn import_share(&mut self, custodian: &str, share: &[u8]) -> Result<Response> {
        self.as_user(custodian, Request::ImportShare(share.to_vec()))
    }

    /// Security officer: combine the imported shares, which must come from the
    /// module with audit-key fingerprint `source`.
    pub fn combine(&mut self, source: [u8; 32]) -> Result<Response> {
        self.as_user("so", Request::CombineShares { source })
    }

    /// This module's audit-key fingerprint, as operators compare it.
    pub fn fingerprint(&mut self) -> [u8; 32] {
        let (alg, key) = self.status().audit_key.unwrap();
        postvault_module::mks::key_fingerprint(alg, &key)
    }

    /// Security officer: a test key token under the active MKS, and its key check value.
    pub fn test_token(&mut self, owner: &str) -> (Vec<u8>, [u8; 8]) {
        match self
            .as_user(
                "so",
                Request::GenerateTestToken {
                    owner: owner.into(),
                },
            )
            .unwrap()
        {
            Response::Token { token, kcv } => (token, kcv),
            r => panic!("{r:?}"),
        }
    }

    pub fn verify_token(&mut self, token: &[u8]) -> Result<Response> {
        self.as_user("so", Request::VerifyToken(token.to_vec()))
    }
}

pub fn stored_log(entries: &[AuditEntry]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|e| e.to_stored().unwrap())
        .collect()
}

/// The clone ceremony over two initialised modules: the master generates its MKS,
/// the clone its transport key; the master exports 3 shares (threshold 2, retained at
/// the destination); kc1 and kc2 import theirs on the clone; the security officer
/// combines. Returns the share files.
pub fn clone_ceremony<N: Nvm>(master: &mut Hsm<N>, clone: &mut Hsm<N>) -> Vec<Vec<u8>> {
    let info = master.generate_mks();
    assert_eq!(master.status().current, ModuleState::Operational);
    let transport = clone.generate_transport_key();
    assert_eq!(clone.status().current, ModuleState::ImportingShares);
    let shares = master.export_shares(transport, 3, 2, false);
    assert_eq!(master.status().current, ModuleState::Operational);
    for (kc, share) in ["kc1", "kc2"].iter().zip(&shares) {
        assert!(matches!(
            clone.import_share(kc, share).unwrap(),
            Response::ShareImported { .. }
        ));
    }
    let source = master.fingerprint();
    let combined = match clone.combine(source).unwrap() {
        Response::Mks(i) => i,
        r => panic!("{r:?}"),
    };
    assert_eq!(combined.id, info.id);
    assert!(!combined.exportable, "the clone holds a retained copy");
    let s = clone.status();
    assert_eq!(
        (s.current, s.persistent),
        (ModuleState::Operational, ModuleState::Operational)
    );
    shares
}

/// A master and a clone sharing one MKS (in memory).
pub fn master_and_clone() -> (Hsm<MemNvm>, Hsm<MemNvm>) {
    let mut master = Hsm::initialized();
    let mut clone = Hsm::initialized();
    clone_ceremony(&mut master, &mut clone);
    (master, clone)
}

/// A master in Operational state.
pub fn new_master() -> Hsm<MemNvm> {
    let mut m = Hsm::initialized();
    m.generate_mks();
    m
}

/// Runs `f`, which must fail, and checks that the failure changed nothing but the
/// audit log (status and every NVM record except the chain head are unchanged) and
/// that the last audit entry records the error's reason code. Returns the error.
pub fn refused<N: Nvm, T: core::fmt::Debug>(
    hsm: &mut Hsm<N>,
    f: impl FnOnce(&mut Hsm<N>) -> Result<T>,
) -> Error {
    let before = hsm.snapshot();
    let n = hsm.entries().len();
    let err = f(hsm).expect_err("the command must fail");
    assert!(
        hsm.entries().len() > n,
        "no audit entry recorded the failure {err:?}"
    );
    let body = hsm.last_body();
    assert_eq!(body.reason, err.reason_code(), "audit reason of {err:?}");
    assert!(
        matches!(body.data, AuditData::Failure(_)),
        "{:?}",
        body.data
    );
    assert_eq!(
        hsm.snapshot(),
        before,
        "a failed command changed the module: {err:?}"
    );
    err
}
