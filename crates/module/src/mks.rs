//! The master key set (MEK for encryption, MAK for authentication), its slots, and
//! the share ceremonies that clone it into other modules: Shamir shares over
//! GF(2^8), each sealed with HPKE to the destination module's transport key and
//! bound to its ceremony by the HPKE associated data.

use postvault_crypto::sig::{PublicKey, SigAlg, Signature, SigningKey};
use postvault_crypto::{Secret32, hash, hpke, shamir};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::codec;
use crate::error::{Error, Result};
use crate::role::UserId;

/// HPKE `info` for MKS shares.
const SHARE_INFO: &[u8] = b"postvault mks share v1";
/// Share file format version.
pub const SHARE_VERSION: u8 = 1;

/// Length of the shared secret: MKS id (16) || MEK (32) || MAK (32); every share value has this length.
pub const SECRET_LEN: usize = 80;

/// An MKS identifier: 16 random bytes.
pub type MksId = [u8; 16];

/// A master key set, as held inside the module.
#[derive(Clone, Serialize, Deserialize)]
pub struct MasterKeySet {
    /// Identifier (bound into every key token).
    pub id: MksId,
    /// Master encryption key.
    pub mek: Zeroizing<[u8; 32]>,
    /// Master authentication key.
    pub mak: Zeroizing<[u8; 32]>,
    /// Whether this module may export the MKS as shares.
    pub exportable: bool,
}

impl MasterKeySet {
    /// A fresh random MKS.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG fails.
    pub fn generate(exportable: bool) -> Result<Self> {
        Ok(Self {
            id: postvault_crypto::rand::bytes()?,
            mek: Zeroizing::new(*Secret32::generate()?.expose()),
            mak: Zeroizing::new(*Secret32::generate()?.expose()),
            exportable,
        })
    }

    /// The MEK as a crypto key.
    #[must_use]
    pub fn mek(&self) -> Secret32 {
        Secret32::from_bytes(*self.mek)
    }

    /// Public facts about the set.
    #[must_use]
    pub fn info(&self) -> MksInfo {
        MksInfo {
            id: self.id,
            exportable: self.exportable,
        }
    }

    fn secret(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new([&self.id[..], &self.mek[..], &self.mak[..]].concat())
    }

    fn from_secret(bytes: &[u8], exportable: bool) -> Result<Self> {
        let bad = || Error::ShareRefused {
            what: "the shares do not combine to a master key set",
        };
        let (id, rest) = bytes.split_first_chunk::<16>().ok_or_else(bad)?;
        let (mek, rest) = rest.split_first_chunk::<32>().ok_or_else(bad)?;
        let (mak, rest) = rest.split_first_chunk::<32>().ok_or_else(bad)?;
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            id: *id,
            mek: Zeroizing::new(*mek),
            mak: Zeroizing::new(*mak),
            exportable,
        })
    }
}

/// Public facts about an MKS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MksInfo {
    /// Identifier.
    pub id: MksId,
    /// Exportable or retained.
    pub exportable: bool,
}

/// The two MKS slots.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct MksSlots {
    /// The MKS used to make new tokens.
    pub active: Option<MasterKeySet>,
    /// A new MKS waiting for activation, or the previous one after activation.
    pub dormant: Option<MasterKeySet>,
}

/// The clear header of a share file; it is the HPKE associated data, so any change breaks the seal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareHeader {
    /// Format version.
    pub version: u8,
    /// The export ceremony's nonce.
    pub ceremony: [u8; 16],
    /// Serial of the exporting module.
    pub source: String,
    /// The exporting module's audit verification key (algorithm id, bytes); it signs the package.
    pub source_key: (u8, Vec<u8>),
    /// The MKS being shared.
    pub mks_id: MksId,
    /// This share's x-coordinate.
    pub share_id: u8,
    /// Shares created.
    pub shares: u8,
    /// Shares needed.
    pub threshold: u8,
    /// Whether the destination receives an exportable MKS.
    pub exportable: bool,
    /// The destination's transport public key.
    pub destination: [u8; 32],
    /// The key custodian who exported it.
    pub custodian: UserId,
}

/// A share file: header plus the HPKE-sealed share value, signed by the
/// exporting module's audit key (HPKE base mode alone would let anyone who knows
/// the destination's public transport key make shares of an MKS of their own).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharePackage {
    /// Clear header (authenticated).
    pub header: ShareHeader,
    /// HPKE enc || ciphertext || tag.
    pub sealed: Vec<u8>,
    /// Signature (algorithm id, bytes) by `header.source_key` over the label, header and sealed bytes.
    pub signature: (u8, Vec<u8>),
}

const SIGNATURE_LABEL: &[u8] = b"postvault mks share signature v1";

fn signed_bytes(header: &ShareHeader, sealed: &[u8]) -> Result<Vec<u8>> {
    Ok([SIGNATURE_LABEL, &codec::encode(header)?, sealed].concat())
}

/// The fingerprint of a module's audit verification key: SHA-256 over the
/// algorithm id and key bytes. Operators compare it to name a module.
#[must_use]
pub fn key_fingerprint(alg: u8, key: &[u8]) -> [u8; 32] {
    hash::sha256(&[b"postvault key fingerprint v1", &[alg], key])
}

impl SharePackage {
    /// Parses a share file.
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        codec::decode(bytes, "share file")
    }
}

/// An export ceremony in progress (kept in NVM).
#[derive(Clone, Serialize, Deserialize)]
pub struct ExportCeremony {
    /// Nonce.
    pub ceremony: [u8; 16],
    /// The MKS being exported.
    pub mks_id: MksId,
    /// Shares created.
    pub shares: u8,
    /// Threshold.
    pub threshold: u8,
    /// Exportable at the destination.
    pub exportable: bool,
    /// Shares not yet exported: (id, value).
    pub remaining: Vec<(u8, Zeroizing<Vec<u8>>)>,
    /// Destination, fixed by the first export.
    pub destination: Option<[u8; 32]>,
    /// Custodians who exported a share.
    pub exported_by: Vec<UserId>,
}

impl ExportCeremony {
    /// Splits the MKS into shares.
    ///
    /// # Errors
    /// [`Error::Mks`] for a retained MKS; [`Error::InvalidArgument`] for bad counts.
    pub fn create(mks: &MasterKeySet, shares: u8, threshold: u8, exportable: bool) -> Result<Self> {
        if !mks.exportable {
            return Err(Error::Mks {
                what: "the active master key set is retained and cannot be exported",
            });
        }
        if threshold < 2 || shares < threshold {
            return Err(Error::InvalidArgument {
                what: "shares and threshold: need 2 <= threshold <= shares",
            });
        }
        let split = shamir::split(&mks.secret(), threshold, shares)?;
        Ok(Self {
            ceremony: postvault_crypto::rand::bytes()?,
            mks_id: mks.id,
            shares,
            threshold,
            exportable,
            remaining: split
                .into_iter()
                .map(|s| (s.id, Zeroizing::new(s.value.expose().to_vec())))
                .collect(),
            destination: None,
            exported_by: Vec::new(),
        })
    }

    /// Exports the next share to `destination` for `custodian`.
    ///
    /// # Errors
    /// [`Error::ShareRefused`] if the custodian already exported one or the destination differs.
    pub fn export_next(
        &mut self,
        source: &str,
        signer: &SigningKey,
        custodian: &UserId,
        destination: [u8; 32],
    ) -> Result<SharePackage> {
        if self.exported_by.contains(custodian) {
            return Err(Error::ShareRefused {
                what: "each key custodian exports one share; log on as another custodian",
            });
        }
        if self.destination.is_some_and(|d| d != destination) {
            return Err(Error::ShareRefused {
                what: "every share of a ceremony goes to the same destination module",
            });
        }
        let pk = hpke::PublicKey::from_slice(&destination)?;
        let (share_id, value) = self.remaining.first().cloned().ok_or(Error::Mks {
            what: "all shares are exported",
        })?;
        let header = ShareHeader {
            version: SHARE_VERSION,
            ceremony: self.ceremony,
            source: source.to_owned(),
            source_key: {
                let pk = signer.public_key();
                (pk.alg().id(), pk.as_bytes().to_vec())
            },
            mks_id: self.mks_id,
            share_id,
            shares: self.shares,
            threshold: self.threshold,
            exportable: self.exportable,
            destination,
            custodian: custodian.clone(),
        };
        let sealed = hpke::seal(&pk, SHARE_INFO, &codec::encode(&header)?, &value)?;
        self.remaining.remove(0);
        self.destination = Some(destination);
        self.exported_by.push(custodian.clone());
        let signature = signer.sign(&signed_bytes(&header, &sealed)?)?;
        Ok(SharePackage {
            header,
            sealed,
            signature: (signature.alg().id(), signature.as_bytes().to_vec()),
        })
    }
}

/// An import ceremony in progress (kept in NVM).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ImportCeremony {
    /// Header of the first share; later shares must agree.
    pub first: Option<ShareHeader>,
    /// Received shares: (id, value, importing custodian).
    pub received: Vec<(u8, Zeroizing<Vec<u8>>, UserId)>,
}

impl ImportCeremony {
    /// Opens and records one share.
    ///
    /// # Errors
    /// [`Error::ShareRefused`] naming the binding that failed.
    pub fn import(
        &mut self,
        package: &SharePackage,
        transport: &hpke::PrivateKey,
        custodian: &UserId,
    ) -> Result<()> {
        let h = &package.header;
        if h.version != SHARE_VERSION {
            return Err(Error::ShareRefused {
                what: "unknown share format version",
            });
        }
        if &h.destination != transport.public_key()?.as_bytes() {
            return Err(Error::ShareRefused {
                what: "the share is sealed to another module's transport key",
            });
        }
        if let Some(first) = &self.first {
            if first.ceremony != h.ceremony {
                return Err(Error::ShareRefused {
                    what: "the share comes from another ceremony",
                });
            }
            if (
                first.mks_id,
                first.shares,
                first.threshold,
                first.exportable,
                &first.source,
                &first.source_key,
            ) != (
                h.mks_id,
                h.shares,
                h.threshold,
                h.exportable,
                &h.source,
                &h.source_key,
            ) {
                return Err(Error::ShareRefused {
                    what: "the share's header disagrees with the first share's",
                });
            }
        }
        if self.received.iter().any(|(id, _, _)| *id == h.share_id) {
            return Err(Error::ShareRefused {
                what: "this share was already imported",
            });
        }
        if self.received.iter().any(|(_, _, who)| who == custodian) {
            return Err(Error::ShareRefused {
                what: "each key custodian imports one share; log on as another custodian",
            });
        }
        let (alg, key) = &h.source_key;
        let (sig_alg, sig) = &package.signature;
        let message = signed_bytes(h, &package.sealed)?;
        SigAlg::from_id(*alg)
            .and_then(|a| PublicKey::from_bytes(a, key))
            .and_then(|pk| Ok((pk, Signature::from_bytes(SigAlg::from_id(*sig_alg)?, sig)?)))
            .and_then(|(pk, sig)| pk.verify(&message, &sig))
            .map_err(|_| Error::ShareRefused {
                what: "the share's signature does not verify with the exporting module's key",
            })?;
        let value = hpke::open(transport, SHARE_INFO, &codec::encode(h)?, &package.sealed).map_err(|_| {
            Error::ShareRefused {
                what: "the share does not open with this module's transport key (tampered or sealed elsewhere)",
            }
        })?;
        if value.len() != SECRET_LEN {
            return Err(Error::ShareRefused {
                what: "the share value has the wrong length",
            });
        }
        self.first.get_or_insert_with(|| h.clone());
        self.received.push((
            h.share_id,
            Zeroizing::new(value.expose().to_vec()),
            custodian.clone(),
        ));
        Ok(())
    }

    /// (received, threshold) once a share is in.
    #[must_use]
    pub fn progress(&self) -> Option<(u8, u8)> {
        let first = self.first.as_ref()?;
        Some((
            u8::try_from(self.received.len()).unwrap_or(u8::MAX),
            first.threshold,
        ))
    }

    /// Combines the shares into the MKS, after checking they come from the
    /// module whose audit key has fingerprint `source`.
    ///
    /// # Errors
    /// [`Error::NotEnoughShares`] below the threshold; [`Error::ShareRefused`] if they do not combine.
    pub fn combine(&self, source: &[u8; 32]) -> Result<MasterKeySet> {
        let Some(first) = &self.first else {
            return Err(Error::NotEnoughShares {
                have: 0,
                threshold: 2,
            });
        };
        if &key_fingerprint(first.source_key.0, &first.source_key.1) != source {
            return Err(Error::ShareRefused {
                what: "the shares come from another module than the one the security officer named",
            });
        }
        if self.received.len() < usize::from(first.threshold) {
            return Err(Error::NotEnoughShares {
                have: self.received.len(),
                threshold: first.threshold,
            });
        }
        let shares: Vec<shamir::Share> = self
            .received
            .iter()
            .map(|(id, v, _)| shamir::Share {
                id: *id,
                value: postvault_crypto::SecretBytes::new(v.to_vec()),
            })
            .collect();
        let secret = shamir::combine(&shares, first.threshold)?;
        let mks = MasterKeySet::from_secret(secret.expose(), first.exportable)?;
        if mks.id != first.mks_id {
            return Err(Error::ShareRefused {
                what: "the shares do not combine to the announced master key set",
            });
        }
        Ok(mks)
    }
}

/// Key check value: the first 8 bytes of SHA-256 over a domain label and the key.
#[must_use]
pub fn key_check_value(key: &[u8]) -> [u8; 8] {
    let h = hash::sha256(&[b"postvault kcv v1", key]);
    let mut out = [0u8; 8];
    out.copy_from_slice(h.get(..8).unwrap_or(&[0u8; 8]));
    out
}
