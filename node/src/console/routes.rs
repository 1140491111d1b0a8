//! The console's routes: sign-in and sign-out, then the pages, each behind the session check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::access::{session_cookie, Session, SignIn, COOKIE};
use super::html::{form, page, sign_in_page};
use super::search_page::{self, SearchForm};
use super::{cluster_page, tail, timeline};
use crate::admin::NodeContext;
use crate::cluster::monitor::MonitorRole;
use crate::settings::ConsoleSettings;

/// What every request of the console reads.
#[derive(Debug)]
pub(super) struct Console {
    /// Served over HTTPS: the session cookie is `Secure`.
    pub(super) secure: bool,
    /// The `[console]` settings.
    pub(super) settings: ConsoleSettings,
    /// Sign-in tokens and sessions.
    pub(super) sign_in: Arc<SignIn>,
    /// The monitor: its index, live tail and link statistics.
    pub(super) monitor: Arc<MonitorRole>,
    /// The node, for the cluster's status and the admin commands the console runs.
    pub(super) node: Arc<NodeContext>,
    /// Permits for live tails (`console.max_tails`).
    pub(super) tails: Arc<Semaphore>,
    /// Cancelled when the node stops (ends live tails).
    pub(super) shutdown: CancellationToken,
    /// Each node's message counters when the cluster page last asked, for its rates.
    pub(super) message_samples: cluster_page::Samples,
}

/// The router over `state`.
pub(super) fn router(state: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/sign-in", get(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/search", get(search))
        .route("/timeline", get(timeline::page))
        .route("/trace", post(timeline::trace))
        .route("/tail", get(tail::page))
        .route("/tail/events", get(tail::events))
        .route("/cluster", get(cluster_page::page))
        .route("/console.js", get(script))
        .with_state(state)
}

/// Headers of every HTML page: no caching (pages show live data and CSRF tokens), no
/// framing, no referrer (a sign-in URL never leaves in one), scripts only from here.
pub(super) fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A redirect after a form (303: the browser follows with a GET).
pub(super) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// The session the request's cookie names, or the sign-in page to answer with.
/// (The refusal is boxed: a `Response` is large, and the session is the common case.)
pub(super) fn signed_in(state: &Console, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session_cookie)
        .and_then(|id| state.sign_in.session(id, Instant::now()))
        .ok_or_else(|| Box::new(html(StatusCode::UNAUTHORIZED, sign_in_page(false))))
}

/// The session, if the form's CSRF token is the session's; else the refusal, logged.
pub(super) fn checked_post(
    state: &Console,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: &str,
) -> Result<(Session, std::collections::HashMap<String, String>), Box<Response>> {
    let session = signed_in(state, headers)?;
    let fields = form(body);
    let csrf = fields.get("csrf").map(String::as_str).unwrap_or_default();
    if !SignIn::csrf_ok(&session, csrf) {
        tracing::warn!(target: "access", %peer, reason = "bad CSRF token",
            "console request refused");
        return Err(Box::new(html(
            StatusCode::FORBIDDEN,
            "<!doctype html><p>This form is stale or did not come from the console: reload \
             the page and try again.</p>"
                .to_owned(),
        )));
    }
    Ok((session, fields))
}

async fn root() -> Response {
    see_other("/search")
}

async fn script() -> Response {
    let mut response = tail::SCRIPT.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    response
}

async fn sign_in(
    State(state): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    let token = form(query.as_deref().unwrap_or_default())
        .remove("token")
        .unwrap_or_default();
    match state.sign_in.redeem(&token, Instant::now()) {
        Ok(session) => {
            tracing::info!(target: "access", %peer, "console signed in");
            let mut response = see_other("/search");
            let secure = if state.secure { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
                session.id
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(refusal) => {
            tracing::warn!(target: "access", %peer, reason = refusal.as_str(),
                "console sign-in refused");
            html(StatusCode::UNAUTHORIZED, sign_in_page(true))
        }
    }
}

async fn sign_out(
    State(state): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    match checked_post(&state, &headers, peer, &body) {
        Ok((session, _)) => {
            state.sign_in.sign_out(&session.id);
            tracing::info!(target: "access", %peer, "console signed out");
            html(StatusCode::OK, sign_in_page(false))
        }
        Err(refused) => *refused,
    }
}

async fn search(
    State(state): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let session = match signed_in(&state, &headers) {
        Ok(s) => s,
        Err(page) => return *page,
    };
    let f = SearchForm::from_query(&form(query.as_deref().unwrap_or_default()));
    let now_us = chrono::Utc::now().timestamp_micros();
    let request = f.request(
        now_us,
        state.settings.page_size,
        state.settings.histogram_bars,
    );
    let index = state.monitor.index.clone();
    let result = match request {
        Ok(request) => tokio::task::spawn_blocking(move || {
            fubar_monitor::search::search_page(&index, &request)
                .map(|page| (request, page))
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string())),
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        tracing::info!(target: "access", %peer, query = %f.query, error = %e,
            "console search refused");
    }
    let body = search_page::body(&f, &result);
    html(
        StatusCode::OK,
        page("Search", "/search", &session.csrf, &body),
    )
}
