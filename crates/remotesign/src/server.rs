//! The server's side, inside the secure environment (the vault's module):
//! enrolment (figs. 10-11), challenges, signing (fig. 9), replication to
//! another node, and revocation by deleting the record.

use postvault_crypto::sig::{PublicKey, SigAlg, Signature, SigningKey};
use postvault_crypto::{Secret32, aead, hash, hpke, rand};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::device::Issued;
use crate::{RemoteSignError, Result, decode, encode, transport, variant};

const RECORD_VERSION: u8 = 1;
const REPLICA_INFO: &[u8] = b"postvault remotesign replica v1";

/// What the server hands the device before it approves a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The person.
    pub id: String,
    /// The record's counter (the x of RNx).
    pub counter: u64,
    /// RNx.
    pub current: [u8; 32],
    /// RN(x+1).
    pub next: [u8; 32],
    /// A random number per replica node to be made in this session.
    pub replicas: Vec<[u8; 32]>,
    /// The nodes those replicas go to (their receiving keys): the device
    /// approves them together with the message.
    pub replica_keys: Vec<[u8; 32]>,
}

impl Challenge {
    pub(crate) fn aad(&self) -> Vec<u8> {
        let mut out = b"postvault remotesign request v1".to_vec();
        out.extend_from_slice(
            &u32::try_from(self.id.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.current);
        out.extend_from_slice(&self.next);
        for r in self.replicas.iter().chain(self.replica_keys.iter()) {
            out.extend_from_slice(r);
        }
        out
    }
}

/// The device's approval of one message (fig. 8, step 885).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// The person.
    pub id: String,
    /// The counter of the challenge it answers.
    pub counter: u64,
    /// The variants, sealed under the key bound to the message and KCAR.
    pub sealed: Vec<u8>,
}

/// The secrets of a record, only ever in clear inside the secure environment.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Inner {
    kcar: [u8; 32],
    rn: [u8; 32],
    /// The private key (PKCS#8) under V(rn), bound to the person and counter.
    sk: Vec<u8>,
    /// The challenge handed out and not yet answered: RN(x+1), the replicas'
    /// RNs and the keys of the nodes they go to.
    pending: Option<Pending>,
}

type Pending = ([u8; 32], Vec<[u8; 32]>, Vec<[u8; 32]>);

/// One person's record on one node, as stored: every secret sealed under
/// the node's storage key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    version: u8,
    /// The person.
    pub id: String,
    /// Signatures made so far on this node (the x of RNx).
    pub counter: u64,
    /// The public key (algorithm id, bytes).
    pub public_key: (u8, Vec<u8>),
    sealed: Vec<u8>,
}

impl Record {
    /// The record as stored.
    ///
    /// # Errors
    /// Never in practice.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    /// Parses a stored record.
    ///
    /// # Errors
    /// [`RemoteSignError::Malformed`].
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        decode(b, "record")
    }
}

/// Another node's copy of a record, sealed to that node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The person.
    pub id: String,
    /// The public key.
    pub public_key: (u8, Vec<u8>),
    sealed: Vec<u8>,
}

/// A server node: its storage key (the module's master key in the vault)
/// and its key for receiving replicas.
pub struct Node {
    storage: Secret32,
    receive: hpke::PrivateKey,
}

fn record_aad(id: &str, counter: u64, public_key: &(u8, Vec<u8>)) -> Vec<u8> {
    [
        b"postvault remotesign record v1".as_slice(),
        &u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes(),
        id.as_bytes(),
        &counter.to_be_bytes(),
        &[public_key.0],
        &public_key.1,
    ]
    .concat()
}

fn replica_aad(id: &str, public_key: &(u8, Vec<u8>)) -> Vec<u8> {
    record_aad(id, 0, public_key)
}

fn key_aad(id: &str, counter: u64) -> Vec<u8> {
    [
        b"postvault remotesign key v1".as_slice(),
        id.as_bytes(),
        &counter.to_be_bytes(),
    ]
    .concat()
}

impl Node {
    /// A node with its storage key and replica-receiving key.
    #[must_use]
    pub fn new(storage: Secret32, receive: hpke::PrivateKey) -> Self {
        Self { storage, receive }
    }

    /// The key other nodes seal replicas to.
    ///
    /// # Errors
    /// Only if the key is malformed.
    pub fn replica_key(&self) -> Result<hpke::PublicKey> {
        Ok(self.receive.public_key()?)
    }

    fn seal(
        &self,
        id: &str,
        counter: u64,
        public_key: (u8, Vec<u8>),
        inner: &Inner,
    ) -> Result<Record> {
        let plain = Zeroizing::new(encode(inner)?);
        let sealed = aead::seal(&self.storage, &record_aad(id, counter, &public_key), &plain)?;
        Ok(Record {
            version: RECORD_VERSION,
            id: id.to_owned(),
            counter,
            public_key,
            sealed,
        })
    }

    fn open(&self, record: &Record) -> Result<Inner> {
        if record.version != RECORD_VERSION {
            return Err(RemoteSignError::Malformed {
                what: "record version",
            });
        }
        let plain = aead::open(
            &self.storage,
            &record_aad(&record.id, record.counter, &record.public_key),
            &record.sealed,
        )
        .map_err(|_| RemoteSignError::Malformed {
            what: "a record not sealed by this node",
        })?;
        decode(plain.expose(), "record")
    }

    /// Enrols a person (fig. 11): KEK1, KCAR and a key pair generated here;
    /// the private key sealed under V(RN1). Returns the record to store and
    /// what goes to the device; KEK1 is not kept.
    ///
    /// # Errors
    /// If key generation or randomness fails.
    pub fn enrol(&self, id: &str) -> Result<(Record, Issued)> {
        let kek1 = rand::secret32()?;
        let kcar = rand::secret32()?;
        let sk = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
        let public = sk.public_key();
        let rn: [u8; 32] = rand::bytes()?;
        let inner = Inner {
            kcar: *kcar.expose(),
            rn,
            sk: aead::seal(
                &variant(&kek1, &rn)?,
                &key_aad(id, 0),
                sk.to_pkcs8()?.expose(),
            )?,
            pending: None,
        };
        let record = self.seal(
            id,
            0,
            (public.alg().id(), public.as_bytes().to_vec()),
            &inner,
        )?;
        Ok((
            record,
            Issued {
                id: id.to_owned(),
                kek1,
                kcar,
            },
        ))
    }

    /// Step 880: RNx and a fresh RN(x+1) (and one per replica to make),
    /// remembered in the record until the device answers.
    ///
    /// # Errors
    /// A record this node did not seal.
    pub fn challenge(
        &self,
        record: &Record,
        replica_to: &[hpke::PublicKey],
    ) -> Result<(Record, Challenge)> {
        let mut inner = self.open(record)?;
        let next: [u8; 32] = rand::bytes()?;
        let keys: Vec<[u8; 32]> = replica_to.iter().map(|k| k.0).collect();
        let reps = (0..replica_to.len())
            .map(|_| rand::bytes())
            .collect::<postvault_crypto::Result<Vec<[u8; 32]>>>()?;
        inner.pending = Some((next, reps.clone(), keys.clone()));
        let challenge = Challenge {
            id: record.id.clone(),
            counter: record.counter,
            current: inner.rn,
            next,
            replicas: reps,
            replica_keys: keys,
        };
        Ok((
            self.seal(
                &record.id,
                record.counter,
                record.public_key.clone(),
                &inner,
            )?,
            challenge,
        ))
    }

    /// Signs `message` if `request` approves exactly it (fig. 9): the
    /// variants open only with this message's hash; the key opens only with
    /// V(RNx); it signs, is re-sealed under V(RN(x+1)), and every clear value
    /// is erased. Returns the new record (which replaces the old one), the
    /// signature, and a replica for each of `replica_to`.
    ///
    /// # Errors
    /// [`RemoteSignError::NotAuthorised`] for another message, a replay or an
    /// altered request; [`RemoteSignError::Stale`] for another person or session.
    pub fn sign(
        &self,
        record: &Record,
        request: &SignRequest,
        message: &[u8],
    ) -> Result<(Record, Signature, Vec<Replica>)> {
        if request.id != record.id {
            return Err(RemoteSignError::Stale {
                what: "another person's request",
            });
        }
        if request.counter != record.counter {
            return Err(RemoteSignError::Stale {
                what: "the request answers an earlier challenge",
            });
        }
        let inner = self.open(record)?;
        let (next, reps, keys) = inner.pending.clone().ok_or(RemoteSignError::Stale {
            what: "no challenge is outstanding",
        })?;
        let challenge = Challenge {
            id: record.id.clone(),
            counter: record.counter,
            current: inner.rn,
            next,
            replicas: reps.clone(),
            replica_keys: keys.clone(),
        };
        let kcar = Secret32::from_bytes(inner.kcar);
        let h = hash::sha256(&[message]);
        let variants = aead::open(&transport(&kcar, &h)?, &challenge.aad(), &request.sealed)
            .map_err(|_| RemoteSignError::NotAuthorised)?;
        let vs: Vec<Secret32> = variants
            .expose()
            .chunks_exact(32)
            .map(Secret32::from_slice)
            .collect::<postvault_crypto::Result<_>>()?;
        let (Some(v_now), Some(v_next)) = (vs.first(), vs.get(1)) else {
            return Err(RemoteSignError::NotAuthorised);
        };
        if vs.len() != 2 + reps.len() {
            return Err(RemoteSignError::NotAuthorised);
        }
        let pkcs8 = aead::open(v_now, &key_aad(&record.id, record.counter), &inner.sk)
            .map_err(|_| RemoteSignError::NotAuthorised)?;
        let sk = SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, pkcs8.expose())?;
        // The seed's one-way check of the recovered private key: its public
        // half (a one-way function of it) must be the enrolled one.
        if sk.public_key().as_bytes() != record.public_key.1.as_slice() {
            return Err(RemoteSignError::NotAuthorised);
        }
        let signature = sk.sign(message)?;
        let counter = record.counter.saturating_add(1);
        let next_inner = Inner {
            kcar: inner.kcar,
            rn: next,
            sk: aead::seal(v_next, &key_aad(&record.id, counter), pkcs8.expose())?,
            pending: None,
        };
        let new_record = self.seal(&record.id, counter, record.public_key.clone(), &next_inner)?;
        let mut replicas = Vec::new();
        for ((rn, v), to) in reps.iter().zip(vs.iter().skip(2)).zip(&keys) {
            let r = Inner {
                kcar: inner.kcar,
                rn: *rn,
                sk: aead::seal(v, &key_aad(&record.id, 0), pkcs8.expose())?,
                pending: None,
            };
            let plain = Zeroizing::new(encode(&r)?);
            replicas.push(Replica {
                id: record.id.clone(),
                public_key: record.public_key.clone(),
                sealed: hpke::seal(
                    &hpke::PublicKey(*to),
                    REPLICA_INFO,
                    &replica_aad(&record.id, &record.public_key),
                    &plain,
                )?,
            });
        }
        Ok((new_record, signature, replicas))
    }

    /// Takes a replica made for this node: from now on it signs for that
    /// person on its own, with its own random numbers.
    ///
    /// # Errors
    /// A replica sealed to another node.
    pub fn import(&self, replica: &Replica) -> Result<Record> {
        let plain = hpke::open(
            &self.receive,
            REPLICA_INFO,
            &replica_aad(&replica.id, &replica.public_key),
            &replica.sealed,
        )
        .map_err(|_| RemoteSignError::Malformed {
            what: "a replica for another node",
        })?;
        let inner: Inner = decode(plain.expose(), "replica")?;
        self.seal(&replica.id, 0, replica.public_key.clone(), &inner)
    }
}

/// Checks a signature made by [`Node::sign`] under the record's public key.
///
/// # Errors
/// If it does not verify.
pub fn verify(public_key: &(u8, Vec<u8>), message: &[u8], signature: &Signature) -> Result<()> {
    let pk = PublicKey::from_bytes(SigAlg::from_id(public_key.0)?, &public_key.1)?;
    Ok(pk.verify(message, signature)?)
}

/// The node's store of records; revocation is deleting one.
#[derive(Default)]
pub struct Records(std::collections::BTreeMap<String, Record>);

impl Records {
    /// Stores (or replaces) a record.
    pub fn put(&mut self, r: Record) {
        self.0.insert(r.id.clone(), r);
    }

    /// A person's record.
    ///
    /// # Errors
    /// [`RemoteSignError::Revoked`] if there is none.
    pub fn get(&self, id: &str) -> Result<&Record> {
        self.0
            .get(id)
            .ok_or_else(|| RemoteSignError::Revoked(id.to_owned()))
    }

    /// Revokes: deletes the record. Nothing on the device is needed.
    pub fn revoke(&mut self, id: &str) -> bool {
        self.0.remove(id).is_some()
    }
}
