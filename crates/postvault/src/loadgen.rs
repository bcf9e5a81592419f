//! `postvault bench --server URL`: concurrent signed-on customers creating
//! indicia over HTTP; prints throughput and latency percentiles.

use std::path::Path;
use std::time::{Duration, Instant};

use postvault_client::{Connection, Customer, Registration};
use postvault_crypto::password::Argon2Params;
use postvault_indicium::Money;

use crate::error::CliError;

/// Each client's postage per indicium.
const POSTAGE_CENTS: u64 = 50;
/// What each client buys before it starts.
const BUY_CENTS: u64 = 100_000;

/// The measured figures.
pub struct Figures {
    /// Indicia created.
    pub count: usize,
    /// Failed requests.
    pub errors: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Latencies, sorted, in microseconds.
    pub latencies: Vec<u64>,
}

impl Figures {
    /// The latency at quantile `q` (0..=1), microseconds.
    #[must_use]
    pub fn quantile(&self, q: f64) -> u64 {
        if self.latencies.is_empty() {
            return 0;
        }
        let last = self.latencies.len().saturating_sub(1);
        let rank = (q.clamp(0.0, 1.0) * f64::from(u32::try_from(last).unwrap_or(u32::MAX))).round();
        let i = usize::try_from(rank_to_u64(rank)).unwrap_or(last).min(last);
        self.latencies.get(i).copied().unwrap_or(0)
    }
}

fn rank_to_u64(r: f64) -> u64 {
    // A rank is a non-negative whole number below the sample count.
    format!("{r:.0}").parse().unwrap_or(0)
}

async fn customer(url: &str, n: usize) -> Result<Customer, CliError> {
    let id = format!(
        "bench-{}-{n}",
        hex::encode(postvault_crypto::rand::bytes::<4>()?)
    );
    let passphrase = hex::encode(postvault_crypto::rand::bytes::<12>()?);
    let mut c = Customer::register(
        Connection::new(url)?,
        &Registration {
            customer_id: &id,
            passphrase: &passphrase,
            licensing_zip: 12_345 * 10_000,
            expect_ca: None,
            expect_vault_key: None,
            kdf: Argon2Params::RECOMMENDED,
        },
    )
    .await?;
    c.sign_on().await?;
    let (p, _, _) = c.buy(Money::from_cents(BUY_CENTS)?).await?;
    if p.status != "done" {
        return Err(CliError::Check(format!(
            "the purchase is {}: run the server with --auto-approve for a benchmark",
            p.status
        )));
    }
    Ok(c)
}

/// Runs the load: `clients` customers, each printing back to back for `seconds`.
///
/// # Errors
/// A client that cannot register or buy.
pub async fn measure(url: &str, clients: usize, seconds: u64) -> Result<Figures, CliError> {
    let info = Connection::new(url)?.vault_info().await?;
    if !info.auto_approve {
        return Err(CliError::Input(
            "the server does not approve purchases automatically: start it with --auto-approve for a benchmark".into(),
        ));
    }
    let setup = indicatif::ProgressBar::new(u64::try_from(clients).unwrap_or(u64::MAX));
    setup.set_message("registering customers");
    let mut set = tokio::task::JoinSet::new();
    for n in 0..clients.max(1) {
        let url = url.to_owned();
        set.spawn(async move { customer(&url, n).await });
    }
    let mut customers = Vec::new();
    while let Some(r) = set.join_next().await {
        customers.push(r.map_err(|e| CliError::Check(e.to_string()))??);
        setup.inc(1);
    }
    setup.finish_and_clear();

    let bar = indicatif::ProgressBar::new(seconds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut set = tokio::task::JoinSet::new();
    for mut c in customers {
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                match c.print(Money::from_cents(POSTAGE_CENTS)?, 1, None).await {
                    Ok(_) => lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    // Spent: buy more (not timed), or stop if the meter may hold no more.
                    Err(e) if e.code() == Some("insufficient_funds") => {
                        if c.buy(Money::from_cents(BUY_CENTS)?).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            Ok::<_, CliError>((lat, errors))
        });
    }
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    };
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(r) = set.join_next().await {
        let (l, e) = r.map_err(|e| CliError::Check(e.to_string()))??;
        latencies.extend(l);
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();
    latencies.sort_unstable();
    Ok(Figures {
        count: latencies.len(),
        errors,
        seconds,
        latencies,
    })
}

/// `postvault bench --server URL --clients N --duration S`.
///
/// # Errors
/// As [`measure`].
pub fn run(url: &str, clients: usize, seconds: u64) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io(Path::new("runtime"), &e))?;
    let f = rt.block_on(measure(url, clients, seconds.max(1)))?;
    let ms = |us: u64| format!("{:.2} ms", Duration::from_micros(us).as_secs_f64() * 1e3);
    let count = u32::try_from(f.count).unwrap_or(u32::MAX);
    println!(
        "{} indicia in {:.1} s by {clients} signed-on customers: {:.1} indicia/s; latency p50 {}, p99 {}, max {}; {} errors",
        f.count,
        f.seconds,
        f64::from(count) / f.seconds.max(1e-9),
        ms(f.quantile(0.50)),
        ms(f.quantile(0.99)),
        ms(f.latencies.last().copied().unwrap_or(0)),
        f.errors
    );
    Ok(())
}
