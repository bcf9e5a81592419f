//! The seed's whole story on the in-memory archive: install, register,
//! verify with brass and tin, take out of service.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{Fallible, SoftMeter, d, install, kms, today};
use postvault_kms::{KeyStatus, Request, Response, Verdict};

#[tokio::test]
async fn a_meter_is_installed_registered_verified_and_retired() -> Fallible {
    let k = kms().await?;
    let mut meter = SoftMeter::new(7);
    for domain in ["VE", "USPS"] {
        let done = install(&k, &mut meter, &d(domain)).await?;
        assert_eq!(done.status, KeyStatus::Installed, "{domain}");
    }
    let date = today();
    for (domain, sub) in [("VE", "VE.US"), ("USPS", "USPS.US")] {
        let report = meter.report(&d(domain), "N0001", "US", date);
        let confirm = k.kms.register(&d(sub), &report).await?;
        assert_eq!(confirm.status, KeyStatus::Active);
    }
    let ind = meter.indicium(date, 730);
    for sub in ["VE.US", "USPS.US"] {
        assert_eq!(
            k.kms.verify(&d(sub), vec![ind.to_vec()])?,
            vec![Verdict::Good],
            "{sub}"
        );
    }
    // Every bit of the covered bytes and of the token matters.
    for bit in 0..(51 * 8) {
        let mut bad = ind;
        bad[bit / 8] ^= 1 << (bit % 8);
        let v = k.kms.verify(&d("USPS.US"), vec![bad.to_vec()])?;
        let covered_or_postal = bit / 8 < 43 || (47..51).contains(&(bit / 8));
        if covered_or_postal {
            assert_ne!(v, vec![Verdict::Good], "bit {bit} flipped still verifies");
        } else {
            assert_eq!(
                v,
                vec![Verdict::Good],
                "bit {bit} is the vendor token, not the postal one"
            );
        }
    }
    // A tin box verifies with the month's token keys only.
    let period = postvault_indicium::token::Period::of(date).0;
    let records = k.kms.export_token_keys(&d("USPS.US"), k.tin, period)?;
    assert_eq!(records.len(), 1);
    let r = k.kms.with_box(k.tin, |b| {
        b.call(&Request::LoadTokenKeys {
            domain: d("USPS.US"),
            records: records.clone(),
        })
    })?;
    assert!(matches!(r, Response::Loaded(1)));
    let v = k
        .kms
        .with_box(k.tin, |b| b.verify_token(&d("USPS.US"), &ind))?;
    assert_eq!(v, Verdict::Good);
    // Out of service: tokens dated after the last day fail.
    assert_eq!(
        k.kms
            .obsolete(&d("USPS.US"), meter.device, date.days())
            .await?,
        1
    );
    assert_eq!(
        k.kms.verify(&d("USPS.US"), vec![ind.to_vec()])?,
        vec![Verdict::Good]
    );
    let later = meter.indicium(date.checked_add_days(1).unwrap(), 730);
    assert_eq!(
        k.kms.verify(&d("USPS.US"), vec![later.to_vec()])?,
        vec![Verdict::NotActive]
    );
    Ok(())
}

#[tokio::test]
async fn a_tin_box_follows_a_meter_out_of_service() -> Fallible {
    use postvault_indicium::Date;
    let k = kms().await?;
    let mut meter = SoftMeter::new(9);
    install(&k, &mut meter, &d("USPS")).await?;
    let day = |n| Date::from_ymd(2026, 11, n).unwrap();
    k.kms
        .register(
            &d("USPS.US"),
            &meter.report(&d("USPS"), "N9", "US", day(10)),
        )
        .await?;
    let load = |records| {
        k.kms.with_box(k.tin, |b| {
            b.call(&Request::LoadTokenKeys {
                domain: d("USPS.US"),
                records,
            })
        })
    };
    let tin_verdict = |date| {
        k.kms.with_box(k.tin, |b| {
            b.verify_token(&d("USPS.US"), &meter.indicium(date, 500))
        })
    };
    load(k.kms.export_token_keys(&d("USPS.US"), k.tin, 202_611)?)?;
    assert_eq!(tin_verdict(day(20))?, Verdict::Good);
    assert_eq!(
        tin_verdict(day(9))?,
        Verdict::NotActive,
        "before registration"
    );
    // The last day lies between registration and today.
    for bad in [day(9).days(), u16::MAX] {
        let r = k.kms.obsolete(&d("USPS.US"), meter.device, bad).await;
        assert_eq!(
            r.map_err(|e| e.fault()),
            Err(Some(postvault_kms::Fault::Mismatch)),
            "last day {bad}"
        );
    }
    // Out of service on the 15th.
    assert_eq!(
        k.kms
            .obsolete(&d("USPS.US"), meter.device, day(15).days())
            .await?,
        1
    );
    // No keys for a month it is not active in; this month's again, now with
    // its last day, narrows what the tin box accepts.
    assert!(
        k.kms
            .export_token_keys(&d("USPS.US"), k.tin, 202_612)?
            .is_empty()
    );
    load(k.kms.export_token_keys(&d("USPS.US"), k.tin, 202_611)?)?;
    assert_eq!(tin_verdict(day(20))?, Verdict::NotActive);
    assert_eq!(tin_verdict(day(12))?, Verdict::Good);
    assert_eq!(
        k.kms
            .verify(&d("USPS.US"), vec![meter.indicium(day(20), 500).to_vec()])?,
        vec![Verdict::NotActive]
    );
    Ok(())
}
