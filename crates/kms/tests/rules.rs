//! One test (or more) per rule of seed 002, each asserting the specific
//! refusal and that the refusal changed nothing: the box still does the
//! honest request afterwards, and the archive's history is as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{
    Fallible, SoftMeter, brass_confirm, call, d, directories, generate, history, install,
    install_steps, kms, steel_report, steel_seal, today,
};
use postvault_crypto::sig::{SigAlg, SigningKey};
use postvault_crypto::{SecretBytes, shamir};
use postvault_kms::archive::{Entry, admit};
use postvault_kms::computer::{Archive, MemArchive};
use postvault_kms::error::{CommandError, FramingError};
use postvault_kms::frame;
use postvault_kms::message::{self, ArchiveInstalled, InstallRecord, KeyInstalled, RecordKind};
use postvault_kms::request::{ANSWER_ERR, ANSWER_OK, Class, Refusal, read_answer};
use postvault_kms::setup::{Plan, SetUp, set_up};
use postvault_kms::storage::{FileStorage, MemStorage};
use postvault_kms::tables;
use postvault_kms::{
    BoxId, BoxKind, DomainId, Fault, KeyStatus, KmsError, OperationShare, Request, Response,
    SecureBox, Signed, Verdict,
};

/// The level-3 code of a refusal; fails the test if there was none.
#[track_caller]
fn fault<T: std::fmt::Debug>(r: Result<T, KmsError>) -> Fault {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e
            .fault()
            .unwrap_or_else(|| panic!("expected a level-3 refusal, got {e}")),
    }
}

fn generate_key(domain: &DomainId, steel: BoxId, key_id: u64, time: u64) -> Request {
    Request::GenerateKey {
        domain: domain.clone(),
        steel,
        key_id,
        time,
    }
}

/// The statuses of a key's history.
fn statuses(h: &[Entry]) -> Vec<KeyStatus> {
    h.iter().map(|e| e.status).collect()
}

/// A second steel box (storage in memory) with a process for `domain`.
fn second_steel(k: &SetUp<MemArchive>, domain: &DomainId) -> Fallible<BoxId> {
    let (id, _) = k.kms.init_box(k.manufacturing, BoxKind::Steel, |_| {
        Box::new(MemStorage::default())
    })?;
    k.kms.make_process(k.manufacturing, id, domain)?;
    k.kms
        .set_meter_anchor(id, &postvault_kms::softmeter::anchor()?)?;
    Ok(id)
}

/// A record with its body replaced (the signature kept).
fn rebody<T: serde::Serialize>(s: &Signed, body: &T) -> Signed {
    Signed {
        body: message::encode(body).unwrap(),
        ..s.clone()
    }
}

// ----- rule 1: a replayed Generate Key ---------------------------------------------------

#[tokio::test]
async fn rule01_a_replayed_generate_key_is_refused_and_a_fresh_one_works() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let (_, _, first) = generate(&k, &ve, k.steel).await?;
    // The same key id again, and an older one.
    for key_id in [first, first - 1, 0] {
        let r = call(&k, k.oak, &generate_key(&ve, k.steel, key_id, k.kms.time()));
        assert_eq!(fault(r), Fault::KeyIdNotNew, "key id {key_id}");
    }
    assert_eq!(statuses(&history(&k, &ve, first).await), [KeyStatus::New]);
    // A fresh key id from the archive works, and is then itself a replay.
    let fresh = k.kms.archive().next_key_id(&ve).await?;
    assert!(fresh > first);
    let Response::NewKey {
        archive,
        install: mi4,
    } = call(&k, k.oak, &generate_key(&ve, k.steel, fresh, k.kms.time()))?
    else {
        panic!("oak answered another message");
    };
    assert_eq!(mi4.peek::<InstallRecord>()?.key_id, fresh);
    k.kms.archive_record(&ve, fresh, &archive).await?;
    let r = call(&k, k.oak, &generate_key(&ve, k.steel, fresh, k.kms.time()));
    assert_eq!(fault(r), Fault::KeyIdNotNew);
    // Key ids are per domain: USPS's first key id is below VE's last, and new there.
    let (_, _, usps_first) = generate(&k, &d("USPS"), k.steel).await?;
    assert!(usps_first < fresh);
    // And the whole installation still works.
    let done = install(&k, &mut SoftMeter::new(1), &ve).await?;
    assert_eq!(done.status, KeyStatus::Installed);
    Ok(())
}

// ----- rule 2: a replayed Distribute Master Key record -----------------------------------

#[tokio::test]
async fn rule02_a_replayed_install_record_is_refused() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let mut meter = SoftMeter::new(1);
    let other = SoftMeter::new(2);
    let (_, mi4, key_id) = generate(&k, &ve, k.steel).await?;
    let mi5 = steel_seal(&k, k.steel, &mi4, &meter)?;
    // The same MI4 again, for the same meter or another.
    for m in [&meter, &other] {
        let r = steel_seal(&k, k.steel, &mi4, m);
        assert_eq!(fault(r), Fault::KeyIdNotNew);
    }
    // The refusals left the pending installation alone.
    let done = k.kms.finish_install(k.steel, &meter.install(&mi5)).await?;
    assert_eq!((done.status, done.key_id), (KeyStatus::Installed, key_id));
    // An older MI4 after a newer one.
    let (_, older, older_id) = generate(&k, &ve, k.steel).await?;
    let (_, newer, _) = generate(&k, &ve, k.steel).await?;
    let mut m3 = SoftMeter::new(3);
    let mi5 = steel_seal(&k, k.steel, &newer, &m3)?;
    let m4 = SoftMeter::new(4);
    let r = steel_seal(&k, k.steel, &older, &m4);
    assert_eq!(fault(r), Fault::KeyIdNotNew);
    assert_eq!(
        statuses(&history(&k, &ve, older_id).await),
        [KeyStatus::New]
    );
    let done = k.kms.finish_install(k.steel, &m3.install(&mi5)).await?;
    assert_eq!(done.status, KeyStatus::Installed);
    // A fresh one works after all this.
    let done = install(&k, &mut SoftMeter::new(5), &ve).await?;
    assert_eq!(done.status, KeyStatus::Installed);
    Ok(())
}

// ----- rule 3: the steel id ----------------------------------------------------------------

#[tokio::test]
async fn rule03_an_install_record_for_another_steel_box_is_refused() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let steel2 = second_steel(&k, &ve)?;
    let (_, for_1, _) = generate(&k, &ve, k.steel).await?;
    let (_, for_2, _) = generate(&k, &ve, steel2).await?;
    let mut m1 = SoftMeter::new(1);
    let mut m2 = SoftMeter::new(2);
    let r = steel_seal(&k, steel2, &for_1, &m1);
    assert_eq!(fault(r), Fault::WrongSteelId);
    let r = steel_seal(&k, k.steel, &for_2, &m2);
    assert_eq!(fault(r), Fault::WrongSteelId);
    // The steel id cannot be changed without breaking oak's signature.
    let mut rec: InstallRecord = for_1.peek()?;
    rec.steel = steel2;
    let r = k.kms.steel_install(
        steel2,
        &rebody(&for_1, &rec),
        m1.device,
        m1.public,
        &m1.vouch().unwrap(),
    );
    assert_eq!(fault(r), Fault::BadSignature);
    // Neither refusal used anything up: each box installs its own key.
    let mi5 = steel_seal(&k, k.steel, &for_1, &m1)?;
    let done = k.kms.finish_install(k.steel, &m1.install(&mi5)).await?;
    assert_eq!(done.status, KeyStatus::Installed);
    let mi5 = steel_seal(&k, steel2, &for_2, &m2)?;
    let done = k.kms.finish_install(steel2, &m2.install(&mi5)).await?;
    assert_eq!(done.status, KeyStatus::Installed);
    Ok(())
}

// ----- rule 4: a key is installed once --------------------------------------------------

#[tokio::test]
async fn rule04_an_installed_key_is_not_installed_or_archived_again() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let mut meter = SoftMeter::new(1);
    let other = SoftMeter::new(2);
    let s = install_steps(&k, &mut meter, &ve).await?;
    let before = history(&k, &ve, s.key_id).await;
    assert_eq!(statuses(&before), [KeyStatus::New, KeyStatus::Installed]);
    // The steel box refuses the same MI4, for this meter or another.
    for m in [&meter, &other] {
        let r = steel_seal(&k, k.steel, &s.mi4, m);
        assert_eq!(fault(r), Fault::KeyIdNotNew);
    }
    // The same MI6 again: nothing is pending.
    assert_eq!(
        fault(k.kms.finish_install(k.steel, &s.mi6).await),
        Fault::Mismatch
    );
    // The archive refuses the MI9 again, and a second one brass signs anew
    // from the same MI3 and MI7 (brass keeps no books; the archive does).
    let r = k.kms.archive_record(&ve, s.key_id, &s.mi9).await;
    assert_eq!(fault(r), Fault::InvalidTransition);
    let (again, _) = brass_confirm(&k, &s.mi3, &s.mi7, k.kms.time())?;
    assert_ne!(again, s.mi9);
    let r = k.kms.archive_record(&ve, s.key_id, &again).await;
    assert_eq!(fault(r), Fault::InvalidTransition);
    assert_eq!(history(&k, &ve, s.key_id).await, before);

    // A key that went Bad gets no second Bad (nor Installed) record either.
    let mut bad = SoftMeter::new(3);
    let (mi3, mi4, bad_id) = generate(&k, &ve, k.steel).await?;
    let mi5 = steel_seal(&k, k.steel, &mi4, &bad)?;
    let mi7 = steel_report(&k, k.steel, &bad.install_other_key(&mi5))?;
    let (mi9, _) = brass_confirm(&k, &mi3, &mi7, k.kms.time())?;
    assert_eq!(mi9.peek::<ArchiveInstalled>()?.status, KeyStatus::Bad);
    k.kms.archive_record(&ve, bad_id, &mi9).await?;
    let bad_before = history(&k, &ve, bad_id).await;
    for r in [mi9.clone(), brass_confirm(&k, &mi3, &mi7, k.kms.time())?.0] {
        let r = k.kms.archive_record(&ve, bad_id, &r).await;
        assert_eq!(fault(r), Fault::InvalidTransition);
    }
    assert_eq!(history(&k, &ve, bad_id).await, bad_before);
    // The honest path still works.
    let done = install(&k, &mut SoftMeter::new(4), &ve).await?;
    assert_eq!(done.status, KeyStatus::Installed);
    Ok(())
}

// ----- rule 5: status transitions --------------------------------------------------------

#[test]
fn rule05_can_become_allows_only_the_four_lifecycle_steps() {
    use KeyStatus::{Active, Bad, Installed, New, Obsolete};
    let all = [New, Installed, Bad, Active, Obsolete];
    let allowed = [
        (New, Installed),
        (New, Bad),
        (Installed, Active),
        (Active, Obsolete),
    ];
    let mut n = 0;
    for from in all {
        for to in all {
            n += 1;
            assert_eq!(
                from.can_become(to),
                allowed.contains(&(from, to)),
                "{} → {}",
                from.name(),
                to.name()
            );
        }
    }
    assert_eq!(n, 25);
}

/// A key's whole life in VE, registered in VE.US, then out of service: its
/// four archive entries (New, Installed, Active, Obsolete).
async fn whole_life(k: &SetUp<MemArchive>) -> Fallible<Vec<Entry>> {
    let ve = d("VE");
    let mut meter = SoftMeter::new(9);
    let done = install(k, &mut meter, &ve).await?;
    let date = today();
    k.kms
        .register(&d("VE.US"), &meter.report(&ve, "N0009", "US", date))
        .await?;
    assert_eq!(
        k.kms
            .obsolete(&d("VE.US"), meter.device, date.days())
            .await?,
        1
    );
    let h = history(k, &ve, done.key_id).await;
    assert_eq!(
        statuses(&h),
        [
            KeyStatus::New,
            KeyStatus::Installed,
            KeyStatus::Active,
            KeyStatus::Obsolete
        ]
    );
    Ok(h)
}

/// `e` with status `status` and time 0, so that no time rule can refuse what follows.
fn as_current(e: &Entry, status: KeyStatus) -> Entry {
    Entry {
        status,
        time: 0,
        ..e.clone()
    }
}

#[tokio::test]
async fn rule05_the_archive_admits_each_lifecycle_step() -> Fallible {
    let k = kms().await?;
    let h = whole_life(&k).await?;
    let dirs = directories(&k).await?;
    assert_eq!(admit(&dirs, None, &h[0].record)?, h[0]);
    for i in 1..h.len() {
        assert_eq!(
            admit(&dirs, Some(&h[i - 1]), &h[i].record)?,
            h[i],
            "step {i}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn rule05_skipped_and_repeated_statuses_are_invalid_transitions() -> Fallible {
    let k = kms().await?;
    let h = whole_life(&k).await?;
    let dirs = directories(&k).await?;
    let [new, installed, active, obsolete] = [&h[0], &h[1], &h[2], &h[3]];
    let bad = as_current(installed, KeyStatus::Bad);
    let cases: [(Option<Entry>, &Entry); 14] = [
        (None, installed),
        (None, active),
        (None, obsolete),
        (Some(as_current(new, KeyStatus::New)), new),
        (Some(as_current(new, KeyStatus::New)), active),
        (Some(as_current(new, KeyStatus::New)), obsolete),
        (Some(as_current(installed, KeyStatus::Installed)), installed),
        (Some(as_current(installed, KeyStatus::Installed)), obsolete),
        (Some(bad.clone()), installed),
        (Some(bad.clone()), active),
        (Some(bad), obsolete),
        (Some(as_current(active, KeyStatus::Active)), active),
        (Some(as_current(obsolete, KeyStatus::Obsolete)), active),
        (Some(as_current(obsolete, KeyStatus::Obsolete)), obsolete),
    ];
    for (cur, rec) in &cases {
        let r = admit(&dirs, cur.as_ref(), &rec.record);
        assert_eq!(
            fault(r),
            Fault::InvalidTransition,
            "{:?} → {}",
            cur.as_ref().map(|c| c.status.name()),
            rec.status.name()
        );
    }
    // Through the KMS computer: the archive, at Obsolete, takes no record again.
    let key_id = h[0].key_id;
    for e in &h[2..] {
        let r = k.kms.archive_record(&d("VE"), key_id, &e.record).await;
        assert_eq!(fault(r), Fault::InvalidTransition, "{}", e.status.name());
    }
    assert_eq!(history(&k, &d("VE"), key_id).await, h);
    Ok(())
}

/// Each (current, record) pair that would move a key back in its lifecycle.
fn backwards(h: &[Entry]) -> Vec<(Entry, &Entry)> {
    let mut out = Vec::new();
    for (i, cur) in h.iter().enumerate() {
        for rec in &h[..i] {
            out.push((as_current(cur, cur.status), rec));
        }
    }
    out
}

#[tokio::test]
async fn rule05_a_key_never_goes_back_in_its_lifecycle() -> Fallible {
    let k = kms().await?;
    let h = whole_life(&k).await?;
    let dirs = directories(&k).await?;
    let pairs = backwards(&h);
    assert_eq!(pairs.len(), 6);
    for (cur, rec) in &pairs {
        let r = admit(&dirs, Some(cur), &rec.record);
        // The status rule is checked before the meter and country rules.
        assert_eq!(
            fault(r),
            Fault::InvalidTransition,
            "{} → {}",
            cur.status.name(),
            rec.status.name()
        );
    }
    let key_id = h[0].key_id;
    for e in &h[..2] {
        let r = k.kms.archive_record(&d("VE"), key_id, &e.record).await;
        assert!(r.is_err(), "{} after obsolete", e.status.name());
    }
    assert_eq!(history(&k, &d("VE"), key_id).await, h);
    Ok(())
}

#[tokio::test]
async fn rule05_going_back_is_an_invalid_transition() -> Fallible {
    let k = kms().await?;
    let h = whole_life(&k).await?;
    let dirs = directories(&k).await?;
    for (cur, rec) in &backwards(&h) {
        let r = admit(&dirs, Some(cur), &rec.record);
        assert_eq!(
            fault(r),
            Fault::InvalidTransition,
            "{} → {}",
            cur.status.name(),
            rec.status.name()
        );
    }
    Ok(())
}

// ----- rule 6: records signed by the wrong process; unknown domains and records --------

#[tokio::test]
async fn rule06_archive_records_signed_by_the_wrong_process_are_refused() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let mut meter = SoftMeter::new(1);
    let (mi3, mi4, key_id) = generate(&k, &ve, k.steel).await?;
    let mi5 = steel_seal(&k, k.steel, &mi4, &meter)?;
    let mi7 = steel_report(&k, k.steel, &meter.install(&mi5))?;
    let (mi9, _) = brass_confirm(&k, &mi3, &mi7, k.kms.time())?;
    // USPS's MI9 for the same meter, to lend its (USPS brass) signature.
    let usps = install_steps(&k, &mut meter, &d("USPS")).await?;
    let mut relabelled: ArchiveInstalled = usps.mi9.peek()?;
    relabelled.domain = ve.clone();
    relabelled.key_id = key_id;
    let impostor = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
    let forged = [
        // Oak's signature (of MI3) on the MI9.
        Signed {
            signature: mi3.signature.clone(),
            ..mi9.clone()
        },
        // Steel's signature (of MI7) on the MI9.
        Signed {
            signature: mi7.signature.clone(),
            ..mi9.clone()
        },
        // Signed by another domain's brass.
        rebody(&usps.mi9, &relabelled),
        // A real signature by a key that is no process of the domain.
        Signed::sign(
            RecordKind::ArchiveInstalled,
            &mi9.peek::<ArchiveInstalled>()?,
            &impostor,
        )?,
    ];
    let before = history(&k, &ve, key_id).await;
    for (i, f) in forged.iter().enumerate() {
        let r = k.kms.archive_record(&ve, key_id, f).await;
        assert_eq!(fault(r), Fault::BadSignature, "forgery {i}");
    }
    // A New record signed by brass rather than oak.
    let dirs = directories(&k).await?;
    let r = admit(
        &dirs,
        None,
        &Signed {
            signature: mi9.signature.clone(),
            ..mi3.clone()
        },
    );
    assert_eq!(fault(r), Fault::BadSignature);
    assert_eq!(history(&k, &ve, key_id).await, before);
    // The brass box too refuses an MI7 not signed by steel.
    let r = brass_confirm(
        &k,
        &mi3,
        &Signed {
            signature: mi3.signature.clone(),
            ..mi7.clone()
        },
        k.kms.time(),
    );
    assert_eq!(fault(r), Fault::BadSignature);
    // The honest MI9 is admitted after all this.
    let e = k.kms.archive_record(&ve, key_id, &mi9).await?;
    assert_eq!(e.status, KeyStatus::Installed);

    // An Active record signed by the install domain's brass, not the country's.
    let date = today();
    k.kms
        .register(&d("VE.US"), &meter.report(&ve, "N0001", "US", date))
        .await?;
    let h = history(&k, &ve, key_id).await;
    let mr3 = &h[2].record;
    let r = admit(
        &dirs,
        Some(&h[1]),
        &Signed {
            signature: mi9.signature.clone(),
            ..mr3.clone()
        },
    );
    assert_eq!(fault(r), Fault::BadSignature);
    Ok(())
}

#[tokio::test]
async fn rule06_records_of_unknown_domains_or_kinds_are_refused() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    // Another KMS, with its own VE and a UKRM the first one does not know.
    let plan = Plan {
        domains: vec![(d("VE"), vec![]), (d("UKRM"), vec!["GB".into()])],
        meter_anchor: postvault_kms::softmeter::anchor()?,
    };
    let other = set_up(MemArchive::default(), &plan, |_| {
        Box::new(MemStorage::default())
    })
    .await?;
    let (ukrm_mi3, _, ukrm_id) = generate(&other, &d("UKRM"), other.steel).await?;
    let r = k.kms.archive_record(&d("UKRM"), ukrm_id, &ukrm_mi3).await;
    assert_eq!(fault(r), Fault::UnknownDomain);
    let dirs = directories(&k).await?;
    assert_eq!(fault(admit(&dirs, None, &ukrm_mi3)), Fault::UnknownDomain);
    // The other KMS's VE is not this VE: its oak's signature does not verify here.
    let (their_ve, _, _) = generate(&other, &ve, other.steel).await?;
    assert_eq!(fault(admit(&dirs, None, &their_ve)), Fault::BadSignature);
    // Records the archive does not keep.
    let mut meter = SoftMeter::new(1);
    let (mi3, mi4, key_id) = generate(&k, &ve, k.steel).await?;
    let mi5 = steel_seal(&k, k.steel, &mi4, &meter)?;
    let mi7 = steel_report(&k, k.steel, &meter.install(&mi5))?;
    let (mi9, mi10) = brass_confirm(&k, &mi3, &mi7, k.kms.time())?;
    let directory = k.kms.archive().directories().await?[0].clone();
    let before = history(&k, &ve, key_id).await;
    for (rec, kind) in [
        (&mi4, RecordKind::InstallRecord),
        (&mi7, RecordKind::KeyInstalled),
        (&mi10, RecordKind::ConfirmInstall),
        (&directory, RecordKind::DomainDirectory),
    ] {
        assert_eq!(rec.kind, kind);
        let r = k.kms.archive_record(&ve, key_id, rec).await;
        assert_eq!(fault(r), Fault::UnknownRecord, "{kind:?}");
    }
    assert_eq!(history(&k, &ve, key_id).await, before);
    // Boxes keep record tables too: steel takes no MI3, brass no MI4 in place of MI3.
    let r = call(
        &k,
        k.steel,
        &Request::InstallKey {
            record: mi3.clone(),
            device: meter.device,
            role: 1,
            meter_key: meter.public,
            meter_key_signature: meter.vouch().unwrap(),
            time: k.kms.time(),
        },
    );
    assert_eq!(fault(r), Fault::UnknownRecord);
    let r = brass_confirm(&k, &mi4, &mi7, k.kms.time());
    assert_eq!(fault(r), Fault::UnknownRecord);
    // The honest MI9 goes in.
    k.kms.archive_record(&ve, key_id, &mi9).await?;
    Ok(())
}

// ----- rule 7: time events ---------------------------------------------------------------

#[tokio::test]
async fn rule07_the_archive_refuses_a_record_not_after_the_key_last() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let mut meter = SoftMeter::new(1);
    let (mi3, mi4, key_id) = generate(&k, &ve, k.steel).await?;
    let new = history(&k, &ve, key_id).await[0].clone();
    let mi5 = steel_seal(&k, k.steel, &mi4, &meter)?;
    let mi7 = steel_report(&k, k.steel, &meter.install(&mi5))?;
    // Brass will not sign an MI9 dated before the records it checks (the
    // archive's own rule is shown with admit below).
    let early = new.time - 1;
    assert_eq!(
        fault(brass_confirm(&k, &mi3, &mi7, early)),
        Fault::TimeOrder
    );
    assert_eq!(history(&k, &ve, key_id).await, std::slice::from_ref(&new));
    // admit alone: equal or earlier is refused, later is admitted.
    let (mi9, _) = brass_confirm(&k, &mi3, &mi7, k.kms.time())?;
    let t = mi9.peek::<ArchiveInstalled>()?.time;
    let dirs = directories(&k).await?;
    for cur_time in [t, t + 1, u64::MAX] {
        let cur = Entry {
            time: cur_time,
            ..new.clone()
        };
        assert_eq!(
            fault(admit(&dirs, Some(&cur), &mi9)),
            Fault::TimeOrder,
            "{cur_time}"
        );
    }
    let cur = Entry {
        time: t - 1,
        ..new.clone()
    };
    assert_eq!(admit(&dirs, Some(&cur), &mi9)?.status, KeyStatus::Installed);
    // The honest MI9 goes in.
    k.kms.archive_record(&ve, key_id, &mi9).await?;
    Ok(())
}

#[tokio::test]
async fn rule07_boxes_refuse_requests_dated_before_their_last_time_event() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let us = d("VE.US");
    let mut m1 = SoftMeter::new(1);
    let s1 = install_steps(&k, &mut m1, &ve).await?;
    let date = today();
    k.kms
        .register(&us, &m1.report(&ve, "N0001", "US", date))
        .await?;
    let past = s1.mi3.peek::<message::ArchiveNew>()?.time - 1;

    // Oak.
    let fresh = k.kms.archive().next_key_id(&ve).await?;
    let r = call(&k, k.oak, &generate_key(&ve, k.steel, fresh, past));
    assert_eq!(fault(r), Fault::TimeOrder);
    let Response::NewKey {
        archive: mi3,
        install: mi4,
    } = call(&k, k.oak, &generate_key(&ve, k.steel, fresh, k.kms.time()))?
    else {
        panic!("oak answered another message");
    };
    k.kms.archive_record(&ve, fresh, &mi3).await?;

    // Steel: Install Key, then the meter's evidence.
    let mut m2 = SoftMeter::new(2);
    let install_key = |time| Request::InstallKey {
        record: mi4.clone(),
        device: m2.device,
        role: 1,
        meter_key: m2.public,
        meter_key_signature: m2.vouch().unwrap(),
        time,
    };
    assert_eq!(
        fault(call(&k, k.steel, &install_key(past))),
        Fault::TimeOrder
    );
    let Response::MeterInstall(mi5) = call(&k, k.steel, &install_key(k.kms.time()))? else {
        panic!("steel answered another message");
    };
    let mi6 = m2.install(&mi5);
    let r = call(
        &k,
        k.steel,
        &Request::MeterEvidence {
            evidence: mi6.clone(),
            time: past,
        },
    );
    assert_eq!(fault(r), Fault::TimeOrder);
    let mi7 = steel_report(&k, k.steel, &mi6)?;

    // Brass: Confirm Installed.
    assert_eq!(fault(brass_confirm(&k, &mi3, &mi7, past)), Fault::TimeOrder);
    let (mi9, _) = brass_confirm(&k, &mi3, &mi7, k.kms.time())?;
    k.kms.archive_record(&ve, fresh, &mi9).await?;

    // Brass: Registration Request.
    let report = m2.report(&ve, "N0002", "US", date);
    let r = call(
        &k,
        k.brass,
        &Request::RegistrationRequest {
            domain: us.clone(),
            report: report.clone(),
            installed: mi9.clone(),
            time: past,
        },
    );
    assert_eq!(fault(r), Fault::TimeOrder);
    assert_eq!(
        statuses(&history(&k, &ve, fresh).await),
        [KeyStatus::New, KeyStatus::Installed]
    );
    k.kms.register(&us, &report).await?;

    // Brass: Obsolete.
    let active = history(&k, &ve, fresh).await[2].record.clone();
    let r = call(
        &k,
        k.brass,
        &Request::Obsolete {
            record: active,
            last_day: date.days(),
            time: past,
        },
    );
    assert_eq!(fault(r), Fault::TimeOrder);
    assert_eq!(k.kms.obsolete(&us, m2.device, date.days()).await?, 1);
    Ok(())
}

#[tokio::test]
async fn rule07_brass_refuses_a_time_before_the_records_it_checks() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let mut meter = SoftMeter::new(1);
    let (mi3, mi4, _) = generate(&k, &ve, k.steel).await?;
    let mi5 = steel_seal(&k, k.steel, &mi4, &meter)?;
    let mi7 = steel_report(&k, k.steel, &meter.install(&mi5))?;
    let before = mi7.peek::<KeyInstalled>()?.time - 1;
    assert_eq!(
        fault(brass_confirm(&k, &mi3, &mi7, before)),
        Fault::TimeOrder
    );
    Ok(())
}

// ----- rule 8: operation shares ---------------------------------------------------------

#[tokio::test]
async fn rule08_a_box_works_only_with_all_its_shares_in() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("steel.box");
    let (steel2, shares) = k.kms.init_box(k.manufacturing, BoxKind::Steel, |_| {
        Box::new(FileStorage::new(&path))
    })?;
    k.kms.make_process(k.manufacturing, steel2, &ve)?;
    k.kms
        .set_meter_anchor(steel2, &postvault_kms::softmeter::anchor()?)?;
    let (_, mi4, _) = generate(&k, &ve, steel2).await?;
    let bytes = std::fs::read(&path)?;
    let mut b = SecureBox::open(Box::new(MemStorage(Some(bytes))))?;
    assert_eq!(b.id(), steel2);
    assert!(!b.is_enabled());
    let meter = SoftMeter::new(1);
    let install_key = Request::InstallKey {
        record: mi4.clone(),
        device: meter.device,
        role: 1,
        meter_key: meter.public,
        meter_key_signature: meter.vouch().unwrap(),
        time: k.kms.time(),
    };
    let status = |b: &mut SecureBox| match b.call(&Request::Status) {
        Ok(Response::Status {
            id,
            enabled,
            domains,
        }) => (id, enabled, domains),
        other => panic!("status: {other:?}"),
    };
    assert_eq!(status(&mut b), (steel2, false, vec![]));
    assert_eq!(fault(b.call(&install_key)), Fault::Disabled);
    assert_eq!(shares.len(), 2);

    // A share of another box (of the same kind) is refused as it is entered.
    let steel1_shares = k
        .shares
        .iter()
        .find(|(id, _)| *id == k.steel)
        .map(|(_, s)| s.clone())
        .unwrap();
    for s in &steel1_shares {
        assert_eq!(fault(b.enter_share(s)), Fault::BadShare);
    }
    let wrong_total = OperationShare {
        total: 3,
        ..shares[0].clone()
    };
    assert_eq!(fault(b.enter_share(&wrong_total)), Fault::BadShare);
    assert_eq!(b.shares_entered(), 0);

    // One of two shares: still disabled.
    assert!(!b.enter_share(&shares[0])?);
    assert_eq!(fault(b.call(&install_key)), Fault::Disabled);
    // The same share twice, a forged share.
    assert_eq!(fault(b.enter_share(&shares[0])), Fault::BadShare);
    let forged = OperationShare {
        share: shamir::Share {
            id: shares[1].share.id,
            value: SecretBytes::new(vec![0x5a; 32]),
        },
        ..shares[1].clone()
    };
    assert_eq!(fault(b.enter_share(&forged)), Fault::BadShare);
    assert!(!b.is_enabled());
    assert_eq!(b.shares_entered(), 1);
    assert_eq!(fault(b.call(&install_key)), Fault::Disabled);

    // The second share: it works.
    assert!(b.enter_share(&shares[1])?);
    assert_eq!(status(&mut b), (steel2, true, vec![ve.clone()]));
    assert!(matches!(b.call(&install_key)?, Response::MeterInstall(_)));

    // The last share out: disabled again, Status still answers.
    b.remove_share();
    assert!(!b.is_enabled());
    assert_eq!(status(&mut b), (steel2, false, vec![]));
    assert_eq!(fault(b.call(&install_key)), Fault::Disabled);
    // Back in: the state kept what the box did (the MI4 is used up).
    assert!(b.enter_share(&shares[1])?);
    assert_eq!(fault(b.call(&install_key)), Fault::KeyIdNotNew);
    Ok(())
}

#[tokio::test]
async fn rule08_a_connected_box_with_a_share_out_does_no_work() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let (_, _, first) = generate(&k, &ve, k.steel).await?;
    k.kms.with_box(k.oak, |b| {
        b.remove_share();
        Ok(())
    })?;
    let next = k.kms.archive().next_key_id(&ve).await?;
    let r = call(&k, k.oak, &generate_key(&ve, k.steel, next, k.kms.time()));
    assert_eq!(fault(r), Fault::Disabled);
    // The KMS computer finds no enabled oak box for the domain, and says why.
    assert_eq!(
        fault(k.kms.request_key(&ve, k.steel).await),
        Fault::Disabled
    );
    let shares = k
        .shares
        .iter()
        .find(|(id, _)| *id == k.oak)
        .map(|(_, s)| s.clone())
        .unwrap();
    for s in &shares {
        k.kms.with_box(k.oak, |b| b.enter_share(s))?;
    }
    // Enabled again, with its books: the old key id is still used up.
    let r = call(&k, k.oak, &generate_key(&ve, k.steel, first, k.kms.time()));
    assert_eq!(fault(r), Fault::KeyIdNotNew);
    let done = install(&k, &mut SoftMeter::new(1), &ve).await?;
    assert_eq!(done.status, KeyStatus::Installed);
    Ok(())
}

#[tokio::test]
async fn rule08_a_malformed_share_is_a_bad_share_and_is_not_kept() -> Fallible {
    let k = kms().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("oak.box");
    let (_, shares) = k.kms.init_box(k.manufacturing, BoxKind::Oak, |_| {
        Box::new(FileStorage::new(&path))
    })?;
    let mut b = SecureBox::open(Box::new(MemStorage(Some(std::fs::read(&path)?))))?;
    assert!(!b.enter_share(&shares[0])?);
    let short = OperationShare {
        share: shamir::Share {
            id: shares[1].share.id,
            value: SecretBytes::new(vec![1; 16]),
        },
        ..shares[1].clone()
    };
    assert_eq!(fault(b.enter_share(&short)), Fault::BadShare);
    assert_eq!(b.shares_entered(), 1);
    assert!(b.enter_share(&shares[1])?);
    Ok(())
}

// ----- rule 9: no data crosses domains ---------------------------------------------------

#[tokio::test]
async fn rule09_requests_for_domains_outside_a_box_configuration_are_refused() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let steel2 = second_steel(&k, &ve)?;
    for domain in [d("UKRM"), d("VE.US")] {
        let r = call(&k, k.oak, &generate_key(&domain, k.steel, 1, k.kms.time()));
        assert_eq!(fault(r), Fault::UnknownDomain, "oak, {domain}");
    }
    let verify = |domain: &str| Request::Verify {
        domain: d(domain),
        indicia: vec![vec![0; 51]],
    };
    assert_eq!(
        fault(call(&k, k.brass, &verify("UKRM.GB"))),
        Fault::UnknownDomain
    );
    assert_eq!(fault(call(&k, k.tin, &verify("VE"))), Fault::UnknownDomain);
    let r = call(
        &k,
        k.brass,
        &Request::LoadRecords {
            domain: d("UKRM.GB"),
            records: vec![],
        },
    );
    assert_eq!(fault(r), Fault::UnknownDomain);
    // A USPS install record for a steel box that serves VE only.
    let (_, usps_mi4, _) = generate(&k, &d("USPS"), steel2).await?;
    let meter = SoftMeter::new(1);
    let r = steel_seal(&k, steel2, &usps_mi4, &meter);
    assert_eq!(fault(r), Fault::UnknownDomain);
    // The boxes still do their own domains' work.
    let done = install(&k, &mut SoftMeter::new(2), &ve).await?;
    assert_eq!(done.status, KeyStatus::Installed);
    assert!(matches!(
        call(&k, k.tin, &verify("VE.US"))?,
        Response::Verdicts(v) if v == [Verdict::UnknownMeter]
    ));
    Ok(())
}

#[tokio::test]
async fn rule09_installation_records_do_not_cross_domains() -> Fallible {
    let k = kms().await?;
    let (ve, usps) = (d("VE"), d("USPS"));
    let mut meter = SoftMeter::new(1);
    let (ve_mi3, ve_mi4, ve_id) = generate(&k, &ve, k.steel).await?;
    let (us_mi3, us_mi4, us_id) = generate(&k, &usps, k.steel).await?;
    // A USPS MI4 relabelled VE does not open in the steel box's VE process.
    let mut rec: InstallRecord = us_mi4.peek()?;
    rec.domain = ve.clone();
    let r = k.kms.steel_install(
        k.steel,
        &rebody(&us_mi4, &rec),
        meter.device,
        meter.public,
        &meter.vouch().unwrap(),
    );
    assert_eq!(fault(r), Fault::BadSignature);
    let mi5 = steel_seal(&k, k.steel, &ve_mi4, &meter)?;
    let ve_mi7 = steel_report(&k, k.steel, &meter.install(&mi5))?;
    let mi5 = steel_seal(&k, k.steel, &us_mi4, &meter)?;
    let us_mi7 = steel_report(&k, k.steel, &meter.install(&mi5))?;
    // VE's MI3 with USPS's MI7, and the other way round.
    for (mi3, mi7) in [(&ve_mi3, &us_mi7), (&us_mi3, &ve_mi7)] {
        let f = fault(brass_confirm(&k, mi3, mi7, k.kms.time()));
        assert!(
            matches!(f, Fault::BadSignature | Fault::Mismatch),
            "crossed MI8: {f}"
        );
    }
    // The honest pairs.
    for (domain, id, mi3, mi7) in [
        (&ve, ve_id, &ve_mi3, &ve_mi7),
        (&usps, us_id, &us_mi3, &us_mi7),
    ] {
        let (mi9, _) = brass_confirm(&k, mi3, mi7, k.kms.time())?;
        let e = k.kms.archive_record(domain, id, &mi9).await?;
        assert_eq!(e.status, KeyStatus::Installed);
    }
    Ok(())
}

#[tokio::test]
async fn rule09_registration_stays_in_its_install_domain_and_country() -> Fallible {
    let k = kms().await?;
    let (ve, usps) = (d("VE"), d("USPS"));
    let mut meter = SoftMeter::new(1);
    let ve_steps = install_steps(&k, &mut meter, &ve).await?;
    let us_steps = install_steps(&k, &mut meter, &usps).await?;
    let date = today();
    let ve_us = meter.report(&ve, "N0001", "US", date);
    let ve_gb = meter.report(&ve, "N0001", "GB", date);
    // USPS.US's brass takes no VE key; a sub-domain no other country's report.
    for (sub, report) in [("USPS.US", &ve_us), ("VE.US", &ve_gb), ("VE.GB", &ve_us)] {
        let r = k.kms.register(&d(sub), report).await;
        assert_eq!(fault(r), Fault::UnknownDomain, "{sub} {}", report.country);
    }
    // VE.US's brass, shown USPS's MI9 for a VE report: not its install domain's brass.
    let r = call(
        &k,
        k.brass,
        &Request::RegistrationRequest {
            domain: d("VE.US"),
            report: ve_us.clone(),
            installed: us_steps.mi9.clone(),
            time: k.kms.time(),
        },
    );
    assert_eq!(fault(r), Fault::BadSignature);
    assert_eq!(
        statuses(&history(&k, &ve, ve_steps.key_id).await),
        [KeyStatus::New, KeyStatus::Installed]
    );
    // The honest registrations.
    k.kms.register(&d("VE.US"), &ve_us).await?;
    k.kms
        .register(&d("USPS.US"), &meter.report(&usps, "N0001", "US", date))
        .await?;
    let ind = meter.indicium(date, 730).to_vec();
    for (sub, v) in [
        ("VE.US", Verdict::Good),
        ("USPS.US", Verdict::Good),
        ("VE.GB", Verdict::UnknownMeter),
    ] {
        assert_eq!(k.kms.verify(&d(sub), vec![ind.clone()])?, [v], "{sub}");
    }
    Ok(())
}

#[tokio::test]
async fn rule09_an_earth_meter_is_registered_in_one_country_for_good() -> Fallible {
    let k = kms().await?;
    let (earth, gb, fr) = (d("EARTH"), d("EARTH.GB"), d("EARTH.FR"));
    k.kms.create_domain(k.manufacturing, &fr).await?;
    k.kms.make_process(k.manufacturing, k.brass, &fr)?;
    let mut meter = SoftMeter::new(1);
    let s = install_steps(&k, &mut meter, &earth).await?;
    let date = today();
    k.kms
        .register(&gb, &meter.report(&earth, "G0001", "GB", date))
        .await?;
    let before = history(&k, &earth, s.key_id).await;
    assert_eq!(before[2].sub_domain, Some(gb.clone()));
    let fr_report = meter.report(&earth, "F0001", "FR", date);
    // The KMS computer: the key is no longer Installed.
    assert_eq!(
        fault(k.kms.register(&fr, &fr_report).await),
        Fault::InvalidTransition
    );
    // FR's brass, asked directly, has only the MI9 to go by and signs; the archive refuses.
    let register = |domain: &DomainId, report| Request::RegistrationRequest {
        domain: domain.clone(),
        report,
        installed: s.mi9.clone(),
        time: k.kms.time(),
    };
    let Response::Registered { archive: to_fr, .. } =
        call(&k, k.brass, &register(&fr, fr_report.clone()))?
    else {
        panic!("brass answered another message");
    };
    let r = k.kms.archive_record(&earth, s.key_id, &to_fr).await;
    // Active after Active: the status rule refuses it before the country rule.
    assert_eq!(
        fault(r),
        Fault::InvalidTransition,
        "a registered key never moves"
    );
    // A second Active record in GB is no transition either.
    let Response::Registered {
        archive: gb_again, ..
    } = call(
        &k,
        k.brass,
        &register(&gb, meter.report(&earth, "G0002", "GB", date)),
    )?
    else {
        panic!("brass answered another message");
    };
    let r = k.kms.archive_record(&earth, s.key_id, &gb_again).await;
    assert_eq!(fault(r), Fault::InvalidTransition);
    // No way back to EARTH: its brass registers nothing, and Installed never follows Active.
    let r = call(&k, k.brass, &register(&earth, fr_report));
    assert_eq!(fault(r), Fault::UnknownDomain);
    let (reinstalled, _) = brass_confirm(&k, &s.mi3, &s.mi7, k.kms.time())?;
    for rec in [&s.mi9, &reinstalled] {
        let f = fault(k.kms.archive_record(&earth, s.key_id, rec).await);
        assert!(
            matches!(f, Fault::InvalidTransition | Fault::UnknownDomain),
            "back to EARTH: {f}"
        );
    }
    assert_eq!(history(&k, &earth, s.key_id).await, before);
    // Only GB verifies the meter.
    assert_eq!(k.kms.load_verifier(&fr).await?, 0);
    let ind = meter.indicium(date, 730).to_vec();
    assert_eq!(k.kms.verify(&gb, vec![ind.clone()])?, [Verdict::Good]);
    assert_eq!(k.kms.verify(&fr, vec![ind])?, [Verdict::UnknownMeter]);
    Ok(())
}

// ----- rule 10: levels 1 and 2 of error handling -----------------------------------------

/// A box's answer to raw bytes.
fn raw(k: &SetUp<MemArchive>, id: BoxId, bytes: &[u8]) -> Result<Response, KmsError> {
    let answer = k.kms.with_box(id, |b| Ok(b.handle(bytes))).unwrap();
    read_answer(&answer)
}

#[track_caller]
fn framing(r: Result<Response, KmsError>) -> FramingError {
    match r {
        Err(KmsError::Framing(f)) => f,
        other => panic!("expected a framing error, got {other:?}"),
    }
}

#[track_caller]
fn command(r: Result<Response, KmsError>) -> CommandError {
    match r {
        Err(KmsError::Command(c)) => c,
        other => panic!("expected a command error, got {other:?}"),
    }
}

#[tokio::test]
async fn rule10_every_bit_flip_in_a_frame_is_caught_at_level_one() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let next = k.kms.archive().next_key_id(&ve).await?;
    let good = generate_key(&ve, k.steel, next, k.kms.time()).to_frame()?;
    let n = good.len();
    for bit in 0..n * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let f = framing(raw(&k, k.oak, &bad));
        let ok = match bit / 8 {
            0 => f == FramingError::NoStx,
            2..=5 => matches!(f, FramingError::Length | FramingError::TooLarge),
            i if i == n - 1 => f == FramingError::NoEtx,
            _ => f == FramingError::Check,
        };
        assert!(ok, "bit {bit}: {f:?}");
    }
    // None of them reached the box: the honest frame is still new.
    assert!(matches!(raw(&k, k.oak, &good)?, Response::NewKey { .. }));
    Ok(())
}

#[tokio::test]
async fn rule10_broken_frames_and_unknown_classes_are_framing_errors() -> Fallible {
    let k = kms().await?;
    let good = Request::Status.to_frame()?;
    let mut no_stx = good.clone();
    no_stx[0] = 0;
    assert_eq!(framing(raw(&k, k.brass, &no_stx)), FramingError::NoStx);
    assert_eq!(framing(raw(&k, k.brass, &[])), FramingError::NoStx);
    for cut in 1..good.len() {
        assert_eq!(
            framing(raw(&k, k.brass, &good[..cut])),
            FramingError::Length,
            "cut at {cut}"
        );
    }
    let mut longer = good.clone();
    longer.push(frame::ETX);
    assert_eq!(framing(raw(&k, k.brass, &longer)), FramingError::Length);
    for code in (0..=u8::MAX).filter(|c| Class::from_code(*c).is_none()) {
        let f = frame::encode(code, &message::encode(&Request::Status)?)?;
        assert_eq!(
            framing(raw(&k, k.brass, &f)),
            FramingError::UnknownClass(code)
        );
    }
    assert!(matches!(
        raw(&k, k.brass, &good)?,
        Response::Status { enabled: true, .. }
    ));
    Ok(())
}

#[tokio::test]
async fn rule10_commands_outside_a_box_command_table_are_not_expected() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    // The seed's example: Generate Key to a brass box.
    let c = command(raw(
        &k,
        k.brass,
        &generate_key(&ve, k.steel, 1, k.kms.time()).to_frame()?,
    ));
    assert_eq!(
        c,
        CommandError::NotExpected {
            component: k.brass.to_string(),
            command: "GenerateKey".into(),
        }
    );
    // Every class to every box: refused at level 2 exactly when not in its
    // table (an empty body is then a syntax error instead).
    for id in [k.manufacturing, k.oak, k.steel, k.brass, k.tin] {
        for class in Class::ALL {
            let c = command(raw(&k, id, &frame::encode(class as u8, &[])?));
            let expected = tables::commands(id.kind).contains(&class);
            assert_eq!(
                matches!(c, CommandError::Syntax { .. }),
                expected,
                "{id} {class:?}: {c}"
            );
        }
    }
    // The oak box itself is still fine.
    let (_, _, key_id) = generate(&k, &ve, k.steel).await?;
    assert_eq!(key_id, 1);
    Ok(())
}

#[tokio::test]
async fn rule10_a_body_that_is_not_the_class_command_is_a_syntax_error() -> Fallible {
    let k = kms().await?;
    let verify = Request::Verify {
        domain: d("VE.US"),
        indicia: vec![],
    };
    let body = message::encode(&verify)?;
    for class in [Class::Status, Class::ConfirmInstalled, Class::LoadRecords] {
        let c = command(raw(&k, k.brass, &frame::encode(class as u8, &body)?));
        assert_eq!(
            c,
            CommandError::Syntax {
                command: format!("{class:?}")
            }
        );
    }
    // Garbage parameters.
    let c = command(raw(
        &k,
        k.brass,
        &frame::encode(Class::Verify as u8, &[0xff; 9])?,
    ));
    assert!(matches!(c, CommandError::Syntax { .. }));
    // The right class with the same body works.
    assert!(matches!(
        raw(&k, k.brass, &frame::encode(Class::Verify as u8, &body)?)?,
        Response::Verdicts(v) if v.is_empty()
    ));
    Ok(())
}

#[tokio::test]
async fn rule10_extra_parameters_are_a_syntax_error() -> Fallible {
    let k = kms().await?;
    let mut body = message::encode(&Request::Status)?;
    body.extend_from_slice(b"extra");
    let c = command(raw(
        &k,
        k.brass,
        &frame::encode(Class::Status as u8, &body)?,
    ));
    assert!(matches!(c, CommandError::Syntax { .. }), "{c}");
    Ok(())
}

/// Checks that `answer` is a well-formed answer frame.
fn well_formed(answer: &[u8]) -> Result<bool, String> {
    let (class, body) = frame::decode(answer).map_err(|e| format!("answer frame: {e}"))?;
    match class {
        ANSWER_OK => message::decode::<Response>(body)
            .map(|_| true)
            .map_err(|e| format!("answer body: {e}")),
        ANSWER_ERR => message::decode::<Refusal>(body)
            .map(|_| false)
            .map_err(|e| format!("refusal body: {e}")),
        other => Err(format!("answer class {other}")),
    }
}

#[test]
fn rule10_arbitrary_bytes_never_panic_and_get_a_framed_refusal() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let k = rt.block_on(kms()).unwrap();
    let ids = [k.manufacturing, k.oak, k.steel, k.brass, k.tin];
    let config = Config {
        cases: 512,
        ..Config::default()
    };
    // Arbitrary bytes (rarely a frame at all), some starting with STX.
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|mut v| {
            v.insert(0, frame::STX);
            v
        }),
    ];
    TestRunner::new(config.clone())
        .run(&(0..ids.len(), bytes), |(i, bytes)| {
            let answer = k.kms.with_box(ids[i], |b| Ok(b.handle(&bytes))).unwrap();
            prop_assert_eq!(well_formed(&answer), Ok(false));
            prop_assert!(read_answer(&answer).is_err());
            Ok(())
        })
        .unwrap();
    // Well-framed requests with arbitrary class codes and parameters: a
    // well-formed answer, whether a refusal or (rarely) an answer.
    TestRunner::new(config)
        .run(
            &(
                0..ids.len(),
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 0..300),
            ),
            |(i, class, body)| {
                let f = frame::encode(class, &body).unwrap();
                let answer = k.kms.with_box(ids[i], |b| Ok(b.handle(&f))).unwrap();
                let ok = well_formed(&answer);
                prop_assert!(ok.is_ok(), "{:?}", ok);
                prop_assert_eq!(read_answer(&answer).is_ok(), ok == Ok(true));
                Ok(())
            },
        )
        .unwrap();
}

#[tokio::test]
async fn rule10_every_answer_is_a_frame_even_a_large_one() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let us = d("VE.US");
    let date = today();
    let period = postvault_indicium::token::Period::of(date).0;
    let Response::Startup(tin) = call(&k, k.manufacturing, &Request::StartupOf { id: k.tin })?
    else {
        panic!("manufacturing answered another message");
    };
    let export = Request::ExportTokenKeys {
        domain: us.clone(),
        tin,
        period,
    }
    .to_frame()?;
    let register = |serial: u32| {
        let k = &k;
        let (ve, us) = (ve.clone(), us.clone());
        async move {
            let mut meter = SoftMeter::new(serial);
            install(k, &mut meter, &ve).await?;
            k.kms
                .register(&us, &meter.report(&ve, "N0001", "US", date))
                .await?;
            Fallible::Ok(())
        }
    };
    // Four hundred and fifty meters' token keys are more than 64 KiB, the frame size
    // that once made this answer come back empty; now it arrives whole.
    let meters = 450u32;
    for serial in 1..=meters {
        register(serial).await?;
    }
    let answer = k.kms.with_box(k.brass, |b| Ok(b.handle(&export)))?;
    assert!(answer.len() > 64 * 1024, "{} bytes", answer.len());
    match read_answer(&answer)? {
        Response::TokenKeys(records) => assert_eq!(records.len(), 450),
        other => panic!("another answer: {other:?}"),
    }
    Ok(())
}

// ----- rule 11: the test-token check ---------------------------------------------------

#[tokio::test]
async fn rule11_a_meter_holding_another_key_is_bad_and_never_verifies() -> Fallible {
    let k = kms().await?;
    let (ve, usps) = (d("VE"), d("USPS"));
    let mut meter = SoftMeter::new(1);
    let mi4 = k.kms.request_key(&ve, k.steel).await?;
    let mi5 = steel_seal(&k, k.steel, &mi4, &meter)?;
    let mi6 = meter.install_other_key(&mi5);
    let done = k.kms.finish_install(k.steel, &mi6).await?;
    assert_eq!(done.status, KeyStatus::Bad);
    let confirm: message::ConfirmInstall = done.confirm.peek()?;
    assert_eq!(confirm.status, KeyStatus::Bad);
    let h = history(&k, &ve, done.key_id).await;
    assert_eq!(statuses(&h), [KeyStatus::New, KeyStatus::Bad]);
    assert_eq!(h[1].device, Some(meter.device));
    // Its USPS key is installed honestly, to tell the verdicts apart.
    install(&k, &mut meter, &usps).await?;
    let date = today();
    let report = meter.report(&ve, "N0001", "US", date);
    // Registration: refused by the KMS computer, and by brass shown the Bad MI9.
    assert_eq!(
        fault(k.kms.register(&d("VE.US"), &report).await),
        Fault::InvalidTransition
    );
    let r = call(
        &k,
        k.brass,
        &Request::RegistrationRequest {
            domain: d("VE.US"),
            report,
            installed: h[1].record.clone(),
            time: k.kms.time(),
        },
    );
    assert_eq!(fault(r), Fault::InvalidTransition);
    assert_eq!(history(&k, &ve, done.key_id).await, h);
    k.kms
        .register(&d("USPS.US"), &meter.report(&usps, "N0001", "US", date))
        .await?;
    let ind = meter.indicium(date, 730).to_vec();
    let v = k.kms.verify(&d("VE.US"), vec![ind.clone()])?;
    assert!(
        matches!(v[..], [Verdict::UnknownMeter | Verdict::BadToken]),
        "{v:?}"
    );
    assert_eq!(k.kms.verify(&d("USPS.US"), vec![ind])?, [Verdict::Good]);
    Ok(())
}

#[tokio::test]
async fn rule11_tokens_under_another_key_do_not_verify() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let mut meter = SoftMeter::new(1);
    install(&k, &mut meter, &ve).await?;
    let date = today();
    k.kms
        .register(&d("VE.US"), &meter.report(&ve, "N0001", "US", date))
        .await?;
    let good = meter.indicium(date, 730).to_vec();
    assert_eq!(k.kms.verify(&d("VE.US"), vec![good])?, [Verdict::Good]);
    // The same meter with its key swapped for another after registration.
    let mut swapped = postvault_kms::softmeter::SoftMeter::new(1)?;
    assert_eq!(swapped.device, meter.device);
    let key_id = meter.report(&ve, "N0001", "US", date).key_id;
    swapped.install_raw(&ve, key_id, postvault_crypto::Secret32::generate()?)?;
    let forged = swapped.indicium(date, 730)?.to_vec();
    assert_eq!(
        k.kms.verify(&d("VE.US"), vec![forged])?,
        [Verdict::BadToken]
    );
    Ok(())
}

// ----- steel seals only to vouched-for meter keys -------------------------------------

#[tokio::test]
async fn steel_seals_only_to_a_meter_key_the_vault_vouches_for() -> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let (_, mi4, _) = generate(&k, &ve, k.steel).await?;
    let meter = SoftMeter::new(1);
    // A key of the host's own, with a signature by a key that is not the anchor.
    let (_, own) = postvault_crypto::hpke::PrivateKey::generate()?;
    let impostor = postvault_crypto::sig::SigningKey::generate(
        postvault_crypto::sig::SigAlg::EcdsaP256Sha256,
    )?;
    let sig = impostor.sign(&postvault_indicium::token::meter_key_message(&own.0))?;
    let forged = (sig.alg().id(), sig.as_bytes().to_vec());
    let r = k
        .kms
        .steel_install(k.steel, &mi4, meter.device, own.0, &forged);
    assert_eq!(fault(r), Fault::BadSignature);
    // The meter's real vouch does not cover another key.
    let r = k
        .kms
        .steel_install(k.steel, &mi4, meter.device, own.0, &meter.vouch()?);
    assert_eq!(fault(r), Fault::BadSignature);
    // The anchor is set once.
    let other = impostor.public_key();
    let r = k
        .kms
        .set_meter_anchor(k.steel, &(other.alg().id(), other.as_bytes().to_vec()));
    assert_eq!(fault(r), Fault::Mismatch);
    k.kms
        .set_meter_anchor(k.steel, &postvault_kms::softmeter::anchor()?)?;
    // Nothing was used up: the honest installation works.
    k.kms
        .steel_install(k.steel, &mi4, meter.device, meter.public, &meter.vouch()?)?;
    // A steel box without an anchor seals to nobody.
    let (bare, _) = k.kms.init_box(k.manufacturing, BoxKind::Steel, |_| {
        Box::new(MemStorage::default())
    })?;
    k.kms.make_process(k.manufacturing, bare, &ve)?;
    let (_, mi4, _) = generate(&k, &ve, bare).await?;
    let r = k
        .kms
        .steel_install(bare, &mi4, meter.device, meter.public, &meter.vouch()?);
    assert_eq!(fault(r), Fault::WrongBox);
    Ok(())
}

// ----- keys go only to boxes the manufacturing box set up ------------------------------

#[tokio::test]
async fn domain_keys_and_token_keys_go_only_to_startup_keys_the_manufacturing_box_recorded()
-> Fallible {
    let k = kms().await?;
    let ve = d("VE");
    let (_, impostor) = postvault_crypto::hpke::PrivateKey::generate()?;
    let process = |id, key| Request::MakeDomainProcess {
        domain: ve.clone(),
        reply: postvault_kms::message::StartupReply {
            id,
            startup_conf: key,
        },
        kind: BoxKind::Brass,
        time: k.kms.time(),
    };
    // An id it never gave, and a real box's id with another key.
    let made_up = BoxId {
        kind: BoxKind::Brass,
        number: 77,
    };
    assert_eq!(
        fault(call(&k, k.manufacturing, &process(made_up, impostor.0))),
        Fault::WrongBox
    );
    assert_eq!(
        fault(call(&k, k.manufacturing, &process(k.brass, impostor.0))),
        Fault::WrongBox
    );
    let record = |id, key| Request::RecordStartup {
        reply: postvault_kms::message::StartupReply {
            id,
            startup_conf: key,
        },
    };
    assert_eq!(
        fault(call(&k, k.manufacturing, &record(made_up, impostor.0))),
        Fault::WrongBox
    );
    assert_eq!(
        fault(call(&k, k.manufacturing, &record(k.brass, impostor.0))),
        Fault::WrongBox
    );
    // The real key is accepted again (idempotent) and a process still goes to it.
    let real = k.kms.with_box(k.brass, |b| b.startup_key())?;
    assert!(matches!(
        call(&k, k.manufacturing, &record(k.brass, real))?,
        Response::Startup(_)
    ));
    assert!(matches!(
        call(&k, k.manufacturing, &process(k.brass, real))?,
        Response::Process(_)
    ));
    // Brass seals token keys only to a tin startup key signed by the manufacturing box.
    let forged = Signed::sign(
        postvault_kms::message::RecordKind::StartupReply,
        &postvault_kms::message::StartupReply {
            id: k.tin,
            startup_conf: impostor.0,
        },
        &postvault_crypto::sig::SigningKey::generate(
            postvault_crypto::sig::SigAlg::EcdsaP256Sha256,
        )?,
    )?;
    let r = call(
        &k,
        k.brass,
        &Request::ExportTokenKeys {
            domain: d("VE.US"),
            tin: forged,
            period: 202_611,
        },
    );
    assert_eq!(fault(r), Fault::BadSignature);
    Ok(())
}
