//! `postvault bench`: how fast the module's operations run on this machine,
//! against a real file-backed module in a scratch directory. Figures only; no
//! test asserts on them.

use std::path::Path;
use std::time::{Duration, Instant};

use postvault_crypto::Secret32;
use postvault_crypto::hpke;
use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_indicium::cert::{PostalCa, Validity};
use postvault_indicium::{Date, DeviceId, Money};
use postvault_module::audit::verify_log;
use postvault_module::checkpoint::CheckpointRecord;
use postvault_module::cryptocard::CardSettings;
use postvault_module::postal::{
    CustomerAction, CustomerReply, CustomerRequest, CustomerRequestBody, IndiciumOrder,
    PostalCommand, PostalOutcome, PostalReply, PostalRequest, ProviderAction, ProviderOrder,
    SignedOrder, customer_secrets,
};
use postvault_module::psd::{PsdPackage, seal_customer_secrets};
use postvault_module::session::HostSession;
use postvault_module::wire::{ModuleConfig, Outer, OuterReply, Request, Response};

use crate::ceremony::{self, AccountSpec};
use crate::error::CliError;
use crate::vault::{self, Operator, VaultHost};

/// One measured operation.
pub struct Row {
    /// What was measured.
    pub name: &'static str,
    /// How many times.
    pub count: u32,
    /// Total time.
    pub total: Duration,
}

impl Row {
    /// Mean time per operation, microseconds.
    #[must_use]
    pub fn micros(&self) -> f64 {
        self.total.as_secs_f64() * 1e6 / f64::from(self.count.max(1))
    }
}

fn time(
    name: &'static str,
    count: u32,
    mut f: impl FnMut() -> Result<(), CliError>,
) -> Result<Row, CliError> {
    let start = Instant::now();
    for _ in 0..count {
        f()?;
    }
    Ok(Row {
        name,
        count,
        total: start.elapsed(),
    })
}

/// Runs the benchmark in `dir` (which it fills with a scratch module).
///
/// # Errors
/// Any failing operation.
pub fn run(dir: &Path, iterations: u32) -> Result<Vec<Row>, CliError> {
    let pass = |u: &str| format!("bench passphrase for {u}");
    let accounts: Vec<AccountSpec> = [
        ("admin", "administrator"),
        ("so", "security-officer"),
        ("kc1", "key-custodian"),
        ("kc2", "key-custodian"),
    ]
    .into_iter()
    .map(|(u, r)| AccountSpec {
        user: u.into(),
        role: r.into(),
        passphrase: pass(u),
    })
    .collect();
    ceremony::init(dir, &accounts, ModuleConfig::default())?;
    let so = Operator {
        user: postvault_module::role::UserId::new("so")?,
        passphrase: pass("so"),
    };
    ceremony::generate_mks(dir, &so)?;
    let mut rows = Vec::new();
    vault::with_module(dir, |host| {
        rows.push(time(
            "open operator session (X25519, ECDSA-signed transcript)",
            iterations,
            || host.open_session().map(drop).map_err(CliError::from),
        )?);
        let mut session = host.open_session()?;
        let logon = Request::Logon {
            user: so.user.clone(),
            password: vault::password(&so.user, &so.passphrase),
        };
        rows.push(time(
            "logon + logoff (Argon2id m=19 MiB, t=2)",
            iterations.min(50),
            || {
                host.send(&mut session, &logon)?;
                host.send(&mut session, &Request::Logoff)?;
                Ok(())
            },
        )?);
        host.send(&mut session, &logon)?;
        rows.push(time(
            "MAC'd request round trip (query user)",
            iterations,
            || {
                host.send_with(&mut session, &Request::QueryCurrentUser, false)
                    .map(drop)
                    .map_err(CliError::from)
            },
        )?);
        rows.push(time(
            "sealed request round trip (query user)",
            iterations,
            || {
                host.send(&mut session, &Request::QueryCurrentUser)
                    .map(drop)
                    .map_err(CliError::from)
            },
        )?);
        let mut token = Vec::new();
        rows.push(time(
            "generate key token (signed audit entry, NVM write)",
            iterations,
            || {
                if let Response::Token { token: t, .. } = host.send(
                    &mut session,
                    &Request::GenerateTestToken {
                        owner: "bench".into(),
                    },
                )? {
                    token = t;
                }
                Ok(())
            },
        )?);
        rows.push(time(
            "open key token inside the module",
            iterations,
            || {
                host.send(&mut session, &Request::VerifyToken(token.clone()))
                    .map(drop)
                    .map_err(CliError::from)
            },
        )?);
        rows.extend(postal_rows(host, &mut session, iterations)?);
        host.send(&mut session, &Request::Logoff)?;
        Ok(())
    })?;
    let log = std::fs::read(dir.join(vault::AUDIT_LOG)).map_err(|e| CliError::io(dir, &e))?;
    let entries = verify_log(&log, None)?.entries;
    let mut verified = 0u32;
    let mut row = time("verify the whole audit log", iterations.min(20), || {
        verify_log(&log, None)?;
        verified += 1;
        Ok(())
    })?;
    row.name = "verify audit log (per entry)";
    row.count = verified.saturating_mul(u32::try_from(entries).unwrap_or(u32::MAX));
    rows.push(row);
    Ok(rows)
}

/// The database side of the PSD benchmark: one meter's package and the module table's record.
struct Db {
    package: Option<PsdPackage>,
    checkpoint: Option<CheckpointRecord>,
}

impl Db {
    fn send(
        &mut self,
        host: &mut VaultHost,
        command: PostalCommand,
    ) -> Result<PostalReply, CliError> {
        let request = PostalRequest {
            checkpoint: self.checkpoint.clone(),
            command,
        };
        match host.call(Outer::Postal(Box::new(request)))? {
            OuterReply::Postal(reply) => {
                self.package = Some(reply.package.clone());
                self.checkpoint = Some(reply.checkpoint.clone());
                Ok(*reply)
            }
            _ => Err(CliError::Check("unexpected reply to a PSD command".into())),
        }
    }

    fn package(&self) -> Result<PsdPackage, CliError> {
        self.package
            .clone()
            .ok_or_else(|| CliError::Check("no package".into()))
    }

    fn sequence(&self) -> Result<u64, CliError> {
        Ok(self.package()?.peek()?.sequence)
    }
}

fn customer_reply(reply: &PostalReply) -> Result<CustomerReply, CliError> {
    match &reply.outcome {
        PostalOutcome::Customer(r) => Ok(r.clone()),
        _ => Err(CliError::Check("expected a reply for the customer".into())),
    }
}

/// PSD work on one meter: loads a crypto-card (as the logged-on security
/// officer), brings a meter to Leased, and times downloads and indicia.
fn postal_rows(
    host: &mut VaultHost,
    session: &mut HostSession,
    iterations: u32,
) -> Result<Vec<Row>, CliError> {
    let today = Date::from_unix_seconds(
        i64::try_from(host.status()?.time).map_err(|_| CliError::Check("clock".into()))?,
    )?;
    let validity = Validity::new(
        today.checked_sub_days(1).unwrap_or(today),
        today.checked_add_days(365).unwrap_or(today),
    )?;
    let ca = PostalCa::generate("Bench Postal CA", validity)?;
    let provider = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
    let pk = provider.public_key();
    let settings = CardSettings {
        provider_key: (pk.alg().id(), pk.as_bytes().to_vec()),
        ca_certificate: ca.certificate().der().to_vec(),
        min_value: Money::from_tenths(10),
        max_value: Money::from_tenths(100_000),
        dr_ceiling: Money::from_tenths(10_000_000),
        ar_ceiling: postvault_indicium::indicium::MAX_REGISTER,
    };
    let public = match host.send(
        session,
        &Request::InitializeCryptoCard {
            settings,
            tokens: None,
        },
    )? {
        Response::CryptoCard { public, .. } => public,
        _ => return Err(CliError::Check("unexpected crypto-card reply".into())),
    };
    let device = DeviceId::new(*b"PV", 1)?;
    let mut db = Db {
        package: None,
        checkpoint: host.status()?.checkpoint,
    };
    let reply = db.send(
        host,
        PostalCommand::Initialize {
            device_id: device.to_bytes(),
        },
    )?;
    let PostalOutcome::Initialized {
        certificate_request,
        ..
    } = reply.outcome
    else {
        return Err(CliError::Check("expected a new PSD".into()));
    };
    let certificate = ca.issue_from_request(&certificate_request, 1, validity)?;
    db.send(
        host,
        PostalCommand::Authorize {
            package: db.package()?,
            certificate: certificate.certificate().der().to_vec(),
        },
    )?;
    let hmk = Secret32::generate()?;
    let customer_id = "bench-customer";
    let sealed_secrets = seal_customer_secrets(
        &hpke::PublicKey::from_slice(&public.registration_hpke)?,
        &device.to_bytes(),
        customer_id,
        &customer_secrets(&hmk, [1; 32]),
    )?;
    let reply = db.send(
        host,
        PostalCommand::Configure {
            package: db.package()?,
            customer_id: customer_id.into(),
            sealed_secrets,
        },
    )?;
    let mut last = customer_reply(&reply)?.verify(&hmk)?.clone();
    let order = |db: &Db, action| -> Result<SignedOrder, CliError> {
        Ok(SignedOrder::sign(
            ProviderOrder {
                device_id: device.to_bytes(),
                package_sequence: db.sequence()?,
                action,
            },
            &provider,
        )?)
    };
    let authorize = order(
        &db,
        ProviderAction::AuthorizeCustomer {
            licensing_zip: 12_345 * 10_000,
            dr_limit: Money::from_tenths(10_000_000),
        },
    )?;
    db.send(
        host,
        PostalCommand::Provider {
            package: db.package()?,
            order: authorize,
        },
    )?;
    let amount = Money::from_tenths(1_000);
    let mut rows = vec![time(
        "postage value download (provider sig, MAC, checkpoint)",
        iterations,
        || {
            let body = db.package()?.peek()?;
            let o = order(
                &db,
                ProviderAction::Download {
                    amount,
                    control_total: body.ar.checked_add(body.dr)?,
                },
            )?;
            db.send(
                host,
                PostalCommand::Provider {
                    package: db.package()?,
                    order: o,
                },
            )
            .map(drop)
        },
    )?];
    let body = db.package()?.peek()?;
    (last.ar, last.dr) = (body.ar, body.dr);
    rows.push(time(
        "create indicium (12 checks, P-256 sign, checkpoint)",
        iterations,
        || {
            let request = CustomerRequest::sign(
                CustomerRequestBody {
                    device_id: device.to_bytes(),
                    challenge: last.challenge,
                    local_ar: last.ar,
                    local_dr: last.dr,
                    action: CustomerAction::Indicium(IndiciumOrder {
                        postage: Money::from_tenths(730),
                        mail_class: 1,
                        destination_zip: None,
                        software_id: 1,
                    }),
                },
                &hmk,
            )?;
            let reply = db.send(
                host,
                PostalCommand::Customer {
                    package: db.package()?,
                    request,
                },
            )?;
            last = customer_reply(&reply)?.verify(&hmk)?.clone();
            Ok(())
        },
    )?);
    Ok(rows)
}
