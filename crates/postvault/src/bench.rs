//! `postvault bench`: how fast the module's operations run on this machine,
//! against a real file-backed module in a scratch directory. Figures only; no
//! test asserts on them.

use std::path::Path;
use std::time::{Duration, Instant};

use postvault_indicium::{Date, DeviceId, Money};
use postvault_module::audit::verify_log;
use postvault_module::session::HostSession;
use postvault_module::wire::{ModuleConfig, Request, Response};

use crate::ceremony::{self, AccountSpec};
use crate::error::CliError;
use crate::postal::{self, Customer, Db, PostalParties};
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

/// PSD work on one meter: loads a crypto-card (as the logged-on security
/// officer), brings a meter to Leased, and times downloads and indicia.
fn postal_rows(
    host: &mut VaultHost,
    session: &mut HostSession,
    iterations: u32,
) -> Result<Vec<Row>, CliError> {
    let now = i64::try_from(host.status()?.time).map_err(|_| CliError::Check("clock".into()))?;
    let parties = PostalParties::generate(Date::from_unix_seconds(now)?)?;
    let settings = parties.settings(Money::from_tenths(10_000_000));
    let Response::CryptoCard { public, .. } = host.send(
        session,
        &Request::InitializeCryptoCard {
            settings,
            tokens: None,
        },
    )?
    else {
        return Err(CliError::Check("unexpected crypto-card reply".into()));
    };
    let device = DeviceId::new(*b"PV", 1)?;
    let module = "bench";
    let mut db = Db::default();
    parties.new_meter(&mut db, host, module, device)?;
    let mut customer = Customer::new("bench-customer", device)?;
    postal::lease(
        &mut db,
        host,
        module,
        &parties,
        &public,
        &mut customer,
        12_345 * 10_000,
    )?;
    let mut rows = vec![time(
        "postage value download (provider sig, MAC, checkpoint)",
        iterations,
        || {
            db.download(
                host,
                module,
                &parties.provider,
                device,
                Money::from_tenths(1_000),
            )
        },
    )?];
    let body = db.package(device)?.peek()?;
    customer.registers(body.ar, body.dr);
    rows.push(time(
        "create indicium (12 checks, P-256 sign, checkpoint)",
        iterations,
        || {
            customer
                .print(&mut db, host, module, Money::from_tenths(730))
                .map(drop)
        },
    )?);
    Ok(rows)
}
