//! What the HTTP API does, independent of HTTP: meter generation,
//! registration, sign-on, the calls of a session, and the provider's side
//! (authorising customers, downloads after payment, refunds of meters).

use postvault_client::api::{
    self, Call, CallReply, HistoryItem, MeterCreated, Purchase, Register, Registered, SealedCall,
    SealedReply, SignOnRequest, SignedOn, VaultInfo,
};
use postvault_crypto::sig::SigningKey;
use postvault_indicium::cert::{Certificate, PostalCa, Validity};
use postvault_indicium::{Date, DeviceId, Money};
use postvault_module::codec;
use postvault_module::postal::{CustomerRequest, ProviderAction, ProviderOrder, SignedOrder};
use postvault_module::psd::PsdState;
use postvault_store::{MeterTx, PurchaseRow, PurchaseStatus, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::config::VaultConfig;
use crate::kms::VaultKms;
use crate::vault::{SignOn, Vault, VaultError};

/// Why the service refused, with what the client should see.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The vault refused or failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The key management system refused.
    #[error("key management: {0}")]
    Kms(#[from] postvault_kms::KmsError),
    /// Wrong passphrase at sign-on.
    #[error("wrong passphrase ({failures} in a row{})", if *locked { "; sign-on is now locked" } else { "" })]
    WrongPassphrase {
        /// Wrong passphrases in a row.
        failures: u8,
        /// Whether sign-on is now locked.
        locked: bool,
    },
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Vault(VaultError::Store(e))
    }
}

/// Result with [`ServiceError`].
pub type Result<T> = core::result::Result<T, ServiceError>;

/// What the server keeps about a customer besides their meter.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CustomerRecord {
    version: u8,
    licensing_zip: Option<u32>,
}

/// Largest hex field accepted in a request (the biggest, a sealed call, is a few KiB).
const MAX_HEX: usize = 2 * 64 * 1024 + 256;
/// Attempts at a provider order when the package moved between reading and locking it.
const ORDER_ATTEMPTS: usize = 3;
/// Longest client purchase or transaction id.
const MAX_CLIENT_ID: usize = 64;

fn unhex(text: &str, what: &str) -> Result<Vec<u8>> {
    if text.len() > MAX_HEX {
        return Err(ServiceError::BadRequest(format!("{what}: too long")));
    }
    hex::decode(text).map_err(|_| ServiceError::BadRequest(format!("{what}: not hex")))
}

fn device_of(text: &str) -> Result<DeviceId> {
    let bytes: [u8; 6] = unhex(text, "device id")?
        .try_into()
        .map_err(|_| ServiceError::BadRequest("device id: 6 bytes".into()))?;
    DeviceId::from_bytes(bytes).map_err(|e| ServiceError::BadRequest(format!("device id: {e}")))
}

fn client_id(text: &str, what: &str) -> Result<()> {
    if text.is_empty() || text.len() > MAX_CLIENT_ID || text.chars().any(char::is_control) {
        return Err(ServiceError::BadRequest(format!(
            "{what}: 1 to {MAX_CLIENT_ID} bytes, no control characters"
        )));
    }
    Ok(())
}

fn state_name(state: PsdState) -> &'static str {
    match state {
        PsdState::Raw => "raw",
        PsdState::Unleased => "unleased",
        PsdState::Assigned => "assigned",
        PsdState::Leased => "leased",
        PsdState::PasswordReset => "password_reset",
        PsdState::Withdrawn => "withdrawn",
    }
}

fn purchase_view(p: &PurchaseRow) -> Purchase {
    Purchase {
        purchase_id: p.id.clone(),
        amount: p.amount,
        status: p.status.name().to_owned(),
    }
}

/// Signs what the provider's key signs (an order's signing bytes) and
/// returns the signature: a key held remotely, approved on the provider
/// officer's device, or (for older vaults) a key in a file.
pub type OrderSigner = Box<dyn Fn(&[u8]) -> core::result::Result<Vec<u8>, String> + Send + Sync>;

/// An [`OrderSigner`] over a key in memory.
#[must_use]
pub fn local_signer(key: SigningKey) -> OrderSigner {
    Box::new(move |m| {
        key.sign(m)
            .map(|s| s.as_bytes().to_vec())
            .map_err(|e| e.to_string())
    })
}

/// The service: a vault, its CA and provider, and its configuration.
pub struct Service<S: Store> {
    vault: Vault<S>,
    ca: PostalCa,
    provider: OrderSigner,
    config: VaultConfig,
    vendor: (postvault_module::cryptocard::CardPublic, (u8, Vec<u8>)),
    audit_alarm: std::sync::Mutex<Option<String>>,
    kms: VaultKms<S>,
    /// One key installation at a time: oak and steel take key ids only in
    /// increasing order, so two meters made at once must not interleave.
    installing: tokio::sync::Mutex<()>,
}

impl<S: Store> Service<S> {
    /// A service over an opened vault; its vendor key and the signature over
    /// it come from the modules ([`Vault::vendor_key`]).
    ///
    /// # Errors
    /// The modules' refusal (no crypto-card loaded).
    pub async fn new(
        vault: Vault<S>,
        ca: PostalCa,
        provider: OrderSigner,
        config: VaultConfig,
        kms: VaultKms<S>,
    ) -> Result<Self> {
        let vendor = vault.vendor_key().await?;
        Ok(Self {
            vault,
            ca,
            provider,
            config,
            vendor,
            audit_alarm: std::sync::Mutex::new(None),
            kms,
            installing: tokio::sync::Mutex::new(()),
        })
    }

    /// The vault's key management system.
    pub fn kms(&self) -> &VaultKms<S> {
        &self.kms
    }

    /// Installs a vendor and a postal domain master key into a new meter
    /// (seed 002, figs. 24-25): oak generates each, steel seals it to the
    /// meter, the meter installs it and shows its test tokens, brass checks
    /// them against the archive's key. A Bad installation stops here.
    ///
    /// # Errors
    /// Any refusal on the way; [`postvault_kms::Fault::TestTokens`] for a Bad key.
    pub async fn install_domain_keys(&self, device: DeviceId) -> Result<()> {
        self.install_domain_keys_in(device, &self.kms.install_domains())
            .await
    }

    /// [`Service::install_domain_keys`] from these install domains (the
    /// vendor's first, then a post's or the earth domain's).
    ///
    /// # Errors
    /// As [`Service::install_domain_keys`].
    pub async fn install_domain_keys_in(
        &self,
        device: DeviceId,
        domains: &[postvault_kms::DomainId],
    ) -> Result<()> {
        let k = &self.kms.kms;
        let _one_at_a_time = self.installing.lock().await;
        for domain in domains {
            let mi4 = k.request_key(domain, self.kms.steel).await?;
            let mi5 = k.steel_install(
                self.kms.steel,
                &mi4,
                device.to_bytes(),
                self.vendor.0.registration_hpke,
                &self.vendor.1,
            )?;
            let role = if postvault_kms::role_of(domain) == 1 {
                postvault_module::psd::DomainRole::Vendor
            } else {
                postvault_module::psd::DomainRole::Postal
            };
            let test_tokens = self
                .vault
                .install_domain_key(device, role, domain.as_str(), mi5.key_id, mi5.sealed_key)
                .await?;
            let done = k
                .finish_install(
                    self.kms.steel,
                    &postvault_kms::message::MeterEvidence {
                        device: device.to_bytes(),
                        domain: domain.clone(),
                        key_id: mi5.key_id,
                        test_tokens,
                    },
                )
                .await?;
            tracing::info!(meter = %device, domain = %domain, key_id = done.key_id, status = done.status.name(), "domain master key installed");
            if done.status != postvault_kms::KeyStatus::Installed {
                return Err(postvault_kms::KmsError::refused(
                    postvault_kms::Fault::TestTokens,
                    format!("the {domain} key of meter {device} is Bad: its test tokens differ from the archive's"),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Registers a licensed meter's keys (seed 002, fig. 26, MR1-MR4): the
    /// meter reports its indicia number (its meter number) and country under
    /// each key; the country's brass processes check them and make the keys Active.
    ///
    /// # Errors
    /// Any refusal on the way.
    pub async fn register_domain_keys(&self, device: DeviceId) -> Result<()> {
        let country = self.kms.country.clone();
        self.register_domain_keys_in(device, &country).await
    }

    /// [`Service::register_domain_keys`] in `country`'s sub-domains of the
    /// meter's install domains (an earth domain meter is assigned to its
    /// country this way, once).
    ///
    /// # Errors
    /// As [`Service::register_domain_keys`].
    pub async fn register_domain_keys_in(&self, device: DeviceId, country: &str) -> Result<()> {
        let indicia_number = device.to_string();
        let (tokens, date) = self
            .vault
            .register_domain_keys(device, &indicia_number, country)
            .await?;
        for (_, domain, key_id, token) in tokens {
            let domain = postvault_kms::DomainId::new(&domain)?;
            let sub = domain.sub_domain(country)?;
            // A registration that stopped half-way: skip the keys already Active.
            let history =
                postvault_kms::Archive::history(self.kms.kms.archive(), &domain, key_id).await?;
            if history.last().is_some_and(|e| {
                e.status == postvault_kms::KeyStatus::Active && e.sub_domain.as_ref() == Some(&sub)
            }) {
                continue;
            }
            let report = postvault_kms::message::RegistrationReport {
                domain,
                key_id,
                device: device.to_bytes(),
                indicia_number: indicia_number.clone(),
                country: country.to_owned(),
                date,
                token,
            };
            self.kms.kms.register(&sub, &report).await?;
            tracing::info!(meter = %device, domain = %sub, key_id, "domain master key registered: active");
        }
        Ok(())
    }

    /// The provider takes a meter out of service: the refund indicium
    /// (Withdrawn), then its keys become Obsolete (seed 002, fig. 27): its
    /// tokens verify only for mail dated up to today.
    ///
    /// # Errors
    /// The module's or the KMS's refusal.
    pub async fn withdraw_meter(&self, device: DeviceId) -> Result<Vec<u8>> {
        let outcome = self.order(device, |_| ProviderAction::Refund).await?;
        let postvault_module::postal::PostalOutcome::Refund { indicium } = outcome else {
            return Err(VaultError::Pool("unexpected reply to the refund order".into()).into());
        };
        self.obsolete_keys(device).await?;
        Ok(indicium)
    }

    /// Makes every Active key of a meter Obsolete, in whichever country it
    /// is registered, as of today; returns how many changed. Run again after
    /// a failure, it finishes the job.
    ///
    /// # Errors
    /// The KMS's refusal.
    pub async fn obsolete_keys(&self, device: DeviceId) -> Result<usize> {
        let today = Self::today()?;
        let mut subs = Vec::new();
        for domain in self.kms.kms.domains()? {
            if domain.is_sub_domain() {
                continue;
            }
            let archive = self.kms.kms.archive();
            for e in postvault_kms::Archive::by_device(archive, &domain, device.to_bytes()).await? {
                if let (postvault_kms::KeyStatus::Active, Some(sub)) = (e.status, e.sub_domain)
                    && !subs.contains(&sub)
                {
                    subs.push(sub);
                }
            }
        }
        let mut n = 0;
        for sub in subs {
            let k = self
                .kms
                .kms
                .obsolete(&sub, device.to_bytes(), today.days())
                .await?;
            tracing::info!(meter = %device, domain = %sub, keys = k, "meter out of service: keys obsolete");
            n += k;
        }
        Ok(n)
    }

    /// Verifies an indicium's vendor and postal tokens (its signed part)
    /// with the brass processes of the country sub-domains where the meter's
    /// keys are registered (the vault's own country if it has none: the
    /// verdict is then "unknown meter").
    ///
    /// # Errors
    /// The KMS's refusal.
    pub async fn verify_tokens(&self, signed: &[u8]) -> Result<[postvault_kms::Verdict; 2]> {
        let [mut vendor, mut post] = self.kms.sub_domains()?;
        if let Some(device) = signed.get(6..12).and_then(|d| <[u8; 6]>::try_from(d).ok()) {
            for domain in self.kms.kms.domains()? {
                if domain.is_sub_domain() {
                    continue;
                }
                let archive = self.kms.kms.archive();
                for e in postvault_kms::Archive::by_device(archive, &domain, device).await? {
                    if let Some(sub) = e.sub_domain {
                        if postvault_kms::role_of(&domain) == 1 {
                            vendor = sub;
                        } else {
                            post = sub;
                        }
                    }
                }
            }
        }
        let v = self.kms.kms.verify(&vendor, vec![signed.to_vec()])?;
        let p = self.kms.kms.verify(&post, vec![signed.to_vec()])?;
        match (v.first(), p.first()) {
            (Some(v), Some(p)) => Ok([*v, *p]),
            _ => Err(ServiceError::BadRequest("no verdict".into())),
        }
    }

    /// The audit service's verification: every module's log in the audit
    /// database and every meter's registers across them. A failure raises
    /// the alarm (see [`Service::audit_alarm`]) with a log line naming the entry.
    ///
    /// # Errors
    /// [`crate::audit::AuditFailure`].
    pub async fn audit_now(
        &self,
    ) -> core::result::Result<crate::audit::AuditReport, crate::audit::AuditFailure> {
        let r = crate::audit::verify_store(self.vault.store()).await;
        let alarm = r.as_ref().err().map(ToString::to_string);
        if let Some(a) = &alarm {
            tracing::error!("AUDIT FAILURE: {a}");
        }
        if let Ok(mut g) = self.audit_alarm.lock() {
            *g = alarm;
        }
        r
    }

    /// The last audit failure, if the last verification failed.
    pub fn audit_alarm(&self) -> Option<String> {
        self.audit_alarm.lock().ok().and_then(|g| g.clone())
    }

    /// Whether `token` is the auditor's (constant time).
    #[must_use]
    pub fn is_auditor(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let Some(expected) = self
            .config
            .auditor_token_sha256
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        let got = postvault_crypto::hash::sha256(&[token.as_bytes()]);
        bool::from(got.as_slice().ct_eq(&expected))
    }

    /// The vault.
    pub fn vault(&self) -> &Vault<S> {
        &self.vault
    }

    /// The configuration.
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    /// `GET /v1/vault`.
    #[must_use]
    pub fn info(&self) -> VaultInfo {
        let (public, signature) = &self.vendor;
        VaultInfo {
            name: self.config.name.clone(),
            vendor_key: hex::encode(public.registration_hpke),
            vendor_key_signature_alg: signature.0,
            vendor_key_signature: hex::encode(&signature.1),
            registration_signing_alg: public.registration_signing.0,
            registration_signing_key: hex::encode(&public.registration_signing.1),
            ca_certificate: self.ca.certificate().to_pem(),
            auto_approve: self.config.auto_approve,
        }
    }

    fn today() -> Result<Date> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| ServiceError::BadRequest("the system clock is before 1970".into()))?;
        Date::from_unix_seconds(i64::try_from(now.as_secs()).unwrap_or(i64::MAX))
            .map_err(|e| ServiceError::Vault(VaultError::Certificate(e)))
    }

    /// `POST /v1/meters`: meter generation for a customer id not yet taken.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the customer id is taken; the module's or CA's refusal.
    pub async fn new_meter(&self, req: &api::NewMeter) -> Result<MeterCreated> {
        self.new_meter_in(req, &self.kms.install_domains()).await
    }

    /// [`Service::new_meter`] with domain master keys from these install domains.
    ///
    /// # Errors
    /// As [`Service::new_meter`].
    pub async fn new_meter_in(
        &self,
        req: &api::NewMeter,
        domains: &[postvault_kms::DomainId],
    ) -> Result<MeterCreated> {
        postvault_module::psd::check_customer_id(&req.customer_id)
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        if self
            .vault
            .store()
            .customer(&req.customer_id)
            .await?
            .is_some()
        {
            return Err(StoreError::Duplicate {
                what: "customer id",
            }
            .into());
        }
        let today = Self::today()?;
        let validity = Validity::new(
            today.checked_sub_days(1).unwrap_or(today),
            today
                .checked_add_days(self.config.certificate_days)
                .unwrap_or(today),
        )
        .map_err(VaultError::Certificate)?;
        // A random serial: the certificate serial and the device id's serial
        // are the same number, unique in the store (a collision is retried).
        let mut last = None;
        for _ in 0..4 {
            let serial = u32::from_be_bytes(
                postvault_crypto::rand::bytes::<4>()
                    .map_err(|e| ServiceError::BadRequest(e.to_string()))?,
            ) & 0x7fff_ffff;
            let device = DeviceId::new(self.config.vendor(), serial)
                .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
            match self
                .vault
                .generate_meter(&self.ca, device, serial, validity, today)
                .await
            {
                Ok(()) => {
                    self.install_domain_keys_in(device, domains).await?;
                    let record = serde_json::to_vec(&CustomerRecord {
                        version: 1,
                        licensing_zip: None,
                    })
                    .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
                    let mut tx = self.vault.store().begin().await?;
                    tx.put_customer(&req.customer_id, Some(device.to_bytes()), &record)
                        .await?;
                    tx.commit().await?;
                    return Ok(MeterCreated {
                        device_id: hex::encode(device.to_bytes()),
                        meter_number: device.to_string(),
                        certificate: self.certificate_pem(device).await?,
                    });
                }
                Err(VaultError::Store(StoreError::Duplicate { what })) => {
                    last = Some(StoreError::Duplicate { what });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or(StoreError::Duplicate {
                what: "device serial",
            })
            .into())
    }

    /// A meter's PSD certificate, PEM.
    async fn certificate_pem(&self, device: DeviceId) -> Result<String> {
        let der = self
            .vault
            .store()
            .certificate(device.to_bytes())
            .await?
            .ok_or(VaultError::NotFound("the meter's certificate"))?;
        Ok(Certificate::from_der(&der)
            .map_err(VaultError::Certificate)?
            .to_pem())
    }

    async fn customer_device(&self, customer_id: &str) -> Result<DeviceId> {
        let row = self
            .vault
            .store()
            .customer(customer_id)
            .await?
            .ok_or(VaultError::NotFound("no such customer"))?;
        let device = row
            .device_id
            .ok_or(VaultError::NotFound("the customer has no meter"))?;
        Ok(DeviceId::from_bytes(device).map_err(VaultError::Certificate)?)
    }

    /// `POST /v1/register`: Configure PSD with the customer's sealed secrets;
    /// with auto-approval the provider then licenses the customer at once.
    ///
    /// # Errors
    /// The module's refusal; an unknown customer or meter.
    pub async fn register(&self, req: &Register) -> Result<Registered> {
        let device = device_of(&req.device_id)?;
        if self.customer_device(&req.customer_id).await? != device {
            return Err(ServiceError::BadRequest(
                "this meter is not the customer's".into(),
            ));
        }
        postvault_indicium::ZipCode::from_u32(req.licensing_zip)
            .map_err(|_| ServiceError::BadRequest("licensing ZIP: ZIP5 * 10000 + plus4".into()))?;
        let reply = self
            .vault
            .configure(
                device,
                &req.customer_id,
                unhex(&req.sealed_secrets, "sealed secrets")?,
            )
            .await?;
        let record = serde_json::to_vec(&CustomerRecord {
            version: 1,
            licensing_zip: Some(req.licensing_zip),
        })
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let mut tx = self.vault.store().begin().await?;
        tx.put_customer(&req.customer_id, Some(device.to_bytes()), &record)
            .await?;
        tx.commit().await?;
        let mut state = "assigned";
        if self.config.auto_approve {
            self.authorize_customer(device, req.licensing_zip).await?;
            state = "leased";
        }
        Ok(Registered {
            reply: hex::encode(codec::encode(&reply).map_err(VaultError::Module)?),
            state: state.into(),
        })
    }

    /// The provider licenses a registered customer.
    ///
    /// # Errors
    /// The module's refusal.
    pub async fn authorize_customer(&self, device: DeviceId, licensing_zip: u32) -> Result<()> {
        self.order(device, |_| ProviderAction::AuthorizeCustomer {
            licensing_zip,
            dr_limit: Money::from_tenths(self.config.dr_limit),
        })
        .await?;
        let keys = self.vault.store().package(device.to_bytes()).await?;
        let has_keys = keys
            .map(|row| postvault_module::psd::PsdPackage::decode(&row.package))
            .transpose()
            .map_err(VaultError::Module)?
            .map(|p| p.peek())
            .transpose()
            .map_err(VaultError::Module)?
            .is_some_and(|b| !b.domain_keys.is_empty());
        // A meter from before the KMS has no keys to register.
        if has_keys {
            self.register_domain_keys(device).await?;
        }
        Ok(())
    }

    /// Signs a provider order for the meter's current package and runs it,
    /// again if the package moved between reading and locking it.
    async fn order(
        &self,
        device: DeviceId,
        action: impl Fn(&postvault_module::psd::PsdBody) -> ProviderAction,
    ) -> Result<postvault_module::postal::PostalOutcome> {
        self.order_for(device, None, action).await
    }

    async fn order_for(
        &self,
        device: DeviceId,
        purchase: Option<&str>,
        action: impl Fn(&postvault_module::psd::PsdBody) -> ProviderAction,
    ) -> Result<postvault_module::postal::PostalOutcome> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let row = self
                .vault
                .store()
                .package(device.to_bytes())
                .await?
                .ok_or(VaultError::NotFound("no meter with this device id"))?;
            let package = postvault_module::psd::PsdPackage::decode(&row.package)
                .map_err(VaultError::Module)?;
            let body = package.peek().map_err(VaultError::Module)?;
            let order = ProviderOrder {
                device_id: device.to_bytes(),
                package_mac: package.mac,
                action: action(&body),
            };
            let bytes = SignedOrder::signing_bytes(&order).map_err(VaultError::Module)?;
            // An internal error: the operator's command line shows why (a
            // wrong PIN, a locked device); an HTTP client sees only
            // "internal error" (see error_code), and the log has the rest.
            let signature = (self.provider)(&bytes).map_err(|e| {
                ServiceError::Vault(VaultError::Pool(format!(
                    "the provider's order could not be signed: {e}"
                )))
            })?;
            let order = SignedOrder::from_parts(order, signature);
            match self.vault.provider_for(device, order, purchase).await {
                Err(VaultError::Module(postvault_module::Error::PsdCheck(
                    postvault_module::PsdCheck::OrderPackage,
                ))) if attempt < ORDER_ATTEMPTS => {}
                other => return Ok(other?),
            }
        }
    }

    /// The provider licenses a registered customer at the licensing ZIP they
    /// registered with; returns their meter.
    ///
    /// # Errors
    /// An unknown or unregistered customer; the module's refusal.
    pub async fn authorize_registered(&self, customer_id: &str) -> Result<DeviceId> {
        let row = self
            .vault
            .store()
            .customer(customer_id)
            .await?
            .ok_or(VaultError::NotFound("no such customer"))?;
        let record: CustomerRecord = serde_json::from_slice(&row.record)
            .map_err(|e| ServiceError::BadRequest(format!("customer record: {e}")))?;
        let zip = record
            .licensing_zip
            .ok_or(VaultError::NotFound("the customer has not registered yet"))?;
        let device = self.customer_device(customer_id).await?;
        self.authorize_customer(device, zip).await?;
        Ok(device)
    }

    /// The provider downloads a pending purchase into its meter (after payment).
    ///
    /// # Errors
    /// The module's refusal (the purchase is then marked refused).
    pub async fn approve_purchase(&self, device: DeviceId, purchase_id: &str) -> Result<()> {
        let p = self
            .vault
            .store()
            .purchase(device.to_bytes(), purchase_id)
            .await?
            .ok_or(VaultError::NotFound("no such purchase"))?;
        if p.status != PurchaseStatus::Pending {
            return Ok(());
        }
        let amount = Money::from_tenths(p.amount);
        let result = self
            .order_for(device, Some(purchase_id), |body| ProviderAction::Download {
                amount,
                control_total: body.ar.checked_add(body.dr).unwrap_or(Money(u64::MAX)),
            })
            .await;
        // Only the module's definitive refusals close the purchase; a transient
        // failure (a busy meter, a stopped vault) leaves it pending.
        if let Err(ServiceError::Vault(VaultError::Module(postvault_module::Error::PsdCheck(
            postvault_module::PsdCheck::DrCeiling
            | postvault_module::PsdCheck::ArCeiling
            | postvault_module::PsdCheck::ControlTotal
            | postvault_module::PsdCheck::State
            | postvault_module::PsdCheck::KeyExpired,
        )))) = &result
        {
            let mut tx = self.vault.store().begin().await?;
            tx.set_purchase_status(device.to_bytes(), purchase_id, PurchaseStatus::Refused)
                .await?;
            tx.commit().await?;
        }
        result.map(|_| ())
    }

    /// The provider's view: purchases waiting for a download.
    ///
    /// # Errors
    /// A store failure.
    pub async fn pending_purchases(&self) -> Result<Vec<PurchaseRow>> {
        Ok(self
            .vault
            .store()
            .purchases(PurchaseStatus::Pending, 10_000)
            .await?)
    }

    /// `POST /v1/sign-on`.
    ///
    /// # Errors
    /// [`ServiceError::WrongPassphrase`]; the module's refusal (locked, ...).
    pub async fn sign_on(&self, req: &SignOnRequest) -> Result<SignedOn> {
        let device = self.customer_device(&req.customer_id).await?;
        match self
            .vault
            .sign_on(
                device,
                &req.customer_id,
                unhex(&req.sealed, "sealed sign-on")?,
            )
            .await?
        {
            SignOn::SignedOn { session, answer } => Ok(SignedOn {
                session: hex::encode(session),
                answer: hex::encode(answer),
                device_id: hex::encode(device.to_bytes()),
                certificate: self.certificate_pem(device).await?,
            }),
            SignOn::Refused { failures, locked } => {
                Err(ServiceError::WrongPassphrase { failures, locked })
            }
        }
    }

    /// `POST /v1/session`: opens the call in a module, runs it, seals the reply.
    ///
    /// # Errors
    /// Only what stops the session (it does not open, or the counter was
    /// used): a refused call is a sealed [`CallReply::Refused`].
    pub async fn session(&self, req: &SealedCall) -> Result<SealedReply> {
        let session = unhex(&req.session, "session")?;
        let (device, plain) = self
            .vault
            .open_message(&session, req.counter, unhex(&req.sealed, "sealed call")?)
            .await?;
        let reply = match serde_json::from_slice::<Call>(&plain) {
            Ok(call) => self
                .call(device, call)
                .await
                .unwrap_or_else(|e| refused(&e)),
            Err(e) => CallReply::Refused {
                code: "bad_request".into(),
                message: format!("call: {e}"),
            },
        };
        let bytes =
            serde_json::to_vec(&reply).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let sealed = self
            .vault
            .seal_message(&session, req.counter, bytes)
            .await?;
        Ok(SealedReply {
            sealed: hex::encode(sealed),
        })
    }

    async fn call(&self, device: DeviceId, call: Call) -> Result<CallReply> {
        let store = self.vault.store();
        let row = store
            .package(device.to_bytes())
            .await?
            .ok_or(VaultError::NotFound("no meter with this device id"))?;
        let customer_id = row
            .customer_id
            .clone()
            .ok_or(VaultError::NotFound("the meter has no customer"))?;
        let body = || -> Result<postvault_module::psd::PsdBody> {
            Ok(postvault_module::psd::PsdPackage::decode(&row.package)
                .and_then(|p| p.peek())
                .map_err(VaultError::Module)?)
        };
        match call {
            Call::Balance => {
                let b = body()?;
                let pending = store
                    .purchases(PurchaseStatus::Pending, 10_000)
                    .await?
                    .iter()
                    .filter(|p| p.device_id == device.to_bytes())
                    .map(purchase_view)
                    .collect();
                Ok(CallReply::Balance {
                    state: state_name(b.state).into(),
                    ar: b.ar.tenths(),
                    dr: b.dr.tenths(),
                    pending,
                })
            }
            Call::Buy {
                purchase_id,
                amount,
                control_total,
            } => {
                client_id(&purchase_id, "purchase id")?;
                if amount == 0 {
                    return Err(ServiceError::BadRequest("amount: more than zero".into()));
                }
                if store
                    .purchase(device.to_bytes(), &purchase_id)
                    .await?
                    .is_none()
                {
                    let b = body()?;
                    let total = b.ar.checked_add(b.dr).map_err(VaultError::Certificate)?;
                    if total.tenths() != control_total {
                        return Ok(CallReply::Refused {
                            code: "control_total".into(),
                            message: format!(
                                "the control total {} is not the meter's AR + DR {total}; sign on again to refresh the registers",
                                Money::from_tenths(control_total)
                            ),
                        });
                    }
                    let mut tx = store.begin().await?;
                    tx.put_purchase(&PurchaseRow {
                        device_id: device.to_bytes(),
                        id: purchase_id.clone(),
                        amount,
                        control_total,
                        status: PurchaseStatus::Pending,
                    })
                    .await?;
                    tx.commit().await?;
                    if self.config.auto_approve {
                        // A refusal is recorded on the purchase and shown below.
                        let _ = self.approve_purchase(device, &purchase_id).await;
                    }
                }
                let p = store
                    .purchase(device.to_bytes(), &purchase_id)
                    .await?
                    .ok_or(VaultError::NotFound("the purchase"))?;
                let after = store
                    .package(device.to_bytes())
                    .await?
                    .ok_or(VaultError::NotFound("the meter"))?;
                let b = postvault_module::psd::PsdPackage::decode(&after.package)
                    .and_then(|p| p.peek())
                    .map_err(VaultError::Module)?;
                Ok(CallReply::Purchase {
                    purchase: purchase_view(&p),
                    ar: b.ar.tenths(),
                    dr: b.dr.tenths(),
                })
            }
            Call::Customer {
                request,
                client_txn,
            } => {
                client_id(&client_txn, "client transaction id")?;
                let request: CustomerRequest =
                    codec::decode(&unhex(&request, "request")?, "customer request")
                        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
                let (reply, id) = self
                    .vault
                    .customer_request(device, &customer_id, request, Some(&client_txn))
                    .await?;
                Ok(CallReply::Customer {
                    reply: hex::encode(codec::encode(&reply).map_err(VaultError::Module)?),
                    indicium_id: id,
                })
            }
            Call::Reprint { id } => {
                let i = store
                    .indicium(id)
                    .await?
                    .filter(|i| i.device_id == device.to_bytes())
                    .ok_or(VaultError::NotFound(
                        "this meter has no indicium with that id",
                    ))?;
                Ok(CallReply::Indicium {
                    id,
                    bytes: hex::encode(i.bytes),
                })
            }
            Call::Refund { id } => {
                store.request_refund(device.to_bytes(), id).await?;
                Ok(CallReply::RefundRequested { id })
            }
            Call::History { limit } => {
                let items = store
                    .indicia_of(&customer_id, limit.min(1000))
                    .await?
                    .into_iter()
                    .map(|i| HistoryItem {
                        id: i.id,
                        kind: i.kind,
                        postage: i.postage,
                        ascending_register: i.ascending_register,
                        refund_requested: i.refund_requested,
                    })
                    .collect();
                Ok(CallReply::History { items })
            }
        }
    }
}

/// A stable code and message for an error.
#[must_use]
pub fn error_code(e: &ServiceError) -> (&'static str, String) {
    use postvault_module::Error as M;
    use postvault_module::PsdCheck as P;
    let mut message = e.to_string();
    let code = match e {
        ServiceError::BadRequest(_) => "bad_request",
        ServiceError::WrongPassphrase { locked: true, .. } => "locked",
        ServiceError::WrongPassphrase { .. } => "wrong_passphrase",
        ServiceError::Vault(v) => match v {
            VaultError::Halted { .. } => "halted",
            VaultError::NotFound(_) => "not_found",
            VaultError::Store(StoreError::Replayed { .. }) => "replayed",
            VaultError::Store(StoreError::Duplicate { .. }) => "duplicate",
            VaultError::Store(StoreError::NotFound { .. }) => "not_found",
            VaultError::Store(StoreError::Conflict { .. }) => "conflict",
            VaultError::Module(M::PsdCheck(c)) => match c {
                P::CheckpointMismatch => "checkpoint_mismatch",
                P::Inhibited => "inhibited",
                P::AccountLocked => "locked",
                P::Session => "session",
                P::Challenge => "challenge",
                P::CustomerMac => "customer_mac",
                P::ClientRegisters => "client_registers",
                P::InsufficientFunds => "insufficient_funds",
                P::ValueLimits => "value_limits",
                P::State => "state",
                P::CustomerId => "customer_id",
                P::CustomerSecrets => "customer_secrets",
                P::KeyExpired => "key_expired",
                P::PackageMac => "package_mac",
                P::PackageStale => "package_stale",
                P::ControlTotal => "control_total",
                P::DrCeiling => "dr_ceiling",
                _ => "refused",
            },
            VaultError::Module(M::InvalidArgument { .. } | M::Malformed { .. }) => "bad_request",
            _ => "internal",
        },
        ServiceError::Kms(k) => match k.fault() {
            Some(postvault_kms::Fault::Storage | postvault_kms::Fault::Crypto) | None => "internal",
            Some(f) => f.code(),
        },
    };
    if code == "internal" {
        tracing::error!(error = %e, "internal error");
        message = "internal error (the server's log has the details)".into();
    }
    (code, message)
}

fn refused(e: &ServiceError) -> CallReply {
    let (code, message) = error_code(e);
    CallReply::Refused {
        code: code.into(),
        message,
    }
}
