//! The vault's HTTP API: request and reply bodies (JSON), shared by the server
//! and the client, and described in the server's OpenAPI document.
//!
//! Binary values travel as lowercase hex. Money is an integer number of tenths
//! of a cent. Before sign-on only three things are public: the vault's keys
//! (`GET /v1/vault`), meter generation and registration (whose secrets are
//! sealed to the vendor key). After sign-on every call goes through
//! `POST /v1/session`, sealed under a per-message key of the session: the
//! [`Call`] and [`CallReply`] inside are never seen in clear on the wire.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The path prefix of this API version.
pub const PREFIX: &str = "/v1";

/// `GET /v1/vault`: what a client pins when it first meets a vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VaultInfo {
    /// The vault's name.
    pub name: String,
    /// The vendor key (HPKE, X25519), hex: sign-ons and registration secrets are sealed to it.
    pub vendor_key: String,
    /// The registration signing key's signature over the vendor key: algorithm id.
    pub vendor_key_signature_alg: u8,
    /// The signature, hex: a client checks it before sealing anything to the vendor key.
    pub vendor_key_signature: String,
    /// The registration signing key's algorithm id.
    pub registration_signing_alg: u8,
    /// The registration signing public key, hex.
    pub registration_signing_key: String,
    /// The postal CA certificate, PEM: PSD certificates chain to it.
    pub ca_certificate: String,
    /// Whether purchases are approved by the vault without an operator (development).
    pub auto_approve: bool,
}

/// `POST /v1/meters`: a new meter for a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewMeter {
    /// The customer id the meter is reserved for.
    pub customer_id: String,
}

/// The new meter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MeterCreated {
    /// Device id (6 bytes), hex.
    pub device_id: String,
    /// Device id as printed (e.g. `PV00000042`).
    pub meter_number: String,
    /// The PSD certificate, PEM.
    pub certificate: String,
}

/// `POST /v1/register`: the customer's secrets for their new meter (Configure PSD).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Register {
    /// Customer id.
    pub customer_id: String,
    /// Device id, hex.
    pub device_id: String,
    /// The customer's HMK and passphrase hash sealed to the vendor key, hex.
    pub sealed_secrets: String,
    /// Licensing ZIP: ZIP5 * 10000 + plus4.
    pub licensing_zip: u32,
}

/// Registration done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    /// The module's reply (postcard `CustomerReply`, MAC'd with the new HMK), hex.
    pub reply: String,
    /// `leased` once the provider authorised the customer, else `assigned`.
    pub state: String,
}

/// `POST /v1/sign-on`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignOnRequest {
    /// Customer id.
    pub customer_id: String,
    /// Passphrase hash, session key and nonce sealed to the vendor key, hex.
    pub sealed: String,
}

/// Signed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedOn {
    /// The session: the session key as a token only a module opens, hex.
    pub session: String,
    /// The module's answer sealed under the session key, hex.
    pub answer: String,
    /// The meter's device id, hex.
    pub device_id: String,
    /// The PSD certificate, PEM: the client checks the audit response with it.
    pub certificate: String,
}

/// `POST /v1/session`: one sealed call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SealedCall {
    /// The session, hex.
    pub session: String,
    /// The message counter: above every counter used before in this session.
    pub counter: u64,
    /// The [`Call`] (JSON) sealed under the request key for this counter, hex.
    pub sealed: String,
}

/// The sealed reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SealedReply {
    /// The [`CallReply`] (JSON) sealed under the reply key for the call's counter, hex.
    pub sealed: String,
}

/// An error outside a session (or one that stops a session).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// Stable machine-readable code (e.g. `wrong_passphrase`, `checkpoint_mismatch`).
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// Wrong passphrases in a row (sign-on only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u8>,
    /// Whether sign-on is locked (sign-on only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
}

/// A call inside a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// The meter's registers, state and pending purchases.
    Balance,
    /// Buy postage: a download once paid for and approved.
    Buy {
        /// The client's id for this purchase (a retry with the same id is the same purchase).
        purchase_id: String,
        /// Amount, tenths of a cent.
        amount: u64,
        /// The client's AR + DR, tenths of a cent: the purchase is refused if the meter's differs.
        control_total: u64,
    },
    /// A customer request to the PSD (create indicium, correction, redate).
    Customer {
        /// Postcard `CustomerRequest`, MAC'd with HMK, hex.
        request: String,
        /// The client's transaction id: a retry returns the same reply and charges once.
        client_txn: String,
    },
    /// An indicium issued before, to print again.
    Reprint {
        /// Its id.
        id: i64,
    },
    /// Ask for an unused indicium to be refunded.
    Refund {
        /// Its id.
        id: i64,
    },
    /// The meter's indicia, newest first.
    History {
        /// At most this many.
        limit: u32,
    },
}

/// A purchase as the customer sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Purchase {
    /// The client's id.
    pub purchase_id: String,
    /// Amount, tenths of a cent.
    pub amount: u64,
    /// `pending`, `done` or `refused`.
    pub status: String,
}

/// One issued indicium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    /// Its id.
    pub id: i64,
    /// postage, correction, refund or redate.
    pub kind: String,
    /// Postage, tenths of a cent.
    pub postage: u64,
    /// The AR after it, tenths of a cent.
    pub ascending_register: u64,
    /// Whether a refund was asked for.
    pub refund_requested: bool,
}

/// The reply to a [`Call`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallReply {
    /// Registers and state.
    Balance {
        /// PSD state (`leased`, `assigned`, ...).
        state: String,
        /// Ascending register, tenths of a cent.
        ar: u64,
        /// Descending register, tenths of a cent.
        dr: u64,
        /// Purchases waiting for the provider.
        pending: Vec<Purchase>,
    },
    /// A purchase, and the registers after it.
    Purchase {
        /// The purchase.
        purchase: Purchase,
        /// Ascending register, tenths of a cent.
        ar: u64,
        /// Descending register, tenths of a cent.
        dr: u64,
    },
    /// The PSD's reply to a customer request.
    Customer {
        /// Postcard `CustomerReply`, MAC'd with HMK, hex.
        reply: String,
        /// The store id of the indicium issued, if any.
        indicium_id: Option<i64>,
    },
    /// An indicium.
    Indicium {
        /// Its id.
        id: i64,
        /// Its bytes, hex.
        bytes: String,
    },
    /// The refund was asked for.
    RefundRequested {
        /// The indicium.
        id: i64,
    },
    /// Issued indicia.
    History {
        /// Newest first.
        items: Vec<HistoryItem>,
    },
    /// The call was refused; nothing changed.
    Refused {
        /// Stable machine-readable code.
        code: String,
        /// What happened.
        message: String,
    },
}

/// `POST /v1/tokens/verify`: a mail-processing data capture system's token
/// verification request (seed 002): the text of the indicium's fields as
/// read off the mail piece (`postvault_indicium::text`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCheck {
    /// One `name: value` line per field of the signed part, in layout order.
    pub indicium: String,
}

/// The verdicts of the vendor's and the post's brass processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenVerdicts {
    /// The meter.
    pub meter: String,
    /// Date of mailing.
    pub date: String,
    /// The vendor token's verdict (`good`, `bad token`, `unknown meter`, ...).
    pub vendor: String,
    /// The postal token's verdict.
    pub postal: String,
    /// Both good.
    pub good: bool,
}
