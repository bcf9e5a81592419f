//! The customer's client: registration, sign-on and sealed calls over HTTP.
//!
//! The client trusts nothing the server says that it can check: the PSD
//! certificate must chain to the CA pinned at registration and name the
//! customer's meter; the sign-on answer must open under the session key and
//! carry an audit response signed by that PSD over the client's nonce; every
//! PSD reply must verify under the customer's HMK and echo the challenge the
//! request carried; every indicium must verify under the PSD's key.

use postvault_crypto::password::Argon2Params;
use postvault_crypto::sig::PublicKey;
use postvault_crypto::{Secret32, hpke};
use postvault_indicium::cert::{Certificate, PsdCertificate, verify_chain};
use postvault_indicium::{Date, DeviceId, Indicium, Money};
use postvault_module::codec;
use postvault_module::postal::{
    CustomerAction, CustomerReply, CustomerReplyBody, CustomerRequest, CustomerRequestBody,
    IndiciumOrder, customer_secrets,
};
use postvault_module::signon::{self, Direction, SignOnSecrets};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::ClientError;
use crate::api::{
    ApiError, Call, CallReply, HistoryItem, MeterCreated, NewMeter, Purchase, Register, Registered,
    SealedCall, SealedReply, SignOnRequest, SignedOn, VaultInfo,
};
use crate::wallet::{PinnedVault, SessionState, Wallet, WalletContents};

/// How a passphrase becomes the hash the PSD keeps: Argon2id with a salt made
/// from the customer id, so the same passphrase gives different hashes for
/// different customers and the vault never sees the passphrase.
///
/// # Errors
/// [`ClientError::Crypto`] if Argon2 fails.
pub fn passphrase_hash(
    customer_id: &str,
    passphrase: &str,
    params: Argon2Params,
) -> Result<[u8; 32], ClientError> {
    let salt =
        postvault_crypto::hash::sha256(&[b"postvault passphrase salt v1", customer_id.as_bytes()]);
    let key = postvault_crypto::password::derive_key(passphrase.as_bytes(), &salt, params)?;
    Ok(*key.expose())
}

/// An HTTP connection to a vault.
#[derive(Clone)]
pub struct Connection {
    http: reqwest::Client,
    base: String,
}

impl Connection {
    /// A connection to the server at `base` (e.g. `http://127.0.0.1:8620`).
    ///
    /// # Errors
    /// [`ClientError::Http`] if the HTTP client cannot be built.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The server's URL.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| ClientError::Http(format!("{}: {e}", self.base)))?;
        Self::read(r).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Http(format!("{}: {e}", self.base)))?;
        Self::read(r).await
    }

    async fn read<T: DeserializeOwned>(r: reqwest::Response) -> Result<T, ClientError> {
        let status = r.status();
        let bytes = r
            .bytes()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Http(format!("unreadable reply: {e}")))
        } else {
            match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(e) => Err(ClientError::Api {
                    status: status.as_u16(),
                    error: e,
                }),
                Err(_) => Err(ClientError::Http(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ))),
            }
        }
    }

    /// `POST /v1/tokens/verify`: the brass processes' verdicts on an
    /// indicium's vendor and postal tokens, from the text of its fields.
    ///
    /// # Errors
    /// [`ClientError::Http`] / [`ClientError::Api`].
    pub async fn verify_tokens(
        &self,
        indicium_text: &str,
    ) -> Result<crate::api::TokenVerdicts, ClientError> {
        self.post(
            "/v1/tokens/verify",
            &crate::api::TokenCheck {
                indicium: indicium_text.to_owned(),
            },
        )
        .await
    }

    /// `GET /v1/vault`.
    ///
    /// # Errors
    /// [`ClientError::Http`] / [`ClientError::Api`].
    pub async fn vault_info(&self) -> Result<VaultInfo, ClientError> {
        self.get("/v1/vault").await
    }

    /// A raw sign-on (for tools and tests): the sealed secrets as given.
    ///
    /// # Errors
    /// [`ClientError::Api`] with the server's refusal.
    pub async fn sign_on_raw(&self, req: &SignOnRequest) -> Result<SignedOn, ClientError> {
        self.post("/v1/sign-on", req).await
    }

    /// A raw sealed call (for tools and tests).
    ///
    /// # Errors
    /// [`ClientError::Api`] with the server's refusal.
    pub async fn session_raw(&self, req: &SealedCall) -> Result<SealedReply, ClientError> {
        self.post("/v1/session", req).await
    }
}

fn check(what: impl Into<String>) -> ClientError {
    ClientError::Check(what.into())
}

fn unhex(text: &str, what: &str) -> Result<Vec<u8>, ClientError> {
    hex::decode(text).map_err(|_| check(format!("{what}: not hex")))
}

fn today() -> Result<Date, ClientError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| check("the system clock is before 1970"))?;
    Ok(Date::from_unix_seconds(
        i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
    )?)
}

/// Checks a PSD certificate against the pinned CA and the expected meter;
/// returns its public key.
fn psd_key(ca_pem: &str, psd_pem: &str, device: [u8; 6]) -> Result<PublicKey, ClientError> {
    let ca = Certificate::from_pem(ca_pem)?;
    let psd = PsdCertificate::from_pem(psd_pem)?;
    verify_chain(&ca, psd.certificate(), today()?).map_err(|e| {
        check(format!(
            "the PSD certificate does not chain to the vault's CA: {e}"
        ))
    })?;
    if psd.device_id().to_bytes() != device {
        return Err(check("the PSD certificate is for another meter"));
    }
    psd.certificate()
        .public_key()
        .cloned()
        .ok_or_else(|| check("the PSD certificate has no key"))
}

/// What registration needs.
pub struct Registration<'a> {
    /// Customer id.
    pub customer_id: &'a str,
    /// Passphrase.
    pub passphrase: &'a str,
    /// Licensing ZIP (ZIP5 * 10000 + plus4).
    pub licensing_zip: u32,
    /// The CA to require, PEM (otherwise the server's is pinned on first use).
    pub expect_ca: Option<&'a str>,
    /// The vault's registration signing key to require, hex (otherwise the
    /// server's is trusted on first use): it signs the vendor key, so a
    /// substituted vendor key is caught before any secret is sealed to it.
    pub expect_vault_key: Option<&'a str>,
    /// Argon2id cost for the passphrase hash and the wallet.
    pub kdf: Argon2Params,
}

/// A customer's client: a connection and an opened wallet.
pub struct Customer {
    conn: Connection,
    /// The wallet (save it after each call).
    pub wallet: Wallet,
}

/// A printed indicium.
pub struct Printed {
    /// Its store id (for reprint and refund).
    pub id: Option<i64>,
    /// The indicium, verified under the PSD's key.
    pub indicium: Indicium,
}

impl Customer {
    /// Registration: a new meter for this customer, its certificate checked
    /// against the CA, the customer's secrets sealed to the vendor key, and
    /// the module's reply checked under the new HMK.
    ///
    /// # Errors
    /// The server's refusal; [`ClientError::Check`] if anything fails to verify.
    pub async fn register(conn: Connection, r: &Registration<'_>) -> Result<Self, ClientError> {
        let info = conn.vault_info().await?;
        if let Some(key) = r.expect_vault_key
            && !key
                .trim()
                .eq_ignore_ascii_case(&info.registration_signing_key)
        {
            return Err(check(
                "the server's registration signing key is not the one expected",
            ));
        }
        let card = postvault_module::cryptocard::CardPublic {
            registration_signing: (
                info.registration_signing_alg,
                unhex(&info.registration_signing_key, "registration signing key")?,
            ),
            registration_hpke: unhex(&info.vendor_key, "vendor key")?
                .try_into()
                .map_err(|_| check("vendor key: 32 bytes"))?,
        };
        card.verify_vendor_key(&(
            info.vendor_key_signature_alg,
            unhex(&info.vendor_key_signature, "vendor key signature")?,
        ))
        .map_err(|_| {
            check("the vendor key is not signed by the vault's registration signing key")
        })?;
        if let Some(ca) = r.expect_ca
            && Certificate::from_pem(ca)?.der()
                != Certificate::from_pem(&info.ca_certificate)?.der()
        {
            return Err(check("the server's postal CA is not the one expected"));
        }
        let meter: MeterCreated = conn
            .post(
                "/v1/meters",
                &NewMeter {
                    customer_id: r.customer_id.into(),
                },
            )
            .await?;
        let device: [u8; 6] = unhex(&meter.device_id, "device id")?
            .try_into()
            .map_err(|_| check("device id: 6 bytes"))?;
        psd_key(&info.ca_certificate, &meter.certificate, device)?;
        let hmk = Secret32::generate()?;
        let hash = passphrase_hash(r.customer_id, r.passphrase, r.kdf)?;
        let vendor = hpke::PublicKey::from_slice(&unhex(&info.vendor_key, "vendor key")?)?;
        let sealed = postvault_module::psd::seal_customer_secrets(
            &vendor,
            &device,
            r.customer_id,
            &customer_secrets(&hmk, hash),
        )?;
        let registered: Registered = conn
            .post(
                "/v1/register",
                &Register {
                    customer_id: r.customer_id.into(),
                    device_id: meter.device_id.clone(),
                    sealed_secrets: hex::encode(sealed),
                    licensing_zip: r.licensing_zip,
                },
            )
            .await?;
        let reply: CustomerReply = codec::decode(&unhex(&registered.reply, "reply")?, "reply")?;
        let body = reply
            .verify(&hmk)
            .map_err(|_| check("the registration reply does not verify under the new key"))?;
        if body.device_id != device {
            return Err(check("the registration reply is for another meter"));
        }
        let signature = reply
            .registration
            .as_ref()
            .ok_or_else(|| check("the registration reply is not signed"))?;
        card.verify_registration(&device, r.customer_id, &body.challenge, signature)
            .map_err(|_| {
                check(
                    "the registration reply is not signed by the vault's registration signing key",
                )
            })?;
        let contents = WalletContents {
            vault: PinnedVault {
                server: conn.base().to_owned(),
                vendor_key: info.vendor_key,
                ca_certificate: info.ca_certificate,
            },
            customer_id: r.customer_id.into(),
            device_id: device,
            psd_certificate: meter.certificate,
            hmk: *hmk.expose(),
            passphrase_hash: hash,
            challenge: body.challenge,
            ar: body.ar.tenths(),
            dr: body.dr.tenths(),
            session: None,
        };
        Ok(Self {
            conn,
            wallet: Wallet::new(contents, r.passphrase, r.kdf)?,
        })
    }

    /// The connection to the vault.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// A customer from an opened wallet.
    #[must_use]
    pub fn from_wallet(conn: Connection, wallet: Wallet) -> Self {
        Self { conn, wallet }
    }

    /// The meter's device id.
    ///
    /// # Errors
    /// [`ClientError::Check`] for a malformed id in the wallet.
    pub fn device(&self) -> Result<DeviceId, ClientError> {
        Ok(DeviceId::from_bytes(self.wallet.contents.device_id)?)
    }

    /// Sign-on (seed 000): a fresh session key and nonce sealed with the
    /// passphrase hash to the vendor key; the answer must open under the
    /// session key, and its audit response must be the PSD's signature over
    /// our nonce.
    ///
    /// # Errors
    /// [`ClientError::Api`] (`wrong_passphrase`, `locked`, ...); [`ClientError::Check`].
    pub async fn sign_on(&mut self) -> Result<(), ClientError> {
        let w = &self.wallet.contents;
        let key = Zeroizing::new(postvault_crypto::rand::bytes::<32>()?);
        let nonce = postvault_crypto::rand::bytes::<16>()?;
        let vendor = hpke::PublicKey::from_slice(&unhex(&w.vault.vendor_key, "vendor key")?)?;
        let sealed = signon::seal_sign_on(
            &vendor,
            &w.device_id,
            &w.customer_id,
            &SignOnSecrets {
                passphrase: Zeroizing::new(w.passphrase_hash),
                session_key: key.clone(),
                nonce,
            },
        )?;
        let signed: SignedOn = self
            .conn
            .sign_on_raw(&SignOnRequest {
                customer_id: w.customer_id.clone(),
                sealed: hex::encode(sealed),
            })
            .await?;
        let answer = signon::open_answer(
            &key,
            &w.device_id,
            &w.customer_id,
            &unhex(&signed.answer, "answer")?,
        )
        .map_err(|_| check("the sign-on answer does not open under our session key"))?;
        let pk = psd_key(&w.vault.ca_certificate, &signed.certificate, w.device_id)?;
        answer
            .response
            .verify(&pk, &answer.signature)
            .map_err(|_| check("the audit response is not signed by our PSD"))?;
        if answer.response.nonce != nonce || answer.response.device_id != w.device_id {
            return Err(check("the audit response is not for this sign-on"));
        }
        let token = unhex(&signed.session, "session")?;
        let w = &mut self.wallet.contents;
        w.challenge = answer.challenge;
        w.ar = answer.response.ar.tenths();
        w.dr = answer.response.dr.tenths();
        w.psd_certificate = signed.certificate;
        w.session = Some(SessionState {
            token,
            key: *key,
            counter: 0,
            expires: answer.expires,
        });
        Ok(())
    }

    /// One sealed call; signs on first if there is no session, and once more
    /// if the vault says the session is over.
    ///
    /// # Errors
    /// [`ClientError::Refused`] for a refused call; the server's or transport's errors.
    pub async fn call(&mut self, call: &Call) -> Result<CallReply, ClientError> {
        if self.wallet.contents.session.is_none() {
            self.sign_on().await?;
        }
        match self.call_once(call).await {
            // The session ended, or a counter was used by a run that died
            // before saving the wallet: sign on again and retry once.
            Err(ClientError::Api { error, .. })
                if error.code == "session" || error.code == "replayed" =>
            {
                self.sign_on().await?;
                self.call_once(call).await
            }
            other => other,
        }
    }

    async fn call_once(&mut self, call: &Call) -> Result<CallReply, ClientError> {
        let device = self.wallet.contents.device_id;
        let s = self
            .wallet
            .contents
            .session
            .as_mut()
            .ok_or_else(|| check("not signed on"))?;
        s.counter = s.counter.saturating_add(1);
        let counter = s.counter;
        let key = s.key;
        let token = s.token.clone();
        let plain = serde_json::to_vec(call).map_err(|e| check(e.to_string()))?;
        let sealed = signon::seal_message(&key, &device, Direction::Request, counter, &plain)?;
        let reply = self
            .conn
            .session_raw(&SealedCall {
                session: hex::encode(&token),
                counter,
                sealed: hex::encode(sealed),
            })
            .await?;
        let plain = signon::open_message(
            &key,
            &device,
            Direction::Reply,
            counter,
            &unhex(&reply.sealed, "reply")?,
        )
        .map_err(|_| check("the reply does not open under the session key"))?;
        let reply: CallReply =
            serde_json::from_slice(&plain).map_err(|e| check(format!("reply: {e}")))?;
        if let CallReply::Refused { code, message } = reply {
            return Err(ClientError::Refused { code, message });
        }
        Ok(reply)
    }

    /// The registers and state.
    ///
    /// # Errors
    /// As [`Customer::call`].
    pub async fn balance(&mut self) -> Result<(String, Money, Money, Vec<Purchase>), ClientError> {
        match self.call(&Call::Balance).await? {
            CallReply::Balance {
                state,
                ar,
                dr,
                pending,
            } => Ok((
                state,
                Money::from_tenths(ar),
                Money::from_tenths(dr),
                pending,
            )),
            _ => Err(check("unexpected reply")),
        }
    }

    /// Buys postage; returns the purchase and the registers after it.
    ///
    /// # Errors
    /// As [`Customer::call`].
    pub async fn buy(&mut self, amount: Money) -> Result<(Purchase, Money, Money), ClientError> {
        if self.wallet.contents.session.is_none() {
            self.sign_on().await?;
        }
        let w = &self.wallet.contents;
        let control_total =
            w.ar.checked_add(w.dr)
                .ok_or_else(|| check("registers overflow"))?;
        let call = Call::Buy {
            purchase_id: hex::encode(postvault_crypto::rand::bytes::<12>()?),
            amount: amount.tenths(),
            control_total,
        };
        match self.call(&call).await? {
            CallReply::Purchase { purchase, ar, dr } => {
                // The next purchase's control total and request's registers
                // start from here (the PSD's next reply confirms them).
                self.wallet.contents.ar = ar;
                self.wallet.contents.dr = dr;
                Ok((purchase, Money::from_tenths(ar), Money::from_tenths(dr)))
            }
            _ => Err(check("unexpected reply")),
        }
    }

    /// Creates an indicium for `postage`. The request carries the last
    /// challenge and the local registers under HMK, and a fresh client
    /// transaction id; a transport failure is retried with the same request
    /// and id, which the vault answers without charging again.
    ///
    /// # Errors
    /// As [`Customer::call`]; [`ClientError::Check`] if the reply or indicium does not verify.
    pub async fn print(
        &mut self,
        postage: Money,
        mail_class: u16,
        destination_zip: Option<u32>,
    ) -> Result<Printed, ClientError> {
        if self.wallet.contents.session.is_none() {
            self.sign_on().await?;
        }
        let txn = hex::encode(postvault_crypto::rand::bytes::<12>()?);
        self.customer_action(
            CustomerAction::Indicium(IndiciumOrder {
                postage,
                mail_class,
                destination_zip,
                software_id: 1,
            }),
            &txn,
        )
        .await
    }

    /// Sends a customer action under a client transaction id (retried on transport failure).
    ///
    /// # Errors
    /// As [`Customer::print`].
    pub async fn customer_action(
        &mut self,
        action: CustomerAction,
        txn: &str,
    ) -> Result<Printed, ClientError> {
        let hmk = Secret32::from_bytes(self.wallet.contents.hmk);
        let w = &self.wallet.contents;
        let challenge = w.challenge;
        let request = CustomerRequest::sign(
            CustomerRequestBody {
                device_id: w.device_id,
                challenge,
                local_ar: Money::from_tenths(w.ar),
                local_dr: Money::from_tenths(w.dr),
                action,
            },
            &hmk,
        )?;
        let call = Call::Customer {
            request: hex::encode(codec::encode(&request)?),
            client_txn: txn.to_owned(),
        };
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            match self.call(&call).await {
                Err(ClientError::Http(_)) if attempt < 4 => {
                    tokio_sleep(attempt).await;
                }
                other => break other?,
            }
        };
        let CallReply::Customer { reply, indicium_id } = reply else {
            return Err(check("unexpected reply"));
        };
        let reply: CustomerReply = codec::decode(&unhex(&reply, "reply")?, "reply")?;
        let body: CustomerReplyBody = reply
            .verify(&hmk)
            .map_err(|_| check("the PSD's reply does not verify under our key"))?
            .clone();
        if body.echoed != challenge || body.device_id != self.wallet.contents.device_id {
            return Err(check("the PSD's reply is not for our request"));
        }
        let w = &mut self.wallet.contents;
        w.challenge = body.challenge;
        w.ar = body.ar.tenths();
        w.dr = body.dr.tenths();
        let bytes = body
            .indicium
            .ok_or_else(|| check("the reply carries no indicium"))?;
        let indicium = self.verified(&bytes)?;
        Ok(Printed {
            id: indicium_id,
            indicium,
        })
    }

    fn verified(&self, bytes: &[u8]) -> Result<Indicium, ClientError> {
        let w = &self.wallet.contents;
        let pk = psd_key(&w.vault.ca_certificate, &w.psd_certificate, w.device_id)?;
        let indicium = Indicium::parse(bytes)?;
        indicium
            .verify_signature(&pk)
            .map_err(|_| check("the indicium's signature does not verify under our PSD's key"))?;
        Ok(indicium)
    }

    /// An indicium issued before.
    ///
    /// # Errors
    /// As [`Customer::call`].
    pub async fn reprint(&mut self, id: i64) -> Result<Indicium, ClientError> {
        match self.call(&Call::Reprint { id }).await? {
            CallReply::Indicium { bytes, .. } => self.verified(&unhex(&bytes, "indicium")?),
            _ => Err(check("unexpected reply")),
        }
    }

    /// Asks for an unused indicium to be refunded.
    ///
    /// # Errors
    /// As [`Customer::call`].
    pub async fn refund(&mut self, id: i64) -> Result<(), ClientError> {
        match self.call(&Call::Refund { id }).await? {
            CallReply::RefundRequested { .. } => Ok(()),
            _ => Err(check("unexpected reply")),
        }
    }

    /// The meter's indicia, newest first.
    ///
    /// # Errors
    /// As [`Customer::call`].
    pub async fn history(&mut self, limit: u32) -> Result<Vec<HistoryItem>, ClientError> {
        match self.call(&Call::History { limit }).await? {
            CallReply::History { items } => Ok(items),
            _ => Err(check("unexpected reply")),
        }
    }
}

async fn tokio_sleep(attempt: u32) {
    let ms = 200_u64.saturating_mul(u64::from(attempt));
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}
