//! Secure boxes (seed 002, figs. 9-12 and 22-23): each a software module
//! with its own id, key material and persistent state, and no I/O but its
//! [`BoxStorage`]. A box answers framed requests ([`SecureBox::handle`]) after
//! the three levels of checks; its keys never leave it except sealed to
//! another process.
//!
//! **Operation shares.** Every box's state is sealed at rest under a key
//! derived from its *operation combination*, a random secret split into
//! Shamir shares (three for a manufacturing box, two for the others) when the
//! box is initialised. All shares must be entered before the box works; the
//! last share entered must stay in: removing it drops and zeroises the
//! state, and the box refuses work until the shares are entered again.

use std::collections::{BTreeMap, HashMap};

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_crypto::{Secret32, aead, hpke, kdf, rand, shamir};
use postvault_indicium::token::{self, Period, TokenKey};
use postvault_indicium::{Date, DeviceId};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{CommandError, Fault, FramingError, KmsError, Result};
use crate::frame;
use crate::ids::{self, BoxId, BoxKind, DomainId, MAX_BOX_NUMBER};
use crate::message::{
    self, ArchiveInstalled, ArchiveNew, ArchiveRegistered, ConfirmInstall, ConfirmRegistration,
    DomainDirectory, InstallRecord, KeyInstalled, KeyStatus, MakeDomainProcess, MeterEvidence,
    MeterInstall, RecordKind, RegistrationReport, SetBoxId, Signed, StartupReply, TokenKeyRecord,
};
use crate::request::{ANSWER_ERR, ANSWER_OK, Class, Refusal, Request, Response, Verdict};
use crate::storage::BoxStorage;
use crate::tables;

const FILE_VERSION: u8 = 1;
const STATE_INFO: &[u8] = b"postvault kms box state v1";
const MI3_INFO: &[u8] = b"postvault kms mi3 v1";
const MI4_INFO: &[u8] = b"postvault kms mi4 v1";
const PROCESS_INFO: &[u8] = b"postvault kms domain process v1";
const DOMAIN_KEYS_INFO: &[u8] = b"postvault kms domain keys v1";
const TOKEN_KEY_INFO: &[u8] = b"postvault kms token key v1";

/// One operation share of one box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationShare {
    /// The box it opens.
    pub box_id: BoxId,
    /// The Shamir share.
    pub share: shamir::Share,
    /// How many shares the box has.
    pub total: u8,
}

const SHARE_PREFIX: &str = "postvault-operation-share-v1";

impl OperationShare {
    /// The share as one line of text, for removable media.
    #[must_use]
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{SHARE_PREFIX} {} {}/{} {}\n",
            self.box_id,
            self.share.id,
            self.total,
            hex::encode(self.share.value.expose())
        ))
    }

    /// Parses [`OperationShare::to_text`].
    ///
    /// # Errors
    /// [`KmsError::Syntax`] if it is not a share.
    pub fn from_text(text: &str) -> Result<Self> {
        let bad = || KmsError::Syntax {
            what: "operation share: 'postvault-operation-share-v1 BOXID N/TOTAL HEX'",
        };
        let mut parts = text.split_whitespace();
        if parts.next() != Some(SHARE_PREFIX) {
            return Err(bad());
        }
        let box_id: BoxId = parts.next().ok_or_else(bad)?.parse()?;
        let (id, total) = parts
            .next()
            .and_then(|p| p.split_once('/'))
            .ok_or_else(bad)?;
        let id: u8 = id.parse().map_err(|_| bad())?;
        let total: u8 = total.parse().map_err(|_| bad())?;
        let value = Zeroizing::new(hex::decode(parts.next().ok_or_else(bad)?).map_err(|_| bad())?);
        if parts.next().is_some() || id == 0 || id > total || value.len() != 32 {
            return Err(bad());
        }
        Ok(Self {
            box_id,
            share: shamir::Share {
                id,
                value: postvault_crypto::SecretBytes::new(value.to_vec()),
            },
            total,
        })
    }
}

/// A domain's secret keys, as much of them as one process holds.
#[derive(Clone, Default, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct ProcessKeys {
    oak_auth: Option<Vec<u8>>,
    steel_auth: Option<Vec<u8>>,
    steel_conf: Option<[u8; 32]>,
    brass_auth: Option<Vec<u8>>,
    brass_conf: Option<[u8; 32]>,
    brass_secret: Option<[u8; 32]>,
    parent_brass_secret: Option<[u8; 32]>,
}

impl ProcessKeys {
    /// The part a box of `kind` receives.
    fn for_kind(&self, kind: BoxKind) -> ProcessKeys {
        let mut out = ProcessKeys::default();
        match kind {
            BoxKind::Oak => out.oak_auth.clone_from(&self.oak_auth),
            BoxKind::Steel => {
                out.steel_auth.clone_from(&self.steel_auth);
                out.steel_conf = self.steel_conf;
            }
            BoxKind::Brass => {
                out.brass_auth.clone_from(&self.brass_auth);
                out.brass_conf = self.brass_conf;
                out.brass_secret = self.brass_secret;
                out.parent_brass_secret = self.parent_brass_secret;
            }
            BoxKind::Manufacturing | BoxKind::Tin => {}
        }
        out
    }
}

fn signing(pkcs8: Option<&Vec<u8>>, what: &str) -> Result<SigningKey> {
    let der = pkcs8.ok_or_else(|| {
        KmsError::refused(
            Fault::UnknownDomain,
            format!("this process holds no {what} key"),
        )
    })?;
    Ok(SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, der)?)
}

fn secret(key: Option<[u8; 32]>, what: &str) -> Result<Secret32> {
    key.map(Secret32::from_bytes).ok_or_else(|| {
        KmsError::refused(
            Fault::UnknownDomain,
            format!("this process holds no {what} key"),
        )
    })
}

fn hpke_private(key: Option<[u8; 32]>, what: &str) -> Result<hpke::PrivateKey> {
    Ok(hpke::PrivateKey::from_secret(secret(key, what)?)?)
}

/// What a steel box remembers between MI4 and MI6.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    oak: BoxId,
    device: [u8; 6],
    test_tokens: [u8; 16],
}

/// One domain process in a box.
#[derive(Clone, Serialize, Deserialize)]
struct Process {
    directory: DomainDirectory,
    parent: Option<DomainDirectory>,
    keys: ProcessKeys,
    /// The last key id seen (oak: generated; steel: installed or attempted).
    last_key_id: u64,
    /// The last time event seen.
    last_time: u64,
    pending: BTreeMap<u64, Pending>,
}

/// The manufacturing box's own keys and books.
#[derive(Clone, Serialize, Deserialize)]
struct Manufacturing {
    /// Startup authentication key: signs Set Secure Box ID and Make Domain Process.
    startup_auth: Vec<u8>,
    /// Domain key set: confidentiality (HPKE private) and authentication (PKCS#8).
    dks_conf: [u8; 32],
    dks_auth: Vec<u8>,
    next_number: BTreeMap<BoxKind, u32>,
    domains: BTreeMap<DomainId, (Signed, DomainDirectory, ProcessKeys)>,
    /// The startup confidentiality key each box it set up answered with,
    /// recorded once: processes and token keys are sealed only to these.
    startups: BTreeMap<BoxId, [u8; 32]>,
}

impl Drop for Manufacturing {
    fn drop(&mut self) {
        self.startup_auth.zeroize();
        self.dks_conf.zeroize();
        self.dks_auth.zeroize();
    }
}

/// A box's whole secret state.
#[derive(Clone, Serialize, Deserialize)]
struct BoxState {
    id: BoxId,
    /// The manufacturing box's startup authentication public key.
    manufacturing_auth: Vec<u8>,
    /// This box's startup confidentiality key (HPKE private).
    startup_conf: [u8; 32],
    processes: BTreeMap<DomainId, Process>,
    manufacturing: Option<Manufacturing>,
    /// Steel: the key that vouches for meter keys, set once.
    meter_anchor: Option<(u8, Vec<u8>)>,
}

impl Drop for BoxState {
    fn drop(&mut self) {
        self.startup_conf.zeroize();
    }
}

/// The box file: its id in clear, its state sealed.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BoxFile {
    version: u8,
    id: BoxId,
    salt: [u8; 32],
    sealed: Vec<u8>,
}

/// One meter's key in a verification table.
struct Verifiable {
    first_day: u16,
    last_day: Option<u16>,
    /// Brass: the master key; tin: none.
    master: Option<Secret32>,
    token_keys: HashMap<u32, TokenKey>,
}

struct Unlocked {
    key: Secret32,
    state: BoxState,
}

/// A secure box.
pub struct SecureBox {
    id: BoxId,
    storage: Box<dyn BoxStorage>,
    file: BoxFile,
    entered: Vec<shamir::Share>,
    unlocked: Option<Unlocked>,
    /// Verification tables (brass, tin), by domain and (device, role).
    tables: HashMap<DomainId, HashMap<([u8; 6], u8), Verifiable>>,
}

impl core::fmt::Debug for SecureBox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecureBox")
            .field("id", &self.id)
            .field("enabled", &self.unlocked.is_some())
            .finish_non_exhaustive()
    }
}

fn state_key(combination: &[u8], salt: &[u8; 32], id: BoxId) -> Result<Secret32> {
    Ok(kdf::derive_secret32(
        salt,
        combination,
        &[STATE_INFO, id.to_string().as_bytes()],
    )?)
}

fn refused(fault: Fault, detail: impl Into<String>) -> KmsError {
    KmsError::refused(fault, detail)
}

/// The token role of an install domain: the vendor's keys make the vendor
/// token (1), every postal or earth domain's the postal token (2).
#[must_use]
pub fn role_of(domain: &DomainId) -> u8 {
    if domain.install_domain().as_str() == ids::VENDOR {
        1
    } else {
        2
    }
}

fn aad(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

impl SecureBox {
    /// Sets up the first manufacturing box (fig. 22): id `M00000001`, its
    /// operation combination and shares, its domain key set and startup
    /// authentication key. Returns the box (enabled) and its shares, which the
    /// caller writes to removable media for their holders.
    ///
    /// # Errors
    /// If randomness fails or the state cannot be stored.
    pub fn first_manufacturing(
        storage: Box<dyn BoxStorage>,
    ) -> Result<(Self, Vec<OperationShare>)> {
        let id = BoxId {
            kind: BoxKind::Manufacturing,
            number: 1,
        };
        let startup_auth = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
        let dks_auth = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
        let dks_conf = hpke::PrivateKey::derive(rand::combined_secret32()?.expose())?;
        let mut next_number = BTreeMap::new();
        next_number.insert(BoxKind::Manufacturing, 2);
        let state = BoxState {
            id,
            manufacturing_auth: startup_auth.public_key().as_bytes().to_vec(),
            startup_conf: *hpke::PrivateKey::generate()?.0.secret().expose(),
            processes: BTreeMap::new(),
            manufacturing: Some(Manufacturing {
                startup_auth: startup_auth.to_pkcs8()?.expose().to_vec(),
                dks_conf: *dks_conf.secret().expose(),
                dks_auth: dks_auth.to_pkcs8()?.expose().to_vec(),
                next_number,
                domains: BTreeMap::new(),
                startups: BTreeMap::new(),
            }),
            meter_anchor: None,
        };
        Self::create(storage, state)
    }

    /// Installs a new box of the kind `set_id` names (fig. 23): checks the
    /// manufacturing box's signature under its startup authentication key
    /// (built into the box's software), takes the id, makes its startup
    /// confidentiality key and its operation shares. Returns the box
    /// (enabled), the reply for the manufacturing box and the shares.
    ///
    /// # Errors
    /// [`Fault::BadSignature`] if the message is not the manufacturing box's.
    pub fn install(
        storage: Box<dyn BoxStorage>,
        set_id: &Signed,
        manufacturing_auth: &[u8],
    ) -> Result<(Self, StartupReply, Vec<OperationShare>)> {
        let msg: SetBoxId = set_id.open(
            RecordKind::SetBoxId,
            &message::public_key(manufacturing_auth)?,
        )?;
        if !msg.id.is_set() {
            return Err(refused(Fault::WrongBox, "Set Secure Box ID gives id 0"));
        }
        let (startup, startup_pub) = hpke::PrivateKey::generate()?;
        let state = BoxState {
            id: msg.id,
            manufacturing_auth: manufacturing_auth.to_vec(),
            startup_conf: *startup.secret().expose(),
            processes: BTreeMap::new(),
            manufacturing: None,
            meter_anchor: None,
        };
        let (b, shares) = Self::create(storage, state)?;
        Ok((
            b,
            StartupReply {
                id: msg.id,
                startup_conf: startup_pub.0,
            },
            shares,
        ))
    }

    fn create(
        storage: Box<dyn BoxStorage>,
        state: BoxState,
    ) -> Result<(Self, Vec<OperationShare>)> {
        let id = state.id;
        let combination = Zeroizing::new(*rand::combined_secret32()?.expose());
        let total = id.kind.operation_shares();
        let shares = shamir::split(combination.as_slice(), total, total)?
            .into_iter()
            .map(|share| OperationShare {
                box_id: id,
                share,
                total,
            })
            .collect();
        let salt = rand::bytes::<32>()?;
        let key = state_key(combination.as_slice(), &salt, id)?;
        let mut b = Self {
            id,
            storage,
            file: BoxFile {
                version: FILE_VERSION,
                id,
                salt,
                sealed: Vec::new(),
            },
            entered: Vec::new(),
            unlocked: Some(Unlocked { key, state }),
            tables: HashMap::new(),
        };
        b.persist()?;
        Ok((b, shares))
    }

    /// Opens a box from its storage, disabled until its shares are entered.
    ///
    /// # Errors
    /// [`Fault::Storage`] if there is no box there or it does not parse.
    pub fn open(storage: Box<dyn BoxStorage>) -> Result<Self> {
        let bytes = storage
            .load()?
            .ok_or_else(|| refused(Fault::Storage, "no box state stored there"))?;
        let file: BoxFile = message::decode(&bytes)
            .map_err(|_| refused(Fault::Storage, "the box file does not parse"))?;
        if file.version != FILE_VERSION {
            return Err(refused(
                Fault::Storage,
                format!("box file version {} is unknown", file.version),
            ));
        }
        Ok(Self {
            id: file.id,
            storage,
            file,
            entered: Vec::new(),
            unlocked: None,
            tables: HashMap::new(),
        })
    }

    /// The box's id.
    #[must_use]
    pub fn id(&self) -> BoxId {
        self.id
    }

    /// Whether the box works (all its operation shares are in).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.unlocked.is_some()
    }

    /// Shares entered so far.
    #[must_use]
    pub fn shares_entered(&self) -> usize {
        self.entered.len()
    }

    /// Enters one operation share; with the last one the box opens its
    /// state and is enabled. Returns whether it is enabled.
    ///
    /// # Errors
    /// [`Fault::BadShare`] for another box's share, a repeated share, or a
    /// set of shares that does not open the state.
    pub fn enter_share(&mut self, share: &OperationShare) -> Result<bool> {
        if share.box_id != self.id || share.total != self.id.kind.operation_shares() {
            return Err(refused(
                Fault::BadShare,
                format!("the share is not one of {}'s", self.id),
            ));
        }
        if self.unlocked.is_some() {
            return Ok(true);
        }
        if share.share.id == 0 || share.share.id > share.total || share.share.value.len() != 32 {
            return Err(refused(Fault::BadShare, "the share is malformed"));
        }
        if self.entered.iter().any(|s| s.id == share.share.id) {
            return Err(refused(Fault::BadShare, "that share is already entered"));
        }
        self.entered.push(share.share.clone());
        if self.entered.len() < usize::from(share.total) {
            return Ok(false);
        }
        let Ok(combination) = shamir::combine(&self.entered, share.total) else {
            self.entered.pop();
            return Err(refused(Fault::BadShare, "the shares do not combine"));
        };
        let key = state_key(combination.expose(), &self.file.salt, self.id)?;
        let opened = aead::open(&key, self.id.to_string().as_bytes(), &self.file.sealed);
        let Ok(plain) = opened else {
            self.entered.pop();
            return Err(refused(
                Fault::BadShare,
                "the shares do not open this box's state",
            ));
        };
        let state: BoxState = message::decode(plain.expose())
            .map_err(|_| refused(Fault::Storage, "the box state does not parse"))?;
        self.unlocked = Some(Unlocked { key, state });
        Ok(true)
    }

    /// Removes the last share entered. If the box was enabled it is
    /// disabled: its state and verification tables are dropped and zeroised.
    pub fn remove_share(&mut self) {
        self.entered.pop();
        self.unlocked = None;
        self.tables.clear();
    }

    fn persist(&mut self) -> Result<()> {
        let unlocked = self
            .unlocked
            .as_ref()
            .ok_or_else(|| refused(Fault::Disabled, "the box is disabled"))?;
        let plain = Zeroizing::new(message::encode(&unlocked.state)?);
        self.file.sealed = aead::seal(&unlocked.key, self.id.to_string().as_bytes(), &plain)?;
        let bytes = message::encode(&self.file)?;
        self.storage.save(&bytes)
    }

    fn state(&self) -> Result<&BoxState> {
        self.unlocked.as_ref().map(|u| &u.state).ok_or_else(|| {
            refused(
                Fault::Disabled,
                format!(
                    "{} is disabled: its operation shares must be entered first",
                    self.id
                ),
            )
        })
    }

    fn state_mut(&mut self) -> Result<&mut BoxState> {
        let id = self.id;
        self.unlocked.as_mut().map(|u| &mut u.state).ok_or_else(|| {
            refused(
                Fault::Disabled,
                format!("{id} is disabled: its operation shares must be entered first"),
            )
        })
    }

    /// The manufacturing box's startup authentication public key (what new
    /// boxes are built with).
    ///
    /// # Errors
    /// If the box is disabled.
    pub fn manufacturing_key(&self) -> Result<Vec<u8>> {
        Ok(self.state()?.manufacturing_auth.clone())
    }

    /// This box's startup confidentiality key (HPKE public), e.g. for a tin
    /// box's token keys.
    ///
    /// # Errors
    /// If the box is disabled.
    pub fn startup_key(&self) -> Result<[u8; 32]> {
        let sk = hpke::PrivateKey::from_secret(Secret32::from_bytes(self.state()?.startup_conf))?;
        Ok(sk.public_key()?.0)
    }

    /// Answers one framed request with a framed answer, after the three
    /// levels of checks. A refusal changes nothing in the box.
    #[must_use]
    pub fn handle(&mut self, request: &[u8]) -> Vec<u8> {
        let refusal = |e: &KmsError| {
            message::encode(&Refusal::from(e)).and_then(|b| Ok(frame::encode(ANSWER_ERR, &b)?))
        };
        let framed = match self.dispatch(request) {
            // An answer too large for a frame becomes a refusal saying so.
            Ok(r) => message::encode(&r)
                .and_then(|b| Ok(frame::encode(ANSWER_OK, &b)?))
                .or_else(|e| refusal(&e)),
            Err(e) => refusal(&e),
        };
        // A refusal is a few dozen bytes: it always frames.
        framed.unwrap_or_default()
    }

    /// Frames `request`, has the box answer it, and reads the answer.
    ///
    /// # Errors
    /// The box's refusal.
    pub fn call(&mut self, request: &Request) -> Result<Response> {
        let frame = request.to_frame()?;
        crate::request::read_answer(&self.handle(&frame))
    }

    fn dispatch(&mut self, bytes: &[u8]) -> Result<Response> {
        // Level 1: framing.
        let (code, body) = frame::decode(bytes)?;
        let class = Class::from_code(code).ok_or(FramingError::UnknownClass(code))?;
        // Level 2: the command table, then the parameters.
        let kind = self.id.kind;
        if !tables::commands(kind).contains(&class) {
            return Err(CommandError::NotExpected {
                component: self.id.to_string(),
                command: format!("{class:?}"),
            }
            .into());
        }
        let request: Request = message::decode(body).map_err(|_| CommandError::Syntax {
            command: format!("{class:?}"),
        })?;
        if request.class() != class {
            return Err(CommandError::Syntax {
                command: format!("{class:?}"),
            }
            .into());
        }
        // Level 3: configuration, records, signatures, state.
        if let Request::Status = request {
            return Ok(Response::Status {
                id: self.id,
                enabled: self.is_enabled(),
                domains: self
                    .unlocked
                    .as_ref()
                    .map(|u| u.state.processes.keys().cloned().collect())
                    .unwrap_or_default(),
            });
        }
        self.state()?;
        match request {
            Request::GenerateKey {
                domain,
                steel,
                key_id,
                time,
            } => self.generate_key(&domain, steel, key_id, time),
            Request::InstallKey {
                record,
                device,
                role,
                meter_key,
                meter_key_signature,
                time,
            } => self.install_key(
                &record,
                device,
                role,
                (meter_key, &meter_key_signature),
                time,
            ),
            Request::SetMeterAnchor { anchor } => self.set_meter_anchor(anchor),
            Request::MeterEvidence { evidence, time } => self.meter_evidence(&evidence, time),
            Request::ConfirmInstalled {
                archive,
                installed,
                time,
            } => self.confirm_installed(&archive, &installed, time),
            Request::RegistrationRequest {
                domain,
                report,
                installed,
                time,
            } => self.register(&domain, &report, &installed, time),
            Request::Obsolete {
                record,
                last_day,
                time,
            } => self.obsolete(&record, last_day, time),
            Request::LoadRecords { domain, records } => self.load_records(&domain, &records),
            Request::Verify { domain, indicia } => Ok(Response::Verdicts(
                indicia
                    .iter()
                    .map(|i| self.verify_bytes(&domain, i))
                    .collect::<Result<_>>()?,
            )),
            Request::ExportTokenKeys {
                domain,
                tin,
                period,
            } => self.export_token_keys(&domain, &tin, period),
            Request::RecordStartup { reply } => self.record_startup(&reply),
            Request::StartupOf { id } => self.startup_of(id),
            Request::LoadTokenKeys { domain, records } => self.load_token_keys(&domain, &records),
            Request::CreateDomain { domain, time } => self.create_domain(&domain, time),
            Request::SetBoxId { kind, time } => self.set_box_id(kind, time),
            Request::MakeDomainProcess {
                domain,
                reply,
                kind,
                time,
            } => self.make_domain_process(&domain, &reply, kind, time),
            Request::AcceptDomainProcess { process } => self.accept_domain_process(&process),
            Request::Status => Err(refused(Fault::Mismatch, "unreachable")),
        }
    }

    /// The process for `domain`: the configuration table check.
    fn process(&self, domain: &DomainId) -> Result<&Process> {
        self.state()?.processes.get(domain).ok_or_else(|| {
            refused(
                Fault::UnknownDomain,
                format!("{domain} is not in {}'s configuration table", self.id),
            )
        })
    }

    fn process_mut(&mut self, domain: &DomainId) -> Result<&mut Process> {
        let id = self.id;
        self.state_mut()?.processes.get_mut(domain).ok_or_else(|| {
            refused(
                Fault::UnknownDomain,
                format!("{domain} is not in {id}'s configuration table"),
            )
        })
    }

    fn check_record(&self, kind: RecordKind) -> Result<()> {
        if tables::records(self.id.kind).contains(&kind) {
            Ok(())
        } else {
            Err(refused(
                Fault::UnknownRecord,
                format!("{kind:?} is not in {}'s record table", self.id),
            ))
        }
    }

    /// Time events must not go back.
    fn check_time(process: &Process, time: u64) -> Result<()> {
        if time < process.last_time {
            return Err(refused(
                Fault::TimeOrder,
                format!(
                    "time event {time} precedes the last one seen ({})",
                    process.last_time
                ),
            ));
        }
        Ok(())
    }

    // ----- oak ------------------------------------------------------------------------

    /// MI1 → MI2: a fresh master key for `steel`, once per key id.
    fn generate_key(
        &mut self,
        domain: &DomainId,
        steel: BoxId,
        key_id: u64,
        time: u64,
    ) -> Result<Response> {
        let oak = self.id;
        let p = self.process(domain)?;
        if domain.is_sub_domain() {
            return Err(refused(
                Fault::UnknownDomain,
                "keys are generated in install domains",
            ));
        }
        ids::expect_kind(steel, BoxKind::Steel)?;
        if key_id <= p.last_key_id {
            return Err(refused(
                Fault::KeyIdNotNew,
                format!(
                    "key id {key_id} is not newer than {} (a replayed Generate Key)",
                    p.last_key_id
                ),
            ));
        }
        Self::check_time(p, time)?;
        let oak_key = signing(p.keys.oak_auth.as_ref(), "oak authentication")?;
        let brass_conf = p
            .directory
            .brass_conf
            .ok_or_else(|| refused(Fault::UnknownDomain, "no brass key"))?;
        let steel_conf = p
            .directory
            .steel_conf
            .ok_or_else(|| refused(Fault::UnknownDomain, "no steel key"))?;
        let master = rand::combined_secret32()?;
        let test_tokens = token::test_tokens(&master, domain.as_str())?;
        let key_aad = aad(&[domain.as_str().as_bytes(), &key_id.to_be_bytes()]);
        let archive = ArchiveNew {
            status: KeyStatus::New,
            oak,
            domain: domain.clone(),
            steel,
            key_id,
            key_for_brass: hpke::seal(
                &hpke::PublicKey(brass_conf),
                MI3_INFO,
                &key_aad,
                master.expose(),
            )?,
            time,
        };
        let steel_aad = aad(&[&key_aad, steel.to_string().as_bytes()]);
        let install = InstallRecord {
            status: KeyStatus::New,
            oak,
            domain: domain.clone(),
            steel,
            key_id,
            key_for_steel: hpke::seal(
                &hpke::PublicKey(steel_conf),
                MI4_INFO,
                &steel_aad,
                master.expose(),
            )?,
            test_tokens,
            time,
        };
        let answer = Response::NewKey {
            archive: Signed::sign(RecordKind::ArchiveNew, &archive, &oak_key)?,
            install: Signed::sign(RecordKind::InstallRecord, &install, &oak_key)?,
        };
        let p = self.process_mut(domain)?;
        p.last_key_id = key_id;
        p.last_time = time;
        self.persist()?;
        Ok(answer)
    }

    // ----- steel ----------------------------------------------------------------------

    /// MI4 → MI5: the key for one meter, once: this steel box, a key id newer
    /// than any it has seen, oak's signature.
    fn install_key(
        &mut self,
        record: &Signed,
        device: [u8; 6],
        role: u8,
        (meter_key, vouch): ([u8; 32], &(u8, Vec<u8>)),
        time: u64,
    ) -> Result<Response> {
        self.check_record(record.kind)?;
        // Only to a meter key the vault's registration key vouches for: the
        // host cannot have a master key sealed to a key of its own.
        let anchor =
            self.state()?.meter_anchor.clone().ok_or_else(|| {
                refused(Fault::WrongBox, "this steel box has no meter anchor yet")
            })?;
        let bad = || {
            refused(
                Fault::BadSignature,
                "the meter key is not vouched for by the vault's registration key",
            )
        };
        let anchor_key = postvault_crypto::sig::PublicKey::from_bytes(
            SigAlg::from_id(anchor.0).map_err(|_| bad())?,
            &anchor.1,
        )
        .map_err(|_| bad())?;
        let sig = postvault_crypto::sig::Signature::from_bytes(
            SigAlg::from_id(vouch.0).map_err(|_| bad())?,
            &vouch.1,
        )
        .map_err(|_| bad())?;
        anchor_key
            .verify(&token::meter_key_message(&meter_key), &sig)
            .map_err(|_| bad())?;
        let peek: InstallRecord = record.peek()?;
        let p = self.process(&peek.domain)?;
        let oak_pub = message::public_key(p.directory.oak_auth.as_deref().unwrap_or_default())?;
        let rec: InstallRecord = record.open(RecordKind::InstallRecord, &oak_pub)?;
        if rec.steel != self.id {
            return Err(refused(
                Fault::WrongSteelId,
                format!("the key is for {}, this is {}", rec.steel, self.id),
            ));
        }
        if rec.key_id <= p.last_key_id {
            return Err(refused(
                Fault::KeyIdNotNew,
                format!(
                    "key id {} is not newer than {} (a replayed Distribute Master Key)",
                    rec.key_id, p.last_key_id
                ),
            ));
        }
        if role != role_of(&rec.domain) {
            return Err(refused(Fault::Mismatch, "the role is not the domain's"));
        }
        Self::check_time(p, time)?;
        let steel_sk = hpke_private(p.keys.steel_conf, "steel confidentiality")?;
        let key_aad = aad(&[rec.domain.as_str().as_bytes(), &rec.key_id.to_be_bytes()]);
        let steel_aad = aad(&[&key_aad, self.id.to_string().as_bytes()]);
        let master = hpke::open(&steel_sk, MI4_INFO, &steel_aad, &rec.key_for_steel)?;
        let sealed_key = hpke::seal(
            &hpke::PublicKey(meter_key),
            token::INSTALL_INFO,
            &token::install_aad(rec.domain.as_str(), rec.key_id, device, role),
            master.expose(),
        )?;
        let answer = Response::MeterInstall(MeterInstall {
            domain: rec.domain.clone(),
            key_id: rec.key_id,
            device,
            role,
            sealed_key,
        });
        let p = self.process_mut(&rec.domain)?;
        // The key id is used up now, whether or not the installation succeeds.
        p.last_key_id = rec.key_id;
        p.last_time = time;
        p.pending.insert(
            rec.key_id,
            Pending {
                oak: rec.oak,
                device,
                test_tokens: rec.test_tokens,
            },
        );
        self.persist()?;
        Ok(answer)
    }

    /// MI6 → MI7: the meter's test tokens against oak's.
    fn meter_evidence(&mut self, evidence: &MeterEvidence, time: u64) -> Result<Response> {
        let steel = self.id;
        let p = self.process(&evidence.domain)?;
        Self::check_time(p, time)?;
        let pending = p.pending.get(&evidence.key_id).ok_or_else(|| {
            refused(
                Fault::Mismatch,
                format!("no installation of key {} is pending", evidence.key_id),
            )
        })?;
        if pending.device != evidence.device {
            return Err(refused(
                Fault::Mismatch,
                "the evidence is from another meter",
            ));
        }
        let ok = bool::from(subtle::ConstantTimeEq::ct_eq(
            pending.test_tokens.as_slice(),
            evidence.test_tokens.as_slice(),
        ));
        let record = KeyInstalled {
            status: if ok {
                KeyStatus::Installed
            } else {
                KeyStatus::Bad
            },
            oak: pending.oak,
            domain: evidence.domain.clone(),
            steel,
            key_id: evidence.key_id,
            device: evidence.device,
            test_tokens: evidence.test_tokens,
            time,
        };
        let steel_key = signing(p.keys.steel_auth.as_ref(), "steel authentication")?;
        let signed = Signed::sign(RecordKind::KeyInstalled, &record, &steel_key)?;
        let p = self.process_mut(&evidence.domain)?;
        p.pending.remove(&evidence.key_id);
        p.last_time = time;
        self.persist()?;
        Ok(Response::KeyInstalled(signed))
    }

    /// Takes the key that vouches for meter keys, once.
    fn set_meter_anchor(&mut self, anchor: (u8, Vec<u8>)) -> Result<Response> {
        if self.id.kind != BoxKind::Steel {
            return Err(refused(
                Fault::WrongBox,
                "only a steel box takes a meter anchor",
            ));
        }
        SigAlg::from_id(anchor.0)
            .ok()
            .and_then(|alg| postvault_crypto::sig::PublicKey::from_bytes(alg, &anchor.1).ok())
            .ok_or_else(|| refused(Fault::Mismatch, "the meter anchor is not a public key"))?;
        let state = self.state_mut()?;
        match &state.meter_anchor {
            Some(a) if *a == anchor => return Ok(Response::Done),
            Some(_) => {
                return Err(refused(
                    Fault::Mismatch,
                    "this steel box vouches for another vault's meters: its anchor is set once",
                ));
            }
            None => state.meter_anchor = Some(anchor),
        }
        self.persist()?;
        Ok(Response::Done)
    }

    // ----- brass ----------------------------------------------------------------------

    /// MI8 → MI9, MI10: the archive's key against the meter's test tokens.
    fn confirm_installed(
        &mut self,
        archive: &Signed,
        installed: &Signed,
        time: u64,
    ) -> Result<Response> {
        self.check_record(archive.kind)?;
        self.check_record(installed.kind)?;
        let peek: ArchiveNew = archive.peek()?;
        let p = self.process(&peek.domain)?;
        if peek.domain.is_sub_domain() {
            return Err(refused(
                Fault::UnknownDomain,
                "installation is checked in the install domain",
            ));
        }
        Self::check_time(p, time)?;
        let oak_pub = message::public_key(p.directory.oak_auth.as_deref().unwrap_or_default())?;
        let steel_pub = message::public_key(p.directory.steel_auth.as_deref().unwrap_or_default())?;
        let new: ArchiveNew = archive.open(RecordKind::ArchiveNew, &oak_pub)?;
        let inst: KeyInstalled = installed.open(RecordKind::KeyInstalled, &steel_pub)?;
        if new.key_id != inst.key_id
            || new.domain != inst.domain
            || new.steel != inst.steel
            || new.oak != inst.oak
        {
            return Err(refused(
                Fault::Mismatch,
                "MI3 and MI7 are not for the same key",
            ));
        }
        if new.status != KeyStatus::New {
            return Err(refused(
                Fault::InvalidTransition,
                "the archive record is not New",
            ));
        }
        if time <= new.time || time <= inst.time {
            return Err(refused(
                Fault::TimeOrder,
                "the check would precede the records it checks",
            ));
        }
        let brass_sk = hpke_private(p.keys.brass_conf, "brass confidentiality")?;
        let key_aad = aad(&[new.domain.as_str().as_bytes(), &new.key_id.to_be_bytes()]);
        let master = Secret32::from_slice(
            hpke::open(&brass_sk, MI3_INFO, &key_aad, &new.key_for_brass)?.expose(),
        )?;
        let expected = token::test_tokens(&master, new.domain.as_str())?;
        let ok = inst.status == KeyStatus::Installed
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_slice(),
                inst.test_tokens.as_slice(),
            ));
        let status = if ok {
            KeyStatus::Installed
        } else {
            KeyStatus::Bad
        };
        let secret = secret(p.keys.brass_secret, "brass secret")?;
        let brass_key = signing(p.keys.brass_auth.as_ref(), "brass authentication")?;
        let record = ArchiveInstalled {
            status,
            oak: new.oak,
            domain: new.domain.clone(),
            steel: new.steel,
            key_id: new.key_id,
            device: inst.device,
            key_for_brass: aead::seal(
                &secret,
                &mi9_aad(&new.domain, new.key_id, inst.device),
                master.expose(),
            )?,
            time,
        };
        let confirm = ConfirmInstall {
            status,
            domain: new.domain.clone(),
            key_id: new.key_id,
            device: inst.device,
        };
        let answer = Response::Installed {
            archive: Signed::sign(RecordKind::ArchiveInstalled, &record, &brass_key)?,
            confirm: Signed::sign(RecordKind::ConfirmInstall, &confirm, &brass_key)?,
        };
        self.process_mut(&new.domain)?.last_time = time;
        self.persist()?;
        Ok(answer)
    }

    /// MR2 → MR3, MR4: in the country sub-domain, the meter's registration
    /// token against the installed key; the key re-sealed under this
    /// sub-domain's secret, Active.
    fn register(
        &mut self,
        domain: &DomainId,
        report: &RegistrationReport,
        installed: &Signed,
        time: u64,
    ) -> Result<Response> {
        self.check_record(installed.kind)?;
        let p = self.process(domain)?;
        let parent = p.parent.as_ref().ok_or_else(|| {
            refused(
                Fault::UnknownDomain,
                format!("{domain} is not a country sub-domain"),
            )
        })?;
        if domain.country() != Some(report.country.as_str()) || report.domain != parent.domain {
            return Err(refused(
                Fault::UnknownDomain,
                format!(
                    "a {} report for {} does not belong in {domain}",
                    report.domain, report.country
                ),
            ));
        }
        Self::check_time(p, time)?;
        let rec: ArchiveInstalled = installed.open(
            RecordKind::ArchiveInstalled,
            &message::public_key(&parent.brass_auth)?,
        )?;
        if rec.status != KeyStatus::Installed {
            return Err(refused(
                Fault::InvalidTransition,
                format!("the key is {}, not installed", rec.status.name()),
            ));
        }
        if time <= rec.time {
            return Err(refused(
                Fault::TimeOrder,
                "registration would precede installation",
            ));
        }
        if rec.device != report.device || rec.key_id != report.key_id || rec.domain != report.domain
        {
            return Err(refused(
                Fault::Mismatch,
                "MR1 and MI9 are not for the same meter and key",
            ));
        }
        let parent_secret = secret(p.keys.parent_brass_secret, "install domain brass secret")?;
        let master = Secret32::from_slice(
            aead::open(
                &parent_secret,
                &mi9_aad(&rec.domain, rec.key_id, rec.device),
                &rec.key_for_brass,
            )?
            .expose(),
        )?;
        let facts = token::RegistrationFacts {
            device: DeviceId::from_bytes(report.device)
                .map_err(|_| refused(Fault::Mismatch, "device id"))?,
            indicia_number: report.indicia_number.clone(),
            country: report.country.clone(),
            date: Date::from_days(report.date),
        };
        let expected = token::registration_token(&master, rec.domain.as_str(), &facts)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_slice(),
            report.token.as_slice(),
        )) {
            return Err(refused(
                Fault::RegistrationTokens,
                "the registration token does not verify: the meter's report or key is not the archive's",
            ));
        }
        let secret = secret(p.keys.brass_secret, "brass secret")?;
        let brass_key = signing(p.keys.brass_auth.as_ref(), "brass authentication")?;
        let record = ArchiveRegistered {
            status: KeyStatus::Active,
            domain: domain.clone(),
            key_id: rec.key_id,
            device: rec.device,
            indicia_number: report.indicia_number.clone(),
            country: report.country.clone(),
            registered: report.date,
            last_day: None,
            key_for_brass: aead::seal(
                &secret,
                &mr3_aad(domain, rec.key_id, rec.device),
                master.expose(),
            )?,
            time,
        };
        let confirm = ConfirmRegistration {
            status: KeyStatus::Active,
            domain: domain.clone(),
            device: rec.device,
            indicia_number: report.indicia_number.clone(),
            country: report.country.clone(),
        };
        let answer = Response::Registered {
            archive: Signed::sign(RecordKind::ArchiveRegistered, &record, &brass_key)?,
            confirm: Signed::sign(RecordKind::ConfirmRegistration, &confirm, &brass_key)?,
        };
        self.process_mut(domain)?.last_time = time;
        self.persist()?;
        Ok(answer)
    }

    /// An Active record becomes Obsolete: its tokens verify only up to `last_day`.
    fn obsolete(&mut self, record: &Signed, last_day: u16, time: u64) -> Result<Response> {
        self.check_record(record.kind)?;
        let peek: ArchiveRegistered = record.peek()?;
        let p = self.process(&peek.domain)?;
        let rec: ArchiveRegistered = record.open(
            RecordKind::ArchiveRegistered,
            &message::public_key(&p.directory.brass_auth)?,
        )?;
        if !rec.status.can_become(KeyStatus::Obsolete) {
            return Err(refused(
                Fault::InvalidTransition,
                format!("a {} key cannot become obsolete", rec.status.name()),
            ));
        }
        if time <= rec.time {
            return Err(refused(
                Fault::TimeOrder,
                "obsolescence precedes registration",
            ));
        }
        // The last day lies between registration and the day of this event:
        // never in the future, which would leave the key working.
        let event_day = Date::from_unix_seconds(i64::try_from(time / 1000).unwrap_or(i64::MAX))
            .map(Date::days)
            .unwrap_or(u16::MAX);
        if last_day < rec.registered || last_day > event_day {
            return Err(refused(
                Fault::Mismatch,
                format!(
                    "the last day must lie between registration (day {}) and today (day {event_day})",
                    rec.registered
                ),
            ));
        }
        Self::check_time(p, time)?;
        let brass_key = signing(p.keys.brass_auth.as_ref(), "brass authentication")?;
        let next = ArchiveRegistered {
            status: KeyStatus::Obsolete,
            last_day: Some(last_day),
            time,
            ..rec
        };
        let signed = Signed::sign(RecordKind::ArchiveRegistered, &next, &brass_key)?;
        self.process_mut(&next.domain)?.last_time = time;
        self.persist()?;
        Ok(Response::Archive(signed))
    }

    /// Loads Active and Obsolete records into the verification table.
    fn load_records(&mut self, domain: &DomainId, records: &[Signed]) -> Result<Response> {
        let p = self.process(domain)?;
        let brass_pub = message::public_key(&p.directory.brass_auth)?;
        let secret = secret(p.keys.brass_secret, "brass secret")?;
        let mut loaded = Vec::with_capacity(records.len());
        for r in records {
            self.check_record(r.kind)?;
            let rec: ArchiveRegistered = r.open(RecordKind::ArchiveRegistered, &brass_pub)?;
            if rec.domain != *domain {
                return Err(refused(Fault::UnknownDomain, "a record of another domain"));
            }
            if !matches!(rec.status, KeyStatus::Active | KeyStatus::Obsolete) {
                return Err(refused(
                    Fault::NotActive,
                    "only active or obsolete records verify",
                ));
            }
            let master = Secret32::from_slice(
                aead::open(
                    &secret,
                    &mr3_aad(domain, rec.key_id, rec.device),
                    &rec.key_for_brass,
                )?
                .expose(),
            )?;
            loaded.push((
                (rec.device, role_of(domain)),
                Verifiable {
                    first_day: rec.registered,
                    last_day: rec.last_day,
                    master: Some(master),
                    token_keys: HashMap::new(),
                },
            ));
        }
        let n = loaded.len();
        self.tables
            .entry(domain.clone())
            .or_default()
            .extend(loaded);
        Ok(Response::Loaded(n))
    }

    /// Temporal token keys for a tin box, one record per loaded meter.
    fn export_token_keys(
        &mut self,
        domain: &DomainId,
        tin: &Signed,
        period: u32,
    ) -> Result<Response> {
        self.check_record(tin.kind)?;
        // The tin box's startup key as the manufacturing box recorded it.
        let mfg = message::public_key(&self.state()?.manufacturing_auth)?;
        let startup: StartupReply = tin.open(RecordKind::StartupReply, &mfg)?;
        let (tin, tin_key) = (startup.id, startup.startup_conf);
        ids::expect_kind(tin, BoxKind::Tin)?;
        let p = self.process(domain)?;
        let brass_key = signing(p.keys.brass_auth.as_ref(), "brass authentication")?;
        let install = domain.install_domain();
        let mut out = Vec::new();
        if let Some(table) = self.tables.get(domain) {
            let (month_first, month_last) = month_days(period)?;
            for ((device, role), v) in table {
                let Some(master) = &v.master else { continue };
                // No keys for a month the meter is not active in.
                if v.first_day > month_last || v.last_day.is_some_and(|l| l < month_first) {
                    continue;
                }
                let dev = DeviceId::from_bytes(*device)
                    .map_err(|_| refused(Fault::Mismatch, "device id"))?;
                let key = token::token_key(master, install.as_str(), dev, Period(period))?;
                let record = TokenKeyRecord {
                    domain: domain.clone(),
                    tin,
                    device: *device,
                    role: *role,
                    period,
                    first_day: v.first_day,
                    last_day: v.last_day,
                    sealed_key: hpke::seal(
                        &hpke::PublicKey(tin_key),
                        TOKEN_KEY_INFO,
                        &token_key_aad(domain, tin, *device, *role, period),
                        key.expose(),
                    )?,
                };
                out.push(Signed::sign(RecordKind::TokenKey, &record, &brass_key)?);
            }
        }
        out.sort_by(|a, b| a.body.cmp(&b.body));
        Ok(Response::TokenKeys(out))
    }

    // ----- tin ------------------------------------------------------------------------

    fn load_token_keys(&mut self, domain: &DomainId, records: &[Signed]) -> Result<Response> {
        let p = self.process(domain)?;
        let brass_pub = message::public_key(&p.directory.brass_auth)?;
        let sk = hpke::PrivateKey::from_secret(Secret32::from_bytes(self.state()?.startup_conf))?;
        let mut loaded = Vec::new();
        for r in records {
            self.check_record(r.kind)?;
            let rec: TokenKeyRecord = r.open(RecordKind::TokenKey, &brass_pub)?;
            if rec.domain != *domain || rec.tin != self.id {
                return Err(refused(
                    Fault::Mismatch,
                    "a token key for another domain or box",
                ));
            }
            let key = Secret32::from_slice(
                hpke::open(
                    &sk,
                    TOKEN_KEY_INFO,
                    &token_key_aad(domain, rec.tin, rec.device, rec.role, rec.period),
                    &rec.sealed_key,
                )?
                .expose(),
            )?;
            loaded.push((rec, TokenKey::new(&key)));
        }
        let n = loaded.len();
        let table = self.tables.entry(domain.clone()).or_default();
        for (rec, key) in loaded {
            let entry = table
                .entry((rec.device, rec.role))
                .or_insert_with(|| Verifiable {
                    first_day: rec.first_day,
                    last_day: rec.last_day,
                    master: None,
                    token_keys: HashMap::new(),
                });
            // The narrowest active days any signed record gave: a later
            // record (after the meter left service) narrows them, an
            // older one loaded afterwards cannot widen them again.
            entry.first_day = entry.first_day.max(rec.first_day);
            entry.last_day = match (entry.last_day, rec.last_day) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            entry.token_keys.insert(rec.period, key);
        }
        Ok(Response::Loaded(n))
    }

    // ----- verification (brass and tin) -------------------------------------------------

    fn verify_bytes(&mut self, domain: &DomainId, signed: &[u8]) -> Result<Verdict> {
        let Ok(signed) = <&[u8; postvault_indicium::indicium::SIGNED_LEN]>::try_from(signed) else {
            return Ok(Verdict::Malformed);
        };
        self.verify_token(domain, signed)
    }

    /// Verifies this domain's token of one indicium (its signed part): the
    /// meter's key must be loaded, active at the date of mailing, and the
    /// token must match. Token keys are derived once per meter and month.
    ///
    /// # Errors
    /// If the box is disabled or the domain is not in its configuration table.
    pub fn verify_token(
        &mut self,
        domain: &DomainId,
        signed: &[u8; postvault_indicium::indicium::SIGNED_LEN],
    ) -> Result<Verdict> {
        self.process(domain)?;
        let role = role_of(domain);
        let install = domain.install_domain();
        let covered = token::covered(signed);
        let Some((device, date, tok)) = parse_for_token(signed, role) else {
            return Ok(Verdict::Malformed);
        };
        let Some(v) = self
            .tables
            .get_mut(domain)
            .and_then(|t| t.get_mut(&(device, role)))
        else {
            return Ok(Verdict::UnknownMeter);
        };
        if date < v.first_day || v.last_day.is_some_and(|l| date > l) {
            return Ok(Verdict::NotActive);
        }
        let period = Period::of(Date::from_days(date)).0;
        if !v.token_keys.contains_key(&period) {
            let Some(master) = &v.master else {
                return Ok(Verdict::NotActive);
            };
            let dev =
                DeviceId::from_bytes(device).map_err(|_| refused(Fault::Mismatch, "device id"))?;
            let key = token::token_key(master, install.as_str(), dev, Period(period))?;
            v.token_keys.insert(period, TokenKey::new(&key));
        }
        let Some(key) = v.token_keys.get(&period) else {
            return Ok(Verdict::NotActive);
        };
        Ok(if key.verify(&covered, &tok).is_ok() {
            Verdict::Good
        } else {
            Verdict::BadToken
        })
    }

    // ----- manufacturing --------------------------------------------------------------

    fn manufacturing(&self) -> Result<&Manufacturing> {
        self.state()?
            .manufacturing
            .as_ref()
            .ok_or_else(|| refused(Fault::WrongBox, "not a manufacturing box"))
    }

    /// Creates a domain (fig. 22): its keys from the combined generators, its
    /// directory signed with the domain key set's authentication key, and the
    /// keys sealed to the domain key set's confidentiality key for the archive.
    fn create_domain(&mut self, domain: &DomainId, time: u64) -> Result<Response> {
        let m = self.manufacturing()?;
        if m.domains.contains_key(domain) {
            return Err(refused(Fault::Mismatch, format!("{domain} exists already")));
        }
        let parent = if domain.is_sub_domain() {
            let install = domain.install_domain();
            Some(
                m.domains
                    .get(&install)
                    .ok_or_else(|| {
                        refused(
                            Fault::UnknownDomain,
                            format!("create {install} before {domain}"),
                        )
                    })?
                    .clone(),
            )
        } else {
            None
        };
        let new_sig = || -> Result<(Vec<u8>, Vec<u8>)> {
            let k = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
            Ok((
                k.to_pkcs8()?.expose().to_vec(),
                k.public_key().as_bytes().to_vec(),
            ))
        };
        let new_hpke = || -> Result<([u8; 32], [u8; 32])> {
            let k = hpke::PrivateKey::derive(rand::combined_secret32()?.expose())?;
            Ok((*k.secret().expose(), k.public_key()?.0))
        };
        let (brass_auth, brass_auth_pub) = new_sig()?;
        let brass_secret = *rand::combined_secret32()?.expose();
        let (keys, directory) = if let Some((_, _, parent_keys)) = &parent {
            (
                {
                    let mut k = ProcessKeys::default();
                    k.brass_auth = Some(brass_auth);
                    k.brass_secret = Some(brass_secret);
                    k.parent_brass_secret = parent_keys.brass_secret;
                    k
                },
                DomainDirectory {
                    domain: domain.clone(),
                    manufacturing: self.id,
                    created: time,
                    oak_auth: None,
                    steel_auth: None,
                    steel_conf: None,
                    brass_auth: brass_auth_pub,
                    brass_conf: None,
                },
            )
        } else {
            let (oak_auth, oak_pub) = new_sig()?;
            let (steel_auth, steel_pub) = new_sig()?;
            let (steel_conf, steel_conf_pub) = new_hpke()?;
            let (brass_conf, brass_conf_pub) = new_hpke()?;
            (
                ProcessKeys {
                    oak_auth: Some(oak_auth),
                    steel_auth: Some(steel_auth),
                    steel_conf: Some(steel_conf),
                    brass_auth: Some(brass_auth),
                    brass_conf: Some(brass_conf),
                    brass_secret: Some(brass_secret),
                    parent_brass_secret: None,
                },
                DomainDirectory {
                    domain: domain.clone(),
                    manufacturing: self.id,
                    created: time,
                    oak_auth: Some(oak_pub),
                    steel_auth: Some(steel_pub),
                    steel_conf: Some(steel_conf_pub),
                    brass_auth: brass_auth_pub,
                    brass_conf: Some(brass_conf_pub),
                },
            )
        };
        let dks_auth = SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &m.dks_auth)?;
        let dks_conf =
            hpke::PrivateKey::from_secret(Secret32::from_bytes(m.dks_conf))?.public_key()?;
        let signed = Signed::sign(RecordKind::DomainDirectory, &directory, &dks_auth)?;
        let plain = Zeroizing::new(message::encode(&keys)?);
        let sealed_keys = hpke::seal(
            &dks_conf,
            DOMAIN_KEYS_INFO,
            domain.as_str().as_bytes(),
            &plain,
        )?;
        let state = self.state_mut()?;
        if let Some(m) = state.manufacturing.as_mut() {
            m.domains
                .insert(domain.clone(), (signed.clone(), directory, keys));
        }
        self.persist()?;
        Ok(Response::Domain {
            directory: signed,
            sealed_keys,
        })
    }

    /// The public key that checks domain directories (the domain key set's
    /// authentication key), for the archive.
    ///
    /// # Errors
    /// If this is not an enabled manufacturing box.
    pub fn domain_key_set_public(&self) -> Result<Vec<u8>> {
        let m = self.manufacturing()?;
        Ok(
            SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &m.dks_auth)?
                .public_key()
                .as_bytes()
                .to_vec(),
        )
    }

    fn set_box_id(&mut self, kind: BoxKind, time: u64) -> Result<Response> {
        let m = self.manufacturing()?;
        let number = m.next_number.get(&kind).copied().unwrap_or(1);
        if number > MAX_BOX_NUMBER {
            return Err(refused(Fault::WrongBox, "no box numbers left"));
        }
        let key = SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &m.startup_auth)?;
        let msg = SetBoxId {
            id: BoxId { kind, number },
            manufacturing: self.id,
            time,
        };
        let signed = Signed::sign(RecordKind::SetBoxId, &msg, &key)?;
        if let Some(m) = self.state_mut()?.manufacturing.as_mut() {
            m.next_number.insert(kind, number.saturating_add(1));
        }
        self.persist()?;
        Ok(Response::BoxId(signed))
    }

    /// Records the startup key a box it set up answered with, once.
    fn record_startup(&mut self, reply: &StartupReply) -> Result<Response> {
        let m = self.manufacturing()?;
        let issued = m.next_number.get(&reply.id.kind).copied().unwrap_or(1);
        if !reply.id.is_set()
            || reply.id.number >= issued
            || reply.id.kind == BoxKind::Manufacturing
        {
            return Err(refused(
                Fault::WrongBox,
                format!("{} is not an id this manufacturing box gave", reply.id),
            ));
        }
        match m.startups.get(&reply.id) {
            Some(k) if *k == reply.startup_conf => return self.startup_of(reply.id),
            Some(_) => {
                return Err(refused(
                    Fault::WrongBox,
                    format!("{} answered with another startup key before", reply.id),
                ));
            }
            None => {}
        }
        if let Some(m) = self.state_mut()?.manufacturing.as_mut() {
            m.startups.insert(reply.id, reply.startup_conf);
        }
        self.persist()?;
        self.startup_of(reply.id)
    }

    /// A box's recorded startup key, signed (for brass to seal token keys to a tin box).
    fn startup_of(&self, id: BoxId) -> Result<Response> {
        let m = self.manufacturing()?;
        let key = m.startups.get(&id).ok_or_else(|| {
            refused(
                Fault::WrongBox,
                format!("{id}'s startup key is not recorded"),
            )
        })?;
        let auth = SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &m.startup_auth)?;
        Ok(Response::Startup(Signed::sign(
            RecordKind::StartupReply,
            &StartupReply {
                id,
                startup_conf: *key,
            },
            &auth,
        )?))
    }

    fn make_domain_process(
        &mut self,
        domain: &DomainId,
        reply: &StartupReply,
        kind: BoxKind,
        time: u64,
    ) -> Result<Response> {
        let m = self.manufacturing()?;
        if reply.id.kind != kind || !reply.id.is_set() || kind == BoxKind::Manufacturing {
            return Err(refused(
                Fault::WrongBox,
                format!("{} is not a {} box", reply.id, kind.name()),
            ));
        }
        // Only to the startup key the box answered Set Secure Box ID with.
        if m.startups.get(&reply.id) != Some(&reply.startup_conf) {
            return Err(refused(
                Fault::WrongBox,
                format!(
                    "{} is not a box this manufacturing box set up with that startup key",
                    reply.id
                ),
            ));
        }
        let (signed, _, keys) = m.domains.get(domain).ok_or_else(|| {
            refused(
                Fault::UnknownDomain,
                format!("{domain} is not in the manufacturing box"),
            )
        })?;
        let sub = domain.is_sub_domain();
        let fits = match kind {
            BoxKind::Oak | BoxKind::Steel => !sub,
            BoxKind::Tin => sub,
            BoxKind::Brass | BoxKind::Manufacturing => true,
        };
        if !fits {
            return Err(refused(
                Fault::UnknownDomain,
                format!("a {} box takes no process for {domain}", kind.name()),
            ));
        }
        let parent = if sub {
            m.domains
                .get(&domain.install_domain())
                .map(|(s, _, _)| s.clone())
        } else {
            None
        };
        let part = Zeroizing::new(message::encode(&keys.for_kind(kind))?);
        let sealed_keys = hpke::seal(
            &hpke::PublicKey(reply.startup_conf),
            PROCESS_INFO,
            &aad(&[reply.id.to_string().as_bytes(), domain.as_str().as_bytes()]),
            &part,
        )?;
        let key = SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &m.startup_auth)?;
        let msg = MakeDomainProcess {
            id: reply.id,
            directory: signed.clone(),
            parent,
            sealed_keys,
            time,
        };
        Ok(Response::Process(Signed::sign(
            RecordKind::MakeDomainProcess,
            &msg,
            &key,
        )?))
    }

    /// Takes a domain process from the manufacturing box: signed by it (its
    /// signature covers the domain's directory inside), for this box. The
    /// domain joins the box's configuration table.
    fn accept_domain_process(&mut self, process: &Signed) -> Result<Response> {
        self.check_record(process.kind)?;
        let state = self.state()?;
        let mfg = message::public_key(&state.manufacturing_auth)?;
        let msg: MakeDomainProcess = process.open(RecordKind::MakeDomainProcess, &mfg)?;
        if msg.id != self.id {
            return Err(refused(
                Fault::WrongBox,
                format!("the process is for {}, this is {}", msg.id, self.id),
            ));
        }
        let directory: DomainDirectory = msg.directory.peek()?;
        let parent: Option<DomainDirectory> = msg.parent.as_ref().map(Signed::peek).transpose()?;
        if directory.domain.is_sub_domain() != parent.is_some()
            || parent
                .as_ref()
                .is_some_and(|p| p.domain != directory.domain.install_domain())
        {
            return Err(refused(
                Fault::Mismatch,
                "the sub-domain's install domain is missing or wrong",
            ));
        }
        let sk = hpke::PrivateKey::from_secret(Secret32::from_bytes(state.startup_conf))?;
        let plain = hpke::open(
            &sk,
            PROCESS_INFO,
            &aad(&[
                self.id.to_string().as_bytes(),
                directory.domain.as_str().as_bytes(),
            ]),
            &msg.sealed_keys,
        )?;
        let keys: ProcessKeys = message::decode(plain.expose())?;
        let domain = directory.domain.clone();
        let state = self.state_mut()?;
        if state.processes.contains_key(&domain) {
            return Err(refused(
                Fault::Mismatch,
                format!("{domain} is in this box already"),
            ));
        }
        state.processes.insert(
            domain,
            Process {
                directory,
                parent,
                keys,
                last_key_id: 0,
                last_time: 0,
                pending: BTreeMap::new(),
            },
        );
        self.persist()?;
        Ok(Response::Done)
    }
}

/// The first and last day (days since 2000-01-01) of the month `YYYYMM`.
fn month_days(period: u32) -> Result<(u16, u16)> {
    let bad = || refused(Fault::Mismatch, format!("{period} is not a month (YYYYMM)"));
    let (y, m) = (
        i64::from(period / 100),
        u8::try_from(period % 100).map_err(|_| bad())?,
    );
    let first = Date::from_ymd(y, m, 1).map_err(|_| bad())?;
    let next = if m == 12 {
        Date::from_ymd(y + 1, 1, 1)
    } else {
        Date::from_ymd(y, m + 1, 1)
    };
    let last = next
        .ok()
        .and_then(|n| n.checked_sub_days(1))
        .unwrap_or(Date::from_days(u16::MAX));
    Ok((first.days(), last.days()))
}

fn mi9_aad(domain: &DomainId, key_id: u64, device: [u8; 6]) -> Vec<u8> {
    aad(&[
        b"mi9",
        domain.as_str().as_bytes(),
        &key_id.to_be_bytes(),
        &device,
    ])
}

fn mr3_aad(domain: &DomainId, key_id: u64, device: [u8; 6]) -> Vec<u8> {
    aad(&[
        b"mr3",
        domain.as_str().as_bytes(),
        &key_id.to_be_bytes(),
        &device,
    ])
}

fn token_key_aad(domain: &DomainId, tin: BoxId, device: [u8; 6], role: u8, period: u32) -> Vec<u8> {
    aad(&[
        domain.as_str().as_bytes(),
        tin.to_string().as_bytes(),
        &device,
        &[role],
        &period.to_be_bytes(),
    ])
}

/// The device id, date of mailing and the role's token from an indicium's
/// signed part (layout version 1).
fn parse_for_token(
    signed: &[u8; postvault_indicium::indicium::SIGNED_LEN],
    role: u8,
) -> Option<([u8; 6], u16, [u8; 4])> {
    let device: [u8; 6] = signed.get(6..12)?.try_into().ok()?;
    let date = u16::from_be_bytes(signed.get(20..22)?.try_into().ok()?);
    let at = if role == 1 { 43 } else { 47 };
    let tok: [u8; 4] = signed.get(at..at + 4)?.try_into().ok()?;
    Some((device, date, tok))
}
