//! A vault's data directory and its configuration file.
//!
//! ```text
//! DIR/vault.json          this configuration (JSON)
//! DIR/vault.db, audit.db  the store (SQLite)
//! DIR/modules/NAME/       one directory per module of the pool
//! DIR/postal/ca.pem       the postal CA certificate
//! DIR/postal/ca-key.pem   the CA's key (development vaults only; 0600)
//! DIR/postal/provider.key the provider's order-signing key, PKCS#8 (vaults made before remote signing)
//! DIR/remotesign/         the signing node: the provider's key, sealed under the officer's device's keys
//! DIR/postal/provider.device, provider.pin  the officer's device file and PIN (development only; 0600)
//! DIR/kms/kms.json        the key management system: its boxes and domains
//! DIR/kms/boxes/ID.box    each secure box's state, sealed under its operation combination
//! DIR/kms/shares/ID.share its operation shares (development vaults only; 0600)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The configuration file's name in a data directory.
pub const CONFIG_FILE: &str = "vault.json";
/// Where the server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8620";

/// A vault's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Format version of this file.
    pub version: u8,
    /// The vault's name, shown to clients.
    pub name: String,
    /// Module directories, relative to the data directory.
    pub modules: Vec<PathBuf>,
    /// Listen address.
    pub listen: String,
    /// Approve purchases and customers without an operator (development only).
    pub auto_approve: bool,
    /// Checkpoint mismatches between the module table and the modules after
    /// which the server stops processing PSD commands.
    pub max_checkpoint_mismatches: u32,
    /// The DR limit given to each customer when authorised, tenths of a cent.
    pub dr_limit: u64,
    /// Days a new meter's certificate is valid.
    pub certificate_days: u16,
    /// Two capital letters: the vendor code of the meters' device ids.
    pub vendor_code: String,
    /// SHA-256 (hex) of the auditor's bearer token for `/v1/audit`; none: no auditor access.
    #[serde(default)]
    pub auditor_token_sha256: Option<String>,
    /// Seconds between the audit service's verifications of the audit database.
    #[serde(default = "default_audit_interval")]
    pub audit_interval_seconds: u64,
    /// The post whose domain master keys every meter gets (version 2).
    #[serde(default = "default_postal_domain")]
    pub postal_domain: String,
    /// The country the meters are registered in: the KMS sub-domains
    /// `VE.<country>` and `<postal_domain>.<country>` (version 2).
    #[serde(default = "default_country")]
    pub country: String,
}

fn default_postal_domain() -> String {
    "USPS".into()
}

fn default_country() -> String {
    "US".into()
}

fn default_audit_interval() -> u64 {
    30
}

/// The configuration's format version. Version 1 (before the KMS) is read
/// and upgraded: its postal domain and country take their defaults.
pub const CONFIG_VERSION: u8 = 2;

/// What can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path}: {error}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: String,
    },
}

impl VaultConfig {
    /// Reads `file`.
    ///
    /// # Errors
    /// [`ConfigError`] if it cannot be read or is not valid.
    pub fn read(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|error| ConfigError::Io {
            path: file.to_owned(),
            error,
        })?;
        let mut config: Self = serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: file.to_owned(),
            error: e.to_string(),
        })?;
        if config.version == 1 {
            config.version = CONFIG_VERSION;
        }
        config.check().map_err(|error| ConfigError::Invalid {
            path: file.to_owned(),
            error,
        })?;
        Ok(config)
    }

    /// Writes `file`.
    ///
    /// # Errors
    /// [`ConfigError::Io`].
    pub fn write(&self, file: &Path) -> Result<(), ConfigError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            path: file.to_owned(),
            error: e.to_string(),
        })?;
        std::fs::write(file, text).map_err(|error| ConfigError::Io {
            path: file.to_owned(),
            error,
        })
    }

    fn check(&self) -> Result<(), String> {
        if self.version != CONFIG_VERSION {
            return Err(format!(
                "version {} (this program reads {CONFIG_VERSION})",
                self.version
            ));
        }
        if self.modules.is_empty() {
            return Err("no modules".into());
        }
        if self.max_checkpoint_mismatches == 0 {
            return Err("max_checkpoint_mismatches must be at least 1".into());
        }
        if self.vendor_code.len() != 2 || !self.vendor_code.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err("vendor_code: two capital letters".into());
        }
        postvault_kms::DomainId::new(&self.postal_domain)
            .ok()
            .filter(|d| !d.is_sub_domain() && d.as_str() != postvault_kms::ids::VENDOR)
            .ok_or("postal_domain: 2-8 capital letters or digits, not VE")?;
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("country: two capital letters (ISO 3166 alpha-2)".into());
        }
        Ok(())
    }

    /// The vendor code's bytes.
    #[must_use]
    pub fn vendor(&self) -> [u8; 2] {
        let b = self.vendor_code.as_bytes();
        [
            b.first().copied().unwrap_or(b'?'),
            b.get(1).copied().unwrap_or(b'?'),
        ]
    }
}

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir(PathBuf);

impl DataDir {
    /// The directory.
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        Self(dir.to_owned())
    }

    /// The directory itself.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The configuration file.
    #[must_use]
    pub fn config(&self) -> PathBuf {
        self.0.join(CONFIG_FILE)
    }

    /// Where the module directories live.
    #[must_use]
    pub fn modules(&self) -> PathBuf {
        self.0.join("modules")
    }

    /// The postal CA certificate (PEM).
    #[must_use]
    pub fn ca_certificate(&self) -> PathBuf {
        self.0.join("postal").join("ca.pem")
    }

    /// The postal CA key (PKCS#8 PEM).
    #[must_use]
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("postal").join("ca-key.pem")
    }

    /// The provider's order-signing key (PKCS#8 DER).
    #[must_use]
    pub fn provider_key(&self) -> PathBuf {
        self.0.join("postal").join("provider.key")
    }

    /// The remote-signing node that keeps the provider's private key sealed.
    #[must_use]
    pub fn signing_node(&self) -> PathBuf {
        self.0.join("remotesign")
    }

    /// The provider officer's device file (development vaults).
    #[must_use]
    pub fn provider_device(&self) -> PathBuf {
        self.0.join("postal").join("provider.device")
    }

    /// The provider officer's PIN (development vaults only).
    #[must_use]
    pub fn provider_pin(&self) -> PathBuf {
        self.0.join("postal").join("provider.pin")
    }

    /// The auditor's bearer token (development vaults).
    #[must_use]
    pub fn auditor_token(&self) -> PathBuf {
        self.0.join("auditor.token")
    }

    /// The key management system's directory.
    #[must_use]
    pub fn kms(&self) -> PathBuf {
        self.0.join("kms")
    }

    /// A configured module directory, resolved.
    #[must_use]
    pub fn module(&self, relative: &Path) -> PathBuf {
        self.0.join(relative)
    }
}
