//! The postal commands on PSD packages (seed 001), each running the seed's
//! checks in the seed's order before it changes anything:
//!
//! | command | authenticated by | states | result |
//! |---|---|---|---|
//! | Initialize PSD | nobody (physical access) | — | Raw |
//! | Authorize PSD | the CA's signature on the certificate | Raw | Unleased |
//! | Configure PSD | nobody; reply MAC'd with the new HMK | Unleased | Assigned |
//! | Authorize Customer | provider signature | Assigned | Leased |
//! | Postage value download | provider signature | Leased, PasswordReset | DR += v |
//! | Create (correction) indicium | customer MAC + challenge | Leased | DR −= v, AR += v |
//! | Redate indicium | customer MAC + challenge | Leased | no register change |
//! | Create refund indicium | provider signature | Leased, PasswordReset | AR += DR, DR = 0, Withdrawn |
//! | Begin / complete password reset | provider signature | Leased / PasswordReset | PasswordReset / Leased |
//! | Sign-on | passphrase sealed to the vendor key | Assigned, Leased | a session; failures counted |
//!
//! Functions here are pure: they take the opened package and return the new
//! body, the reply and the facts for the checkpoint; the module
//! ([`crate::module`]) checks the checkpoint first and commits afterwards.

use postvault_crypto::sig::{PublicKey, SigAlg, Signature, SigningKey};
use postvault_crypto::{Secret32, hpke, mac};
use postvault_indicium::cert::{Certificate, PsdCertificate, verify_chain};
use postvault_indicium::{Date, DeviceId, Indicium, IndiciumData, IndiciumKind, Money, ZipCode};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::checkpoint::{CheckpointRecord, CheckpointStore, Transaction, TransactionFacts};
use crate::codec;
use crate::command::Command;
use crate::cryptocard::CryptoCard;
use crate::error::{Error, PsdCheck, Result};
use crate::mks::MksSlots;
use crate::psd::{
    self, CustomerRecord, CustomerSecrets, DomainKeySlot, DomainRole, KeyRegistration,
    PACKAGE_VERSION, PASSPHRASE_HISTORY, PackageMacValid, PsdBody, PsdPackage, PsdState,
};
use crate::token::{KeyToken, KeyType, KeyUsage};

const ORDER_LABEL: &[u8] = b"postvault provider order v1";
/// Largest PSD certificate accepted (the CA's are about 600 bytes).
pub const MAX_CERTIFICATE: usize = 8192;
const REQUEST_LABEL: &[u8] = b"postvault customer request v1";
const REPLY_LABEL: &[u8] = b"postvault customer reply v1";

fn refuse<T>(check: PsdCheck) -> Result<T> {
    Err(Error::PsdCheck(check))
}

// ----- provider orders ------------------------------------------------------------

/// What the provider orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderAction {
    /// Licence issued: the originating ZIP and the meter's DR limit → Leased.
    AuthorizeCustomer {
        /// Licensing ZIP (ZIP5 * 10000 + plus4).
        licensing_zip: u32,
        /// Largest DR this meter may hold.
        #[serde(with = "crate::codec::tenths")]
        dr_limit: Money,
    },
    /// Funds received: add `amount` to the DR.
    Download {
        /// Value to add.
        #[serde(with = "crate::codec::tenths")]
        amount: Money,
        /// AR + DR as the provider last knew them (seed: "control total").
        #[serde(with = "crate::codec::tenths")]
        control_total: Money,
    },
    /// Take the meter out of service: a refund indicium for the whole DR → Withdrawn.
    Refund,
    /// The customer lost their passphrase (identity checked out of band) → PasswordReset.
    BeginPasswordReset,
    /// New customer secrets, sealed to the registration key → Leased.
    CompletePasswordReset {
        /// HPKE-sealed [`CustomerSecrets`].
        sealed_secrets: Vec<u8>,
    },
}

/// A provider order: for one meter, and for exactly one state of its package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderOrder {
    /// The meter number.
    pub device_id: [u8; 6],
    /// The MAC of the package the order applies to. Every transaction changes
    /// it, so an order runs once; and no other package (a meter initialised
    /// again under the same device id, a fork after Auto-Recover) has it.
    pub package_mac: [u8; 32],
    /// What to do.
    pub action: ProviderAction,
}

/// A provider order with the provider's signature over a label and its encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOrder {
    /// The order.
    pub order: ProviderOrder,
    /// Signature (raw, algorithm of the provider's key).
    pub signature: Vec<u8>,
}

impl SignedOrder {
    /// The provider side: signs an order.
    ///
    /// # Errors
    /// [`Error::Crypto`]; [`Error::Malformed`].
    pub fn sign(order: ProviderOrder, key: &SigningKey) -> Result<Self> {
        let signature = key.sign(&Self::signing_bytes(&order)?)?;
        Ok(Self::from_parts(order, signature.as_bytes().to_vec()))
    }

    /// What the provider's key signs for `order` (for a key held elsewhere,
    /// such as a remotely held one).
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn signing_bytes(order: &ProviderOrder) -> Result<Vec<u8>> {
        Ok([ORDER_LABEL, &codec::encode(order)?].concat())
    }

    /// An order and the provider's signature over [`SignedOrder::signing_bytes`].
    #[must_use]
    pub fn from_parts(order: ProviderOrder, signature: Vec<u8>) -> Self {
        Self { order, signature }
    }

    fn verify(&self, card: &CryptoCard) -> Result<()> {
        let bad = |_| Error::PsdCheck(PsdCheck::ProviderSignature);
        let (alg, key) = &card.settings.provider_key;
        let alg = SigAlg::from_id(*alg).map_err(bad)?;
        let key = PublicKey::from_bytes(alg, key).map_err(bad)?;
        let signature = Signature::from_bytes(alg, &self.signature).map_err(bad)?;
        let bytes = codec::encode(&self.order)?;
        key.verify(&[ORDER_LABEL, &bytes].concat(), &signature)
            .map_err(bad)
    }

    /// The command this order asks for.
    #[must_use]
    pub fn command(&self) -> Command {
        match self.order.action {
            ProviderAction::AuthorizeCustomer { .. } => Command::AuthorizeCustomer,
            ProviderAction::Download { .. } => Command::PostageValueDownload,
            ProviderAction::Refund => Command::CreateRefundIndicium,
            ProviderAction::BeginPasswordReset => Command::BeginPasswordReset,
            ProviderAction::CompletePasswordReset { .. } => Command::CompletePasswordReset,
        }
    }
}

// ----- customer requests and replies ----------------------------------------------

/// What the customer asks for an indicium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndiciumOrder {
    /// Postage value.
    #[serde(with = "crate::codec::tenths")]
    pub postage: Money,
    /// Mail class and shape code (14 bits).
    pub mail_class: u16,
    /// Destination ZIP (ZIP5 * 10000 + plus4), if known.
    pub destination_zip: Option<u32>,
    /// The client software's id.
    pub software_id: u16,
}

/// A customer command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerAction {
    /// Create indicium.
    Indicium(IndiciumOrder),
    /// Create correction indicium.
    Correction(IndiciumOrder),
    /// Reissue one of this meter's indicia with a new date, moving no value.
    Redate {
        /// The original indicium's bytes.
        original: Vec<u8>,
        /// The new date of mailing (days since 2000-01-01).
        date: u16,
    },
}

/// The MAC'd part of a customer request (seed 001, fig. 5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRequestBody {
    /// The meter number.
    pub device_id: [u8; 6],
    /// The challenge from the previous reply.
    pub challenge: [u8; 16],
    /// The client's ascending register.
    #[serde(with = "crate::codec::tenths")]
    pub local_ar: Money,
    /// The client's descending register.
    #[serde(with = "crate::codec::tenths")]
    pub local_dr: Money,
    /// The command.
    pub action: CustomerAction,
}

/// A customer request: the body and an HMAC under the customer's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRequest {
    /// The body.
    pub body: CustomerRequestBody,
    /// HMAC-SHA-256 under HMK over a label and the body's encoding.
    pub mac: [u8; 32],
}

impl CustomerRequest {
    /// The client side: MACs a request.
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn sign(body: CustomerRequestBody, hmk: &Secret32) -> Result<Self> {
        let bytes = codec::encode(&body)?;
        let mac = mac::hmac_sha256(hmk, &[REQUEST_LABEL, &bytes]);
        Ok(Self { body, mac })
    }

    /// The command this request asks for.
    #[must_use]
    pub fn command(&self) -> Command {
        match self.body.action {
            CustomerAction::Indicium(_) => Command::CreateIndicium,
            CustomerAction::Correction(_) => Command::CreateCorrectionIndicium,
            CustomerAction::Redate { .. } => Command::RedateIndicium,
        }
    }
}

/// The MAC'd part of a reply to the customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerReplyBody {
    /// The meter number.
    pub device_id: [u8; 6],
    /// The challenge the request carried (zeros for Configure PSD and password reset).
    pub echoed: [u8; 16],
    /// The challenge the next request must carry.
    pub challenge: [u8; 16],
    /// The meter's ascending register after the command.
    #[serde(with = "crate::codec::tenths")]
    pub ar: Money,
    /// The meter's descending register after the command.
    #[serde(with = "crate::codec::tenths")]
    pub dr: Money,
    /// The package's transaction count after the command.
    pub sequence: u64,
    /// The indicium, for indicium commands.
    pub indicium: Option<Vec<u8>>,
}

/// A reply to the customer, MAC'd with their key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerReply {
    /// The body.
    pub body: CustomerReplyBody,
    /// HMAC-SHA-256 under HMK over a label and the body's encoding.
    pub mac: [u8; 32],
    /// On the replies that install new secrets (Configure PSD, Complete
    /// password reset): the crypto-card's registration signing key's signature
    /// over the meter, the customer id, the new challenge and the vendor key
    /// (see [`crate::cryptocard::CardPublic::verify_registration`]).
    pub registration: Option<(u8, Vec<u8>)>,
}

impl CustomerReply {
    fn seal(body: CustomerReplyBody, hmk: &Secret32) -> Result<Self> {
        let bytes = codec::encode(&body)?;
        let mac = mac::hmac_sha256(hmk, &[REPLY_LABEL, &bytes]);
        Ok(Self {
            body,
            mac,
            registration: None,
        })
    }

    /// The client side: checks the module's MAC.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the MAC does not verify.
    pub fn verify(&self, hmk: &Secret32) -> Result<&CustomerReplyBody> {
        let bytes = codec::encode(&self.body)?;
        mac::verify_hmac_sha256(hmk, &[REPLY_LABEL, &bytes], &self.mac)?;
        Ok(&self.body)
    }
}

// ----- the request and reply as the module sees them --------------------------------

/// A postal command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PostalCommand {
    /// Initialize PSD with this device id.
    Initialize {
        /// Device id (indicium layout bytes).
        device_id: [u8; 6],
    },
    /// Authorize PSD with a certificate (DER) from the postal CA.
    Authorize {
        /// The package.
        package: PsdPackage,
        /// The PSD certificate, DER.
        certificate: Vec<u8>,
    },
    /// Configure PSD: assign a customer whose secrets are sealed to the registration key.
    Configure {
        /// The package.
        package: PsdPackage,
        /// Customer id.
        customer_id: String,
        /// HPKE-sealed [`CustomerSecrets`] (see [`psd::seal_customer_secrets`]).
        sealed_secrets: Vec<u8>,
    },
    /// A provider-signed order.
    Provider {
        /// The package.
        package: PsdPackage,
        /// The order.
        order: SignedOrder,
    },
    /// A customer-authenticated request.
    Customer {
        /// The package.
        package: PsdPackage,
        /// The request.
        request: CustomerRequest,
    },
    /// Sign-on (seed 000): the passphrase and a session key sealed to the vendor key.
    SignOn {
        /// The package.
        package: PsdPackage,
        /// The customer signing on.
        customer_id: String,
        /// [`crate::signon::SignOnSecrets`] sealed by [`crate::signon::seal_sign_on`].
        sealed: Vec<u8>,
    },
    /// KMS message MI5: a steel box installs a domain master key, sealed to
    /// the vendor key for this meter, domain, key id and role.
    InstallDomainKey {
        /// The package.
        package: PsdPackage,
        /// Vendor or postal.
        role: DomainRole,
        /// The install domain.
        domain: String,
        /// The key's id in its domain archive.
        key_id: u64,
        /// The key, HPKE-sealed with [`postvault_indicium::token::INSTALL_INFO`]
        /// and [`postvault_indicium::token::install_aad`].
        sealed_key: Vec<u8>,
    },
    /// KMS message MR1: the meter is given its indicia number and country and
    /// reports them under each of its domain master keys.
    RegisterDomainKeys {
        /// The package.
        package: PsdPackage,
        /// Indicia serial number (1-20 letters and digits).
        indicia_number: String,
        /// Country, ISO 3166 alpha-2 (two capital letters).
        country: String,
    },
}

impl PostalCommand {
    /// The command for the table.
    #[must_use]
    pub fn command(&self) -> Command {
        match self {
            PostalCommand::Initialize { .. } => Command::InitializePsd,
            PostalCommand::Authorize { .. } => Command::AuthorizePsd,
            PostalCommand::Configure { .. } => Command::ConfigurePsd,
            PostalCommand::Provider { order, .. } => order.command(),
            PostalCommand::Customer { request, .. } => request.command(),
            PostalCommand::SignOn { .. } => Command::SignOn,
            PostalCommand::InstallDomainKey { .. } => Command::InstallDomainKey,
            PostalCommand::RegisterDomainKeys { .. } => Command::RegisterDomainKeys,
        }
    }
}

/// A postal request: the command and the database's checkpoint record for this module.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PostalRequest {
    /// The module table's record for this module (`None` before its first PSD transaction).
    pub checkpoint: Option<CheckpointRecord>,
    /// The command.
    pub command: PostalCommand,
}

/// What a postal command returns besides the package and checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PostalOutcome {
    /// Initialize PSD: the public key and a certificate signing request for the CA.
    Initialized {
        /// Indicium signing public key (algorithm id, bytes).
        public_key: (u8, Vec<u8>),
        /// PKCS#10 request (DER) signed by the new key: subject the PSD's device id.
        certificate_request: Vec<u8>,
    },
    /// Done; nothing for anyone but the database.
    Done,
    /// A reply for the customer.
    Customer(CustomerReply),
    /// The refund indicium, for crediting the customer's account.
    Refund {
        /// Indicium bytes.
        indicium: Vec<u8>,
    },
    /// Sign-on succeeded.
    SignedOn {
        /// The session key as a token under the MKS, for the store.
        session: Vec<u8>,
        /// The [`crate::signon::SignOnAnswer`] sealed under the session key, for the client.
        answer: Vec<u8>,
    },
    /// KMS message MI6: the installed key's evidence, the test tokens.
    KeyInstalled {
        /// [`postvault_indicium::token::test_tokens`] under the installed key.
        test_tokens: [u8; 16],
    },
    /// KMS message MR1: one registration token per installed domain key.
    KeysRegistered {
        /// (role, install domain, key id, registration token).
        tokens: Vec<(DomainRole, String, u64, [u8; 16])>,
        /// The meter's registration date (days since 2000-01-01).
        date: u16,
    },
    /// Sign-on with a wrong passphrase: counted in the package.
    SignOnRefused {
        /// Wrong passphrases in a row.
        failures: u8,
        /// Whether sign-on is now locked.
        locked: bool,
    },
}

/// A postal reply: store the package and checkpoint, then release the outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PostalReply {
    /// The updated package.
    pub package: PsdPackage,
    /// The module's new checkpoint record, for the module table.
    pub checkpoint: CheckpointRecord,
    /// The outcome.
    pub outcome: PostalOutcome,
}

// ----- running a command -------------------------------------------------------------

/// What the module passes in.
pub(crate) struct Context<'a> {
    pub card: &'a CryptoCard,
    pub slots: &'a MksSlots,
    pub store: &'a CheckpointStore,
    pub now: u64,
}

/// A command's result, before the module commits it.
pub(crate) struct Step {
    pub package: PsdPackage,
    pub facts: TransactionFacts,
    pub outcome: PostalOutcome,
}

impl Context<'_> {
    /// Step 1 of every command on an existing package: its MAC, then that it is
    /// not older than the package this module last produced for the meter, nor
    /// a different package at the same transaction count (a fork). Newer is
    /// fine: other modules of the pool may have moved the meter on since.
    fn open(&self, package: &PsdPackage) -> Result<(PsdBody, PackageMacValid)> {
        let (body, proof) = package.open(self.slots)?;
        if let Some((seq, mac)) = self.store.last_package_of(&body.device_id)
            && (seq > body.sequence || (seq == body.sequence && mac != package.mac))
        {
            return refuse(PsdCheck::PackageStale);
        }
        Ok((body, proof))
    }

    /// The meter's certificate is still valid now.
    fn check_key_valid(&self, body: &PsdBody) -> Result<()> {
        let now = i64::try_from(self.now).unwrap_or(i64::MAX);
        if body.key_expiry.is_none_or(|t| now > t) {
            return refuse(PsdCheck::KeyExpired);
        }
        Ok(())
    }

    fn today(&self) -> Result<Date> {
        Date::from_unix_seconds(i64::try_from(self.now).unwrap_or(i64::MAX)).map_err(|_| {
            Error::InvalidArgument {
                what: "the module clock is outside the indicium's date range",
            }
        })
    }

    fn finish(
        &self,
        next: PsdBody,
        proof: &PackageMacValid,
        transaction: Transaction,
        amount: Money,
        outcome: PostalOutcome,
    ) -> Result<Step> {
        let package = PsdPackage::seal(&next, proof)?;
        Ok(Step {
            facts: facts(&next, &package, transaction, amount, self.now),
            package,
            outcome,
        })
    }
}

fn facts(
    body: &PsdBody,
    package: &PsdPackage,
    transaction: Transaction,
    amount: Money,
    now: u64,
) -> TransactionFacts {
    TransactionFacts {
        device_id: body.device_id,
        package_sequence: body.sequence,
        package_mac: package.mac,
        transaction,
        amount,
        ar: body.ar,
        dr: body.dr,
        time: now,
    }
}

fn advanced(body: &PsdBody, now: u64) -> PsdBody {
    PsdBody {
        last_transaction: now,
        sequence: body.sequence.saturating_add(1),
        ..body.clone()
    }
}

fn check_state(body: &PsdBody, allowed: &[PsdState]) -> Result<()> {
    if allowed.contains(&body.state) {
        Ok(())
    } else {
        refuse(PsdCheck::State)
    }
}

fn check_meter(body: &PsdBody, device_id: &[u8; 6]) -> Result<()> {
    if &body.device_id == device_id {
        Ok(())
    } else {
        refuse(PsdCheck::MeterNumber)
    }
}

fn add(a: Money, b: Money) -> Result<Money> {
    a.checked_add(b)
        .map_err(|_| Error::PsdCheck(PsdCheck::RegisterOverflow))
}

/// Runs one postal command's checks and computes its result.
pub(crate) fn run(ctx: &Context<'_>, command: PostalCommand) -> Result<Step> {
    match command {
        PostalCommand::Initialize { device_id } => initialize(ctx, device_id),
        PostalCommand::Authorize {
            package,
            certificate,
        } => authorize(ctx, &package, &certificate),
        PostalCommand::Configure {
            package,
            customer_id,
            sealed_secrets,
        } => configure(ctx, &package, &customer_id, &sealed_secrets),
        PostalCommand::Provider { package, order } => provider(ctx, &package, &order),
        PostalCommand::Customer { package, request } => customer(ctx, &package, &request),
        PostalCommand::SignOn {
            package,
            customer_id,
            sealed,
        } => sign_on(ctx, &package, &customer_id, &sealed),
        PostalCommand::InstallDomainKey {
            package,
            role,
            domain,
            key_id,
            sealed_key,
        } => install_domain_key(ctx, &package, role, &domain, key_id, &sealed_key),
        PostalCommand::RegisterDomainKeys {
            package,
            indicia_number,
            country,
        } => register_domain_keys(ctx, &package, &indicia_number, &country),
    }
}

/// Longest install domain id a meter accepts.
const MAX_DOMAIN_ID: usize = 32;
/// Largest sealed domain master key accepted (it is 32 + 48 bytes).
const MAX_SEALED_KEY: usize = 256;

fn role_byte(role: DomainRole) -> u8 {
    match role {
        DomainRole::Vendor => 1,
        DomainRole::Postal => 2,
    }
}

/// Install a domain master key (seed 002, MI5 → MI6): once per role, only
/// before the meter leaves manufacturing (Raw or Unleased); the key opens only
/// with the vendor key and only for this meter, domain, key id and role. The
/// reply is the test tokens under the installed key.
fn install_domain_key(
    ctx: &Context<'_>,
    package: &PsdPackage,
    role: DomainRole,
    domain: &str,
    key_id: u64,
    sealed_key: &[u8],
) -> Result<Step> {
    let (body, proof) = ctx.open(package)?;
    check_state(&body, &[PsdState::Raw, PsdState::Unleased])?;
    if domain.is_empty() || domain.len() > MAX_DOMAIN_ID || sealed_key.len() > MAX_SEALED_KEY {
        return refuse(PsdCheck::DomainKey);
    }
    if body
        .domain_keys
        .iter()
        .any(|s| s.role == role || (s.domain == domain && s.key_id == key_id))
    {
        return refuse(PsdCheck::DomainKeyInstalled);
    }
    let hpke_key =
        hpke::PrivateKey::from_secret(Secret32::from_bytes(*ctx.card.registration_hpke))?;
    let aad =
        postvault_indicium::token::install_aad(domain, key_id, body.device_id, role_byte(role));
    let key = hpke::open(
        &hpke_key,
        postvault_indicium::token::INSTALL_INFO,
        &aad,
        sealed_key,
    )
    .map_err(|_| Error::PsdCheck(PsdCheck::DomainKey))?;
    let key =
        Secret32::from_slice(key.expose()).map_err(|_| Error::PsdCheck(PsdCheck::DomainKey))?;
    let test_tokens = postvault_indicium::token::test_tokens(&key, domain)?;
    let mks = ctx.slots.active.as_ref().ok_or(Error::Mks {
        what: "there is no active master key set",
    })?;
    let token = KeyToken::seal(
        mks,
        KeyType::Secret32,
        KeyUsage::DomainMaster,
        &hex::encode(body.device_id),
        key.expose(),
    )?
    .encode()?;
    let mut domain_keys = body.domain_keys.clone();
    domain_keys.push(DomainKeySlot {
        role,
        domain: domain.to_owned(),
        key_id,
        key: token,
    });
    let next = PsdBody {
        domain_keys,
        ..advanced(&body, ctx.now)
    };
    ctx.finish(
        next,
        &proof,
        Transaction::InstallDomainKey,
        Money::ZERO,
        PostalOutcome::KeyInstalled { test_tokens },
    )
}

/// Register the domain keys (seed 002, MR1): the meter records its indicia
/// number, country and today's date, once, and reports them under each domain
/// master key. A meter registered to a country never moves again (an earth
/// domain meter never returns to the earth domain); asked again with the same
/// number and country it reports the same facts, with the stored date.
fn register_domain_keys(
    ctx: &Context<'_>,
    package: &PsdPackage,
    indicia_number: &str,
    country: &str,
) -> Result<Step> {
    let (body, proof) = ctx.open(package)?;
    check_state(
        &body,
        &[
            PsdState::Unleased,
            PsdState::Assigned,
            PsdState::Leased,
            PsdState::PasswordReset,
        ],
    )?;
    // Registered already: the same facts again re-issue the reports (so a
    // registration that stopped half-way can finish); others are refused.
    let date = match &body.key_registration {
        Some(r) if r.indicia_number == indicia_number && r.country == country => {
            Date::from_days(r.date)
        }
        Some(_) => return refuse(PsdCheck::KeysRegistered),
        None => ctx.today()?,
    };
    if indicia_number.is_empty()
        || indicia_number.len() > 20
        || !indicia_number.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::InvalidArgument {
            what: "indicia number: 1-20 letters and digits",
        });
    }
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::InvalidArgument {
            what: "country: two capital letters (ISO 3166 alpha-2)",
        });
    }
    let device =
        DeviceId::from_bytes(body.device_id).map_err(|_| Error::PsdCheck(PsdCheck::State))?;
    let facts = postvault_indicium::token::RegistrationFacts {
        device,
        indicia_number: indicia_number.to_owned(),
        country: country.to_owned(),
        date,
    };
    let mut tokens = Vec::new();
    for role in [DomainRole::Vendor, DomainRole::Postal] {
        let (domain, key) = psd::domain_master(&body, role, ctx.slots)?
            .ok_or(Error::PsdCheck(PsdCheck::DomainKey))?;
        let key_id = body
            .domain_keys
            .iter()
            .find(|s| s.role == role)
            .map_or(0, |s| s.key_id);
        let token = postvault_indicium::token::registration_token(&key, &domain, &facts)?;
        tokens.push((role, domain, key_id, token));
    }
    let next = PsdBody {
        key_registration: Some(KeyRegistration {
            indicia_number: facts.indicia_number,
            country: facts.country,
            date: date.days(),
        }),
        ..advanced(&body, ctx.now)
    };
    ctx.finish(
        next,
        &proof,
        Transaction::RegisterDomainKeys,
        Money::ZERO,
        PostalOutcome::KeysRegistered {
            tokens,
            date: date.days(),
        },
    )
}

/// The vendor and postal tokens of an indicium (seed 002): each the truncated
/// MAC of the covered bytes under the month's token key derived from the
/// domain master key; zero where no key is installed (a meter from before
/// the KMS).
fn tokens(ctx: &Context<'_>, body: &PsdBody, data: &IndiciumData) -> Result<([u8; 4], [u8; 4])> {
    use postvault_indicium::token::{Period, TokenKey, covered, token_key};
    let signed = data
        .encode_signed_part()
        .map_err(|_| Error::InvalidArgument {
            what: "the indicium's fields are outside the layout's ranges",
        })?;
    let covered = covered(&signed);
    let period = Period::of(data.date);
    let mut out = [[0u8; 4]; 2];
    for (slot, role) in out.iter_mut().zip([DomainRole::Vendor, DomainRole::Postal]) {
        if let Some((domain, master)) = psd::domain_master(body, role, ctx.slots)? {
            let key = token_key(&master, &domain, data.device_id, period)?;
            *slot = TokenKey::new(&key).token(&covered);
        }
    }
    let [vendor, postal] = out;
    Ok((vendor, postal))
}

/// Initialize PSD: keys, zero registers, Raw.
fn initialize(ctx: &Context<'_>, device_id: [u8; 6]) -> Result<Step> {
    let id = DeviceId::from_bytes(device_id).map_err(|_| Error::InvalidArgument {
        what: "device id: two letters A-Z and a 32-bit serial",
    })?;
    if ctx.store.last_package_of(&device_id).is_some() {
        return Err(Error::InvalidArgument {
            what: "this module made a package for that device id recently",
        });
    }
    let mks = ctx.slots.active.as_ref().ok_or(Error::Mks {
        what: "there is no active master key set",
    })?;
    let owner = hex::encode(device_id);
    let signing = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
    let public = signing.public_key();
    let seal =
        |t: KeyType, u: KeyUsage, key: &[u8]| KeyToken::seal(mks, t, u, &owner, key)?.encode();
    let body = PsdBody {
        version: PACKAGE_VERSION,
        device_id,
        state: PsdState::Raw,
        ar: Money::ZERO,
        dr: Money::ZERO,
        certificate_serial: None,
        key_expiry: None,
        licensing_zip: None,
        dr_limit: Money::ZERO,
        signing_key: seal(
            KeyType::Signing(public.alg().id()),
            KeyUsage::IndiciumSigning,
            signing.to_pkcs8()?.expose(),
        )?,
        mac_key: seal(
            KeyType::Secret32,
            KeyUsage::PackageMac,
            Secret32::generate()?.expose(),
        )?,
        kek: seal(
            KeyType::Secret32,
            KeyUsage::CustomerKek,
            Secret32::generate()?.expose(),
        )?,
        customer: None,
        passphrase_history: Vec::new(),
        last_transaction: ctx.now,
        last_challenge: postvault_crypto::rand::bytes()?,
        sequence: 0,
        failed_sign_ons: 0,
        domain_keys: Vec::new(),
        key_registration: None,
    };
    let certificate_request = postvault_indicium::cert::psd_certificate_request(&signing, id)
        .map_err(|_| Error::Psd {
            what: "the certificate request could not be made",
        })?;
    let package = PsdPackage::seal_new(&body, ctx.slots)?;
    Ok(Step {
        facts: facts(
            &body,
            &package,
            Transaction::Initialize,
            Money::ZERO,
            ctx.now,
        ),
        package,
        outcome: PostalOutcome::Initialized {
            public_key: (public.alg().id(), public.as_bytes().to_vec()),
            certificate_request,
        },
    })
}

/// Authorize PSD: the certificate must chain to the crypto-card's postal CA and
/// be valid now, and name this package's device id and signing key → Unleased.
fn authorize(ctx: &Context<'_>, package: &PsdPackage, certificate: &[u8]) -> Result<Step> {
    let (body, proof) = ctx.open(package)?;
    check_state(&body, &[PsdState::Raw])?;
    let bad = |_| Error::PsdCheck(PsdCheck::Certificate);
    if certificate.len() > MAX_CERTIFICATE {
        return refuse(PsdCheck::Certificate);
    }
    let ca = Certificate::from_der(&ctx.card.settings.ca_certificate).map_err(bad)?;
    let cert = PsdCertificate::from_certificate(Certificate::from_der(certificate).map_err(bad)?)
        .map_err(bad)?;
    verify_chain(&ca, cert.certificate(), ctx.today()?).map_err(bad)?;
    if cert.device_id().to_bytes() != body.device_id {
        return refuse(PsdCheck::CertificateDevice);
    }
    if cert.certificate().public_key() != Some(&psd::signing_public_key(&body, ctx.slots)?) {
        return refuse(PsdCheck::CertificateKey);
    }
    let next = PsdBody {
        state: PsdState::Unleased,
        certificate_serial: Some(cert.serial()),
        key_expiry: Some(cert.certificate().not_after_unix()),
        ..advanced(&body, ctx.now)
    };
    ctx.finish(
        next,
        &proof,
        Transaction::Authorize,
        Money::ZERO,
        PostalOutcome::Done,
    )
}

/// New secrets into the package: sealed under the KEK, the passphrase checked
/// against and added to the repetition list, a fresh challenge, and the reply
/// MAC'd with the new HMK so the client knows the module has it.
fn install_secrets(
    ctx: &Context<'_>,
    body: &PsdBody,
    customer_id: &str,
    sealed: &[u8],
) -> Result<(PsdBody, CustomerReply)> {
    let hpke_key =
        hpke::PrivateKey::from_secret(Secret32::from_bytes(*ctx.card.registration_hpke))?;
    let secrets = psd::open_registration_secrets(&hpke_key, &body.device_id, customer_id, sealed)?;
    let kek = psd::kek(body, ctx.slots)?;
    let entry = psd::history_entry(&kek, &secrets.passphrase);
    if body.passphrase_history.contains(&entry) {
        return refuse(PsdCheck::PassphraseReused);
    }
    let mut history = vec![entry];
    history.extend(
        body.passphrase_history
            .iter()
            .take(PASSPHRASE_HISTORY.saturating_sub(1))
            .copied(),
    );
    let next = PsdBody {
        customer: Some(CustomerRecord {
            id: customer_id.to_owned(),
            sealed: psd::seal_secrets(&kek, &body.device_id, customer_id, &secrets)?,
        }),
        passphrase_history: history,
        last_challenge: postvault_crypto::rand::bytes()?,
        failed_sign_ons: 0,
        ..advanced(body, ctx.now)
    };
    let mut reply = CustomerReply::seal(
        CustomerReplyBody {
            device_id: next.device_id,
            echoed: [0; 16],
            challenge: next.last_challenge,
            ar: next.ar,
            dr: next.dr,
            sequence: next.sequence,
            indicium: None,
        },
        &Secret32::from_bytes(*secrets.hmk),
    )?;
    reply.registration = Some(ctx.card.sign_registration(
        &next.device_id,
        customer_id,
        &next.last_challenge,
    )?);
    Ok((next, reply))
}

/// Configure PSD: not authenticated (seed 001); the customer's secrets open only
/// with the registration key, and the reply is MAC'd with their new HMK → Assigned.
fn configure(
    ctx: &Context<'_>,
    package: &PsdPackage,
    customer_id: &str,
    sealed: &[u8],
) -> Result<Step> {
    let (body, proof) = ctx.open(package)?;
    check_state(&body, &[PsdState::Unleased])?;
    psd::check_customer_id(customer_id)?;
    let (next, reply) = install_secrets(ctx, &body, customer_id, sealed)?;
    let next = PsdBody {
        state: PsdState::Assigned,
        ..next
    };
    ctx.finish(
        next,
        &proof,
        Transaction::Configure,
        Money::ZERO,
        PostalOutcome::Customer(reply),
    )
}

/// Provider orders: signature, package MAC, state, meter number, transaction
/// count; then each action's own checks.
fn provider(ctx: &Context<'_>, package: &PsdPackage, signed: &SignedOrder) -> Result<Step> {
    signed.verify(ctx.card)?;
    let (body, proof) = ctx.open(package)?;
    let order = &signed.order;
    let states: &[PsdState] = match order.action {
        ProviderAction::AuthorizeCustomer { .. } => &[PsdState::Assigned],
        ProviderAction::Download { .. } | ProviderAction::Refund => {
            &[PsdState::Leased, PsdState::PasswordReset]
        }
        ProviderAction::BeginPasswordReset => &[PsdState::Leased],
        ProviderAction::CompletePasswordReset { .. } => &[PsdState::PasswordReset],
    };
    check_state(&body, states)?;
    check_meter(&body, &order.device_id)?;
    if order.package_mac != package.mac {
        return refuse(PsdCheck::OrderPackage);
    }
    let settings = &ctx.card.settings;
    match &order.action {
        ProviderAction::AuthorizeCustomer {
            licensing_zip,
            dr_limit,
        } => {
            ZipCode::from_u32(*licensing_zip).map_err(|_| Error::InvalidArgument {
                what: "licensing ZIP: ZIP5 * 10000 + plus4",
            })?;
            if *dr_limit > settings.dr_ceiling {
                return refuse(PsdCheck::DrCeiling);
            }
            let next = PsdBody {
                state: PsdState::Leased,
                licensing_zip: Some(*licensing_zip),
                dr_limit: *dr_limit,
                ..advanced(&body, ctx.now)
            };
            ctx.finish(
                next,
                &proof,
                Transaction::AuthorizeCustomer,
                Money::ZERO,
                PostalOutcome::Done,
            )
        }
        ProviderAction::Download {
            amount,
            control_total,
        } => {
            if *amount == Money::ZERO {
                return Err(Error::InvalidArgument {
                    what: "a download adds a positive amount",
                });
            }
            // Ours: value loaded into a meter whose key has expired could only be refunded.
            ctx.check_key_valid(&body)?;
            let total = add(body.ar, body.dr)?;
            if *control_total != total {
                return refuse(PsdCheck::ControlTotal);
            }
            let dr = add(body.dr, *amount)?;
            if dr > settings.dr_ceiling || dr > body.dr_limit {
                return refuse(PsdCheck::DrCeiling);
            }
            if add(total, *amount)? > settings.ar_ceiling {
                return refuse(PsdCheck::ArCeiling);
            }
            let next = PsdBody {
                dr,
                ..advanced(&body, ctx.now)
            };
            ctx.finish(
                next,
                &proof,
                Transaction::Download,
                *amount,
                PostalOutcome::Done,
            )
        }
        ProviderAction::Refund => {
            // The seed: the same checks as Create Indicium with the provider in
            // place of the customer; the value is the whole DR, so the value
            // limits do not apply and the DR always suffices.
            let value = body.dr;
            let next = PsdBody {
                state: PsdState::Withdrawn,
                ar: add(body.ar, value)?,
                dr: Money::ZERO,
                ..advanced(&body, ctx.now)
            };
            let indicium = sign_indicium(ctx, &next, value, IndiciumKind::Refund, 0, None, 0)?;
            ctx.finish(
                next,
                &proof,
                Transaction::Refund,
                value,
                PostalOutcome::Refund { indicium },
            )
        }
        ProviderAction::BeginPasswordReset => {
            let next = PsdBody {
                state: PsdState::PasswordReset,
                ..advanced(&body, ctx.now)
            };
            ctx.finish(
                next,
                &proof,
                Transaction::BeginPasswordReset,
                Money::ZERO,
                PostalOutcome::Done,
            )
        }
        ProviderAction::CompletePasswordReset { sealed_secrets } => {
            let customer_id = body
                .customer
                .as_ref()
                .map(|c| c.id.clone())
                .ok_or(Error::PsdCheck(PsdCheck::State))?;
            let (next, reply) = install_secrets(ctx, &body, &customer_id, sealed_secrets)?;
            let next = PsdBody {
                state: PsdState::Leased,
                ..next
            };
            ctx.finish(
                next,
                &proof,
                Transaction::CompletePasswordReset,
                Money::ZERO,
                PostalOutcome::Customer(reply),
            )
        }
    }
}

/// Sign-on (seed 000): the passphrase inside the sealed sign-on must be the
/// package's. A wrong one is counted in the package (a transaction like any
/// other, so a restored database cannot forget it); at the limit sign-on locks
/// until the provider resets the passphrase. A right one clears the count,
/// turns the challenge, and answers under the client's session key with the
/// PSD-signed audit response; the session key goes back only as a token.
fn sign_on(
    ctx: &Context<'_>,
    package: &PsdPackage,
    customer_id: &str,
    sealed: &[u8],
) -> Result<Step> {
    use subtle::ConstantTimeEq;

    let (body, proof) = ctx.open(package)?;
    check_state(&body, &[PsdState::Assigned, PsdState::Leased])?;
    if body.customer.as_ref().is_none_or(|c| c.id != customer_id) {
        return refuse(PsdCheck::CustomerId);
    }
    if body.failed_sign_ons >= psd::MAX_SIGN_ON_FAILURES {
        return refuse(PsdCheck::AccountLocked);
    }
    let vendor_key =
        hpke::PrivateKey::from_secret(Secret32::from_bytes(*ctx.card.registration_hpke))?;
    let offered = crate::signon::open_sign_on(&vendor_key, &body.device_id, customer_id, sealed)?;
    let secrets = psd::open_secrets(&body, ctx.slots)?;
    if !bool::from(secrets.passphrase.ct_eq(&*offered.passphrase)) {
        let failures = body.failed_sign_ons.saturating_add(1);
        let next = PsdBody {
            failed_sign_ons: failures,
            ..advanced(&body, ctx.now)
        };
        return ctx.finish(
            next,
            &proof,
            Transaction::SignOnRefused,
            Money::ZERO,
            PostalOutcome::SignOnRefused {
                failures,
                locked: failures >= psd::MAX_SIGN_ON_FAILURES,
            },
        );
    }
    let next = PsdBody {
        failed_sign_ons: 0,
        last_challenge: postvault_crypto::rand::bytes()?,
        ..advanced(&body, ctx.now)
    };
    let expires = ctx.now.saturating_add(crate::signon::SESSION_SECONDS);
    let response = crate::signon::AuditResponse {
        device_id: next.device_id,
        nonce: offered.nonce,
        ar: next.ar,
        dr: next.dr,
        sequence: next.sequence,
        state: next.state,
        time: ctx.now,
    };
    let signature = response.sign(&psd::signing_key(&next, ctx.slots)?)?;
    let answer = crate::signon::SignOnAnswer {
        response,
        signature,
        challenge: next.last_challenge,
        expires,
    };
    let outcome = PostalOutcome::SignedOn {
        session: crate::signon::session_token(
            ctx.slots,
            &next.device_id,
            expires,
            &offered.session_key,
        )?,
        answer: crate::signon::seal_answer(
            &offered.session_key,
            &next.device_id,
            customer_id,
            &answer,
        )?,
    };
    ctx.finish(next, &proof, Transaction::SignOn, Money::ZERO, outcome)
}

/// Step 9: assembles and signs an indicium from the package after the register update.
fn sign_indicium(
    ctx: &Context<'_>,
    next: &PsdBody,
    postage: Money,
    kind: IndiciumKind,
    mail_class: u16,
    destination_zip: Option<u32>,
    software_id: u16,
) -> Result<Vec<u8>> {
    let not_ready = || Error::PsdCheck(PsdCheck::State);
    let bad_arg = |what| move |_| Error::InvalidArgument { what };
    let data = IndiciumData {
        alg: SigAlg::EcdsaP256Sha256,
        certificate_serial: next.certificate_serial.ok_or_else(not_ready)?,
        device_id: DeviceId::from_bytes(next.device_id).map_err(|_| not_ready())?,
        ascending_register: next.ar,
        postage,
        date: ctx.today()?,
        origin_zip: ZipCode::from_u32(next.licensing_zip.ok_or_else(not_ready)?)
            .map_err(|_| not_ready())?,
        software_id,
        descending_register: next.dr,
        rate_category: kind
            .rate_category(mail_class)
            .map_err(bad_arg("mail class: at most 14 bits"))?,
        mail_piece_id: u32::try_from(next.sequence & u64::from(u32::MAX)).unwrap_or(u32::MAX),
        destination_zip: destination_zip
            .map(ZipCode::from_u32)
            .transpose()
            .map_err(bad_arg("destination ZIP: ZIP5 * 10000 + plus4"))?,
        vendor_token: [0; 4],
        postal_token: [0; 4],
    };
    let (vendor_token, postal_token) = tokens(ctx, next, &data)?;
    let data = IndiciumData {
        vendor_token,
        postal_token,
        ..data
    };
    let key = psd::signing_key(next, ctx.slots)?;
    let indicium = Indicium::sign(data, &key).map_err(bad_arg(
        "the indicium's fields are outside the layout's ranges",
    ))?;
    Ok(indicium.to_bytes())
}

/// Customer commands: the seed's twelve steps of Create Indicium.
fn customer(ctx: &Context<'_>, package: &PsdPackage, request: &CustomerRequest) -> Result<Step> {
    // 1. The package MAC (and that the package is the newest this module knows).
    let (body, proof) = ctx.open(package)?;
    // 2. The state (and, ours, that the key's certificate is still valid:
    //    an indicium signed after it expires would not verify).
    check_state(&body, &[PsdState::Leased])?;
    ctx.check_key_valid(&body)?;
    let req = &request.body;
    // 3. The meter number.
    check_meter(&body, &req.device_id)?;
    // 4. The challenge from the last reply.
    if req.challenge != body.last_challenge {
        return refuse(PsdCheck::Challenge);
    }
    // 5. The customer's MAC under HMK from their secrets, and their registers.
    let secrets = psd::open_secrets(&body, ctx.slots)?;
    let hmk = Secret32::from_bytes(*secrets.hmk);
    let bytes = codec::encode(req)?;
    mac::verify_hmac_sha256(&hmk, &[REQUEST_LABEL, &bytes], &request.mac)
        .map_err(|_| Error::PsdCheck(PsdCheck::CustomerMac))?;
    // The client's AR must be the meter's (any other indicium moves it); its
    // DR may lag behind downloads it has not heard of yet, never lead.
    if req.local_ar != body.ar || req.local_dr > body.dr {
        return refuse(PsdCheck::ClientRegisters);
    }
    let (next, indicium, transaction, amount) = match &req.action {
        CustomerAction::Indicium(order) | CustomerAction::Correction(order) => {
            let (kind, transaction) = match req.action {
                CustomerAction::Correction(_) => {
                    (IndiciumKind::Correction, Transaction::Correction)
                }
                _ => (IndiciumKind::Postage, Transaction::Indicium),
            };
            // 6. The value limits.
            let limits = &ctx.card.settings;
            if order.postage < limits.min_value || order.postage > limits.max_value {
                return refuse(PsdCheck::ValueLimits);
            }
            // 7. Enough in the DR.
            let dr = body
                .dr
                .checked_sub(order.postage)
                .map_err(|_| Error::PsdCheck(PsdCheck::InsufficientFunds))?;
            // 8. DR −= v, AR += v.
            let next = PsdBody {
                dr,
                ar: add(body.ar, order.postage)?,
                last_challenge: postvault_crypto::rand::bytes()?,
                ..advanced(&body, ctx.now)
            };
            // 9. The indicium, signed.
            let indicium = sign_indicium(
                ctx,
                &next,
                order.postage,
                kind,
                order.mail_class,
                order.destination_zip,
                order.software_id,
            )?;
            (next, indicium, transaction, order.postage)
        }
        CustomerAction::Redate { original, date } => {
            let next = PsdBody {
                last_challenge: postvault_crypto::rand::bytes()?,
                ..advanced(&body, ctx.now)
            };
            let indicium = redate(ctx, &body, original, Date::from_days(*date))?;
            (next, indicium, Transaction::Redate, Money::ZERO)
        }
    };
    // 10. The reply, with the request's challenge and a new one, MAC'd with HMK.
    let reply = CustomerReply::seal(
        CustomerReplyBody {
            device_id: next.device_id,
            echoed: req.challenge,
            challenge: next.last_challenge,
            ar: next.ar,
            dr: next.dr,
            sequence: next.sequence,
            indicium: Some(indicium),
        },
        &hmk,
    )?;
    // 11. The package (here) and the checkpoint (by the module); 12. the audit entry (module).
    ctx.finish(
        next,
        &proof,
        transaction,
        amount,
        PostalOutcome::Customer(reply),
    )
}

/// Redating: the seed leaves it to the server because it moves no value. The
/// server builds the request with [`redated`]; the module only signs, after
/// checking that the original is this meter's, verifies under its key, and that
/// nothing but the date and the kind changes.
fn redate(ctx: &Context<'_>, body: &PsdBody, original: &[u8], date: Date) -> Result<Vec<u8>> {
    let bad = |_| Error::PsdCheck(PsdCheck::Redate);
    // Indicium::parse takes exactly one indicium's bytes and refuses any more.
    let original = Indicium::parse(original).map_err(bad)?;
    let key = psd::signing_key(body, ctx.slots)?;
    original.verify_signature(&key.public_key()).map_err(bad)?;
    let data = redated(original.data(), date).map_err(|_| Error::PsdCheck(PsdCheck::Redate))?;
    // The new date is the day the piece is actually mailed: today or
    // tomorrow, not before the original's, and within the key's validity. A
    // redate carries the original's device id and AR, so verifiers treat the
    // original and every redate of it as one mail piece (duplicate detection).
    let expiry = body
        .key_expiry
        .and_then(|t| Date::from_unix_seconds(t).ok())
        .ok_or(Error::PsdCheck(PsdCheck::KeyExpired))?;
    let today = ctx.today()?;
    let latest = today.checked_add_days(1).unwrap_or(today).min(expiry);
    if data.device_id.to_bytes() != body.device_id
        || original.data().kind() == IndiciumKind::Refund
        || date < original.data().date
        || date < today
        || date > latest
    {
        return refuse(PsdCheck::Redate);
    }
    // The tokens cover the date and the rate category: new ones, under the
    // new date's month.
    let (vendor_token, postal_token) = tokens(ctx, body, &data)?;
    let data = IndiciumData {
        vendor_token,
        postal_token,
        ..data
    };
    Ok(Indicium::sign(data, &key).map_err(bad)?.to_bytes())
}

/// The server's redating function (seed 001): the original's fields with a new
/// date and the redate kind; registers, value and ZIPs as the original had them
/// (the module then puts new tokens on it).
///
/// # Errors
/// [`Error::InvalidArgument`] if the original is a refund indicium.
pub fn redated(original: &IndiciumData, date: Date) -> Result<IndiciumData> {
    if original.kind() == IndiciumKind::Refund {
        return Err(Error::InvalidArgument {
            what: "a refund indicium is never redated",
        });
    }
    Ok(IndiciumData {
        date,
        rate_category: IndiciumKind::Redate
            .rate_category(original.mail_class())
            .map_err(|_| Error::InvalidArgument {
                what: "mail class: at most 14 bits",
            })?,
        ..original.clone()
    })
}

/// Client helper: customer secrets from an HMK and a passphrase hash.
#[must_use]
pub fn customer_secrets(hmk: &Secret32, passphrase_hash: [u8; 32]) -> CustomerSecrets {
    CustomerSecrets {
        hmk: Zeroizing::new(*hmk.expose()),
        passphrase: Zeroizing::new(passphrase_hash),
    }
}
