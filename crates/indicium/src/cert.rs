//! X.509 certificates for the postal CA and each PSD (meter).
//!
//! The CA and PSD keys are `postvault-crypto` keys: rcgen only lays out the
//! certificate (it is built without a crypto backend) and hands the
//! to-be-signed bytes to [`postvault_crypto::sig::SigningKey::sign`] through
//! a small adapter. Chains are checked with rustls-webpki, which requires the
//! indicium-signing extended key usage [`INDICIUM_SIGNING_OID`] on the PSD
//! certificate; fields are read back with x509-parser.

use postvault_crypto::sig::{PublicKey, SigAlg, SigningKey};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa,
    Issuer, KeyIdMethod, KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519, OID_X509_SERIALNUMBER,
};
use zeroize::Zeroizing;

use crate::date::Date;
use crate::error::ChainFailure;
use crate::fields::DeviceId;
use crate::{Error, Result};

/// The extended key usage a PSD certificate must carry to sign indicia:
/// `2.25.180258816728165959402706045961790873851`, an OID under the UUID arc
/// (ITU-T X.667) from the random UUID `879c95d5-6978-452d-9123-f3c6150ce0fb`.
pub const INDICIUM_SIGNING_OID: &str = "2.25.180258816728165959402706045961790873851";

/// The DER contents (no tag or length) of [`INDICIUM_SIGNING_OID`].
pub const INDICIUM_SIGNING_OID_DER: &[u8] = &[
    0x69, 0x82, 0x8f, 0x9c, 0xca, 0xf5, 0xad, 0x97, 0xc2, 0x94, 0xdb, 0x91, 0x91, 0xfc, 0xf8, 0xe1,
    0xa8, 0xb3, 0xc1, 0x7b,
];

/// id-ce-extKeyUsage (2.5.29.37).
const EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
/// X.520 serialNumber (2.5.4.5).
const DN_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];

/// Largest certificate the parser accepts (bytes of DER).
const MAX_CERT_LEN: usize = 16 * 1024;
const PEM_CERTIFICATE: &str = "CERTIFICATE";
const PEM_PRIVATE_KEY: &str = "PRIVATE KEY";

/// Inclusive days of validity: from `not_before` 00:00:00Z through `not_after` 23:59:59Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    not_before: Date,
    not_after: Date,
}

impl Validity {
    /// A validity period.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `not_after` is before `not_before`.
    pub fn new(not_before: Date, not_after: Date) -> Result<Self> {
        if not_after < not_before {
            return Err(Error::InvalidArgument {
                what: "certificate validity ends before it starts",
            });
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }

    /// First valid day.
    #[must_use]
    pub fn not_before(&self) -> Date {
        self.not_before
    }

    /// Last valid day.
    #[must_use]
    pub fn not_after(&self) -> Date {
        self.not_after
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<()> {
        let t = |secs: i64| {
            time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| Error::InvalidArgument {
                what: "certificate validity out of range",
            })
        };
        params.not_before = t(self.not_before.unix_seconds_at_start())?;
        params.not_after = t(self.not_after.unix_seconds_at_start() + 86_399)?;
        Ok(())
    }
}

/// A parsed X.509 certificate with the fields the indicium profile uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    serial: Vec<u8>,
    common_name: Option<String>,
    subject_serial_number: Option<String>,
    not_before: i64,
    not_after: i64,
    is_ca: bool,
    public_key: Option<PublicKey>,
}

impl Certificate {
    /// Parses one DER certificate.
    ///
    /// # Errors
    /// [`Error::CertificateMalformed`] if `der` is not exactly one certificate
    /// (or is larger than 16 KiB).
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let malformed = |what| Error::CertificateMalformed { what };
        if der.len() > MAX_CERT_LEN {
            return Err(malformed("larger than 16 KiB"));
        }
        let (rest, x509) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| malformed("not a DER X.509 certificate"))?;
        if !rest.is_empty() {
            return Err(malformed("bytes after the certificate"));
        }
        let text = |attr: Option<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
            attr.and_then(|a| a.as_str().ok()).map(str::to_owned)
        };
        let subject = x509.subject();
        let common_name = text(subject.iter_common_name().next());
        let subject_serial_number = text(subject.iter_by_oid(&OID_X509_SERIALNUMBER).next());
        let spki = x509.public_key();
        let key_bytes: &[u8] = &spki.subject_public_key.data;
        let public_key = if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
            && spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .is_some_and(|o| o == OID_EC_P256)
        {
            PublicKey::from_bytes(SigAlg::EcdsaP256Sha256, key_bytes).ok()
        } else if spki.algorithm.algorithm == OID_SIG_ED25519 {
            PublicKey::from_bytes(SigAlg::Ed25519, key_bytes).ok()
        } else {
            None
        };
        let mut serial = x509.tbs_certificate.raw_serial();
        while let Some((0, rest)) = serial.split_first() {
            serial = rest;
        }
        Ok(Self {
            der: der.to_vec(),
            serial: serial.to_vec(),
            common_name,
            subject_serial_number,
            not_before: x509.validity().not_before.timestamp(),
            not_after: x509.validity().not_after.timestamp(),
            is_ca: x509.is_ca(),
            public_key,
        })
    }

    /// Parses a PEM `CERTIFICATE` block.
    ///
    /// # Errors
    /// [`Error::PemMalformed`] if the text is not one PEM `CERTIFICATE`;
    /// [`Error::CertificateMalformed`] as for [`Certificate::from_der`].
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        let p = pem::parse(pem_text).map_err(|_| Error::PemMalformed {
            what: "expected a PEM CERTIFICATE block",
        })?;
        if p.tag() != PEM_CERTIFICATE {
            return Err(Error::PemMalformed {
                what: "expected a PEM CERTIFICATE block",
            });
        }
        Self::from_der(p.contents())
    }

    /// The DER encoding.
    #[must_use]
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM encoding (`-----BEGIN CERTIFICATE-----`).
    #[must_use]
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new(PEM_CERTIFICATE, self.der.clone()))
    }

    /// The serial number's big-endian bytes, without leading zeros.
    #[must_use]
    pub fn serial_bytes(&self) -> &[u8] {
        &self.serial
    }

    /// The serial number, if it fits a u32.
    #[must_use]
    pub fn serial_u32(&self) -> Option<u32> {
        if self.serial.len() > 4 {
            return None;
        }
        Some(
            self.serial
                .iter()
                .fold(0u32, |acc, b| (acc << 8) | u32::from(*b)),
        )
    }

    /// The serial number as text: decimal if it fits a u32, else hex.
    #[must_use]
    pub fn serial_text(&self) -> String {
        self.serial_u32().map_or_else(
            || format!("0x{}", hex::encode(&self.serial)),
            |s| s.to_string(),
        )
    }

    /// The subject's common name.
    #[must_use]
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The subject's serialNumber attribute (a PSD certificate's device id).
    #[must_use]
    pub fn subject_serial_number(&self) -> Option<&str> {
        self.subject_serial_number.as_deref()
    }

    /// Start of validity, seconds since the Unix epoch.
    #[must_use]
    pub fn not_before_unix(&self) -> i64 {
        self.not_before
    }

    /// End of validity, seconds since the Unix epoch.
    #[must_use]
    pub fn not_after_unix(&self) -> i64 {
        self.not_after
    }

    /// Whether basicConstraints says CA.
    #[must_use]
    pub fn is_ca(&self) -> bool {
        self.is_ca
    }

    /// The subject public key, when it is P-256 or Ed25519.
    #[must_use]
    pub fn public_key(&self) -> Option<&PublicKey> {
        self.public_key.as_ref()
    }
}

/// A PSD's certificate: a [`Certificate`] whose subject serialNumber is a
/// device id and whose serial fits the indicium's 32-bit field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsdCertificate {
    cert: Certificate,
    device_id: DeviceId,
    serial: u32,
}

impl PsdCertificate {
    /// Checks that `cert` has the PSD profile's fields.
    ///
    /// # Errors
    /// [`Error::CertificateMalformed`] if the serial does not fit 32 bits, the
    /// subject serialNumber is not a device id, or the key is not P-256/Ed25519.
    pub fn from_certificate(cert: Certificate) -> Result<Self> {
        let malformed = |what| Error::CertificateMalformed { what };
        let serial = cert
            .serial_u32()
            .ok_or(malformed("PSD certificate serial does not fit 32 bits"))?;
        let device_id = cert
            .subject_serial_number()
            .and_then(|s| s.parse::<DeviceId>().ok())
            .ok_or(malformed(
                "PSD certificate subject serialNumber is not a device id",
            ))?;
        if cert.public_key().is_none() {
            return Err(malformed("PSD certificate key is not P-256 or Ed25519"));
        }
        Ok(Self {
            cert,
            device_id,
            serial,
        })
    }

    /// Parses a PEM PSD certificate.
    ///
    /// # Errors
    /// As [`Certificate::from_pem`] and [`PsdCertificate::from_certificate`].
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        Self::from_certificate(Certificate::from_pem(pem_text)?)
    }

    /// The certificate.
    #[must_use]
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The device id (subject serialNumber).
    #[must_use]
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The certificate serial, as the indicium carries it.
    #[must_use]
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// PEM encoding.
    #[must_use]
    pub fn to_pem(&self) -> String {
        self.cert.to_pem()
    }
}

/// A public key in the form rcgen wants for the certificate's subject.
struct SubjectKey<'a>(&'a PublicKey);

fn rcgen_alg(alg: SigAlg) -> &'static SignatureAlgorithm {
    match alg {
        SigAlg::EcdsaP256Sha256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        SigAlg::Ed25519 => &rcgen::PKCS_ED25519,
    }
}

impl PublicKeyData for SubjectKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        rcgen_alg(self.0.alg())
    }
}

/// Lets rcgen sign through the postvault-crypto facade. X.509 carries ECDSA
/// signatures as DER `SEQUENCE { r INTEGER, s INTEGER }`; the facade returns
/// raw `r || s`, so this re-encodes (an encoding step, not cryptography).
struct FacadeSigner<'a> {
    key: &'a SigningKey,
    public: PublicKey,
}

impl PublicKeyData for FacadeSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.public.as_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        rcgen_alg(self.key.alg())
    }
}

impl rcgen::SigningKey for FacadeSigner<'_> {
    fn sign(&self, msg: &[u8]) -> core::result::Result<Vec<u8>, rcgen::Error> {
        let sig = self
            .key
            .sign(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        match self.key.alg() {
            SigAlg::EcdsaP256Sha256 => {
                let (r, s) = sig
                    .as_bytes()
                    .split_at_checked(32)
                    .ok_or(rcgen::Error::RemoteKeyError)?;
                Ok(yasna::construct_der(|w| {
                    w.write_sequence(|w| {
                        w.next().write_bigint_bytes(r, true);
                        w.next().write_bigint_bytes(s, true);
                    });
                }))
            }
            SigAlg::Ed25519 => Ok(sig.as_bytes().to_vec()),
        }
    }
}

/// Subject key identifier: the first 20 bytes of SHA-256 over the SPKI (RFC 7093 method 1).
fn key_id(key: &impl PublicKeyData) -> Vec<u8> {
    let digest = postvault_crypto::hash::sha256(&[&key.subject_public_key_info()]);
    digest.iter().take(20).copied().collect()
}

fn encoding(_: rcgen::Error) -> Error {
    Error::CertificateEncoding {
        what: "rcgen refused the certificate",
    }
}

/// The postal certificate authority: a self-signed P-256 CA that issues PSD certificates.
pub struct PostalCa {
    key: SigningKey,
    cert: Certificate,
}

impl core::fmt::Debug for PostalCa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PostalCa")
            .field("cert", &self.cert.common_name())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl PostalCa {
    /// Generates a P-256 key and a self-signed CA certificate with subject
    /// `CN=<name>, O=postvault`, path length 0, key usages keyCertSign and
    /// cRLSign, and a random 127-bit serial.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty name; [`Error::Crypto`] if key
    /// generation fails; [`Error::CertificateEncoding`] if encoding fails.
    pub fn generate(name: &str, validity: Validity) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::InvalidArgument {
                what: "the CA needs a name",
            });
        }
        let key = SigningKey::generate(SigAlg::EcdsaP256Sha256)?;
        let signer = FacadeSigner {
            key: &key,
            public: key.public_key(),
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "postvault");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut serial = postvault_crypto::rand::bytes::<16>()?;
        if let Some(first) = serial.first_mut() {
            *first = (*first & 0x7f) | 0x40;
        }
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(&signer));
        validity.apply(&mut params)?;
        let cert = params.self_signed(&signer).map_err(encoding)?;
        let cert = Certificate::from_der(cert.der())?;
        Ok(Self { key, cert })
    }

    /// A CA from its certificate and private key (as saved with
    /// [`Certificate::to_pem`] and [`PostalCa::key_to_pkcs8_pem`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the certificate is not a CA certificate
    /// or its public key is not `key`'s.
    pub fn from_parts(cert: Certificate, key: SigningKey) -> Result<Self> {
        if !cert.is_ca() {
            return Err(Error::InvalidArgument {
                what: "not a CA certificate",
            });
        }
        if cert.public_key() != Some(&key.public_key()) {
            return Err(Error::InvalidArgument {
                what: "the CA key does not match the CA certificate",
            });
        }
        Ok(Self { key, cert })
    }

    /// The CA certificate.
    #[must_use]
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The CA's private key as a PEM `PRIVATE KEY` (PKCS#8) document.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the key cannot be serialized.
    pub fn key_to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let der = self.key.to_pkcs8()?;
        Ok(Zeroizing::new(pem::encode(&pem::Pem::new(
            PEM_PRIVATE_KEY,
            der.expose().to_vec(),
        ))))
    }

    /// Reads a P-256 private key saved by [`PostalCa::key_to_pkcs8_pem`].
    ///
    /// # Errors
    /// [`Error::PemMalformed`] unless the text is one PEM `PRIVATE KEY`;
    /// [`Error::Crypto`] if it is not a P-256 PKCS#8 key.
    pub fn key_from_pkcs8_pem(pem_text: &str) -> Result<SigningKey> {
        let p = pem::parse(pem_text).map_err(|_| Error::PemMalformed {
            what: "expected a PEM PRIVATE KEY block",
        })?;
        if p.tag() != PEM_PRIVATE_KEY {
            return Err(Error::PemMalformed {
                what: "expected a PEM PRIVATE KEY block",
            });
        }
        let der = Zeroizing::new(p.into_contents());
        Ok(SigningKey::from_pkcs8(SigAlg::EcdsaP256Sha256, &der)?)
    }

    /// Issues a certificate for a PSD's public key (the key pair itself stays
    /// in the cryptographic module). Subject `CN=PSD <device id>,
    /// serialNumber=<device id>`; basicConstraints CA:FALSE; key usage
    /// digitalSignature; extended key usage [`INDICIUM_SIGNING_OID`]; serial
    /// `serial`; authority and subject key identifiers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `serial` is 0;
    /// [`Error::CertificateEncoding`] if encoding or signing fails.
    pub fn issue_psd_certificate(
        &self,
        psd_key: &PublicKey,
        device_id: DeviceId,
        serial: u32,
        validity: Validity,
    ) -> Result<PsdCertificate> {
        if serial == 0 {
            return Err(Error::InvalidArgument {
                what: "certificate serial numbers start at 1",
            });
        }
        let params = psd_params(psd_key, device_id, serial, validity)?;
        PsdCertificate::from_certificate(self.sign_for(psd_key, &params)?)
    }

    /// Signs a certificate with `params` for `subject_key`.
    fn sign_for(&self, subject_key: &PublicKey, params: &CertificateParams) -> Result<Certificate> {
        let signer = FacadeSigner {
            key: &self.key,
            public: self.key.public_key(),
        };
        let ca_der = CertificateDer::from(self.cert.der());
        let issuer = Issuer::from_ca_cert_der(&ca_der, signer).map_err(encoding)?;
        let cert = params
            .signed_by(&SubjectKey(subject_key), &issuer)
            .map_err(encoding)?;
        Certificate::from_der(cert.der())
    }
}

/// A PKCS#10 certificate signing request for a PSD's key, made inside the
/// module that holds the key: subject `CN=PSD <device id>,
/// serialNumber=<device id>` (the PSD certificate's), signed by the key itself
/// as proof of possession.
///
/// # Errors
/// [`Error::CertificateEncoding`] if encoding or signing fails.
pub fn psd_certificate_request(key: &SigningKey, device_id: DeviceId) -> Result<Vec<u8>> {
    let mut params = CertificateParams::default();
    params.distinguished_name = psd_subject(device_id)?;
    let signer = FacadeSigner {
        key,
        public: key.public_key(),
    };
    let csr = params.serialize_request(&signer).map_err(encoding)?;
    Ok(csr.der().to_vec())
}

impl PostalCa {
    /// Issues a PSD certificate from a request made by
    /// [`psd_certificate_request`]: the request's signature must verify with
    /// its key (proof of possession), the key must be P-256, and the device id
    /// is the request's subject serialNumber.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed or wrongly signed request, or
    /// one without a device id; otherwise as [`PostalCa::issue_psd_certificate`].
    pub fn issue_from_request(
        &self,
        request_der: &[u8],
        serial: u32,
        validity: Validity,
    ) -> Result<PsdCertificate> {
        fn bad<E>(what: &'static str) -> impl FnOnce(E) -> Error {
            move |_| Error::InvalidArgument { what }
        }
        let der = rustls_pki_types::CertificateSigningRequestDer::from(request_der);
        let request = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(bad(
            "the certificate request is malformed or its signature does not verify",
        ))?;
        if request.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(Error::InvalidArgument {
                what: "the certificate request is not for a P-256 key",
            });
        }
        let key = PublicKey::from_bytes(SigAlg::EcdsaP256Sha256, request.public_key.der_bytes())
            .map_err(bad(
                "the certificate request's key is not a valid P-256 point",
            ))?;
        let device_id = match request
            .params
            .distinguished_name
            .get(&DnType::CustomDnType(DN_SERIAL_NUMBER.to_vec()))
        {
            Some(DnValue::PrintableString(s)) => s.as_str().parse::<DeviceId>().map_err(bad(
                "the certificate request's serialNumber is not a device id",
            ))?,
            _ => {
                return Err(Error::InvalidArgument {
                    what: "the certificate request names no device id",
                });
            }
        };
        self.issue_psd_certificate(&key, device_id, serial, validity)
    }
}

/// The PSD subject: `CN=PSD <device id>, serialNumber=<device id>`.
fn psd_subject(device_id: DeviceId) -> Result<DistinguishedName> {
    let id = device_id.to_string();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("PSD {id}"));
    let printable = rcgen::string::PrintableString::try_from(id.as_str()).map_err(|_| {
        Error::CertificateEncoding {
            what: "device id is not a PrintableString",
        }
    })?;
    dn.push(
        DnType::CustomDnType(DN_SERIAL_NUMBER.to_vec()),
        DnValue::PrintableString(printable),
    );
    Ok(dn)
}

/// The PSD certificate profile (see [`PostalCa::issue_psd_certificate`]).
fn psd_params(
    psd_key: &PublicKey,
    device_id: DeviceId,
    serial: u32,
    validity: Validity,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = psd_subject(device_id)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        EXT_KEY_USAGE,
        indicium_eku_extension(),
    )];
    params.serial_number = Some(SerialNumber::from(u64::from(serial)));
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(&SubjectKey(psd_key)));
    validity.apply(&mut params)?;
    Ok(params)
}

/// `ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId` with our one OID.
/// (rcgen's own EKU type takes u64 arcs, which a UUID arc does not fit.)
fn indicium_eku_extension() -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_der(&[&[0x06, 20][..], INDICIUM_SIGNING_OID_DER].concat());
        });
    })
}

fn chain_failure(e: &webpki::Error) -> ChainFailure {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer => ChainFailure::UnknownIssuer,
        W::CertExpired { .. } => ChainFailure::Expired,
        W::CertNotValidYet { .. } => ChainFailure::NotYetValid,
        W::InvalidSignatureForPublicKey => ChainFailure::BadSignature,
        W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
            ChainFailure::MissingIndiciumUsage
        }
        W::CaUsedAsEndEntity => ChainFailure::NotAnEndEntity,
        W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            ChainFailure::UnsupportedAlgorithm
        }
        _ => ChainFailure::Invalid,
    }
}

/// The instant at which certificates are checked for a mailing date: 12:00:00Z that day.
#[must_use]
pub fn check_instant(date: Date) -> i64 {
    date.unix_seconds_at_start() + 43_200
}

/// Checks that `psd` chains to `ca` (signature, CA:FALSE leaf, indicium-signing
/// EKU) and that both are valid at noon UTC on `date`.
///
/// # Errors
/// [`Error::CertificateRejected`] with the reason.
pub fn verify_chain(ca: &Certificate, psd: &Certificate, date: Date) -> Result<()> {
    let rejected = |reason| Error::CertificateRejected { reason };
    let at = check_instant(date);
    // webpki treats the anchor as a name and a key only; the CA's own dates are checked here.
    if at < ca.not_before_unix() {
        return Err(rejected(ChainFailure::NotYetValid));
    }
    if at > ca.not_after_unix() {
        return Err(rejected(ChainFailure::Expired));
    }
    let ca_der = CertificateDer::from(ca.der());
    let anchor =
        webpki::anchor_from_trusted_cert(&ca_der).map_err(|e| rejected(chain_failure(&e)))?;
    let psd_der = CertificateDer::from(psd.der());
    let ee = webpki::EndEntityCert::try_from(&psd_der).map_err(|e| rejected(chain_failure(&e)))?;
    let secs = u64::try_from(at).map_err(|_| rejected(ChainFailure::NotYetValid))?;
    let time = UnixTime::since_unix_epoch(core::time::Duration::from_secs(secs));
    ee.verify_for_usage(
        &[
            webpki::aws_lc_rs::ECDSA_P256_SHA256,
            webpki::aws_lc_rs::ED25519,
        ],
        &[anchor],
        &[],
        time,
        webpki::KeyUsage::required(INDICIUM_SIGNING_OID_DER),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| rejected(chain_failure(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Date {
        s.parse().unwrap_or(Date::EPOCH)
    }

    /// Issues a PSD-profile certificate changed by `edit`, and checks its chain.
    fn chain_with(edit: impl FnOnce(&mut CertificateParams)) -> Result<()> {
        let validity = Validity::new(day("2026-01-01"), day("2026-12-31"))?;
        let ca = PostalCa::generate("CA", validity)?;
        let key = SigningKey::generate(SigAlg::EcdsaP256Sha256)?.public_key();
        let mut params = psd_params(&key, DeviceId::new(*b"PV", 1)?, 7, validity)?;
        edit(&mut params);
        let cert = ca.sign_for(&key, &params)?;
        verify_chain(ca.certificate(), &cert, day("2026-06-01"))
    }

    #[test]
    fn webpki_enforces_the_profile() {
        assert_eq!(chain_with(|_| {}), Ok(()));
        let rejected = |reason| Err(Error::CertificateRejected { reason });
        // Without the indicium-signing EKU, or with a TLS one instead.
        assert_eq!(
            chain_with(|p| p.custom_extensions.clear()),
            rejected(ChainFailure::MissingIndiciumUsage)
        );
        assert_eq!(
            chain_with(|p| {
                p.custom_extensions.clear();
                p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            }),
            rejected(ChainFailure::MissingIndiciumUsage)
        );
        // A CA certificate is not a PSD certificate.
        assert_eq!(
            chain_with(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
            rejected(ChainFailure::NotAnEndEntity)
        );
    }

    #[test]
    fn the_ca_validity_is_checked_too() {
        let ca_validity = Validity::new(day("2026-01-01"), day("2026-03-31"));
        let psd_validity = Validity::new(day("2026-01-01"), day("2026-12-31"));
        let (Ok(ca_validity), Ok(psd_validity)) = (ca_validity, psd_validity) else {
            unreachable!()
        };
        let ca = PostalCa::generate("CA", ca_validity);
        let key = SigningKey::generate(SigAlg::EcdsaP256Sha256).map(|k| k.public_key());
        let (Ok(ca), Ok(key)) = (ca, key) else {
            unreachable!()
        };
        let device = DeviceId::new(*b"PV", 1).unwrap_or_else(|_| unreachable!());
        let psd = ca.issue_psd_certificate(&key, device, 7, psd_validity);
        let Ok(psd) = psd else { unreachable!() };
        assert_eq!(
            verify_chain(ca.certificate(), psd.certificate(), day("2026-03-31")),
            Ok(())
        );
        assert_eq!(
            verify_chain(ca.certificate(), psd.certificate(), day("2026-04-01")),
            Err(Error::CertificateRejected {
                reason: ChainFailure::Expired
            })
        );
    }

    #[test]
    fn oid_bytes_match_the_dotted_form() {
        // Decode the base-128 arcs with u128 arithmetic and compare.
        let (first, rest) = INDICIUM_SIGNING_OID_DER
            .split_first()
            .unwrap_or_else(|| unreachable!());
        assert_eq!(*first, 2 * 40 + 25);
        let mut v: u128 = 0;
        for b in rest {
            v = (v << 7) | u128::from(b & 0x7f);
        }
        assert_eq!(rest.last().map(|b| b & 0x80), Some(0));
        assert_eq!(format!("2.25.{v}"), INDICIUM_SIGNING_OID);
        assert_eq!(
            v,
            u128::from_str_radix("879c95d56978452d9123f3c6150ce0fb", 16).unwrap_or(0)
        );
    }
}
