//! `postvault meter …`: the customer's commands. Each opens the wallet with the
//! passphrase, talks to the vault over HTTP, saves the wallet, and prints
//! either a sentence or (`--json`) one JSON object.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postvault_client::{ClientError, Connection, Customer, Registration};
use postvault_crypto::password::Argon2Params;
use postvault_indicium::render::{render_png, render_svg};
use postvault_indicium::{Indicium, Money, ZipCode};
use serde_json::json;

use crate::error::CliError;

/// Where the wallet lives unless `--wallet` says otherwise.
pub const DEFAULT_WALLET: &str = "postvault-wallet.json";
/// Where the server is unless `--server` says otherwise (or the wallet pins one).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8620";

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Http(m) => CliError::Io {
                path: "server".into(),
                message: m,
            },
            ClientError::Wallet(m) => CliError::Input(format!("wallet: {m}")),
            other => CliError::Check(other.to_string()),
        }
    }
}

/// Parses dollars (`20`, `0.73`, `1.234`) into money; at most three decimals.
///
/// # Errors
/// [`CliError::Input`] for anything else.
pub fn parse_dollars(text: &str) -> Result<Money, CliError> {
    let bad = || CliError::Input(format!("{text:?}: an amount in dollars, like 20 or 0.73"));
    let t = text.trim().trim_start_matches('$');
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 3
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut tenths: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    for _ in frac.len()..3 {
        tenths = tenths.checked_mul(10).ok_or_else(bad)?;
    }
    let total = whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(tenths))
        .ok_or_else(bad)?;
    Ok(Money::from_tenths(total))
}

/// Parses a ZIP (`12345` or `12345-6789`) into its stored form.
///
/// # Errors
/// [`CliError::Input`].
pub fn parse_zip(text: &str) -> Result<u32, CliError> {
    let bad = || CliError::Input(format!("{text:?}: a ZIP like 12345 or 12345-6789"));
    let (zip5, plus4) = text.split_once('-').unwrap_or((text, "0"));
    if zip5.len() != 5 || !(plus4.len() == 4 || plus4 == "0") {
        return Err(bad());
    }
    let z = ZipCode::new(
        zip5.parse().map_err(|_| bad())?,
        plus4.parse().map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    Ok(z.to_u32())
}

/// Reads the passphrase: `--passphrase-file`, else `POSTVAULT_PASSPHRASE`, else a line on stdin.
///
/// # Errors
/// [`CliError::Input`] if none is given.
pub fn read_passphrase(file: Option<&Path>) -> Result<String, CliError> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| CliError::io(f, &e))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    if let Ok(p) = std::env::var("POSTVAULT_PASSPHRASE") {
        return Ok(p);
    }
    eprint!("passphrase: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::io(Path::new("stdin"), &e))?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        return Err(CliError::Input("no passphrase given".into()));
    }
    Ok(p)
}

/// A spinner on stderr while a request runs (hidden when stderr is not a terminal).
pub fn spinner(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Writes an indicium as PNG, SVG or PDF, by the file's extension.
///
/// # Errors
/// [`CliError::Input`] for another extension; [`CliError::Io`].
pub fn write_indicium(indicium: &Indicium, out: &Path) -> Result<(), CliError> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("png") => render_png(indicium)?,
        Some("svg") => render_svg(indicium)?.into_bytes(),
        Some("pdf") => postvault_indicium::pdf::render_pdf(indicium)?,
        _ => {
            return Err(CliError::Input(format!(
                "{}: the output must end in .png, .svg or .pdf",
                out.display()
            )));
        }
    };
    if let Some(parent) = out.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent, &e))?;
    }
    std::fs::write(out, bytes).map_err(|e| CliError::io(out, &e))
}

/// What every `meter` command needs.
pub struct Common {
    /// The wallet file.
    pub wallet: PathBuf,
    /// The server (else the wallet's).
    pub server: Option<String>,
    /// The passphrase file.
    pub passphrase_file: Option<PathBuf>,
    /// Print JSON.
    pub json: bool,
}

/// Argon2id cost for the passphrase hash and the wallet key.
pub const CUSTOMER_KDF: Argon2Params = Argon2Params::RECOMMENDED;

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io(Path::new("runtime"), &e))
}

fn print(json: bool, value: &serde_json::Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn open(common: &Common) -> Result<Customer, CliError> {
    let passphrase = read_passphrase(common.passphrase_file.as_deref())?;
    let wallet = postvault_client::wallet::Wallet::open(&common.wallet, &passphrase)?;
    let server = common
        .server
        .clone()
        .unwrap_or_else(|| wallet.contents.vault.server.clone());
    Ok(Customer::from_wallet(Connection::new(&server)?, wallet))
}

/// `meter register`.
///
/// # Errors
/// The vault's refusal; a wallet that exists already.
pub fn register(
    common: &Common,
    customer_id: &str,
    zip: &str,
    expect_ca: Option<&Path>,
    vault_key: Option<&str>,
) -> Result<(), CliError> {
    if common.wallet.exists() {
        return Err(CliError::Input(format!(
            "{} exists: this customer is registered already (choose another --wallet)",
            common.wallet.display()
        )));
    }
    let passphrase = read_passphrase(common.passphrase_file.as_deref())?;
    let ca = expect_ca
        .map(|p| std::fs::read_to_string(p).map_err(|e| CliError::io(p, &e)))
        .transpose()?;
    let server = common
        .server
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVER.into());
    let licensing_zip = parse_zip(zip)?;
    let rt = runtime()?;
    let bar =
        spinner("registering: a new meter, its certificate, your secrets sealed to the vault");
    let customer = rt.block_on(Customer::register(
        Connection::new(&server)?,
        &Registration {
            customer_id,
            passphrase: &passphrase,
            licensing_zip,
            expect_ca: ca.as_deref(),
            expect_vault_key: vault_key,
            kdf: CUSTOMER_KDF,
        },
    ));
    bar.finish_and_clear();
    let mut customer = customer?;
    customer.wallet.save(&common.wallet)?;
    // Sign on at once: it shows the meter's state and proves the passphrase.
    let state = rt.block_on(customer.balance());
    customer.wallet.save(&common.wallet)?;
    let (state, _, _, _) = state?;
    let device = customer.device()?;
    print(
        common.json,
        &json!({"customer_id": customer_id, "meter": device.to_string(), "state": state,
                "wallet": common.wallet.display().to_string()}),
        &format!(
            "registered {customer_id}: meter {device} ({state}); secrets in {} (sealed under your passphrase)",
            common.wallet.display()
        ),
    );
    Ok(())
}

/// Runs `f` on the opened customer, saving the wallet afterwards whatever happened.
fn with_customer<T>(
    common: &Common,
    message: &str,
    f: impl AsyncFnOnce(&mut Customer) -> Result<T, ClientError>,
) -> Result<T, CliError> {
    let mut customer = open(common)?;
    let rt = runtime()?;
    let bar = spinner(message);
    let result = rt.block_on(f(&mut customer));
    bar.finish_and_clear();
    customer.wallet.save(&common.wallet)?;
    Ok(result?)
}

/// `meter login`.
///
/// # Errors
/// The vault's refusal (wrong passphrase, locked).
pub fn login(common: &Common) -> Result<(), CliError> {
    let (ar, dr) = with_customer(common, "signing on", async |c| {
        c.sign_on().await?;
        Ok((c.wallet.contents.ar, c.wallet.contents.dr))
    })?;
    let (ar, dr) = (Money::from_tenths(ar), Money::from_tenths(dr));
    print(
        common.json,
        &json!({"signed_on": true, "ar": ar.tenths(), "dr": dr.tenths()}),
        &format!("signed on; the PSD's signed audit response checks out: AR {ar}, DR {dr}"),
    );
    Ok(())
}

/// `meter balance`.
///
/// # Errors
/// The vault's refusal.
pub fn balance(common: &Common) -> Result<(), CliError> {
    let (state, ar, dr, pending) = with_customer(common, "asking", async |c| c.balance().await)?;
    let pending_total: u64 = pending.iter().map(|p| p.amount).sum();
    print(
        common.json,
        &json!({"state": state, "ar": ar.tenths(), "dr": dr.tenths(),
                "pending": pending.iter().map(|p| json!({"purchase_id": p.purchase_id, "amount": p.amount})).collect::<Vec<_>>()}),
        &format!(
            "meter {state}: {dr} available (DR), {ar} printed (AR){}",
            if pending.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} awaiting the provider",
                    Money::from_tenths(pending_total)
                )
            }
        ),
    );
    Ok(())
}

/// `meter buy AMOUNT`.
///
/// # Errors
/// The vault's refusal.
pub fn buy(common: &Common, amount: &str) -> Result<(), CliError> {
    let amount = parse_dollars(amount)?;
    let (p, ar, dr) = with_customer(common, "buying postage", async |c| c.buy(amount).await)?;
    print(
        common.json,
        &json!({"purchase_id": p.purchase_id, "amount": p.amount, "status": p.status,
                "ar": ar.tenths(), "dr": dr.tenths()}),
        &match p.status.as_str() {
            "done" => format!("bought {amount}: {dr} available"),
            "pending" => format!(
                "purchase {} of {amount} waits for the provider's approval",
                p.purchase_id
            ),
            s => format!("purchase {} of {amount}: {s}", p.purchase_id),
        },
    );
    if p.status == "refused" {
        return Err(CliError::Check("the purchase was refused".into()));
    }
    Ok(())
}

/// `meter print`.
///
/// # Errors
/// The vault's refusal; an unwritable output.
pub fn print_indicium(
    common: &Common,
    amount: &str,
    to_zip: Option<&str>,
    mail_class: u16,
    out: &Path,
) -> Result<(), CliError> {
    let postage = parse_dollars(amount)?;
    let zip = to_zip.map(parse_zip).transpose()?;
    // Check the output name before spending anything.
    match out.extension().and_then(|e| e.to_str()) {
        Some("png" | "svg" | "pdf") => {}
        _ => {
            return Err(CliError::Input(format!(
                "{}: the output must end in .png, .svg or .pdf",
                out.display()
            )));
        }
    }
    let printed = with_customer(common, "printing", async |c| {
        c.print(postage, mail_class, zip).await
    })?;
    write_indicium(&printed.indicium, out)?;
    let d = printed.indicium.data();
    print(
        common.json,
        &json!({"id": printed.id, "postage": d.postage.tenths(), "ar": d.ascending_register.tenths(),
                "dr": d.descending_register.tenths(), "out": out.display().to_string()}),
        &format!(
            "printed {} (indicium {}) to {}; {} left",
            d.postage,
            printed.id.map_or_else(|| "?".into(), |i| i.to_string()),
            out.display(),
            d.descending_register
        ),
    );
    Ok(())
}

/// `meter reprint ID`.
///
/// # Errors
/// The vault's refusal; an unwritable output.
pub fn reprint(common: &Common, id: i64, out: &Path) -> Result<(), CliError> {
    let indicium = with_customer(common, "fetching", async |c| c.reprint(id).await)?;
    write_indicium(&indicium, out)?;
    print(
        common.json,
        &json!({"id": id, "out": out.display().to_string()}),
        &format!("indicium {id} written again to {}", out.display()),
    );
    Ok(())
}

/// `meter refund ID`.
///
/// # Errors
/// The vault's refusal.
pub fn refund(common: &Common, id: i64) -> Result<(), CliError> {
    with_customer(common, "asking for a refund", async |c| c.refund(id).await)?;
    print(
        common.json,
        &json!({"id": id, "refund_requested": true}),
        &format!("refund of indicium {id} requested; the provider credits it once checked"),
    );
    Ok(())
}

/// `meter history`.
///
/// # Errors
/// The vault's refusal.
pub fn history(common: &Common, limit: u32) -> Result<(), CliError> {
    let items = with_customer(common, "fetching", async |c| c.history(limit).await)?;
    if common.json {
        let v: Vec<_> = items
            .iter()
            .map(|i| {
                json!({"id": i.id, "kind": i.kind, "postage": i.postage,
                       "ar": i.ascending_register, "refund_requested": i.refund_requested})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else if items.is_empty() {
        println!("no indicia yet");
    } else {
        for i in &items {
            println!(
                "{:>6}  {:<10} {:>12}  AR {}{}",
                i.id,
                i.kind,
                Money::from_tenths(i.postage).to_string(),
                Money::from_tenths(i.ascending_register),
                if i.refund_requested {
                    "  (refund requested)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
