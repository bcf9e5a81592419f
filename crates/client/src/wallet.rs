//! The customer's secrets file: everything the client keeps between runs,
//! sealed under a key derived from the passphrase (Argon2id, random salt).
//!
//! ```json
//! {"version": 1, "kdf": {"m_cost_kib": …, "t_cost": …, "p_cost": …},
//!  "salt": "<hex>", "sealed": "<hex AES-256-GCM of the contents>"}
//! ```
//!
//! A wrong passphrase, or any change to the file, fails to open it. The file
//! is written whole to a temporary name and renamed, so a crash leaves the old
//! or the new file, never half of one.

use std::path::Path;

use postvault_crypto::aead;
use postvault_crypto::password::{Argon2Params, derive_key};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::ClientError;

/// The file format version.
pub const WALLET_VERSION: u8 = 1;
const AAD: &[u8] = b"postvault wallet v1";

/// The vault the wallet belongs to, as pinned at registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub struct PinnedVault {
    /// The server's URL.
    pub server: String,
    /// The vendor key (HPKE public key), hex.
    pub vendor_key: String,
    /// The postal CA certificate, PEM.
    pub ca_certificate: String,
}

/// A signed-on session.
#[derive(Clone, Debug, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SessionState {
    /// The session token (only a module opens it).
    pub token: Vec<u8>,
    /// The session key.
    pub key: [u8; 32],
    /// The last message counter used.
    pub counter: u64,
    /// When the session ends (vault time, Unix seconds).
    pub expires: u64,
}

/// What the wallet holds.
#[derive(Clone, Debug, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct WalletContents {
    /// The vault.
    pub vault: PinnedVault,
    /// Customer id.
    pub customer_id: String,
    /// The meter's device id.
    pub device_id: [u8; 6],
    /// The meter's PSD certificate, PEM.
    pub psd_certificate: String,
    /// The customer's command MAC key.
    pub hmk: [u8; 32],
    /// The passphrase hash the PSD knows.
    pub passphrase_hash: [u8; 32],
    /// The challenge the next request carries.
    pub challenge: [u8; 16],
    /// The registers as last seen, tenths of a cent.
    pub ar: u64,
    /// Descending register, tenths of a cent.
    pub dr: u64,
    /// The current session, if signed on.
    pub session: Option<SessionState>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

#[derive(Serialize, Deserialize)]
struct WalletFile {
    version: u8,
    kdf: Kdf,
    salt: String,
    sealed: String,
}

/// A wallet: its contents and the key that seals them.
pub struct Wallet {
    /// The contents.
    pub contents: WalletContents,
    key: postvault_crypto::Secret32,
    kdf: Argon2Params,
    salt: [u8; 16],
}

impl Wallet {
    /// A new wallet sealed under `passphrase`.
    ///
    /// # Errors
    /// [`ClientError::Crypto`] if randomness or Argon2 fails.
    pub fn new(
        contents: WalletContents,
        passphrase: &str,
        kdf: Argon2Params,
    ) -> Result<Self, ClientError> {
        let salt = postvault_crypto::rand::bytes::<16>()?;
        let key = derive_key(passphrase.as_bytes(), &salt, kdf)?;
        Ok(Self {
            contents,
            key,
            kdf,
            salt,
        })
    }

    /// Opens the wallet at `path` with `passphrase`.
    ///
    /// # Errors
    /// [`ClientError::Wallet`] if it cannot be read, is not a wallet, or does
    /// not open (wrong passphrase or changed file).
    pub fn open(path: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let bad = |what: &str| ClientError::Wallet(format!("{}: {what}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?;
        let file: WalletFile = serde_json::from_str(&text).map_err(|_| bad("not a wallet file"))?;
        if file.version != WALLET_VERSION {
            return Err(bad(&format!(
                "wallet version {} is not {WALLET_VERSION}",
                file.version
            )));
        }
        let salt: [u8; 16] = hex::decode(&file.salt)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad("bad salt"))?;
        let kdf = Argon2Params {
            m_cost_kib: file.kdf.m_cost_kib,
            t_cost: file.kdf.t_cost,
            p_cost: file.kdf.p_cost,
        };
        let key = derive_key(passphrase.as_bytes(), &salt, kdf)?;
        let sealed = hex::decode(&file.sealed).map_err(|_| bad("bad contents"))?;
        let plain = aead::open(&key, AAD, &sealed)
            .map_err(|_| bad("wrong passphrase, or the file was changed"))?;
        let contents: WalletContents =
            serde_json::from_slice(plain.expose()).map_err(|_| bad("bad contents"))?;
        Ok(Self {
            contents,
            key,
            kdf,
            salt,
        })
    }

    /// Writes the wallet to `path` (0600 on Unix), atomically.
    ///
    /// # Errors
    /// [`ClientError::Wallet`] if it cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let bad = |e: std::io::Error| ClientError::Wallet(format!("{}: {e}", path.display()));
        let plain = Zeroizing::new(
            serde_json::to_vec(&self.contents).map_err(|e| ClientError::Wallet(e.to_string()))?,
        );
        let sealed = aead::seal(&self.key, AAD, &plain)?;
        let file = WalletFile {
            version: WALLET_VERSION,
            kdf: Kdf {
                m_cost_kib: self.kdf.m_cost_kib,
                t_cost: self.kdf.t_cost,
                p_cost: self.kdf.p_cost,
            },
            salt: hex::encode(self.salt),
            sealed: hex::encode(sealed),
        };
        let text =
            serde_json::to_string_pretty(&file).map_err(|e| ClientError::Wallet(e.to_string()))?;
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(bad)?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp).map_err(bad)?;
            f.write_all(text.as_bytes()).map_err(bad)?;
            f.sync_all().map_err(bad)?;
        }
        std::fs::rename(&tmp, path).map_err(bad)
    }
}
