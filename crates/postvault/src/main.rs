//! `postvault`: the one binary: operator ceremonies on the cryptographic
//! module, module status and reset, the vault server and its quickstart, the
//! customer's `meter` commands, the provider's, audit log verification, and
//! indicium verification.
#![forbid(unsafe_code)]

mod bench;
mod ceremony;
mod error;
mod kms;
mod loadgen;
mod meter;
mod postal;
mod quickstart;
mod serve;
mod sign;
mod vault;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use postvault_module::audit::{AuditData, verify_log};
use postvault_module::module::stored_audit_head;
use postvault_module::nvm::file::{FileNvm, KEY_FILE};
use postvault_module::role::{Role, UserId};
use postvault_module::wire::{ModuleConfig, Outer, OuterReply, Request, Status};

use crate::ceremony::AccountSpec;
use crate::error::{CliError, exit};
use crate::vault::Operator;

/// postvault: an online postage meter. Operators run key ceremonies on the
/// vault's cryptographic modules; auditors verify their audit logs.
///
/// Exit codes: 0 success; 1 refused or verification failed; 2 unreadable input;
/// 3 storage or I/O failure; 4 module fault.
#[derive(Parser)]
#[command(name = "postvault", version)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Key ceremonies: each step logs one operator on to one module through a real session.
    #[command(subcommand)]
    Ceremony(CeremonyCmd),
    /// Inspect or reset a module.
    #[command(subcommand)]
    Module(ModuleCmd),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The whole system on this machine: a development vault (made on first run,
    /// reused after), its server on localhost, and a demo customer who registers,
    /// buys postage and prints three indicia, each read back and verified.
    Quickstart {
        /// The vault's directory.
        #[arg(long, default_value = quickstart::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Exit after the demo instead of serving until Ctrl-C.
        #[arg(long)]
        no_serve: bool,
    },
    /// Serve a vault's HTTP API (OpenAPI document at /openapi.json).
    Serve {
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The configuration file (default DATA_DIR/vault.json).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (default from the configuration).
        #[arg(long)]
        listen: Option<String>,
        /// Approve customers and purchases without an operator (development only).
        #[arg(long)]
        auto_approve: bool,
    },
    /// Make a development vault: a pool of modules sharing one MKS, a postal CA
    /// and provider key on disk. Never for a real vault.
    #[command(subcommand)]
    Vault(VaultCmd),
    /// The customer's commands: register, sign on, buy postage, print indicia.
    #[command(subcommand)]
    Meter(MeterCmd),
    /// The provider's commands on a local vault: authorise customers and approve purchases.
    #[command(subcommand)]
    Provider(ProviderCmd),
    /// Remote signing (seed 003): a person's private key kept by a signing
    /// node only encrypted, each signature approved on their device file.
    #[command(subcommand)]
    Sign(SignCmd),
    /// The key management system of a local vault (stopped): domains, secure
    /// boxes, meters' keys, tin-box token keys, and the seed's whole story (`demo`).
    #[command(subcommand)]
    Kms(KmsCmd),
    /// Measure this machine: module operations on a scratch module, or with
    /// --server, concurrent signed-on customers creating indicia over HTTP.
    Bench {
        /// Repetitions of each operation (module benchmark).
        #[arg(long, default_value_t = 200)]
        iterations: u32,
        /// A vault server to load (it must approve purchases automatically).
        #[arg(long)]
        server: Option<String>,
        /// Concurrent customers.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Measure token verification instead (brass and tin boxes, one core).
        #[arg(long)]
        tokens: bool,
        /// Registered meters in the token benchmark.
        #[arg(long, default_value_t = 1000)]
        meters: u32,
    },
    /// Verify an indicium from a PNG image: decode, parse, certificate chain to the
    /// postal CA, signature, value and date. Prints each check; exit 0 valid,
    /// 1 invalid, 2 the input cannot be read.
    Verify(VerifyArgs),
    /// Indicium tools for testing verifiers.
    #[command(subcommand, hide = true)]
    Indicium(IndiciumCmd),
}

#[derive(Args)]
struct VerifyArgs {
    /// The PNG image holding the indicium's Data Matrix symbol.
    #[arg(long)]
    image: PathBuf,
    /// The postal CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The meter's (PSD's) certificate (PEM). Without it the certificate check fails.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Print a JSON report: checks, decoded fields, signed bytes and signature in hex.
    #[arg(long)]
    json: bool,
    /// Check as of this date (YYYY-MM-DD) instead of today's UTC date.
    #[arg(long)]
    today: Option<String>,
    /// Reject dates of mailing more than this many days before today.
    #[arg(long, default_value_t = 30)]
    max_age_days: u16,
    /// Also check the vendor and postal tokens with the KMS's brass
    /// processes: a stopped vault's data directory, or a server URL.
    #[arg(long)]
    kms: Option<String>,
    /// Also check the token with a tin box's temporal token keys (the file
    /// `postvault kms token-keys` writes).
    #[arg(long)]
    token_keys: Option<PathBuf>,
}

/// A PKCS#11 token as the device.
#[derive(Args)]
struct TokenArgs {
    /// The PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long)]
    pkcs11_module: Option<PathBuf>,
    /// The token's label.
    #[arg(long)]
    token: Option<String>,
}

fn device_of<'a>(
    device: Option<&'a Path>,
    token: &'a TokenArgs,
    id: Option<&'a str>,
) -> Result<sign::Device<'a>, CliError> {
    match (
        device,
        token.pkcs11_module.as_deref(),
        token.token.as_deref(),
        id,
    ) {
        (Some(f), None, None, _) => Ok(sign::Device::File(f)),
        (None, Some(m), Some(t), Some(id)) => Ok(sign::Device::Token(m, t, id)),
        _ => Err(CliError::Input(
            "give --device FILE, or --pkcs11-module PATH --token LABEL --id ID".into(),
        )),
    }
}

#[derive(Subcommand)]
enum SignCmd {
    /// Enrol a person on a signing node and write their device file.
    Init {
        /// The node's directory (made on first use).
        #[arg(long)]
        node: PathBuf,
        /// The person's id.
        #[arg(long)]
        id: String,
        /// Where to write the device file (or use --pkcs11-module and --token).
        #[arg(long)]
        device: Option<PathBuf>,
        #[command(flatten)]
        token: TokenArgs,
        /// A file holding the new PIN, or the token's user PIN (else $POSTVAULT_PIN or a line on stdin).
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
    /// Sign one message: approved on the device, signed by the node.
    Sign {
        /// The node's directory.
        #[arg(long)]
        node: PathBuf,
        /// The device file (or use --pkcs11-module, --token and --id).
        #[arg(long)]
        device: Option<PathBuf>,
        #[command(flatten)]
        token: TokenArgs,
        /// The person (with a token).
        #[arg(long)]
        id: Option<String>,
        /// The message to sign.
        #[arg(long)]
        message: PathBuf,
        /// Where to write the signature (hex).
        #[arg(long)]
        out: PathBuf,
        /// A file holding the PIN.
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
    /// Change the device's PIN (no server needed).
    ChangePin {
        /// The device file.
        #[arg(long)]
        device: PathBuf,
        /// A file holding the current PIN.
        #[arg(long)]
        pin_file: Option<PathBuf>,
        /// A file holding the new PIN (else $POSTVAULT_NEW_PIN or stdin).
        #[arg(long)]
        new_pin_file: Option<PathBuf>,
    },
    /// Revoke a person on a node: delete their record there.
    Revoke {
        /// The node's directory.
        #[arg(long)]
        node: PathBuf,
        /// The person's id.
        #[arg(long)]
        id: String,
    },
    /// Copy a person's key to another node in a signing session.
    Replicate {
        /// The node that has the person's record.
        #[arg(long)]
        node: PathBuf,
        /// The other node's directory.
        #[arg(long)]
        to: PathBuf,
        /// The device file (or use --pkcs11-module, --token and --id).
        #[arg(long)]
        device: Option<PathBuf>,
        #[command(flatten)]
        token: TokenArgs,
        /// The person (with a token).
        #[arg(long)]
        id: Option<String>,
        /// A file holding the PIN.
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KmsCmd {
    /// Domains and secure boxes, and whether each box has its operation shares.
    Status {
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Create a security domain (e.g. UKRM) or a country sub-domain (e.g.
    /// UKRM.GB) and give the vault's boxes their processes for it.
    DomainCreate {
        /// The domain id.
        domain: String,
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Initialise a new secure box (oak, steel, brass or tin) with a process
    /// for every domain its kind serves.
    BoxInit {
        /// The kind: oak, steel, brass or tin.
        #[arg(long)]
        kind: String,
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Request a domain master key (MI0-MI4): generated by oak, archived New,
    /// sealed for a steel box to install into the next meter.
    RequestKey {
        /// The install domain (e.g. USPS).
        #[arg(long)]
        domain: String,
        /// The steel box (default the vault's).
        #[arg(long)]
        steel: Option<String>,
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Make a meter's Active keys Obsolete as of today (`provider withdraw`
    /// does this after the refund indicium).
    Obsolete {
        /// The meter number (e.g. PV00000042).
        #[arg(long)]
        meter: String,
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Register a meter's keys to its indicia number in a country (MR1-MR4).
    Register {
        /// The meter number (e.g. PV00000042).
        #[arg(long)]
        meter: String,
        /// The country (default the vault's).
        #[arg(long)]
        country: Option<String>,
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// A meter's domain master keys: each key's records in the archive
    /// (installation, registration, obsolescence).
    Meter {
        /// The meter number (e.g. PV00000042).
        meter: String,
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// The month's temporal token keys of a sub-domain's meters, sealed to
    /// the vault's tin box, for `postvault verify --token-keys`.
    TokenKeys {
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The month (YYYY-MM; default this month).
        #[arg(long)]
        month: Option<String>,
        /// The country sub-domain (default the post's, e.g. USPS.US).
        #[arg(long)]
        domain: Option<String>,
        /// Where to write them.
        #[arg(long)]
        out: PathBuf,
    },
    /// The seed's whole story on a development vault in DIR/vault, narrated.
    Demo {
        /// The demo's directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum IndiciumCmd {
    /// Write a sample for testing verifiers: a postal CA (ca.pem), a PSD certificate
    /// (psd.pem) and a signed indicium (indicium.png, indicium.svg, indicium.bin).
    /// Keys are generated afresh and not kept.
    Sample {
        /// Directory to write into (created if absent).
        #[arg(long)]
        out_dir: PathBuf,
        /// Flip bit N of the indicium (0 is the first byte's most significant bit)
        /// before rendering, to test that verifiers reject it. The printed text keeps
        /// the genuine values.
        #[arg(long)]
        tamper_bit: Option<usize>,
        /// Date of mailing (YYYY-MM-DD); default today's UTC date.
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Args, Clone)]
struct Dir {
    /// The module directory (sealed NVM, storage key, audit log).
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Args, Clone)]
struct OperatorArgs {
    /// The module directory.
    #[arg(long)]
    dir: PathBuf,
    /// The operator's user id.
    #[arg(long)]
    user: String,
    /// File holding the passphrase (else $POSTVAULT_PASSPHRASE, else one line on standard input).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CeremonyCmd {
    /// Start Initialization and the minimal account set (1 administrator, 1 security officer, 2+ key custodians).
    Init {
        #[command(flatten)]
        dir: Dir,
        /// JSON file: [{"user": "so", "role": "security-officer", "passphrase": "..."}, ...].
        #[arg(long)]
        accounts: PathBuf,
        /// Sign at least every N audit entries.
        #[arg(long, default_value_t = 100)]
        audit_interval: u32,
    },
    /// Security officer: generate a master key set (master module; or a new one for rollover).
    GenerateMks(OperatorArgs),
    /// Security officer: generate this module's transport key pair (clone module) and write the public key.
    TransportKey {
        #[command(flatten)]
        op: OperatorArgs,
        /// Where to write the transport public key.
        #[arg(long)]
        out: PathBuf,
        /// Only export the existing key.
        #[arg(long)]
        export_only: bool,
    },
    /// Security officer: split the active MKS into shares and enter Exporting Shares.
    CreateShares {
        #[command(flatten)]
        op: OperatorArgs,
        /// Number of shares, one per key custodian.
        #[arg(long)]
        shares: u8,
        /// Shares needed to combine.
        #[arg(long)]
        threshold: u8,
        /// Let the destination export the MKS again (default: retained).
        #[arg(long)]
        exportable: bool,
    },
    /// Key custodian: export one share sealed to a destination's transport key.
    ExportShare {
        #[command(flatten)]
        op: OperatorArgs,
        /// The destination module's transport public key file.
        #[arg(long)]
        to: PathBuf,
        /// Where to write the share.
        #[arg(long)]
        out: PathBuf,
    },
    /// Security officer: abandon an export ceremony.
    AbortExport(OperatorArgs),
    /// Security officer: enter Importing Shares (for a replacement MKS).
    StartImport(OperatorArgs),
    /// Key custodian: import one share file.
    ImportShare {
        #[command(flatten)]
        op: OperatorArgs,
        /// The share file.
        #[arg(long)]
        share: PathBuf,
    },
    /// Security officer: combine the imported shares, naming the module they must come from.
    Combine {
        #[command(flatten)]
        op: OperatorArgs,
        /// Audit key fingerprint of the exporting module (from its `module status`).
        #[arg(long)]
        source: String,
    },
    /// Security officer: discard imported shares.
    AbortImport(OperatorArgs),
    /// Security officer: activate the dormant MKS.
    Activate(OperatorArgs),
    /// Security officer: delete the dormant MKS.
    DeleteDormant(OperatorArgs),
    /// Security officer: open Administrative state.
    BeginAdmin(OperatorArgs),
    /// Security officer: close Administrative state.
    EndAdmin(OperatorArgs),
    /// Administrator: create an account.
    CreateAccount {
        #[command(flatten)]
        op: OperatorArgs,
        /// New user id.
        #[arg(long)]
        new_user: String,
        /// Role: security-officer, key-custodian, administrator or auditor.
        #[arg(long)]
        role: String,
        /// File holding the new account's passphrase.
        #[arg(long)]
        new_passphrase_file: PathBuf,
    },
    /// Security officer: make a test key token under the active MKS.
    TestToken {
        #[command(flatten)]
        op: OperatorArgs,
        /// Where to write the token.
        #[arg(long)]
        out: PathBuf,
    },
    /// Open a token inside the module and print its key check value.
    CheckToken {
        #[command(flatten)]
        op: OperatorArgs,
        /// The token file.
        #[arg(long)]
        token: PathBuf,
    },
    /// Security officer: re-seal a token under the active MKS.
    TranslateToken {
        #[command(flatten)]
        op: OperatorArgs,
        /// The token file.
        #[arg(long)]
        token: PathBuf,
        /// Where to write the translated token.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the whole ceremony with generated credentials: a master and a clone in DIR/master and DIR/clone.
    Demo {
        #[command(flatten)]
        dir: Dir,
        /// Erase the modules of an earlier demo in DIR first.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Subcommand)]
enum ModuleCmd {
    /// Print the module's state, keys and progress.
    Status {
        #[command(flatten)]
        dir: Dir,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Power-cycle the module as a reboot: volatile state is lost and boot detection runs
    /// (clears a non-fatal error; an interrupted ceremony is abandoned).
    Reboot {
        #[command(flatten)]
        dir: Dir,
    },
    /// Erase everything and return to Uninitialized (the audit log is archived).
    Reset {
        #[command(flatten)]
        dir: Dir,
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum VaultCmd {
    /// The development ceremony into an empty data directory.
    Init {
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Modules in the pool.
        #[arg(long, default_value_t = 2)]
        modules: usize,
    },
}

#[derive(Args)]
struct MeterArgs {
    /// The wallet file holding this customer's secrets (sealed under the passphrase).
    #[arg(long, global = true, default_value = meter::DEFAULT_WALLET)]
    wallet: PathBuf,
    /// The vault server (default: the one the wallet was registered with).
    #[arg(long, global = true)]
    server: Option<String>,
    /// Read the passphrase from this file (else POSTVAULT_PASSPHRASE, else stdin).
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum MeterCmd {
    /// Register: a new meter for you, certified by the vault's CA; your secrets
    /// sealed to the vault and kept in the wallet.
    Register {
        #[command(flatten)]
        common: MeterArgs,
        /// Your customer id.
        #[arg(long)]
        customer: String,
        /// Your licensing ZIP (12345 or 12345-6789).
        #[arg(long)]
        zip: String,
        /// Require this postal CA (PEM) instead of trusting the server's on first use.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Require this registration signing key (hex, as `vault init` prints
        /// it) instead of trusting the server's on first use.
        #[arg(long)]
        vault_key: Option<String>,
    },
    /// Sign on: a new session; the PSD's signed audit response is checked.
    Login {
        #[command(flatten)]
        common: MeterArgs,
    },
    /// The meter's registers and pending purchases.
    Balance {
        #[command(flatten)]
        common: MeterArgs,
    },
    /// Buy postage (dollars, e.g. 20 or 12.50).
    Buy {
        #[command(flatten)]
        common: MeterArgs,
        /// Amount in dollars.
        amount: String,
    },
    /// Print an indicium to a PNG, SVG or PDF file.
    Print {
        #[command(flatten)]
        common: MeterArgs,
        /// Postage in dollars.
        #[arg(long)]
        amount: String,
        /// Destination ZIP.
        #[arg(long)]
        to_zip: Option<String>,
        /// Mail class code.
        #[arg(long, default_value_t = 1)]
        class: u16,
        /// Output file: .png, .svg or .pdf.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print an indicium issued before again.
    Reprint {
        #[command(flatten)]
        common: MeterArgs,
        /// Its id (see history).
        id: i64,
        /// Output file: .png, .svg or .pdf.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ask for an unused indicium to be refunded.
    Refund {
        #[command(flatten)]
        common: MeterArgs,
        /// Its id (see history).
        id: i64,
    },
    /// Your indicia, newest first.
    History {
        #[command(flatten)]
        common: MeterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// The provider officer's device: every order is approved on it (remote
/// signing). Without these, the development device beside the vault.
#[derive(Args)]
struct OfficerArgs {
    /// The officer's device file.
    #[arg(long)]
    device: Option<PathBuf>,
    /// A PKCS#11 module holding the officer's token.
    #[arg(long)]
    pkcs11_module: Option<PathBuf>,
    /// The token's label.
    #[arg(long)]
    token: Option<String>,
    /// A file holding the PIN (else $POSTVAULT_PIN or a line on stdin).
    #[arg(long)]
    pin_file: Option<PathBuf>,
}

impl OfficerArgs {
    fn apply(self) -> Result<(), CliError> {
        let id = serve::PROVIDER_ID.to_owned();
        let device = match (self.device, self.pkcs11_module, self.token) {
            (None, None, None) => {
                if let Some(pin) = self.pin_file {
                    return Err(CliError::Input(format!(
                        "--pin-file {} needs --device or --pkcs11-module and --token",
                        pin.display()
                    )));
                }
                return Ok(());
            }
            (Some(f), None, None) => {
                let holder = sign::device_id(&f)?;
                if holder != id {
                    return Err(CliError::Input(format!(
                        "{} is {holder}'s device, not the provider officer's",
                        f.display()
                    )));
                }
                sign::DeviceSpec::File(f)
            }
            (None, Some(m), Some(t)) => sign::DeviceSpec::Token(m, t, id),
            _ => {
                return Err(CliError::Input(
                    "give --device FILE, or --pkcs11-module PATH and --token LABEL".into(),
                ));
            }
        };
        serve::use_provider_device(device, self.pin_file);
        Ok(())
    }
}

#[derive(Subcommand)]
enum ProviderCmd {
    /// Purchases waiting for a download.
    Pending {
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Download pending purchases into their meters (after payment).
    Approve {
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        officer: OfficerArgs,
        /// Only this meter (e.g. PV00000042).
        #[arg(long)]
        meter: Option<String>,
    },
    /// Take a meter out of service: its refund indicium (Withdrawn), then its
    /// domain master keys become Obsolete.
    Withdraw {
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        officer: OfficerArgs,
        /// The meter number (e.g. PV00000042).
        #[arg(long)]
        meter: String,
    },
    /// License a registered customer (Authorize Customer).
    Authorize {
        /// The vault's directory.
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        officer: OfficerArgs,
        /// The customer id.
        #[arg(long)]
        customer: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify a module's audit log: framing, hash chain, signatures, and its head
    /// against the module's own record of it.
    Verify {
        /// The module directory (reads DIR/audit.log).
        #[arg(long, required_unless_present_any = ["log", "data_dir"])]
        dir: Option<PathBuf>,
        /// A vault's data directory: every module's log as the audit database
        /// holds it, against each module's chain head, and each meter's
        /// registers followed across all of them (a replayed package shows).
        #[arg(long, conflicts_with_all = ["dir", "log"])]
        data_dir: Option<PathBuf>,
        /// An audit log file, instead of --dir.
        #[arg(long, conflicts_with = "dir")]
        log: Option<PathBuf>,
        /// A head hash recorded earlier (hex): the chain must contain it; catches removed or replaced entries.
        #[arg(long)]
        expect_head: Option<String>,
    },
}

fn passphrase(op: &OperatorArgs) -> Result<String, CliError> {
    let raw = if let Some(f) = &op.passphrase_file {
        std::fs::read_to_string(f).map_err(|e| CliError::io(f, &e))?
    } else if let Ok(p) = std::env::var("POSTVAULT_PASSPHRASE") {
        p
    } else {
        eprint!("passphrase for {}: ", op.user);
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::io(Path::new("<stdin>"), &e))?;
        line
    };
    Ok(raw.trim_end_matches(['\r', '\n']).to_owned())
}

fn operator(op: &OperatorArgs) -> Result<Operator, CliError> {
    Ok(Operator {
        user: UserId::new(&op.user)?,
        passphrase: passphrase(op)?,
    })
}

fn read_accounts(path: &Path) -> Result<Vec<AccountSpec>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, &e))?;
    serde_json::from_str(&text).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

fn ceremony(cmd: CeremonyCmd) -> Result<(), CliError> {
    use ceremony as c;
    match cmd {
        CeremonyCmd::Init {
            dir,
            accounts,
            audit_interval,
        } => {
            let config = ModuleConfig {
                audit_sign_interval: audit_interval,
                ..ModuleConfig::default()
            };
            let serial = c::init(&dir.dir, &read_accounts(&accounts)?, config)?;
            println!(
                "module {serial} initialized in {}; next: generate-mks (master) or transport-key (clone)",
                dir.dir.display()
            );
        }
        CeremonyCmd::GenerateMks(op) => {
            let id = c::generate_mks(&op.dir, &operator(&op)?)?;
            println!("generated master key set {id}");
        }
        CeremonyCmd::TransportKey {
            op,
            out,
            export_only,
        } => {
            c::transport_key(&op.dir, &operator(&op)?, !export_only, &out)?;
            println!("transport public key written to {}", out.display());
        }
        CeremonyCmd::CreateShares {
            op,
            shares,
            threshold,
            exportable,
        } => {
            let n = c::create_shares(&op.dir, &operator(&op)?, shares, threshold, exportable)?;
            println!(
                "ceremony {n}: {shares} shares, threshold {threshold}; each key custodian now runs export-share"
            );
        }
        CeremonyCmd::ExportShare { op, to, out } => {
            let left = c::export_share(&op.dir, &operator(&op)?, &to, &out)?;
            println!("share written to {}; {left} left to export", out.display());
        }
        CeremonyCmd::ImportShare { op, share } => {
            let (r, t) = c::import_share(&op.dir, &operator(&op)?, &share)?;
            println!("imported: {r} of {t} shares");
        }
        CeremonyCmd::Combine { op, source } => {
            let id = c::combine(&op.dir, &operator(&op)?, &source)?;
            println!("combined master key set {id}");
        }
        CeremonyCmd::AbortExport(op) => done(&op, &Request::AbortExport, "export abandoned")?,
        CeremonyCmd::StartImport(op) => done(
            &op,
            &Request::StartImportingMks,
            "importing shares; key custodians now run import-share",
        )?,
        CeremonyCmd::AbortImport(op) => {
            done(&op, &Request::AbortImport, "imported shares discarded")?
        }
        CeremonyCmd::Activate(op) => done(
            &op,
            &Request::ActivateMks,
            "dormant master key set activated",
        )?,
        CeremonyCmd::DeleteDormant(op) => done(
            &op,
            &Request::DeleteDormantMks,
            "dormant master key set deleted",
        )?,
        CeremonyCmd::BeginAdmin(op) => {
            done(&op, &Request::BeginAdmin, "administrative state open")?
        }
        CeremonyCmd::EndAdmin(op) => done(&op, &Request::EndAdmin, "back to operational state")?,
        CeremonyCmd::CreateAccount {
            op,
            new_user,
            role,
            new_passphrase_file,
        } => {
            let user = UserId::new(&new_user)?;
            let pass = std::fs::read_to_string(&new_passphrase_file)
                .map_err(|e| CliError::io(&new_passphrase_file, &e))?;
            let password = vault::password(&user, pass.trim_end_matches(['\r', '\n']));
            let req = Request::CreateAccount(postvault_module::account::NewAccount {
                user,
                role: Role::from_name(&role)?,
                password,
            });
            done(&op, &req, "account created")?;
        }
        CeremonyCmd::TestToken { op, out } => {
            let kcv = c::test_token(&op.dir, &operator(&op)?, &out)?;
            println!(
                "test token written to {} (key check value {kcv})",
                out.display()
            );
        }
        CeremonyCmd::CheckToken { op, token } => {
            let (kcv, under) = c::check_token(&op.dir, &operator(&op)?, &token)?;
            println!("token opens under the {under:?} master key set; key check value {kcv}");
        }
        CeremonyCmd::TranslateToken { op, token, out } => {
            let kcv = c::translate_token(&op.dir, &operator(&op)?, &token, &out)?;
            println!(
                "translated token written to {} (key check value {kcv})",
                out.display()
            );
        }
        CeremonyCmd::Demo { dir, replace } => {
            if replace {
                c::remove_demo(&dir.dir)?;
            }
            let r = c::demo(&dir.dir, ModuleConfig::default(), &mut |line| {
                println!("- {line}")
            })?;
            for m in [&r.master, &r.clone] {
                let summary = verify_dir(m, None)?;
                println!("- audit log of {}: {summary}", m.display());
            }
            println!(
                "ceremony complete: master and clone share one master key set (token kcv {})",
                r.kcv
            );
            println!(
                "check the printed indicium yourself: postvault verify --image {} --ca {} --cert {}",
                r.indicium.display(),
                r.indicium.with_file_name("ca.pem").display(),
                r.indicium.with_file_name("psd.pem").display()
            );
        }
    }
    Ok(())
}

fn done(op: &OperatorArgs, req: &Request, msg: &str) -> Result<(), CliError> {
    ceremony::simple(&op.dir, &operator(op)?, req)?;
    println!("{msg}");
    Ok(())
}

fn status_text(s: &Status) -> String {
    let mks = |m: &Option<postvault_module::mks::MksInfo>| {
        m.map_or("none".to_owned(), |i| {
            format!(
                "{} ({})",
                hex::encode(i.id),
                if i.exportable {
                    "exportable"
                } else {
                    "retained"
                }
            )
        })
    };
    let mut out = vec![
        format!(
            "state:          {} (persistent: {})",
            s.current, s.persistent
        ),
        format!("serial:         {}", s.serial.as_deref().unwrap_or("none")),
        format!(
            "audit key:      {}",
            ceremony::fingerprint_of(s).unwrap_or_else(|| "none".to_owned())
        ),
        format!("active MKS:     {}", mks(&s.active_mks)),
        format!("dormant MKS:    {}", mks(&s.dormant_mks)),
        format!(
            "transport key:  {}",
            s.transport_key.map_or("none".to_owned(), hex::encode)
        ),
        format!("accounts:       {}", s.accounts),
        format!(
            "audit head:     {} (next entry {})",
            hex::encode(s.audit_head),
            s.audit_next_seq
        ),
    ];
    if let Some((done, all)) = s.export_progress {
        out.push(format!("export:         {done} of {all} shares exported"));
    }
    if let Some((got, need)) = s.import_progress {
        out.push(format!(
            "import:         {got} shares received, {need} needed"
        ));
    }
    out.push(format!("checkpoint:     {}", checkpoint_text(s)));
    out.join("\n")
}

/// The newest checkpoint, as the module table must hold it.
fn checkpoint_text(s: &Status) -> String {
    let newest = s.checkpoint.as_ref().and_then(|r| r.peek().ok());
    let text = newest.map_or("none (no PSD transaction yet)".to_owned(), |b| {
        format!(
            "#{} {:?} on {} (package transaction {})",
            b.counter,
            b.transaction,
            postvault_indicium::DeviceId::from_bytes(b.device_id)
                .map_or_else(|_| hex::encode(b.device_id), |d| d.to_string()),
            b.package_sequence
        )
    });
    if s.inhibited {
        format!("{text}; PSD WORK INHIBITED until the security officer recovers the checkpoint")
    } else {
        text
    }
}

fn status_json(s: &Status) -> serde_json::Value {
    let mks = |m: &Option<postvault_module::mks::MksInfo>| {
        m.map(|i| serde_json::json!({"id": hex::encode(i.id), "exportable": i.exportable}))
    };
    serde_json::json!({
        "state": s.current.name(),
        "persistent_state": s.persistent.name(),
        "serial": s.serial,
        "time": s.time,
        "active_mks": mks(&s.active_mks),
        "dormant_mks": mks(&s.dormant_mks),
        "transport_key": s.transport_key.map(hex::encode),
        "audit_key": s.audit_key.as_ref().map(|(alg, k)| serde_json::json!({"alg": alg, "key": hex::encode(k)})),
        "audit_key_fingerprint": ceremony::fingerprint_of(s),
        "audit_head": hex::encode(s.audit_head),
        "audit_next_seq": s.audit_next_seq,
        "accounts": s.accounts,
        "export_progress": s.export_progress,
        "import_progress": s.import_progress,
        "checkpoint": s.checkpoint.as_ref().map(|r| serde_json::json!({
            "body": hex::encode(&r.body),
            "mac": hex::encode(r.mac),
        })),
        "psd_inhibited": s.inhibited,
    })
}

fn module(cmd: ModuleCmd) -> Result<(), CliError> {
    match cmd {
        ModuleCmd::Status { dir, json } => {
            let s = vault::with_module(&dir.dir, |h| Ok(h.status()?))?;
            if json {
                println!("{}", status_json(&s));
            } else {
                println!("{}", status_text(&s));
            }
        }
        ModuleCmd::Reboot { dir } => {
            let s = vault::reboot(&dir.dir)?;
            println!("rebooted\n{}", status_text(&s));
        }
        ModuleCmd::Reset { dir, yes } => {
            if !yes {
                return Err(CliError::Input(
                    "reset erases every key and account in the module; pass --yes to confirm"
                        .into(),
                ));
            }
            vault::with_module(&dir.dir, |host| match host.call(Outer::Reset)? {
                OuterReply::ResetDone => Ok(()),
                _ => Err(CliError::Check("unexpected reply to Reset".into())),
            })?;
            if let Some(p) = vault::archive_audit_log(&dir.dir)? {
                println!("old audit log kept as {}", p.display());
            }
            println!("module reset: uninitialized");
        }
    }
    Ok(())
}

/// Verifies `dir/audit.log` and, when the module directory holds its storage
/// key, that the log ends where the module's own chain head says.
fn verify_dir(dir: &Path, expect: Option<&[u8; 32]>) -> Result<String, CliError> {
    let log = dir.join(vault::AUDIT_LOG);
    let summary = verify_file(&log, expect)?;
    if dir.join(KEY_FILE).exists() {
        let nvm = FileNvm::open(dir)?;
        if let Some((next, head)) = stored_audit_head(&nvm)?
            && head != summary.0
        {
            return Err(CliError::Check(format!(
                "{}: the log ends at entry {} with hash {}, but the module's chain head is {} (next entry {next}): entries were removed or the log was replaced",
                log.display(),
                summary.1.saturating_sub(1),
                hex::encode(summary.0),
                hex::encode(head)
            )));
        }
    }
    Ok(summary.2)
}

fn verify_file(
    log: &Path,
    expect: Option<&[u8; 32]>,
) -> Result<([u8; 32], usize, String), CliError> {
    let bytes = std::fs::read(log).map_err(|e| CliError::io(log, &e))?;
    let s = verify_log(&bytes, expect)?;
    let refusals = s
        .bodies
        .iter()
        .filter(|b| matches!(b.data, AuditData::Failure(_)))
        .count();
    let mut text = format!(
        "OK: {} entries of module {}, {} signed, {} refusals recorded, {} unsigned after the last signature; head {}",
        s.entries,
        s.serial,
        s.signed,
        refusals,
        s.unsigned_tail,
        hex::encode(s.head)
    );
    if let Some(at) = s.expected_head_at {
        let after = s.entries.saturating_sub(at + 1);
        text.push_str(&format!(
            "\nthe expected head is entry {at}; {after} entries were added after it"
        ));
    }
    Ok((s.head, s.entries, text))
}

fn audit(cmd: AuditCmd) -> Result<(), CliError> {
    let AuditCmd::Verify {
        dir,
        data_dir,
        log,
        expect_head,
    } = cmd;
    if let Some(data) = data_dir {
        println!("{}", serve::audit_data_dir(&data)?);
        return Ok(());
    }
    let expect = expect_head
        .map(|h| {
            hex::decode(h.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| CliError::Input("--expect-head takes 64 hex characters".into()))
        })
        .transpose()?;
    let text = match (dir, log) {
        (Some(dir), _) => verify_dir(&dir, expect.as_ref())?,
        (None, Some(log)) => verify_file(&log, expect.as_ref())?.2,
        (None, None) => return Err(CliError::Input("give --dir or --log".into())),
    };
    println!("{text}");
    Ok(())
}

fn bench(iterations: u32) -> Result<(), CliError> {
    let dir = std::env::temp_dir().join(format!("postvault-bench-{}", std::process::id()));
    let rows = bench::run(&dir, iterations.max(1));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{:<58} {:>8} {:>12} {:>10}",
        "operation", "count", "us/op", "ops/s"
    );
    for r in rows? {
        let us = r.micros();
        println!(
            "{:<58} {:>8} {:>12.1} {:>10.0}",
            r.name,
            r.count,
            us,
            1e6 / us.max(1e-9)
        );
    }
    Ok(())
}

fn quickstart_cmd(dir: &Path, serve_after: bool) -> Result<(), CliError> {
    serve::init_logs("warn");
    let outcome = quickstart::run(dir, serve_after, &mut |line| println!("{line}"))?;
    let data = postvault_server::config::DataDir::new(dir);
    let psd = dir.join("demo").join("psd.pem");
    println!();
    println!(
        "The postal CA certificate: {}",
        data.ca_certificate().display()
    );
    println!("The demo meter's certificate: {}", psd.display());
    for p in &outcome.pngs {
        println!("Indicium: {}", p.display());
    }
    if let Some(first) = outcome.pngs.first() {
        println!();
        println!("Verify one as the post would:");
        println!(
            "  postvault verify --image {} --ca {} --cert {}",
            first.display(),
            data.ca_certificate().display(),
            psd.display()
        );
    }
    println!(
        "Be a customer yourself (while `postvault serve --data-dir {} --auto-approve` runs):",
        dir.display()
    );
    println!(
        "  postvault meter register --server {} --customer alice --zip 12345 --wallet alice.json",
        outcome.url
    );
    println!("  postvault meter buy 20 --wallet alice.json");
    println!(
        "  postvault meter print --amount 0.73 --to-zip 90210 --out letter.png --wallet alice.json"
    );
    Ok(())
}

fn provider_cmd(cmd: ProviderCmd) -> Result<(), CliError> {
    let lines = match cmd {
        ProviderCmd::Pending { data_dir } => serve::provider_pending(&data_dir)?,
        ProviderCmd::Approve {
            data_dir,
            officer,
            meter,
        } => {
            officer.apply()?;
            serve::provider_approve(&data_dir, meter.as_deref())?
        }
        ProviderCmd::Authorize {
            data_dir,
            officer,
            customer,
        } => {
            officer.apply()?;
            vec![serve::provider_authorize(&data_dir, &customer)?]
        }
        ProviderCmd::Withdraw {
            data_dir,
            officer,
            meter,
        } => {
            officer.apply()?;
            kms::withdraw(&data_dir, &meter)?
        }
    };
    if lines.is_empty() {
        println!("nothing pending");
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

fn sign_cmd(cmd: SignCmd) -> Result<(), CliError> {
    let line = match cmd {
        SignCmd::Init {
            node,
            id,
            device,
            token,
            pin_file,
        } => match (device, token.pkcs11_module, token.token) {
            (Some(d), None, None) => {
                sign::init(&node, &id, &d, pin_file.as_deref(), meter::CUSTOMER_KDF)?
            }
            (None, Some(m), Some(t)) => sign::init_token(&node, &id, &m, &t, pin_file.as_deref())?,
            _ => {
                return Err(CliError::Input(
                    "give --device FILE, or --pkcs11-module PATH --token LABEL".into(),
                ));
            }
        },
        SignCmd::Sign {
            node,
            device,
            token,
            id,
            message,
            out,
            pin_file,
        } => sign::sign(
            &node,
            &device_of(device.as_deref(), &token, id.as_deref())?,
            &message,
            &out,
            pin_file.as_deref(),
        )?,
        SignCmd::ChangePin {
            device,
            pin_file,
            new_pin_file,
        } => sign::change_pin(&device, pin_file.as_deref(), new_pin_file.as_deref())?,
        SignCmd::Revoke { node, id } => sign::revoke(&node, &id)?,
        SignCmd::Replicate {
            node,
            to,
            device,
            token,
            id,
            pin_file,
        } => sign::replicate(
            &node,
            &to,
            &device_of(device.as_deref(), &token, id.as_deref())?,
            pin_file.as_deref(),
        )?,
    };
    println!("{line}");
    Ok(())
}

fn kms_cmd(cmd: KmsCmd) -> Result<(), CliError> {
    let lines = match cmd {
        KmsCmd::Status { data_dir } => kms::status(&data_dir)?,
        KmsCmd::DomainCreate { domain, data_dir } => kms::create_domain(&data_dir, &domain)?,
        KmsCmd::Meter { meter, data_dir } => kms::meter(&data_dir, &meter)?,
        KmsCmd::BoxInit { kind, data_dir } => kms::box_init(&data_dir, &kind)?,
        KmsCmd::Obsolete { meter, data_dir } => kms::obsolete(&data_dir, &meter)?,
        KmsCmd::RequestKey {
            domain,
            steel,
            data_dir,
        } => kms::request_key(&data_dir, &domain, steel.as_deref())?,
        KmsCmd::Register {
            meter,
            country,
            data_dir,
        } => kms::register(&data_dir, &meter, country.as_deref())?,
        KmsCmd::TokenKeys {
            data_dir,
            month,
            domain,
            out,
        } => vec![kms::token_keys(
            &data_dir,
            month.as_deref(),
            domain.as_deref(),
            &out,
        )?],
        KmsCmd::Demo { dir } => {
            kms::demo(&dir, &mut |l| println!("{l}"))?;
            Vec::new()
        }
    };
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

fn meter_cmd(cmd: MeterCmd) -> Result<(), CliError> {
    let common = |a: MeterArgs| meter::Common {
        wallet: a.wallet,
        server: a.server,
        passphrase_file: a.passphrase_file,
        json: a.json,
    };
    match cmd {
        MeterCmd::Register {
            common: c,
            customer,
            zip,
            ca,
            vault_key,
        } => meter::register(
            &common(c),
            &customer,
            &zip,
            ca.as_deref(),
            vault_key.as_deref(),
        ),
        MeterCmd::Login { common: c } => meter::login(&common(c)),
        MeterCmd::Balance { common: c } => meter::balance(&common(c)),
        MeterCmd::Buy { common: c, amount } => meter::buy(&common(c), &amount),
        MeterCmd::Print {
            common: c,
            amount,
            to_zip,
            class,
            out,
        } => meter::print_indicium(&common(c), &amount, to_zip.as_deref(), class, &out),
        MeterCmd::Reprint { common: c, id, out } => meter::reprint(&common(c), id, &out),
        MeterCmd::Refund { common: c, id } => meter::refund(&common(c), id),
        MeterCmd::History { common: c, limit } => meter::history(&common(c), limit),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Top::Ceremony(c) => ceremony(c),
        Top::Module(c) => module(c),
        Top::Audit(c) => audit(c),
        Top::Bench {
            tokens: true,
            meters,
            duration,
            ..
        } => kms::bench_tokens(meters, duration),
        Top::Bench {
            server: Some(server),
            clients,
            duration,
            ..
        } => loadgen::run(&server, clients, duration),
        Top::Bench { iterations, .. } => bench(iterations),
        Top::Quickstart { data_dir, no_serve } => quickstart_cmd(&data_dir, !no_serve),
        Top::Serve {
            data_dir,
            config,
            listen,
            auto_approve,
        } => serve::serve_cmd(
            &data_dir,
            config.as_deref(),
            listen.as_deref(),
            auto_approve,
        ),
        Top::Vault(VaultCmd::Init { data_dir, modules }) => serve::init_vault(
            &postvault_server::config::DataDir::new(&data_dir),
            &serve::InitOptions { modules },
            &mut |line| println!("{line}"),
        )
        .map(|_| ()),
        Top::Meter(c) => meter_cmd(c),
        Top::Provider(c) => provider_cmd(c),
        Top::Kms(c) => kms_cmd(c),
        Top::Sign(c) => sign_cmd(c),
        Top::Verify(a) => verify::verify(&verify::VerifyOptions {
            image: &a.image,
            ca: &a.ca,
            cert: a.cert.as_deref(),
            json: a.json,
            today: a.today.as_deref(),
            max_age_days: a.max_age_days,
            kms: a.kms.as_deref(),
            token_keys: a.token_keys.as_deref(),
        }),
        Top::Indicium(IndiciumCmd::Sample {
            out_dir,
            tamper_bit,
            date,
        }) => verify::sample(&out_dir, tamper_bit, date.as_deref()).map(|files| {
            for f in files {
                println!("wrote {}", f.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
