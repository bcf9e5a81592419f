//! Power-on self-tests: one fast known-answer test per primitive.
//!
//! Vectors: FIPS 180-2 (SHA-256), RFC 4231 case 2 (HMAC), RFC 5869 case 1 (HKDF),
//! GCM spec test case 14 (AES-256-GCM), Wycheproof ECDSA P-256 P1363 tcId 1,
//! RFC 8032 test 1 (Ed25519), RFC 7748 §6.1 (X25519), RFC 9180 test vectors
//! (HPKE, mode 0, suite 0x0020/0x0001/0x0002), RFC 9106 §5.3 (Argon2id), and a
//! degree-1 polynomial for Shamir whose shares can be written down by hand.

use hex_literal::hex;

use crate::sig::{PublicKey, SigAlg, Signature, SigningKey};
use crate::{Error, Result, Secret32, aead, hash, hpke, kdf, mac, shamir, x25519};

type Kat = fn() -> Result<bool>;

/// Runs every known-answer test, stopping at the first failure.
///
/// # Errors
/// [`Error::SelfTest`] naming the first primitive whose test failed.
pub fn run_all() -> Result<()> {
    const KATS: [(&str, Kat); 10] = [
        ("SHA-256", sha256),
        ("HMAC-SHA-256", hmac),
        ("HKDF-SHA-256", hkdf),
        ("AES-256-GCM", aes_gcm),
        ("ECDSA-P256-SHA256", ecdsa_p256),
        ("Ed25519", ed25519),
        ("X25519", x25519),
        ("HPKE", hpke),
        ("Argon2id", argon2id),
        ("Shamir", shamir),
    ];
    for (primitive, kat) in KATS {
        if !kat().unwrap_or(false) {
            return Err(Error::SelfTest { primitive });
        }
    }
    Ok(())
}

fn sha256() -> Result<bool> {
    Ok(hash::sha256(&[b"a", b"bc"])
        == hex!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
}

fn hmac() -> Result<bool> {
    Ok(
        mac::hmac_sha256_raw(b"Jefe", b"what do ya want for nothing?")
            == hex!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    )
}

fn hkdf() -> Result<bool> {
    let mut okm = [0; 42];
    kdf::hkdf_sha256(
        &hex!("000102030405060708090a0b0c"),
        &[0x0b; 22],
        &[&hex!("f0f1f2f3f4"), &hex!("f5f6f7f8f9")],
        &mut okm,
    )?;
    Ok(okm
        == hex!(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        ))
}

fn aes_gcm() -> Result<bool> {
    let key = Secret32::from_bytes([0; 32]);
    let expected = hex!("cea7403d4d606b6e074ec5d3baf39d18" "d0d1c8a799996bf0265b98b5d48ab919");
    let sealed = aead::seal_with_nonce(&key, &[0; 12], b"", &[0; 16])?;
    let mut tampered = expected;
    tampered[31] ^= 1;
    Ok(sealed == expected
        && aead::open_with_nonce(&key, &[0; 12], b"", &expected)?.expose() == [0; 16]
        && aead::open_with_nonce(&key, &[0; 12], b"", &tampered).is_err())
}

fn ecdsa_p256() -> Result<bool> {
    let pk = PublicKey::from_bytes(
        SigAlg::EcdsaP256Sha256,
        &hex!(
            "042927b10512bae3eddcfe467828128bad2903269919f7086069c8c4df6c732838"
            "c7787964eaac00e5921fb1498a60f4606766b3d9685001558d1a974e7341513e"
        ),
    )?;
    let sig = Signature::from_bytes(
        SigAlg::EcdsaP256Sha256,
        &hex!(
            "2ba3a8be6b94d5ec80a6d9d1190a436effe50d85a1eee859b8cc6af9bd5c2e18"
            "4cd60b855d442f5b3c7b11eb6c4e0ae7525fe710fab9aa7c77a67f79e6fadd76"
        ),
    )?;
    Ok(pk.verify(&hex!("313233343030"), &sig).is_ok() && pk.verify(b"123401", &sig).is_err())
}

/// RFC 8410 PKCS#8 v1 prefix for an Ed25519 seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = hex!("302e020100300506032b657004220420");

fn ed25519() -> Result<bool> {
    let seed = hex!("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    let key = SigningKey::from_pkcs8(
        SigAlg::Ed25519,
        &[&ED25519_PKCS8_PREFIX[..], &seed].concat(),
    )?;
    let sig = key.sign(b"")?;
    Ok(key.public_key().as_bytes()
        == hex!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        && sig.as_bytes()
            == hex!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        && key.public_key().verify(b"", &sig).is_ok())
}

fn x25519() -> Result<bool> {
    let alice = x25519::EphemeralSecret::from_secret(&Secret32::from_bytes(hex!(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    )))?;
    let public_ok = alice.public_key()?
        == hex!("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let shared = alice.agree(&hex!(
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    ))?;
    Ok(public_ok
        && shared.expose()
            == &hex!("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"))
}

fn hpke() -> Result<bool> {
    let sk = hpke::PrivateKey::derive(&hex!(
        "dac33b0e9db1b59dbbea58d59a14e7b5896e9bdf98fad6891e99d1686492b9ee"
    ))?;
    let sealed = hex!(
        "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256"
        "e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be9931980a41de125a925cdad859d5b7a"
    );
    let info = hex!("4f6465206f6e2061204772656369616e2055726e");
    let pt = hpke::open(&sk, &info, &hex!("436f756e742d30"), &sealed)?;
    Ok(sk.public_key()?.0
        == hex!("430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c")
        && pt.expose() == b"Beauty is truth, truth beauty")
}

fn argon2id() -> Result<bool> {
    use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};
    let internal = |_| Error::Internal {
        what: "Argon2 known-answer test",
    };
    let params = ParamsBuilder::new()
        .m_cost(32)
        .t_cost(3)
        .p_cost(4)
        .data(AssociatedData::new(&[4; 12]).map_err(internal)?)
        .build()
        .map_err(internal)?;
    let mut tag = [0; 32];
    Argon2::new_with_secret(&[3; 8], Algorithm::Argon2id, Version::V0x13, params)
        .and_then(|a| a.hash_password_into(&[1; 32], &[2; 16], &mut tag))
        .map_err(internal)?;
    Ok(tag == hex!("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"))
}

fn shamir() -> Result<bool> {
    // f(x) = secret + x: share x is secret XOR x in GF(2^8), whatever the field polynomial.
    let secret = *b"postvault";
    let recovers = |ids: &[u8], threshold: u8| {
        let shares: Vec<_> = ids
            .iter()
            .map(|&id| shamir::Share {
                id,
                value: secret.map(|b| b ^ id).to_vec().into(),
            })
            .collect();
        shamir::combine(&shares, threshold).is_ok_and(|s| s.expose() == secret)
    };
    let split = shamir::split(&secret, 3, 5)?;
    Ok(recovers(&[1, 2], 2)
        && recovers(&[3, 1], 2)
        && recovers(&[2, 3], 2)
        && recovers(&[1, 2, 3], 3)
        && shamir::combine(split.get(2..).unwrap_or_default(), 3)
            .is_ok_and(|s| s.expose() == secret)
        && shamir::combine(split.get(..2).unwrap_or_default(), 3).is_err())
}
