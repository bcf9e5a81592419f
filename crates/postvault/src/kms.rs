//! `postvault kms …`: the key management system of a local vault (the
//! server must be stopped, as for `provider`), its tin-box token keys, the
//! token checks of `postvault verify`, the token benchmark, and
//! `postvault kms demo`, the seed's whole story.

use std::path::{Path, PathBuf};

use postvault_indicium::indicium::SIGNED_LEN;
use postvault_indicium::token::Period;
use postvault_indicium::{Date, DeviceId, IndiciumData};
use postvault_kms::archive::Entry;
use postvault_kms::message::{self, Signed};
use postvault_kms::storage::MemStorage;
use postvault_kms::{
    BoxId, BoxKind, DomainId, OperationShare, Request, Response, SecureBox, Verdict,
};
use postvault_server::config::DataDir;
use postvault_server::kms::{box_file, share_file};
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::serve::{LocalService, block_on, open_service, service_error};

fn kms_err(e: postvault_kms::KmsError) -> CliError {
    CliError::Check(format!("key management: {e}"))
}

/// Opens the stopped vault in `dir`, runs `f`, and powers the modules off.
fn with_vault<T>(
    dir: &Path,
    f: impl AsyncFnOnce(&LocalService) -> Result<T, CliError>,
) -> Result<T, CliError> {
    block_on(async {
        let service = open_service(&DataDir::new(dir), None, false).await?;
        let r = f(&service).await;
        service
            .vault()
            .shutdown()
            .map_err(|e| CliError::Check(e.to_string()))?;
        r
    })
}

fn first_box(service: &LocalService, kind: BoxKind) -> Result<BoxId, CliError> {
    service
        .kms()
        .kms
        .boxes()
        .map_err(kms_err)?
        .into_iter()
        .map(|(id, _, _)| id)
        .find(|id| id.kind == kind)
        .ok_or_else(|| CliError::Check(format!("the vault has no {} box", kind.name())))
}

/// `kms status`: boxes, their domains, and the domains.
///
/// # Errors
/// The vault cannot be opened.
pub fn status(dir: &Path) -> Result<Vec<String>, CliError> {
    with_vault(dir, async |s| Ok(status_lines(s)?))
}

fn status_lines(s: &LocalService) -> Result<Vec<String>, CliError> {
    let k = &s.kms().kms;
    let mut out = vec![format!(
        "domains: {}",
        k.domains()
            .map_err(kms_err)?
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )];
    for (id, enabled, domains) in k.boxes().map_err(kms_err)? {
        out.push(format!(
            "{id} ({} box, {}): {}",
            id.kind.name(),
            if enabled {
                "enabled"
            } else {
                "disabled: operation shares missing"
            },
            domains
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(out)
}

/// Creates a domain in the manufacturing box and gives the vault's boxes
/// their processes for it: oak, steel and brass for an install domain, brass
/// and tin for a country sub-domain.
async fn create_domain_in(
    s: &LocalService,
    domain: &DomainId,
    say: &mut dyn FnMut(&str),
) -> Result<(), CliError> {
    let k = &s.kms().kms;
    let mfg = first_box(s, BoxKind::Manufacturing)?;
    k.create_domain(mfg, domain).await.map_err(kms_err)?;
    say(&format!(
        "{mfg} created domain {domain}: its keys from the combined generators, its directory signed by the domain key set, its keys sealed to the archive"
    ));
    let kinds: &[BoxKind] = if domain.is_sub_domain() {
        &[BoxKind::Brass, BoxKind::Tin]
    } else {
        &[BoxKind::Oak, BoxKind::Steel, BoxKind::Brass]
    };
    let boxes: Vec<BoxId> = k
        .boxes()
        .map_err(kms_err)?
        .into_iter()
        .map(|(id, _, _)| id)
        .filter(|id| kinds.contains(&id.kind))
        .collect();
    for id in boxes {
        let kind = &id.kind;
        k.make_process(mfg, id, domain).map_err(kms_err)?;
        say(&format!(
            "{id} took {} {} process for {domain} (signed by {mfg}, its keys sealed to {id}'s startup key)",
            if *kind == BoxKind::Oak { "an" } else { "a" },
            kind.name()
        ));
    }
    Ok(())
}

/// `kms box-init KIND`: the manufacturing box sets up a new box (Set Secure
/// Box ID, its startup key back), gives it a process for every domain its
/// kind serves, and its operation shares are written beside it (development).
///
/// # Errors
/// The vault cannot be opened; the KMS refuses.
pub fn box_init(dir: &Path, kind: &str) -> Result<Vec<String>, CliError> {
    let kind = BoxKind::ALL
        .into_iter()
        .find(|k| k.name() == kind && *k != BoxKind::Manufacturing)
        .ok_or_else(|| CliError::Input("--kind: oak, steel, brass or tin".into()))?;
    let kms_dir = DataDir::new(dir).kms();
    with_vault(dir, async |s| {
        let k = &s.kms().kms;
        let mfg = first_box(s, BoxKind::Manufacturing)?;
        let (id, shares) = k
            .init_box(mfg, kind, |id| {
                Box::new(postvault_kms::storage::FileStorage::new(&box_file(
                    &kms_dir, id,
                )))
            })
            .map_err(kms_err)?;
        postvault_server::kms::record_box(&kms_dir, id, &shares).map_err(kms_err)?;
        if kind == BoxKind::Steel {
            let (card, _) = s
                .vault()
                .vendor_key()
                .await
                .map_err(|e| CliError::Check(e.to_string()))?;
            k.set_meter_anchor(id, &card.registration_signing)
                .map_err(kms_err)?;
        }
        let mut lines = vec![format!(
            "{mfg} set the id of a new {} box: {id}; it made its startup key and {} operation shares (written to {}: development only)",
            kind.name(),
            shares.len(),
            share_file(&kms_dir, id).display()
        )];
        for d in k.domains().map_err(kms_err)? {
            let fits = match kind {
                BoxKind::Oak | BoxKind::Steel => !d.is_sub_domain(),
                BoxKind::Tin => d.is_sub_domain(),
                BoxKind::Brass | BoxKind::Manufacturing => true,
            };
            if fits {
                k.make_process(mfg, id, &d).map_err(kms_err)?;
                lines.push(format!("{id} took its {} process for {d}", kind.name()));
            }
        }
        Ok(lines)
    })
}

/// `kms request-key --domain D`: the key distribution computer's request
/// (MI0): a new key id from the archive, a key from oak (MI1 → MI2), its
/// New record archived (MI3), and the install record for the steel box (MI4).
///
/// # Errors
/// The vault cannot be opened; the KMS refuses.
pub fn request_key(dir: &Path, domain: &str, steel: Option<&str>) -> Result<Vec<String>, CliError> {
    let domain = DomainId::new(domain).map_err(kms_err)?;
    with_vault(dir, async |s| {
        let steel = match steel {
            Some(id) => id.parse().map_err(kms_err)?,
            None => s.kms().steel,
        };
        let mi4 = s
            .kms()
            .kms
            .request_key(&domain, steel)
            .await
            .map_err(kms_err)?;
        let r: postvault_kms::message::InstallRecord = mi4.peek().map_err(kms_err)?;
        Ok(vec![
            format!("MI0: request for a {domain} key for steel box {steel}"),
            format!("MI0': the archive gave key id {}", r.key_id),
            format!(
                "MI1/MI2: oak box {} generated it with its test tokens {}",
                r.oak,
                hex::encode(r.test_tokens)
            ),
            format!("MI3: archived as New, sealed to {domain}'s brass process and signed by oak"),
            format!(
                "MI4: sealed to {domain}'s steel process for {steel} only; it installs it into the next meter presented, once"
            ),
        ])
    })
}

/// `kms register --meter M --country CC`: the meter's keys registered in
/// the country's sub-domains (MR1-MR4); an earth domain meter is assigned to
/// its country this way, once.
///
/// # Errors
/// The vault cannot be opened; the module or KMS refuses.
pub fn register(dir: &Path, meter: &str, country: Option<&str>) -> Result<Vec<String>, CliError> {
    let device: DeviceId = meter.parse()?;
    with_vault(dir, async |s| {
        let country = country.map_or_else(|| s.kms().country.clone(), str::to_owned);
        s.register_domain_keys_in(device, &country)
            .await
            .map_err(service_error)?;
        let domains = s.kms().kms.domains().map_err(kms_err)?;
        let install: Vec<DomainId> = domains.into_iter().filter(|d| !d.is_sub_domain()).collect();
        let mut lines = vec![format!(
            "meter {device} reported its indicia number and {country} under each key (MR1); the country's brass processes checked them (MR2) and archived them Active (MR3, MR4):"
        )];
        lines.extend(meter_lines(s, device, &install).await?);
        Ok(lines)
    })
}

/// `kms domain-create ID`.
///
/// # Errors
/// The vault cannot be opened; the KMS refuses.
pub fn create_domain(dir: &Path, id: &str) -> Result<Vec<String>, CliError> {
    let domain = DomainId::new(id).map_err(kms_err)?;
    with_vault(dir, async |s| {
        let mut lines = Vec::new();
        create_domain_in(s, &domain, &mut |l| lines.push(l.to_owned())).await?;
        Ok(lines)
    })
}

fn entry_line(e: &Entry) -> String {
    let device = e
        .device
        .and_then(|d| DeviceId::from_bytes(d).ok())
        .map_or_else(String::new, |d| format!(" meter {d}"));
    let sub = e
        .sub_domain
        .as_ref()
        .map_or_else(String::new, |d| format!(" in {d}"));
    format!(
        "  {} key {}: {}{device}{sub} (time {} ms, signed by {})",
        e.domain,
        e.key_id,
        e.status.name(),
        e.time,
        e.signer
    )
}

async fn meter_lines(
    s: &LocalService,
    device: DeviceId,
    domains: &[DomainId],
) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for d in domains {
        for history in s
            .kms()
            .kms
            .meter_keys(d, device.to_bytes())
            .await
            .map_err(kms_err)?
        {
            out.extend(history.iter().map(entry_line));
        }
    }
    Ok(out)
}

/// `kms meter METER`: the history of the meter's domain master keys.
///
/// # Errors
/// The vault cannot be opened; an unknown meter.
pub fn meter(dir: &Path, meter: &str) -> Result<Vec<String>, CliError> {
    let device: DeviceId = meter.parse()?;
    with_vault(dir, async |s| {
        let domains = s.kms().kms.domains().map_err(kms_err)?;
        let install: Vec<DomainId> = domains.into_iter().filter(|d| !d.is_sub_domain()).collect();
        let lines = meter_lines(s, device, &install).await?;
        if lines.is_empty() {
            return Err(CliError::Input(format!(
                "the KMS has no keys of meter {device}"
            )));
        }
        Ok(lines)
    })
}

/// `provider withdraw`: the refund indicium, then the meter's keys Obsolete.
///
/// # Errors
/// The vault cannot be opened; the module or KMS refuses.
pub fn withdraw(dir: &Path, meter: &str) -> Result<Vec<String>, CliError> {
    let device: DeviceId = meter.parse()?;
    with_vault(dir, async |s| {
        let refund = s.withdraw_meter(device).await.map_err(service_error)?;
        let mut lines = vec![format!(
            "meter {device}: refund indicium signed ({} bytes) -> Withdrawn; its keys:",
            refund.len()
        )];
        lines.extend(meter_lines(s, device, &s.kms().install_domains()).await?);
        Ok(lines)
    })
}

/// `kms obsolete --meter M`: the meter's Active keys become Obsolete as of
/// today (what `provider withdraw` does after the refund indicium; run alone
/// it finishes a withdrawal that stopped half-way).
///
/// # Errors
/// The vault cannot be opened; the KMS refuses.
pub fn obsolete(dir: &Path, meter: &str) -> Result<Vec<String>, CliError> {
    let device: DeviceId = meter.parse()?;
    with_vault(dir, async |s| {
        let n = s.obsolete_keys(device).await.map_err(service_error)?;
        let domains = s.kms().kms.domains().map_err(kms_err)?;
        let install: Vec<DomainId> = domains.into_iter().filter(|d| !d.is_sub_domain()).collect();
        let mut lines = vec![format!(
            "meter {device}: {n} key(s) made obsolete as of today"
        )];
        lines.extend(meter_lines(s, device, &install).await?);
        Ok(lines)
    })
}

/// A tin box's token keys for one month, with the box itself (development:
/// its sealed state and operation shares travel in the same file; a real tin
/// box stays at the postal site and only the records travel).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinKit {
    /// Format version (1).
    pub version: u8,
    /// The country sub-domain.
    pub domain: String,
    /// The tin box.
    pub tin: String,
    /// The month (`YYYYMM`).
    pub period: u32,
    /// The tin box's state file, hex.
    pub state: String,
    /// Its operation shares.
    pub shares: Vec<String>,
    /// The token key records, signed by the sub-domain's brass process (postcard, hex).
    pub records: Vec<String>,
}

fn parse_month(month: &str) -> Result<u32, CliError> {
    let bad = || CliError::Input("--month: YYYY-MM".into());
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let y: u32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&m) || !(2000..=2179).contains(&y) {
        return Err(bad());
    }
    Ok(y * 100 + m)
}

/// `kms token-keys`: the month's temporal token keys of every registered
/// meter of a sub-domain, sealed to the tin box, in a tin kit file.
///
/// # Errors
/// The vault cannot be opened; the KMS refuses; the file cannot be written.
pub fn token_keys(
    dir: &Path,
    month: Option<&str>,
    domain: Option<&str>,
    out: &Path,
) -> Result<String, CliError> {
    let period = match month {
        Some(m) => parse_month(m)?,
        None => Period::of(today()?).0,
    };
    let kms_dir = DataDir::new(dir).kms();
    let kit = with_vault(dir, async |s| {
        let sub = match domain {
            Some(d) => DomainId::new(d).map_err(kms_err)?,
            None => s.kms().post.sub_domain(&s.kms().country).map_err(kms_err)?,
        };
        let tin = s.kms().tin;
        let records = s
            .kms()
            .kms
            .export_token_keys(&sub, tin, period)
            .map_err(kms_err)?;
        let state = std::fs::read(box_file(&kms_dir, tin))
            .map_err(|e| CliError::io(&box_file(&kms_dir, tin), &e))?;
        let shares = std::fs::read_to_string(share_file(&kms_dir, tin))
            .map_err(|e| CliError::io(&share_file(&kms_dir, tin), &e))?;
        Ok(TinKit {
            version: 1,
            domain: sub.to_string(),
            tin: tin.to_string(),
            period,
            state: hex::encode(state),
            shares: shares.lines().map(str::to_owned).collect(),
            records: records
                .iter()
                .map(|r| message::encode(r).map(hex::encode))
                .collect::<Result<_, _>>()
                .map_err(kms_err)?,
        })
    })?;
    let text = serde_json::to_vec_pretty(&kit).map_err(|e| CliError::Input(e.to_string()))?;
    postvault_kms::storage::write_atomic(out, &text).map_err(kms_err)?;
    Ok(format!(
        "{} token key record(s) of {} for {} sealed to tin box {} in {}",
        kit.records.len(),
        kit.domain,
        Period(period),
        kit.tin,
        out.display()
    ))
}

/// A tin box with its token keys loaded, from a kit file.
///
/// # Errors
/// An unreadable kit; a box or shares that do not open; records that do not verify.
pub fn open_tin(kit_path: &Path) -> Result<(SecureBox, DomainId), CliError> {
    let bytes = std::fs::read(kit_path)
        .map_err(|e| CliError::Input(format!("{}: {e}", kit_path.display())))?;
    let kit: TinKit = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::Input(format!("{}: not a token key file: {e}", kit_path.display()))
    })?;
    if kit.version != 1 {
        return Err(CliError::Input(format!(
            "{}: version {} is unknown",
            kit_path.display(),
            kit.version
        )));
    }
    let state = hex::decode(&kit.state)
        .map_err(|_| CliError::Input("token key file: state is not hex".into()))?;
    let mut b = SecureBox::open(Box::new(MemStorage(Some(state)))).map_err(kms_err)?;
    for s in &kit.shares {
        b.enter_share(&OperationShare::from_text(s).map_err(kms_err)?)
            .map_err(kms_err)?;
    }
    let domain = DomainId::new(&kit.domain).map_err(kms_err)?;
    let records: Vec<Signed> = kit
        .records
        .iter()
        .map(|r| {
            hex::decode(r)
                .map_err(|_| CliError::Input("token key file: a record is not hex".into()))
                .and_then(|b| message::decode(&b).map_err(kms_err))
        })
        .collect::<Result<_, _>>()?;
    match b
        .call(&Request::LoadTokenKeys {
            domain: domain.clone(),
            records,
        })
        .map_err(kms_err)?
    {
        Response::Loaded(_) => Ok((b, domain)),
        _ => Err(CliError::Check(
            "the tin box answered with another message".into(),
        )),
    }
}

fn today() -> Result<Date, CliError> {
    Ok(Date::from_unix_seconds(
        i64::try_from(postvault_kms::computer::now_ms() / 1000).unwrap_or(i64::MAX),
    )?)
}

/// One token check of `verify`: (what, verdict).
pub type TokenCheckLine = (String, Verdict);

/// The token checks `verify` runs: with `kms` (a vault data directory, or a
/// server URL whose `/v1/tokens/verify` answers) the vendor and postal
/// tokens by the brass processes; with `token_keys` (a tin kit) the tin
/// box's sub-domain token.
///
/// # Errors
/// An unreadable source or a refusal to check.
pub fn token_checks(
    data: &IndiciumData,
    kms: Option<&str>,
    token_keys: Option<&Path>,
) -> Result<Vec<TokenCheckLine>, CliError> {
    let signed: [u8; SIGNED_LEN] = data.encode_signed_part()?;
    let mut out = Vec::new();
    if let Some(k) = kms {
        if k.starts_with("http://") || k.starts_with("https://") {
            let conn = postvault_client::Connection::new(k)?;
            let text = postvault_indicium::text::to_text(data);
            let v = block_on(async { Ok(conn.verify_tokens(&text).await?) })?;
            for (what, name) in [
                ("vendor token (KMS brass)", v.vendor),
                ("postal token (KMS brass)", v.postal),
            ] {
                out.push((what.to_owned(), verdict_named(&name)));
            }
        } else {
            let [v, p] = with_vault(Path::new(k), async |s| {
                s.verify_tokens(&signed).await.map_err(service_error)
            })?;
            out.push(("vendor token (KMS brass)".into(), v));
            out.push(("postal token (KMS brass)".into(), p));
        }
    }
    if let Some(path) = token_keys {
        let (mut tin, domain) = open_tin(path)?;
        let v = tin.verify_token(&domain, &signed).map_err(kms_err)?;
        out.push((
            format!(
                "{} token ({} tin box {})",
                if postvault_kms::role_of(&domain) == 1 {
                    "vendor"
                } else {
                    "postal"
                },
                domain,
                tin.id()
            ),
            v,
        ));
    }
    Ok(out)
}

fn verdict_named(name: &str) -> Verdict {
    [
        Verdict::Good,
        Verdict::BadToken,
        Verdict::UnknownMeter,
        Verdict::NotActive,
        Verdict::Malformed,
    ]
    .into_iter()
    .find(|v| v.name() == name)
    .unwrap_or(Verdict::Malformed)
}

/// `bench tokens`: token checks per second on one core, by a brass box (keys
/// derived from the master keys, cached per meter and month) and by a tin box
/// (temporal token keys only), over `meters` registered software meters.
///
/// # Errors
/// If the KMS cannot be set up or a check does not come out as expected.
pub fn bench_tokens(meters: u32, seconds: u64) -> Result<(), CliError> {
    use postvault_kms::setup::{Plan, set_up};
    use postvault_kms::softmeter::SoftMeter;
    use std::time::{Duration, Instant};
    let date = today()?;
    block_on(async {
        let anchor = postvault_kms::softmeter::anchor().map_err(kms_err)?;
        let plan = Plan::vendor_and_post("USPS", "US", anchor).map_err(kms_err)?;
        let k = set_up(postvault_kms::MemArchive::default(), &plan, |_| {
            Box::new(MemStorage::default())
        })
        .await
        .map_err(kms_err)?;
        let sub = DomainId::new("USPS.US").map_err(kms_err)?;
        let mut indicia = Vec::new();
        for i in 0..meters {
            let mut m = SoftMeter::new(i + 1).map_err(kms_err)?;
            for d in [DomainId::new("VE"), DomainId::new("USPS")] {
                let d = d.map_err(kms_err)?;
                let mi4 = k.kms.request_key(&d, k.steel).await.map_err(kms_err)?;
                let mi5 = k
                    .kms
                    .steel_install(
                        k.steel,
                        &mi4,
                        m.device,
                        m.public,
                        &m.vouch().map_err(kms_err)?,
                    )
                    .map_err(kms_err)?;
                let mi6 = m.install(&mi5).map_err(kms_err)?;
                k.kms.finish_install(k.steel, &mi6).await.map_err(kms_err)?;
                let report = m.report(&d, "N1", "US", date).map_err(kms_err)?;
                k.kms
                    .register(&d.sub_domain("US").map_err(kms_err)?, &report)
                    .await
                    .map_err(kms_err)?;
            }
            indicia.push(m.indicium(date, 730).map_err(kms_err)?);
        }
        let records = k
            .kms
            .export_token_keys(&sub, k.tin, Period::of(date).0)
            .map_err(kms_err)?;
        k.kms
            .with_box(k.tin, |b| {
                b.call(&Request::LoadTokenKeys {
                    domain: sub.clone(),
                    records,
                })
            })
            .map_err(kms_err)?;
        println!(
            "{meters} meters registered in {sub}; each check recomputes one token (HMAC-SHA-256 over 43 bytes, truncated to 4) and compares it in constant time"
        );
        for (name, id) in [("brass", k.brass), ("tin", k.tin)] {
            let (checks, elapsed) = k
                .kms
                .with_box(id, |b| {
                    let mut tampered = indicia.first().copied().unwrap_or([0; SIGNED_LEN]);
                    if let Some(x) = tampered.get_mut(17) {
                        *x ^= 1;
                    }
                    if b.verify_token(&sub, &tampered)? != Verdict::BadToken {
                        return Err(postvault_kms::KmsError::refused(
                            postvault_kms::Fault::BadToken,
                            "a tampered indicium did not fail",
                        ));
                    }
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_secs(seconds) {
                        for ind in &indicia {
                            if b.verify_token(&sub, ind)? != Verdict::Good {
                                return Err(postvault_kms::KmsError::refused(
                                    postvault_kms::Fault::BadToken,
                                    "a good indicium failed",
                                ));
                            }
                            n += 1;
                        }
                    }
                    Ok((n, start.elapsed()))
                })
                .map_err(kms_err)?;
            let secs = elapsed.as_secs_f64();
            let rate = if secs > 0.0 {
                format!("{:.0}", checks as f64 / secs)
            } else {
                "n/a".into()
            };
            println!(
                "{name} box {id}: {checks} token checks in {secs:.2} s on one core: {rate} checks/s"
            );
        }
        Ok(())
    })
}

/// Where `kms demo` writes.
#[must_use]
pub fn demo_vault(dir: &Path) -> PathBuf {
    dir.join("vault")
}

fn decode_png(path: &Path) -> Result<IndiciumData, CliError> {
    let png = std::fs::read(path).map_err(|e| CliError::io(path, &e))?;
    let bytes = postvault_indicium::decode::decode_png(&png)?;
    Ok(postvault_indicium::Indicium::parse(&bytes)?.data().clone())
}

fn verdicts_line(what: &str, v: &[Verdict]) -> String {
    format!(
        "{what}: {}",
        v.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
    )
}

fn expect(ok: bool, what: &str) -> Result<(), CliError> {
    if ok {
        Ok(())
    } else {
        Err(CliError::Check(format!("demo: {what}")))
    }
}

/// `kms demo --dir D`: seed 002's whole story on a development vault in
/// `D/vault`: the KMS's domains and boxes; a customer's meter whose keys were
/// installed through oak, steel and brass and registered when licensed, and
/// whose printed indicia carry tokens that brass and tin verify; an earth
/// domain meter assigned to a country, once; the customer's meter taken out
/// of service, after which its new tokens fail. Each run takes a new
/// customer (the last one's meter is withdrawn).
///
/// # Errors
/// The first step that fails or does not come out as the seed says.
pub fn demo(dir: &Path, say: &mut dyn FnMut(&str)) -> Result<(), CliError> {
    let vault = demo_vault(dir);
    let wallet = vault.join("demo").join("wallet.json");
    if wallet.exists() {
        let old = vault
            .join("demo")
            .join(format!("wallet-{}.json", postvault_kms::computer::now_ms()));
        std::fs::rename(&wallet, &old).map_err(|e| CliError::io(&wallet, &e))?;
    }
    say("== 1. A vault with its key management system; a new customer prints through it ==");
    let outcome = crate::quickstart::run(&vault, false, say)?;
    let png = outcome
        .pngs
        .first()
        .ok_or_else(|| CliError::Check("demo: nothing printed".into()))?;
    let printed = decode_png(png)?;
    let signed = printed.encode_signed_part()?;
    let device = printed.device_id;
    let tomorrow_copy = IndiciumData {
        date: printed.date.checked_add_days(1).unwrap_or(printed.date),
        ..printed.clone()
    }
    .encode_signed_part()?;

    with_vault(&vault, async |s| {
        say("== 2. The KMS: security domains and secure boxes ==");
        for l in status_lines(s)? {
            say(&l);
        }
        let known = s.kms().kms.domains().map_err(kms_err)?;
        for d in ["VE.GB", "EARTH", "EARTH.GB"] {
            let d = DomainId::new(d).map_err(kms_err)?;
            if !known.contains(&d) {
                create_domain_in(s, &d, say).await?;
            }
        }
        say(&format!(
            "== 3. Meter {device}: its domain master keys ({})",
            png.display()
        ));
        for l in meter_lines(s, device, &s.kms().install_domains()).await? {
            say(&l);
        }
        let [v, p] = s.verify_tokens(&signed).await.map_err(service_error)?;
        say(&verdicts_line(
            "brass processes on its indicium (vendor, postal)",
            &[v, p],
        ));
        expect(
            v == Verdict::Good && p == Verdict::Good,
            "the printed indicium's tokens do not verify",
        )?;
        let mut flipped = signed;
        if let Some(b) = flipped.get_mut(20) {
            *b ^= 0x01;
        }
        let [fv, fp] = s.verify_tokens(&flipped).await.map_err(service_error)?;
        say(&verdicts_line(
            "the same with one bit of the date flipped",
            &[fv, fp],
        ));
        expect(
            fv != Verdict::Good && fp != Verdict::Good,
            "a flipped bit still verifies",
        )?;

        say("== 4. An earth domain meter, assigned to a country later ==");
        let earth = DomainId::new(postvault_kms::ids::EARTH).map_err(kms_err)?;
        let domains = [s.kms().vendor.clone(), earth.clone()];
        let customer = format!(
            "earth-{}",
            hex::encode(postvault_crypto::rand::bytes::<3>()?)
        );
        let created = s
            .new_meter_in(
                &postvault_client::api::NewMeter {
                    customer_id: customer,
                },
                &domains,
            )
            .await
            .map_err(service_error)?;
        let e_device: DeviceId = created.meter_number.parse()?;
        say(&format!(
            "meter {e_device} made with keys of VE and EARTH, no country yet:"
        ));
        for l in meter_lines(s, e_device, &domains).await? {
            say(&l);
        }
        s.register_domain_keys_in(e_device, "GB")
            .await
            .map_err(service_error)?;
        say(&format!(
            "meter {e_device} assigned to GB: its keys registered in VE.GB and EARTH.GB:"
        ));
        for l in meter_lines(s, e_device, &domains).await? {
            say(&l);
        }
        match s.register_domain_keys_in(e_device, "FR").await {
            Ok(()) => {
                return Err(CliError::Check(
                    "demo: a registered earth meter moved again".into(),
                ));
            }
            Err(e) => say(&format!(
                "assigning it again, to FR: refused ({e}); it never returns to the earth domain"
            )),
        }
        Ok(())
    })?;

    say("== 5. A tin box verifies with the month's token keys only ==");
    let kit = dir.join("tin-token-keys.json");
    say(&token_keys(&vault, None, None, &kit)?);
    let (mut tin, sub) = open_tin(&kit)?;
    let good = tin.verify_token(&sub, &signed).map_err(kms_err)?;
    let mut flipped = signed;
    if let Some(b) = flipped.get_mut(48) {
        *b ^= 0x80;
    }
    let bad = tin.verify_token(&sub, &flipped).map_err(kms_err)?;
    say(&verdicts_line(
        &format!(
            "tin box {} on the indicium, then with its postal token altered",
            tin.id()
        ),
        &[good, bad],
    ));
    expect(
        good == Verdict::Good && bad == Verdict::BadToken,
        "the tin box's verdicts",
    )?;

    say(&format!(
        "== 6. Meter {device} leaves service: its keys become Obsolete =="
    ));
    for l in withdraw(&vault, &device.to_string())? {
        say(&l);
    }
    with_vault(&vault, async |s| {
        let [v, p] = s.verify_tokens(&signed).await.map_err(service_error)?;
        say(&verdicts_line(
            "its indicium mailed before: vendor, postal",
            &[v, p],
        ));
        let [tv, tp] = s
            .verify_tokens(&tomorrow_copy)
            .await
            .map_err(service_error)?;
        say(&verdicts_line(
            "a token dated after it left service: vendor, postal",
            &[tv, tp],
        ));
        expect(
            v == Verdict::Good && p == Verdict::Good,
            "mail printed before withdrawal fails",
        )?;
        expect(
            tv == Verdict::NotActive && tp == Verdict::NotActive,
            "an obsolete meter's new tokens verify",
        )?;
        Ok(())
    })?;
    say("the seed's story ran to the end: every check came out as the seed says");
    Ok(())
}
