//! A postal vault in miniature for the PSD tests: one module with its crypto-card,
//! the postal CA, the provider's signing key, "the database" (each meter's
//! package and the module table's checkpoint record), and each customer's
//! client state (HMK, passphrase hash, last challenge, local registers).

use std::collections::BTreeMap;

use postvault_crypto::Secret32;
use postvault_crypto::hpke;
use postvault_crypto::sig::{PublicKey, SigAlg, SigningKey};
use postvault_indicium::cert::{PostalCa, Validity};
use postvault_indicium::{Date, DeviceId, Indicium, Money};
use postvault_module::Result;
use postvault_module::checkpoint::CheckpointRecord;
use postvault_module::cryptocard::{CardPublic, CardSettings, CardTokens};
use postvault_module::nvm::{MemNvm, Slot};
use postvault_module::postal::{
    CustomerAction, CustomerReply, CustomerRequest, CustomerRequestBody, IndiciumOrder,
    PostalCommand, PostalOutcome, PostalReply, PostalRequest, ProviderAction, ProviderOrder,
    SignedOrder, customer_secrets,
};
use postvault_module::psd::{PsdBody, PsdPackage, PsdState, seal_customer_secrets};
use postvault_module::wire::{Outer, OuterReply, Request, Response};

use super::{Hsm, new_master, read_slot};

/// Indicium value limits and ceilings of every test vault.
pub const MIN_VALUE: Money = Money::from_tenths(10);
pub const MAX_VALUE: Money = Money::from_tenths(100_000);
pub const DR_CEILING: Money = Money::from_tenths(5_000_000);
pub const AR_CEILING: Money = Money::from_tenths((1 << 40) - 1);
/// The DR limit Authorize Customer gives each meter.
pub const DR_LIMIT: Money = Money::from_tenths(2_000_000);
/// Licensing ZIP 12345-6789.
pub const ZIP: u32 = 12_345 * 10_000 + 6_789;

pub fn validity() -> Validity {
    Validity::new(
        Date::from_ymd(2023, 1, 1).unwrap(),
        Date::from_ymd(2027, 12, 31).unwrap(),
    )
    .unwrap()
}

/// A device id `PV` + serial.
pub fn device(serial: u32) -> [u8; 6] {
    DeviceId::new(*b"PV", serial).unwrap().to_bytes()
}

/// The customer's side of one meter.
#[derive(Clone)]
pub struct Client {
    pub customer_id: String,
    pub hmk: [u8; 32],
    pub passphrase: [u8; 32],
    pub challenge: [u8; 16],
    pub ar: Money,
    pub dr: Money,
}

impl Client {
    pub fn hmk(&self) -> Secret32 {
        Secret32::from_bytes(self.hmk)
    }

    /// Checks a reply's MAC and takes its challenge and registers.
    pub fn accept(&mut self, reply: &CustomerReply) {
        let body = reply.verify(&self.hmk()).unwrap().clone();
        self.challenge = body.challenge;
        self.ar = body.ar;
        self.dr = body.dr;
    }
}

/// The vault.
pub struct Vault {
    pub hsm: Hsm<MemNvm>,
    pub ca: PostalCa,
    pub provider: SigningKey,
    pub card: CardPublic,
    /// The crypto-card's shared keys as tokens (for reloading its settings).
    pub card_tokens: Option<CardTokens>,
    /// The database: each meter's package.
    pub packages: BTreeMap<[u8; 6], PsdPackage>,
    /// The database: the module table's record for the module.
    pub checkpoint: Option<CheckpointRecord>,
    /// Each meter's customer.
    pub clients: BTreeMap<[u8; 6], Client>,
    /// Each meter's certificate (DER).
    pub certificates: BTreeMap<[u8; 6], Vec<u8>>,
}

impl Vault {
    pub fn new() -> Self {
        Self::over(new_master())
    }

    /// A vault over a given operational module (e.g. one of a master and its clone).
    pub fn over(hsm: Hsm<MemNvm>) -> Self {
        let ca = PostalCa::generate("Test Postal CA", validity()).unwrap();
        let provider = SigningKey::generate(SigAlg::EcdsaP256Sha256).unwrap();
        let mut v = Self {
            hsm,
            ca,
            provider,
            card: CardPublic {
                registration_signing: (0, Vec::new()),
                registration_hpke: [0; 32],
            },
            card_tokens: None,
            packages: BTreeMap::new(),
            checkpoint: None,
            clients: BTreeMap::new(),
            certificates: BTreeMap::new(),
        };
        v.load_card(DR_CEILING, AR_CEILING);
        v
    }

    /// (Re)loads the crypto-card as the security officer, trusting this vault's
    /// CA and provider, with these ceilings (a reload keeps the card's keys).
    pub fn load_card(&mut self, dr_ceiling: Money, ar_ceiling: Money) {
        let settings = self.settings(dr_ceiling, ar_ceiling);
        self.card = match self
            .hsm
            .as_user(
                "so",
                Request::InitializeCryptoCard {
                    settings,
                    tokens: self.card_tokens.clone(),
                },
            )
            .unwrap()
        {
            Response::CryptoCard { public, tokens } => {
                self.card_tokens = Some(tokens);
                public
            }
            r => panic!("{r:?}"),
        };
    }

    /// Sends a postal command with the database's checkpoint; on success the
    /// database stores the new checkpoint (the caller stores the package).
    pub fn send(&mut self, command: PostalCommand) -> Result<PostalReply> {
        self.send_with(self.checkpoint.clone(), command)
    }

    /// Sends with a given checkpoint record.
    pub fn send_with(
        &mut self,
        checkpoint: Option<CheckpointRecord>,
        command: PostalCommand,
    ) -> Result<PostalReply> {
        let reply = match self.hsm.host.call(Outer::Postal(Box::new(PostalRequest {
            checkpoint,
            command,
        })))? {
            OuterReply::Postal(r) => *r,
            r => panic!("{r:?}"),
        };
        self.checkpoint = Some(reply.checkpoint.clone());
        Ok(reply)
    }

    pub fn package(&self, d: [u8; 6]) -> PsdPackage {
        self.packages[&d].clone()
    }

    /// The package body as the module would open it.
    pub fn body(&self, d: [u8; 6]) -> PsdBody {
        let slots = read_slot(&self.hsm.nvm(), Slot::Mks).unwrap();
        self.packages[&d].open(&slots).unwrap().0
    }

    fn store(&mut self, d: [u8; 6], reply: &PostalReply) {
        self.packages.insert(d, reply.package.clone());
    }

    /// Initialize PSD and Authorize PSD with a certificate from the CA.
    pub fn unleased_meter(&mut self, d: [u8; 6]) {
        let reply = self
            .send(PostalCommand::Initialize { device_id: d })
            .unwrap();
        let PostalOutcome::Initialized {
            certificate_request,
            ..
        } = &reply.outcome
        else {
            panic!("{:?}", reply.outcome)
        };
        let serial = DeviceId::from_bytes(d).unwrap().serial();
        let cert = self
            .ca
            .issue_from_request(certificate_request, serial, validity())
            .unwrap()
            .certificate()
            .der()
            .to_vec();
        self.store(d, &reply);
        let reply = self
            .send(PostalCommand::Authorize {
                package: self.package(d),
                certificate: cert.clone(),
            })
            .unwrap();
        self.store(d, &reply);
        self.certificates.insert(d, cert);
    }

    /// Crypto-card settings trusting this vault's CA and provider.
    pub fn settings(&self, dr_ceiling: Money, ar_ceiling: Money) -> CardSettings {
        let pk = self.provider.public_key();
        CardSettings {
            provider_key: (pk.alg().id(), pk.as_bytes().to_vec()),
            ca_certificate: self.ca.certificate().der().to_vec(),
            min_value: MIN_VALUE,
            max_value: MAX_VALUE,
            dr_ceiling,
            ar_ceiling,
        }
    }

    /// A fresh customer for meter `d` (not yet configured).
    pub fn new_client(d: [u8; 6]) -> Client {
        Client {
            customer_id: format!("customer-{}", hex::encode(d)),
            hmk: *Secret32::generate().unwrap().expose(),
            passphrase: postvault_crypto::rand::bytes().unwrap(),
            challenge: [0; 16],
            ar: Money::ZERO,
            dr: Money::ZERO,
        }
    }

    /// The customer's secrets sealed to the registration key.
    pub fn sealed_secrets(&self, d: [u8; 6], client: &Client) -> Vec<u8> {
        let pk = hpke::PublicKey::from_slice(&self.card.registration_hpke).unwrap();
        seal_customer_secrets(
            &pk,
            &d,
            &client.customer_id,
            &customer_secrets(&client.hmk(), client.passphrase),
        )
        .unwrap()
    }

    /// Configure PSD for a new customer.
    pub fn configure(&mut self, d: [u8; 6]) -> Result<()> {
        let mut client = Self::new_client(d);
        let reply = self.send(PostalCommand::Configure {
            package: self.package(d),
            customer_id: client.customer_id.clone(),
            sealed_secrets: self.sealed_secrets(d, &client),
        })?;
        let PostalOutcome::Customer(r) = &reply.outcome else {
            panic!("{:?}", reply.outcome)
        };
        client.accept(r);
        self.store(d, &reply);
        self.clients.insert(d, client);
        Ok(())
    }

    /// A provider order for meter `d`'s current package.
    pub fn order(&self, d: [u8; 6], action: ProviderAction) -> SignedOrder {
        let order = ProviderOrder {
            device_id: d,
            package_mac: self.packages[&d].mac,
            action,
        };
        SignedOrder::sign(order, &self.provider).unwrap()
    }

    /// Sends a provider order and stores the package.
    pub fn provider(&mut self, d: [u8; 6], order: SignedOrder) -> Result<PostalReply> {
        let reply = self.send(PostalCommand::Provider {
            package: self.package(d),
            order,
        })?;
        self.store(d, &reply);
        Ok(reply)
    }

    pub fn authorize_customer(&mut self, d: [u8; 6]) -> Result<()> {
        let order = self.order(
            d,
            ProviderAction::AuthorizeCustomer {
                licensing_zip: ZIP,
                dr_limit: DR_LIMIT,
            },
        );
        self.provider(d, order).map(drop)
    }

    /// A meter ready to print: Leased, with its customer.
    pub fn leased_meter(&mut self, d: [u8; 6]) {
        self.unleased_meter(d);
        self.configure(d).unwrap();
        self.authorize_customer(d).unwrap();
    }

    pub fn download(&mut self, d: [u8; 6], amount: Money) -> Result<()> {
        let b = self.body(d);
        let order = self.order(
            d,
            ProviderAction::Download {
                amount,
                control_total: b.ar.checked_add(b.dr).unwrap(),
            },
        );
        self.provider(d, order)?;
        // The client learns its new DR with its next reply; keep it in step here.
        let b = self.body(d);
        let c = self.clients.get_mut(&d).unwrap();
        c.ar = b.ar;
        c.dr = b.dr;
        Ok(())
    }

    /// The customer's request for an action, MAC'd with their HMK.
    pub fn request(&self, d: [u8; 6], action: CustomerAction) -> CustomerRequest {
        let c = &self.clients[&d];
        CustomerRequest::sign(
            CustomerRequestBody {
                device_id: d,
                challenge: c.challenge,
                local_ar: c.ar,
                local_dr: c.dr,
                action,
            },
            &c.hmk(),
        )
        .unwrap()
    }

    /// Sends a customer request; on success stores the package, the client takes
    /// the reply, and the indicium is returned.
    pub fn customer(&mut self, d: [u8; 6], request: CustomerRequest) -> Result<Indicium> {
        let reply = self.send(PostalCommand::Customer {
            package: self.package(d),
            request,
        })?;
        self.store(d, &reply);
        let PostalOutcome::Customer(r) = &reply.outcome else {
            panic!("{:?}", reply.outcome)
        };
        self.clients.get_mut(&d).unwrap().accept(r);
        Ok(Indicium::parse(r.body.indicium.as_ref().unwrap()).unwrap())
    }

    pub fn print(&mut self, d: [u8; 6], postage: Money) -> Result<Indicium> {
        let req = self.request(d, CustomerAction::Indicium(indicium_order(postage)));
        self.customer(d, req)
    }

    pub fn correction(&mut self, d: [u8; 6], postage: Money) -> Result<Indicium> {
        let req = self.request(d, CustomerAction::Correction(indicium_order(postage)));
        self.customer(d, req)
    }

    pub fn redate(&mut self, d: [u8; 6], original: &Indicium, date: Date) -> Result<Indicium> {
        let req = self.request(
            d,
            CustomerAction::Redate {
                original: original.to_bytes(),
                date: date.days(),
            },
        );
        self.customer(d, req)
    }

    /// The refund indicium; the meter is Withdrawn afterwards.
    pub fn refund(&mut self, d: [u8; 6]) -> Result<Indicium> {
        let order = self.order(d, ProviderAction::Refund);
        let reply = self.provider(d, order)?;
        let PostalOutcome::Refund { indicium } = &reply.outcome else {
            panic!("{:?}", reply.outcome)
        };
        Ok(Indicium::parse(indicium).unwrap())
    }

    pub fn begin_password_reset(&mut self, d: [u8; 6]) -> Result<()> {
        let order = self.order(d, ProviderAction::BeginPasswordReset);
        self.provider(d, order).map(drop)
    }

    /// Completes a reset with a new HMK and the given passphrase hash.
    pub fn complete_password_reset(&mut self, d: [u8; 6], passphrase: [u8; 32]) -> Result<()> {
        let mut client = self.clients[&d].clone();
        client.hmk = *Secret32::generate().unwrap().expose();
        client.passphrase = passphrase;
        let order = self.order(
            d,
            ProviderAction::CompletePasswordReset {
                sealed_secrets: self.sealed_secrets(d, &client),
            },
        );
        let reply = self.provider(d, order)?;
        let PostalOutcome::Customer(r) = &reply.outcome else {
            panic!("{:?}", reply.outcome)
        };
        client.accept(r);
        self.clients.insert(d, client);
        Ok(())
    }

    /// The meter's state in the database.
    pub fn state(&self, d: [u8; 6]) -> PsdState {
        self.body(d).state
    }

    /// The PSD certificate's public key.
    pub fn public_key(&self, d: [u8; 6]) -> PublicKey {
        postvault_indicium::Certificate::from_der(&self.certificates[&d])
            .unwrap()
            .public_key()
            .unwrap()
            .clone()
    }

    /// Auto-Recover with a record.
    pub fn auto_recover(&mut self, record: CheckpointRecord) -> Result<usize> {
        match self
            .hsm
            .host
            .call(Outer::AutoRecoverCheckpoint { checkpoint: record })?
        {
            OuterReply::Recovered { discarded } => Ok(discarded),
            r => panic!("{r:?}"),
        }
    }
}

/// An ordinary indicium order.
pub fn indicium_order(postage: Money) -> IndiciumOrder {
    IndiciumOrder {
        postage,
        mail_class: 3,
        destination_zip: Some(54_321 * 10_000),
        software_id: 7,
    }
}
