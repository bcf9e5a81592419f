//! The HTTP API (axum) and its OpenAPI document (`GET /openapi.json`).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use postvault_client::api::{
    ApiError, Call, CallReply, HistoryItem, MeterCreated, NewMeter, Purchase, Register, Registered,
    SealedCall, SealedReply, SignOnRequest, SignedOn, TokenCheck, TokenVerdicts, VaultInfo,
};
use postvault_store::Store;
use serde::Serialize;
use utoipa::OpenApi;

use crate::service::{Service, ServiceError, error_code};

/// Largest request body (a sealed call is a few KiB).
pub const MAX_BODY: usize = 256 * 1024;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "postvault",
        description = "An online postage meter: customers register, sign on, buy postage and print indicia through the vault. After sign-on every call is sealed under the session (POST /v1/session); the Call and CallReply schemas describe what is inside."
    ),
    paths(
        vault_info,
        status,
        new_meter,
        register,
        sign_on,
        session,
        audit,
        audit_entries,
        verify_tokens
    ),
    components(schemas(
        VaultInfo,
        NewMeter,
        MeterCreated,
        Register,
        Registered,
        SignOnRequest,
        SignedOn,
        SealedCall,
        SealedReply,
        ApiError,
        Call,
        CallReply,
        Purchase,
        HistoryItem,
        PoolStatus,
        crate::audit::AuditReport,
        crate::audit::ModuleLog,
        AuditEntries,
        TokenCheck,
        TokenVerdicts
    ))
)]
pub struct ApiDoc;

/// `GET /v1/status`: whether the vault processes PSD commands.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PoolStatus {
    /// Module serials of the pool.
    pub modules: Vec<String>,
    /// Whether PSD processing has stopped.
    pub halted: bool,
    /// Checkpoint mismatches seen since start.
    pub checkpoint_mismatches: u32,
    /// The audit service's last failure, if its last verification failed.
    pub audit_alarm: Option<String>,
}

/// A module's audit entries as stored, for the auditor's own verification.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntries {
    /// Module serial.
    pub module: String,
    /// Sequence number of the first entry returned.
    pub from: u64,
    /// The entries (each as the module's stored encoding), hex.
    pub entries: Vec<String>,
}

/// Query of `GET /v1/audit/entries`.
#[derive(Clone, Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct EntriesQuery {
    /// Module serial.
    pub module: String,
    /// First sequence number.
    #[serde(default)]
    pub from: u64,
    /// At most this many (up to 1000).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    1000
}

/// Whether the request carries the auditor's bearer token.
fn is_auditor<S: Store>(s: &Service<S>, headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| s.is_auditor(t))
}

fn not_auditor() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(ApiError {
            code: "auditor_only".into(),
            message: "the audit log is for the auditor: send the auditor's bearer token".into(),
            failures: None,
            locked: None,
        }),
    )
        .into_response()
}

/// The audit service's verification, run now (auditor only).
#[utoipa::path(get, path = "/v1/audit", responses((status = 200, body = crate::audit::AuditReport),
    (status = 401, body = ApiError), (status = 409, body = ApiError)))]
async fn audit<S: Store>(State(s): Shared<S>, headers: HeaderMap) -> Response {
    if !is_auditor(&s, &headers) {
        return not_auditor();
    }
    match s.audit_now().await {
        Ok(report) => Json(report).into_response(),
        Err(e) => (
            StatusCode::CONFLICT,
            Json(ApiError {
                code: "audit_failed".into(),
                message: e.to_string(),
                failures: None,
                locked: None,
            }),
        )
            .into_response(),
    }
}

/// A module's stored audit entries (auditor only).
#[utoipa::path(get, path = "/v1/audit/entries", params(EntriesQuery),
    responses((status = 200, body = AuditEntries), (status = 401, body = ApiError)))]
async fn audit_entries<S: Store>(
    State(s): Shared<S>,
    headers: HeaderMap,
    Query(q): Query<EntriesQuery>,
) -> Response {
    if !is_auditor(&s, &headers) {
        return not_auditor();
    }
    match s
        .vault()
        .store()
        .audit_entries(&q.module, q.from, q.limit.min(1000))
        .await
    {
        Ok(entries) => Json(AuditEntries {
            module: q.module,
            from: q.from,
            entries: entries.iter().map(hex::encode).collect(),
        })
        .into_response(),
        Err(e) => Failure(ServiceError::Vault(e.into())).into_response(),
    }
}

struct Failure(ServiceError);

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        Failure(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (code, message) = error_code(&self.0);
        let status = match code {
            "bad_request" | "customer_secrets" => StatusCode::BAD_REQUEST,
            "wrong_passphrase" | "session" | "customer_id" => StatusCode::UNAUTHORIZED,
            "locked" => StatusCode::LOCKED,
            "not_found" => StatusCode::NOT_FOUND,
            "halted" | "checkpoint_mismatch" | "inhibited" => StatusCode::SERVICE_UNAVAILABLE,
            "internal" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::CONFLICT,
        };
        if status != StatusCode::INTERNAL_SERVER_ERROR {
            tracing::info!(code, "refused: {message}");
        }
        let (failures, locked) = match &self.0 {
            ServiceError::WrongPassphrase { failures, locked } => (Some(*failures), Some(*locked)),
            _ => (None, None),
        };
        (
            status,
            Json(ApiError {
                code: code.into(),
                message,
                failures,
                locked,
            }),
        )
            .into_response()
    }
}

type Shared<S> = State<Arc<Service<S>>>;

/// The vault's public keys and CA.
#[utoipa::path(get, path = "/v1/vault", responses((status = 200, body = VaultInfo)))]
async fn vault_info<S: Store>(State(s): Shared<S>) -> Json<VaultInfo> {
    Json(s.info())
}

/// The module pool's state.
#[utoipa::path(get, path = "/v1/status", responses((status = 200, body = PoolStatus)))]
async fn status<S: Store>(State(s): Shared<S>) -> Json<PoolStatus> {
    let (halted, checkpoint_mismatches) = s.vault().halted();
    Json(PoolStatus {
        modules: s
            .vault()
            .module_serials()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        halted,
        checkpoint_mismatches,
        audit_alarm: s.audit_alarm(),
    })
}

/// Meter generation: a module makes the PSD, the CA certifies it, the server checks it.
#[utoipa::path(post, path = "/v1/meters", request_body = NewMeter,
    responses((status = 200, body = MeterCreated), (status = 409, body = ApiError)))]
async fn new_meter<S: Store>(
    State(s): Shared<S>,
    Json(req): Json<NewMeter>,
) -> Result<Json<MeterCreated>, Failure> {
    Ok(Json(s.new_meter(&req).await?))
}

/// Registration: Configure PSD with the customer's sealed secrets.
#[utoipa::path(post, path = "/v1/register", request_body = Register,
    responses((status = 200, body = Registered), (status = 400, body = ApiError)))]
async fn register<S: Store>(
    State(s): Shared<S>,
    Json(req): Json<Register>,
) -> Result<Json<Registered>, Failure> {
    Ok(Json(s.register(&req).await?))
}

/// Sign-on (seed 000).
#[utoipa::path(post, path = "/v1/sign-on", request_body = SignOnRequest,
    responses((status = 200, body = SignedOn), (status = 401, body = ApiError), (status = 423, body = ApiError)))]
async fn sign_on<S: Store>(
    State(s): Shared<S>,
    Json(req): Json<SignOnRequest>,
) -> Result<Json<SignedOn>, Failure> {
    Ok(Json(s.sign_on(&req).await?))
}

/// One sealed call of a session.
#[utoipa::path(post, path = "/v1/session", request_body = SealedCall,
    responses((status = 200, body = SealedReply), (status = 401, body = ApiError), (status = 409, body = ApiError)))]
async fn session<S: Store>(
    State(s): Shared<S>,
    Json(req): Json<SealedCall>,
) -> Result<Json<SealedReply>, Failure> {
    Ok(Json(s.session(&req).await?))
}

/// Token verification for mail-processing data capture (seed 002): the
/// text of an indicium's fields; the vendor's and the post's brass processes
/// recompute their tokens.
#[utoipa::path(post, path = "/v1/tokens/verify", request_body = TokenCheck,
    responses((status = 200, body = TokenVerdicts), (status = 400, body = ApiError)))]
async fn verify_tokens<S: Store>(
    State(s): Shared<S>,
    Json(req): Json<TokenCheck>,
) -> Result<Json<TokenVerdicts>, Failure> {
    let data = postvault_indicium::text::from_text(&req.indicium)
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    let signed = data
        .encode_signed_part()
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    let [vendor, postal] = s.verify_tokens(&signed).await?;
    Ok(Json(TokenVerdicts {
        meter: data.device_id.to_string(),
        date: data.date.to_string(),
        vendor: vendor.name().into(),
        postal: postal.name().into(),
        good: vendor == postvault_kms::Verdict::Good && postal == postvault_kms::Verdict::Good,
    }))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The router over a service.
pub fn router<S: Store>(service: Arc<Service<S>>) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/vault", get(vault_info::<S>))
        .route("/v1/status", get(status::<S>))
        .route("/v1/meters", post(new_meter::<S>))
        .route("/v1/register", post(register::<S>))
        .route("/v1/sign-on", post(sign_on::<S>))
        .route("/v1/session", post(session::<S>))
        .route("/v1/audit", get(audit::<S>))
        // The name for it, for auditors' tools.
        .route("/audit", get(audit::<S>))
        .route("/v1/audit/entries", get(audit_entries::<S>))
        .route("/v1/tokens/verify", post(verify_tokens::<S>))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}
