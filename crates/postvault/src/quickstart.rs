//! `postvault quickstart`: a local vault (made by the development ceremony on
//! first run, reused after), its server on localhost, and a demo customer who
//! registers, buys postage and prints three indicia over real HTTP; each PNG
//! is read back and verified as a postal clerk would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postvault_client::{Connection, Customer, Registration};
use postvault_indicium::cert::Certificate;
use postvault_indicium::render::render_png;
use postvault_indicium::{Money, Policy};
use postvault_server::config::DataDir;

use crate::error::CliError;
use crate::meter::CUSTOMER_KDF;
use crate::serve::{InitOptions, init_vault, open_service, serve};

/// Where quickstart keeps its vault unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "postvault-data";
/// Modules in the quickstart pool.
const MODULES: usize = 2;

/// What a quickstart run printed.
pub struct Outcome {
    /// The verified PNGs.
    pub pngs: Vec<PathBuf>,
    /// Where `postvault serve` listens for this vault.
    pub url: String,
}

/// Runs the quickstart. With `serve_after`, keeps serving until Ctrl-C.
///
/// # Errors
/// The first step that fails, including the vault's refusal (for example a
/// checkpoint mismatch after its database was restored).
pub fn run(dir: &Path, serve_after: bool, say: &mut dyn FnMut(&str)) -> Result<Outcome, CliError> {
    let data = DataDir::new(dir);
    if data.config().exists() {
        say(&format!("reusing the vault in {}", dir.display()));
    } else {
        say(&format!("new development vault in {}", dir.display()));
        init_vault(&data, &InitOptions { modules: MODULES }, say)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::io(Path::new("runtime"), &e))?;
    rt.block_on(async {
        let service = Arc::new(open_service(&data, None, true).await?);
        let (halted, mismatches) = service.vault().halted();
        if halted {
            return Err(CliError::Check(format!(
                "the vault refuses PSD work: {mismatches} checkpoint mismatches between the module table and the modules (was the database restored from an older copy?)"
            )));
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let listen = if serve_after {
            service.config().listen.clone()
        } else {
            "127.0.0.1:0".into()
        };
        let server = {
            let service = service.clone();
            tokio::spawn(async move {
                serve(
                    service,
                    &listen,
                    |a| {
                        let _ = addr_tx.send(a);
                    },
                    async {
                        let _ = rx.await;
                    },
                )
                .await
            })
        };
        let addr = match addr_rx.await {
            Ok(a) => a,
            Err(_) => {
                return Err(server
                    .await
                    .map_err(|e| CliError::Check(e.to_string()))?
                    .err()
                    .unwrap_or_else(|| CliError::Check("the server did not start".into())));
            }
        };
        let url = format!("http://{addr}");
        say(&format!("server listening on {url} (auto-approval on: development)"));
        let demo = demo_customer(&data, &url, say).await;
        let url = format!("http://{}", service.config().listen);
        if demo.is_ok() && serve_after {
            say("serving until Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
        let _ = tx.send(());
        let stopped = server.await.map_err(|e| CliError::Check(e.to_string()))?;
        let pngs = demo?;
        stopped?;
        Ok(Outcome { pngs, url })
    })
}

async fn demo_customer(
    data: &DataDir,
    url: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<PathBuf>, CliError> {
    let demo = data.path().join("demo");
    std::fs::create_dir_all(&demo).map_err(|e| CliError::io(&demo, &e))?;
    let wallet = demo.join("wallet.json");
    let passphrase_file = demo.join("passphrase.txt");
    let conn = Connection::new(url)?;
    let mut customer = if wallet.exists() {
        let passphrase = crate::meter::read_passphrase(Some(&passphrase_file))?;
        let w = postvault_client::wallet::Wallet::open(&wallet, &passphrase)?;
        say(&format!(
            "demo customer {} again (wallet {})",
            w.contents.customer_id,
            wallet.display()
        ));
        Customer::from_wallet(conn, w)
    } else {
        let passphrase = hex::encode(postvault_crypto::rand::bytes::<12>()?);
        std::fs::write(&passphrase_file, &passphrase)
            .map_err(|e| CliError::io(&passphrase_file, &e))?;
        let id = format!(
            "demo-{}",
            hex::encode(postvault_crypto::rand::bytes::<3>()?)
        );
        let c = Customer::register(
            conn,
            &Registration {
                customer_id: &id,
                passphrase: &passphrase,
                licensing_zip: 12_345 * 10_000 + 6_789,
                expect_ca: None,
                expect_vault_key: None,
                kdf: CUSTOMER_KDF,
            },
        )
        .await?;
        c.wallet.save(&wallet)?;
        say(&format!(
            "demo customer {id} registered: meter {} certified by the vault's CA, secrets sealed to the vendor key (wallet {}, passphrase in {})",
            c.device()?,
            wallet.display(),
            passphrase_file.display()
        ));
        c
    };
    let result = demo_prints(&mut customer, data, &demo, say).await;
    customer.wallet.save(&wallet)?;
    result
}

async fn demo_prints(
    customer: &mut Customer,
    data: &DataDir,
    demo: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<PathBuf>, CliError> {
    customer.sign_on().await?;
    say(
        "signed on: session key sealed to the vendor key, the PSD's signed audit response checked against its certificate",
    );
    let (purchase, _, dr) = customer.buy(Money::from_cents(2_000)?).await?;
    if purchase.status != "done" {
        return Err(CliError::Check(format!(
            "the purchase is {}, not done",
            purchase.status
        )));
    }
    say(&format!("bought $20.000: {dr} available"));
    let ca_pem = std::fs::read_to_string(data.ca_certificate())
        .map_err(|e| CliError::io(&data.ca_certificate(), &e))?;
    let ca = Certificate::from_pem(&ca_pem)?;
    let psd_path = demo.join("psd.pem");
    std::fs::write(&psd_path, &customer.wallet.contents.psd_certificate)
        .map_err(|e| CliError::io(&psd_path, &e))?;
    let psd = Certificate::from_pem(&customer.wallet.contents.psd_certificate)?;
    let mut pngs = Vec::new();
    for cents in [73_u64, 150, 500] {
        let printed = customer
            .print(Money::from_cents(cents)?, 1, Some(90_210 * 10_000))
            .await?;
        let id = printed
            .id
            .ok_or_else(|| CliError::Check("the vault gave no indicium id".into()))?;
        let png = render_png(&printed.indicium)?;
        let path = demo.join(format!("indicium-{id}.png"));
        std::fs::write(&path, &png).map_err(|e| CliError::io(&path, &e))?;
        let report = crate::verify::check_png(
            &png,
            &ca,
            Some(&psd),
            printed.indicium.data().date,
            Policy::default(),
        );
        if !report.valid() {
            return Err(CliError::Check(format!(
                "{} does not verify: {:?}",
                path.display(),
                report.failed()
            )));
        }
        let tokens = customer
            .connection()
            .verify_tokens(&postvault_indicium::text::to_text(printed.indicium.data()))
            .await?;
        if !tokens.good {
            return Err(CliError::Check(format!(
                "{}: the KMS refuses its tokens (vendor: {}, postal: {})",
                path.display(),
                tokens.vendor,
                tokens.postal
            )));
        }
        say(&format!(
            "printed {} as indicium {id}: {} read back from the PNG and verified; its vendor and postal tokens verified by the KMS's brass processes (DR now {})",
            printed.indicium.data().postage,
            path.display(),
            printed.indicium.data().descending_register
        ));
        pngs.push(path);
    }
    Ok(pngs)
}
