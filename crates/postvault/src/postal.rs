//! PSD work driven from the CLI, as the server will drive it (issue 4): a
//! database of packages and module-table checkpoints, the provider's orders and
//! the customer's MAC'd requests. Used by the ceremony demo's postal part and
//! by `postvault bench`.

use std::collections::BTreeMap;
use std::path::Path;

use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_crypto::{Secret32, hpke};
use postvault_indicium::cert::{PostalCa, PsdCertificate, Validity};
use postvault_indicium::render::{render_png, render_svg};
use postvault_indicium::{Date, DeviceId, Indicium, Money, Outcome, Policy};
use postvault_module::checkpoint::CheckpointRecord;
use postvault_module::cryptocard::{CardPublic, CardSettings};
use postvault_module::postal::{
    CustomerAction, CustomerReply, CustomerReplyBody, CustomerRequest, CustomerRequestBody,
    IndiciumOrder, PostalCommand, PostalOutcome, PostalReply, PostalRequest, ProviderAction,
    ProviderOrder, SignedOrder, customer_secrets,
};
use postvault_module::psd::{PsdPackage, seal_customer_secrets};
use postvault_module::wire::{Outer, OuterReply, Request, Response};

use crate::error::CliError;
use crate::vault::{self, Operator, VaultHost};

fn check(what: &str) -> CliError {
    CliError::Check(what.to_owned())
}

/// What a database keeps for PSD work: each meter's package and each module's
/// newest checkpoint record (the module table).
#[derive(Default)]
pub struct Db {
    packages: BTreeMap<[u8; 6], PsdPackage>,
    checkpoints: BTreeMap<String, CheckpointRecord>,
}

impl Db {
    /// Sends a PSD command to the module behind `host` (named `module` in the
    /// module table) with that module's checkpoint record, then stores the
    /// new package and checkpoint before returning the reply.
    ///
    /// # Errors
    /// The module's refusal.
    pub fn send(
        &mut self,
        host: &mut VaultHost,
        module: &str,
        command: PostalCommand,
    ) -> Result<PostalReply, CliError> {
        let request = PostalRequest {
            checkpoint: self.checkpoints.get(module).cloned(),
            command,
        };
        let OuterReply::Postal(reply) = host.call(Outer::Postal(Box::new(request)))? else {
            return Err(check("unexpected reply to a PSD command"));
        };
        let device = reply.package.peek()?.device_id;
        self.packages.insert(device, reply.package.clone());
        self.checkpoints
            .insert(module.to_owned(), reply.checkpoint.clone());
        Ok(*reply)
    }

    /// A meter's package.
    ///
    /// # Errors
    /// [`CliError::Check`] for an unknown meter.
    pub fn package(&self, device: DeviceId) -> Result<PsdPackage, CliError> {
        self.packages
            .get(&device.to_bytes())
            .cloned()
            .ok_or_else(|| check("no package for that meter"))
    }

    /// Sends a provider order for a meter's current package.
    ///
    /// # Errors
    /// The module's refusal.
    pub fn provider(
        &mut self,
        host: &mut VaultHost,
        module: &str,
        provider: &SigningKey,
        device: DeviceId,
        action: ProviderAction,
    ) -> Result<PostalReply, CliError> {
        let package = self.package(device)?;
        let order = SignedOrder::sign(
            ProviderOrder {
                device_id: device.to_bytes(),
                package_mac: package.mac,
                action,
            },
            provider,
        )?;
        self.send(host, module, PostalCommand::Provider { package, order })
    }

    /// A download of `amount`, with the control total from the package.
    ///
    /// # Errors
    /// The module's refusal.
    pub fn download(
        &mut self,
        host: &mut VaultHost,
        module: &str,
        provider: &SigningKey,
        device: DeviceId,
        amount: Money,
    ) -> Result<(), CliError> {
        let body = self.package(device)?.peek()?;
        let control_total = body.ar.checked_add(body.dr)?;
        self.provider(
            host,
            module,
            provider,
            device,
            ProviderAction::Download {
                amount,
                control_total,
            },
        )
        .map(drop)
    }
}

/// The customer's side of a meter: their MAC key and the last reply they accepted.
pub struct Customer {
    /// Customer id.
    pub id: String,
    /// Device.
    pub device: DeviceId,
    hmk: Secret32,
    last: Option<CustomerReplyBody>,
}

impl Customer {
    /// A new customer with a fresh MAC key.
    ///
    /// # Errors
    /// [`CliError::Module`] if randomness fails.
    pub fn new(id: &str, device: DeviceId) -> Result<Self, CliError> {
        Ok(Self {
            id: id.to_owned(),
            device,
            hmk: Secret32::generate()?,
            last: None,
        })
    }

    /// The secrets for Configure PSD, sealed to the crypto-card's registration key.
    ///
    /// # Errors
    /// [`CliError::Module`] for a malformed key.
    pub fn sealed_secrets(
        &self,
        card: &CardPublic,
        passphrase_hash: [u8; 32],
    ) -> Result<Vec<u8>, CliError> {
        Ok(seal_customer_secrets(
            &hpke::PublicKey::from_slice(&card.registration_hpke)?,
            &self.device.to_bytes(),
            &self.id,
            &customer_secrets(&self.hmk, passphrase_hash),
        )?)
    }

    /// Checks a reply's MAC and keeps its challenge and registers.
    ///
    /// # Errors
    /// [`CliError::Check`] if the reply is not for this customer or its MAC fails.
    pub fn accept(&mut self, reply: &PostalReply) -> Result<&CustomerReplyBody, CliError> {
        let PostalOutcome::Customer(r) = &reply.outcome else {
            return Err(check("expected a reply for the customer"));
        };
        let body = verify_reply(r, &self.hmk)?;
        Ok(self.last.insert(body))
    }

    /// Learns registers changed by the provider (the next reply confirms them).
    pub fn registers(&mut self, ar: Money, dr: Money) {
        if let Some(last) = self.last.as_mut() {
            (last.ar, last.dr) = (ar, dr);
        }
    }

    /// A MAC'd request carrying the last challenge and the local registers.
    ///
    /// # Errors
    /// [`CliError::Check`] before the first reply.
    pub fn request(&self, action: CustomerAction) -> Result<CustomerRequest, CliError> {
        let last = self
            .last
            .as_ref()
            .ok_or_else(|| check("the customer has no challenge yet"))?;
        Ok(CustomerRequest::sign(
            CustomerRequestBody {
                device_id: self.device.to_bytes(),
                challenge: last.challenge,
                local_ar: last.ar,
                local_dr: last.dr,
                action,
            },
            &self.hmk,
        )?)
    }

    /// Create indicium for `postage`; returns the indicium.
    ///
    /// # Errors
    /// The module's refusal.
    pub fn print(
        &mut self,
        db: &mut Db,
        host: &mut VaultHost,
        module: &str,
        postage: Money,
    ) -> Result<Indicium, CliError> {
        let request = self.request(CustomerAction::Indicium(IndiciumOrder {
            postage,
            mail_class: 1,
            destination_zip: None,
            software_id: 1,
        }))?;
        let package = db.package(self.device)?;
        let reply = db.send(host, module, PostalCommand::Customer { package, request })?;
        let body = self.accept(&reply)?;
        let bytes = body
            .indicium
            .as_ref()
            .ok_or_else(|| check("the reply carries no indicium"))?;
        Ok(Indicium::parse(bytes)?)
    }
}

fn verify_reply(reply: &CustomerReply, hmk: &Secret32) -> Result<CustomerReplyBody, CliError> {
    reply
        .verify(hmk)
        .cloned()
        .map_err(|_| check("the module's reply MAC does not verify under the customer's key"))
}

/// The postal side of a vault: the CA that certifies meters and the provider
/// that signs orders. Both keys stay in memory for the run.
pub struct PostalParties {
    /// The postal certificate authority.
    pub ca: PostalCa,
    /// The provider's order-signing key.
    pub provider: SigningKey,
    /// Validity given to certificates.
    pub validity: Validity,
}

impl PostalParties {
    /// A CA and a provider key; certificates valid from yesterday for two years of `today`.
    ///
    /// # Errors
    /// [`CliError::Indicium`] / [`CliError::Module`] if generation fails.
    pub fn generate(today: Date) -> Result<Self, CliError> {
        let validity = Validity::new(
            today.checked_sub_days(1).unwrap_or(today),
            today.checked_add_days(730).unwrap_or(today),
        )?;
        Ok(Self {
            ca: PostalCa::generate("postvault demo postal CA", validity)?,
            provider: SigningKey::generate(SigAlg::EcdsaP256Sha256)?,
            validity,
        })
    }

    /// The crypto-card settings for these parties.
    #[must_use]
    pub fn settings(&self, dr_ceiling: Money) -> CardSettings {
        let pk = self.provider.public_key();
        CardSettings {
            provider_key: (pk.alg().id(), pk.as_bytes().to_vec()),
            ca_certificate: self.ca.certificate().der().to_vec(),
            min_value: Money::from_tenths(10),
            max_value: Money::from_tenths(100_000),
            dr_ceiling,
            ar_ceiling: postvault_indicium::indicium::MAX_REGISTER,
        }
    }

    /// Initialize PSD and Authorize PSD: a Raw package, its certificate from the
    /// request the module made, and the Unleased package.
    ///
    /// # Errors
    /// The module's or the CA's refusal.
    pub fn new_meter(
        &self,
        db: &mut Db,
        host: &mut VaultHost,
        module: &str,
        device: DeviceId,
    ) -> Result<PsdCertificate, CliError> {
        let reply = db.send(
            host,
            module,
            PostalCommand::Initialize {
                device_id: device.to_bytes(),
            },
        )?;
        let PostalOutcome::Initialized {
            certificate_request,
            ..
        } = reply.outcome
        else {
            return Err(check("expected a new PSD"));
        };
        let certificate =
            self.ca
                .issue_from_request(&certificate_request, device.serial(), self.validity)?;
        db.send(
            host,
            module,
            PostalCommand::Authorize {
                package: db.package(device)?,
                certificate: certificate.certificate().der().to_vec(),
            },
        )?;
        Ok(certificate)
    }
}

/// Configure PSD and Authorize Customer: the customer's meter, Leased.
///
/// # Errors
/// The module's refusal.
pub fn lease(
    db: &mut Db,
    host: &mut VaultHost,
    module: &str,
    parties: &PostalParties,
    card: &CardPublic,
    customer: &mut Customer,
    licensing_zip: u32,
) -> Result<(), CliError> {
    let sealed_secrets = customer.sealed_secrets(card, postvault_crypto::rand::bytes()?)?;
    let reply = db.send(
        host,
        module,
        PostalCommand::Configure {
            package: db.package(customer.device)?,
            customer_id: customer.id.clone(),
            sealed_secrets,
        },
    )?;
    customer.accept(&reply)?;
    db.provider(
        host,
        module,
        &parties.provider,
        customer.device,
        ProviderAction::AuthorizeCustomer {
            licensing_zip,
            dr_limit: Money::from_tenths(5_000_000),
        },
    )?;
    Ok(())
}

/// Initialize Crypto-Card as the security officer; `tokens` from another module on a clone.
///
/// # Errors
/// The module's refusal.
pub fn initialize_crypto_card(
    dir: &Path,
    so: &Operator,
    settings: CardSettings,
    tokens: Option<postvault_module::cryptocard::CardTokens>,
) -> Result<(postvault_module::cryptocard::CardTokens, CardPublic), CliError> {
    match vault::run(dir, so, &Request::InitializeCryptoCard { settings, tokens })? {
        Response::CryptoCard { tokens, public } => Ok((tokens, public)),
        _ => Err(check("unexpected reply to Initialize Crypto-Card")),
    }
}

/// Renders an indicium to `<stem>.png` and `<stem>.svg` in `dir`, then reads the
/// PNG back and verifies it against the CA and the meter's certificate as a
/// postal clerk would. Returns the PNG's path and the number of checks passed.
///
/// # Errors
/// [`CliError::Io`] if a file cannot be written; [`CliError::Check`] if the
/// printed indicium does not verify.
pub fn print_and_verify(
    indicium: &Indicium,
    dir: &Path,
    stem: &str,
    parties: &PostalParties,
    certificate: &PsdCertificate,
) -> Result<(std::path::PathBuf, usize), CliError> {
    let png = render_png(indicium)?;
    let png_path = dir.join(format!("{stem}.png"));
    let svg_path = dir.join(format!("{stem}.svg"));
    std::fs::write(&png_path, &png).map_err(|e| CliError::io(&png_path, &e))?;
    std::fs::write(&svg_path, render_svg(indicium)?).map_err(|e| CliError::io(&svg_path, &e))?;
    let report = crate::verify::check_png(
        &png,
        parties.ca.certificate(),
        Some(certificate.certificate()),
        indicium.data().date,
        Policy::default(),
    );
    if !report.valid() {
        return Err(CliError::Check(format!(
            "the printed indicium does not verify: {:?}",
            report.failed()
        )));
    }
    let passed = report
        .checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Pass))
        .count();
    Ok((png_path, passed))
}

/// The postal part of the ceremony demo, over the master and its clone (which
/// share an MKS): both load the crypto-card (generated on the master, loaded
/// from its tokens on the clone); a meter is created, certified, configured for
/// a customer and licensed; postage is bought and an indicium printed, read back
/// from its PNG and verified; finally the meter is refunded and withdrawn. The
/// commands alternate between the two modules, as a pool's would. Writes
/// `ca.pem`, `psd.pem`, `indicium.png` and `indicium.svg` into `out`.
///
/// # Errors
/// The first step that fails.
pub fn demo(
    master: &Path,
    clone: &Path,
    so: &Operator,
    out: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<std::path::PathBuf, CliError> {
    std::fs::create_dir_all(out).map_err(|e| CliError::io(out, &e))?;
    let now = vault::with_module(master, |h| Ok(h.status()?.time))?;
    let today = Date::from_unix_seconds(i64::try_from(now).unwrap_or(i64::MAX))?;
    let parties = PostalParties::generate(today)?;
    let ca_path = out.join("ca.pem");
    std::fs::write(&ca_path, parties.ca.certificate().to_pem())
        .map_err(|e| CliError::io(&ca_path, &e))?;
    let settings = parties.settings(Money::from_tenths(5_000_000));
    let (tokens, card) = initialize_crypto_card(master, so, settings.clone(), None)?;
    let (_, clone_card) = initialize_crypto_card(clone, so, settings, Some(tokens))?;
    if clone_card != card {
        return Err(check(
            "the clone's crypto-card keys differ from the master's",
        ));
    }
    say(&format!(
        "crypto-card: security officer loaded the postal CA ({}), provider key and limits on the master; the clone loaded the same registration and checkpoint keys from its tokens",
        ca_path.display()
    ));

    let mut db = Db::default();
    let device = DeviceId::new(*b"PV", 1)?;
    let certificate =
        vault::with_module(master, |h| parties.new_meter(&mut db, h, "master", device))?;
    let psd_path = out.join("psd.pem");
    std::fs::write(&psd_path, certificate.to_pem()).map_err(|e| CliError::io(&psd_path, &e))?;
    say(&format!(
        "meter {device}: master made its key and a certificate request; the CA certified it ({}); Authorize PSD -> Unleased",
        psd_path.display()
    ));

    let mut customer = Customer::new("demo-customer", device)?;
    vault::with_module(clone, |h| {
        lease(
            &mut db,
            h,
            "clone",
            &parties,
            &card,
            &mut customer,
            12_345 * 10_000 + 6_789,
        )
    })?;
    say(&format!(
        "meter {device}: clone took the customer's secrets sealed to the registration key (Configure PSD), the provider licensed ZIP 12345-6789 -> Leased"
    ));

    let amount = Money::from_cents(2_000)?;
    vault::with_module(master, |h| {
        db.download(h, "master", &parties.provider, device, amount)
    })?;
    let body = db.package(device)?.peek()?;
    customer.registers(body.ar, body.dr);
    say(&format!(
        "meter {device}: provider-signed download of {amount} (control total AR + DR checked) -> DR {}",
        body.dr
    ));

    let indicium = vault::with_module(clone, |h| {
        customer.print(&mut db, h, "clone", Money::from_cents(73)?)
    })?;
    let (png, passed) = print_and_verify(&indicium, out, "indicium", &parties, &certificate)?;
    say(&format!(
        "meter {device}: customer printed {} (challenge and MAC checked, AR {}, DR {}); {} read back and verified: {passed} checks passed",
        indicium.data().postage,
        indicium.data().ascending_register,
        indicium.data().descending_register,
        png.display()
    ));

    let reply = vault::with_module(master, |h| {
        db.provider(
            h,
            "master",
            &parties.provider,
            device,
            ProviderAction::Refund,
        )
    })?;
    let PostalOutcome::Refund { indicium } = reply.outcome else {
        return Err(check("expected a refund indicium"));
    };
    let refund = Indicium::parse(&indicium)?;
    refund.verify_signature(
        certificate
            .certificate()
            .public_key()
            .ok_or_else(|| check("certificate without a key"))?,
    )?;
    say(&format!(
        "meter {device}: provider refunded the remaining {} with a signed refund indicium -> Withdrawn",
        refund.data().postage
    ));
    Ok(png)
}
