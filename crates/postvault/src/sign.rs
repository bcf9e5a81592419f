//! `postvault sign …`: remote signing (seed 003) between a device file and a
//! signing node in a directory. A node directory holds its keys (`node.key`:
//! the storage key that stands for a module's master key, and the key
//! replicas are sealed to; development only, 0600) and one record per person
//! (`records/ID.record`). The PIN comes from `--pin-file`, `$POSTVAULT_PIN`
//! or a line on standard input.

use std::path::{Path, PathBuf};

use postvault_crypto::password::Argon2Params;
use postvault_crypto::{Secret32, hpke};
use postvault_remotesign::device::DeviceFile;
use postvault_remotesign::server::{Challenge, Node, Record, Replica, SignRequest};
use postvault_remotesign::token::TokenDevice;
use zeroize::Zeroizing;

use crate::ceremony::write_private;
use crate::error::CliError;

fn rs(e: postvault_remotesign::RemoteSignError) -> CliError {
    CliError::Check(format!("remote signing: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::io(path, &e))
}

/// Reads the PIN.
fn read_pin(file: Option<&Path>, env: &str, prompt: &str) -> Result<Zeroizing<String>, CliError> {
    if let Some(f) = file {
        let text = Zeroizing::new(std::fs::read_to_string(f).map_err(|e| CliError::io(f, &e))?);
        return Ok(Zeroizing::new(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    if let Ok(p) = std::env::var(env) {
        return Ok(Zeroizing::new(p));
    }
    eprint!("{prompt}: ");
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::io(Path::new("stdin"), &e))?;
    let p = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if p.is_empty() {
        return Err(CliError::Input(format!("no {prompt} given")));
    }
    Ok(p)
}

/// A new PIN must be at least this long.
const MIN_PIN: usize = 4;

fn check_new_pin(pin: &str) -> Result<(), CliError> {
    if pin.chars().count() < MIN_PIN {
        return Err(CliError::Input(format!(
            "a PIN has at least {MIN_PIN} characters"
        )));
    }
    Ok(())
}

/// The PIN of the command, from `--pin-file` or `$POSTVAULT_PIN` or stdin.
pub fn pin(file: Option<&Path>) -> Result<Zeroizing<String>, CliError> {
    read_pin(file, "POSTVAULT_PIN", "PIN")
}

fn node_key(dir: &Path) -> PathBuf {
    dir.join("node.key")
}

fn record_path(dir: &Path, id: &str) -> Result<PathBuf, CliError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(CliError::Input(
            "--id: 1-64 letters, digits, '-' or '_'".into(),
        ));
    }
    Ok(dir.join("records").join(format!("{id}.record")))
}

/// Opens (making on first use) the node in `dir`.
fn open_node(dir: &Path) -> Result<Node, CliError> {
    let path = node_key(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let storage = Secret32::generate()?;
            let (receive, _) = hpke::PrivateKey::generate()?;
            let b =
                Zeroizing::new([storage.expose().as_slice(), receive.secret().expose()].concat());
            write_private(&path, &b)?;
            b
        }
        Err(e) => return Err(CliError::io(&path, &e)),
    };
    let (s, r) = bytes
        .split_at_checked(32)
        .ok_or_else(|| CliError::Input(format!("{}: not a node key file", path.display())))?;
    Ok(Node::new(
        Secret32::from_slice(s)?,
        hpke::PrivateKey::from_secret(Secret32::from_slice(r)?)?,
    ))
}

fn load_record(dir: &Path, id: &str) -> Result<Record, CliError> {
    let path = record_path(dir, id)?;
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            rs(postvault_remotesign::RemoteSignError::Revoked(
                id.to_owned(),
            ))
        } else {
            CliError::io(&path, &e)
        }
    })?;
    Record::from_bytes(&bytes)
        .map_err(|_| CliError::Input(format!("{}: not a record", path.display())))
}

fn save_record(dir: &Path, r: &Record) -> Result<(), CliError> {
    let bytes = r.to_bytes().map_err(rs)?;
    write_private(&record_path(dir, &r.id)?, &bytes)
}

/// Where a person's key-encrypting keys are: a device file, or a PKCS#11 token.
pub enum Device<'a> {
    /// A PIN-protected device file.
    File(&'a Path),
    /// A PKCS#11 token: the module's path, the token's label, the person's id.
    Token(&'a Path, &'a str, &'a str),
}

impl Device<'_> {
    /// The person.
    fn id(&self) -> Result<String, CliError> {
        match self {
            Device::File(p) => Ok(DeviceFile::from_bytes(&read(p)?).map_err(rs)?.id),
            Device::Token(_, _, id) => Ok((*id).to_owned()),
        }
    }

    /// Approves `message` (a device file keeps its wrong-PIN count whatever happens).
    fn approve(
        &self,
        pin: &str,
        message: &[u8],
        challenge: &Challenge,
    ) -> Result<SignRequest, CliError> {
        match self {
            Device::File(path) => {
                let mut file = DeviceFile::from_bytes(&read(path)?).map_err(rs)?;
                let approved = file.approve(pin.as_bytes(), message, challenge);
                write_private(path, &file.to_bytes().map_err(rs)?)?;
                approved.map_err(rs)
            }
            Device::Token(module, token, id) => TokenDevice::open(module, token, id)
                .and_then(|t| t.approve(pin.as_bytes(), message, challenge))
                .map_err(rs),
        }
    }
}

/// `sign init` with a PKCS#11 token: the key-encrypting keys go into the
/// token (sensitive, never extractable) under its user PIN.
///
/// # Errors
/// An existing record; the token's refusal.
pub fn init_token(
    node_dir: &Path,
    id: &str,
    module: &Path,
    token: &str,
    pin_file: Option<&Path>,
) -> Result<String, CliError> {
    if record_path(node_dir, id)?.exists() {
        return Err(CliError::Input(format!(
            "{id} is enrolled on this node already"
        )));
    }
    let pin = pin(pin_file)?;
    let device = TokenDevice::open(module, token, id).map_err(rs)?;
    let node = open_node(node_dir)?;
    let (record, issued) = node.enrol(id).map_err(rs)?;
    device.install(pin.as_bytes(), &issued).map_err(rs)?;
    save_record(node_dir, &record)?;
    Ok(format!(
        "{id} enrolled with PKCS#11 token '{token}': its key-encrypting keys live in the token only; public key {}",
        hex::encode(&record.public_key.1)
    ))
}

/// Enrols `id` on the node in `node_dir` with a device file at `device`
/// under `pin`; returns the public key (algorithm id, bytes).
///
/// # Errors
/// An existing record or device file; I/O.
pub fn enrol_file(
    node_dir: &Path,
    id: &str,
    device: &Path,
    pin: &str,
    kdf: Argon2Params,
) -> Result<(u8, Vec<u8>), CliError> {
    if record_path(node_dir, id)?.exists() || device.exists() {
        return Err(CliError::Input(format!(
            "{id} is enrolled on this node already, or {} exists",
            device.display()
        )));
    }
    let node = open_node(node_dir)?;
    let (record, issued) = node.enrol(id).map_err(rs)?;
    let file = DeviceFile::new(&issued, pin.as_bytes(), kdf).map_err(rs)?;
    write_private(device, &file.to_bytes().map_err(rs)?)?;
    save_record(node_dir, &record)?;
    Ok(record.public_key)
}

/// Whose device file this is.
///
/// # Errors
/// An unreadable or malformed file.
pub fn device_id(path: &Path) -> Result<String, CliError> {
    Ok(DeviceFile::from_bytes(&read(path)?).map_err(rs)?.id)
}

/// Whether `id` has a record on the node in `node_dir`.
#[must_use]
pub fn enrolled(node_dir: &Path, id: &str) -> bool {
    record_path(node_dir, id).is_ok_and(|p| p.exists())
}

/// `sign init`: enrols a person on the node and writes their device file.
///
/// # Errors
/// An existing record or device file; I/O.
pub fn init(
    node_dir: &Path,
    id: &str,
    device: &Path,
    pin_file: Option<&Path>,
    kdf: Argon2Params,
) -> Result<String, CliError> {
    let pin = pin(pin_file)?;
    check_new_pin(&pin)?;
    let public = enrol_file(node_dir, id, device, &pin, kdf)?;
    Ok(format!(
        "{id} enrolled: the private key is stored only sealed under the device's key-encrypting keys; public key {} (device file {})",
        hex::encode(&public.1),
        device.display()
    ))
}

/// One signature through the whole protocol: the node's challenge, the
/// device's approval of `msg`, the node's signature (its record moved on).
///
/// # Errors
/// A wrong PIN, a revoked person, a refusal.
pub fn sign_bytes(
    node_dir: &Path,
    device: &Device<'_>,
    pin: &str,
    msg: &[u8],
) -> Result<Vec<u8>, CliError> {
    let id = device.id()?;
    let node = open_node(node_dir)?;
    let record = load_record(node_dir, &id)?;
    let (record, challenge) = node.challenge(&record, &[]).map_err(rs)?;
    save_record(node_dir, &record)?;
    let request = device.approve(pin, msg, &challenge)?;
    let (next, sig, _) = node.sign(&record, &request, msg).map_err(rs)?;
    save_record(node_dir, &next)?;
    Ok(sig.as_bytes().to_vec())
}

/// A device owned rather than borrowed, for a signer that outlives the command line.
#[derive(Clone, Debug)]
pub enum DeviceSpec {
    /// A device file.
    File(PathBuf),
    /// A PKCS#11 module, token label and person.
    Token(PathBuf, String, String),
}

impl DeviceSpec {
    fn as_device(&self) -> Device<'_> {
        match self {
            DeviceSpec::File(p) => Device::File(p),
            DeviceSpec::Token(m, t, id) => Device::Token(m, t, id),
        }
    }
}

/// The provider's order signer over a node and a device: each order is
/// approved on the device and signed by the node, one at a time. The PIN is
/// read (from `pin_file`, `$POSTVAULT_PIN` or standard input) at the first
/// order and kept while it works.
#[must_use]
pub fn remote_signer(
    node_dir: PathBuf,
    device: DeviceSpec,
    pin_file: Option<PathBuf>,
) -> postvault_server::service::OrderSigner {
    // The PIN as last read: good (kept), or refused by the device (then no
    // later order tries it again: a PIN file or variable that is wrong would
    // otherwise spend the device's attempts one order at a time).
    let state: std::sync::Mutex<Result<Option<Zeroizing<String>>, String>> =
        std::sync::Mutex::new(Ok(None));
    Box::new(move |m| {
        let mut state = state
            .lock()
            .map_err(|_| "the signer's lock is poisoned".to_owned())?;
        let pin = match &mut *state {
            Err(refused) => return Err(refused.clone()),
            Ok(cached) => match cached.take() {
                Some(p) => p,
                None => pin(pin_file.as_deref()).map_err(|e| e.to_string())?,
            },
        };
        match sign_bytes(&node_dir, &device.as_device(), &pin, m) {
            Ok(sig) => {
                *state = Ok(Some(pin));
                Ok(sig)
            }
            Err(CliError::Check(e)) if e.contains("wrong PIN") || e.contains("locked") => {
                let refused = format!("{e}; no further order tries that PIN");
                *state = Err(refused.clone());
                Err(refused)
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

/// `sign sign`: one message, approved on the device, signed by the node.
///
/// # Errors
/// A wrong PIN, a revoked person, a refusal.
pub fn sign(
    node_dir: &Path,
    device: &Device<'_>,
    message: &Path,
    out: &Path,
    pin_file: Option<&Path>,
) -> Result<String, CliError> {
    let id = device.id()?;
    let msg = read(message)?;
    let pin = pin(pin_file)?;
    let sig = sign_bytes(node_dir, device, &pin, &msg)?;
    std::fs::write(out, hex::encode(sig)).map_err(|e| CliError::io(out, &e))?;
    Ok(format!(
        "{id}: {} signed ({} bytes); signature in {}; the key is re-sealed for the next message",
        message.display(),
        msg.len(),
        out.display()
    ))
}

/// `sign change-pin`: on the device alone.
///
/// # Errors
/// A wrong old PIN.
pub fn change_pin(
    device: &Path,
    pin_file: Option<&Path>,
    new_pin_file: Option<&Path>,
) -> Result<String, CliError> {
    let mut file = DeviceFile::from_bytes(&read(device)?).map_err(rs)?;
    let old = pin(pin_file)?;
    let new = read_pin(new_pin_file, "POSTVAULT_NEW_PIN", "new PIN")?;
    check_new_pin(&new)?;
    let changed = file.change_pin(old.as_bytes(), new.as_bytes());
    write_private(device, &file.to_bytes().map_err(rs)?)?;
    changed.map_err(rs)?;
    Ok(format!(
        "{}: PIN changed on the device; the server was not needed",
        file.id
    ))
}

/// `sign revoke`: deletes the person's record on this node.
///
/// # Errors
/// No such record.
pub fn revoke(node_dir: &Path, id: &str) -> Result<String, CliError> {
    let path = record_path(node_dir, id)?;
    std::fs::remove_file(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            rs(postvault_remotesign::RemoteSignError::Revoked(
                id.to_owned(),
            ))
        } else {
            CliError::io(&path, &e)
        }
    })?;
    Ok(format!(
        "{id} revoked on {}: nothing signs for them here any more",
        node_dir.display()
    ))
}

/// `sign replicate`: a signing session on `node_dir` (the device approves a
/// replication statement) makes a copy for the node in `to`, which then
/// signs on its own.
///
/// # Errors
/// A wrong PIN, a revoked person, an existing record on `to`.
pub fn replicate(
    node_dir: &Path,
    to: &Path,
    device: &Device<'_>,
    pin_file: Option<&Path>,
) -> Result<String, CliError> {
    let id = device.id()?;
    if record_path(to, &id)?.exists() {
        return Err(CliError::Input(format!(
            "{id} has a record on {} already",
            to.display()
        )));
    }
    let node = open_node(node_dir)?;
    let target = open_node(to)?;
    let record = load_record(node_dir, &id)?;
    let statement = format!("replicate {id}'s signing key to {}", to.display()).into_bytes();
    let (record, challenge) = node
        .challenge(&record, &[target.replica_key().map_err(rs)?])
        .map_err(rs)?;
    save_record(node_dir, &record)?;
    let pin = pin(pin_file)?;
    let request = device.approve(&pin, &statement, &challenge)?;
    let (next, _, replicas) = node.sign(&record, &request, &statement).map_err(rs)?;
    save_record(node_dir, &next)?;
    let replica: &Replica = replicas
        .first()
        .ok_or_else(|| CliError::Check("no replica was made".into()))?;
    save_record(to, &target.import(replica).map_err(rs)?)?;
    Ok(format!(
        "{id}: a copy sealed to {} with its own random number; it signs on its own from now on",
        to.display()
    ))
}
