//! The HTTP carrier: `dvol serve --listen ADDR --token-file FILE PATH` (axum, optional TLS)
//! answers `POST /v1/rpc` with the protocol of [`super::proto`] against a directory; every
//! route requires `Authorization: Bearer <token>` of the token file ([`super::scope`]), and
//! each request runs within that token's grant ([`super::server`]; a refusal is a 403 whose
//! body is one line the client shows). The client
//! reads the token from `DVOL_TOKEN` and trusts an extra CA from `DVOL_TLS_CA` (PEM), and
//! reads at most one protocol frame per response. Connection caps and timeouts live in
//! [`super::http_limits`]; a declared body over the limit is refused before it is read.

use super::http_limits::{HyperTimer, LimitAcceptor, HEADER_TIMEOUT};
use super::proto::{self, Call, Request, Response, RpcBackend, MAX_FRAME, PROTO_VERSION};
use super::scope::{Grant, Tokens};
use super::server::{Outcome, Server};
use super::RemoteError;
use crate::{Error, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Client side: one HTTP request per protocol request.
pub struct HttpConn {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// Connect to a dvol server and check that it answers (and accepts the token).
pub fn connect(base: &str, opts: &super::ConnectOptions) -> Result<RpcBackend<HttpConn>> {
    let rt = crate::runtime::client_runtime("the HTTP client")?;
    // A kept-alive connection is reused only well inside the server's header-read timeout:
    // reused as the server closes it, a request failed with "connection closed before
    // message completed" (seen under load between the steps of a group round trip).
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .pool_idle_timeout(HEADER_TIMEOUT / 2)
        .timeout(std::time::Duration::from_secs(600));
    if let Some(ca_path) = &opts.tls_ca {
        let ca = ca_path.display();
        let pem = std::fs::read(ca_path)
            .map_err(|e| RemoteError::setup(format!("cannot read DVOL_TLS_CA {ca}"), e))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            RemoteError::setup(format!("DVOL_TLS_CA {ca} is not a PEM certificate"), e)
        })?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder
        .build()
        .map_err(|e| RemoteError::setup("cannot start the HTTP client", e))?;
    let conn = HttpConn {
        base: base.trim_end_matches('/').to_string(),
        token: opts
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        client,
        rt,
    };
    let hello = conn.call(Request::Hello {
        version: PROTO_VERSION,
    })?;
    proto::check_hello(&conn.base, hello)?;
    Ok(RpcBackend(conn))
}

impl Call for HttpConn {
    fn call(&self, req: Request) -> Result<Response> {
        let body = proto::encode(&req);
        drop(req);
        let url = format!("{}/v1/rpc", self.base);
        self.rt.block_on(async {
            let mut r = self
                .client
                .post(&url)
                .header("content-type", "application/octet-stream")
                .body(body);
            if let Some(t) = &self.token {
                r = r.bearer_auth(t);
            }
            let resp = r
                .send()
                .await
                .map_err(|e| RemoteError::transport(&self.base, chain(&e)))?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                return Err(RemoteError::Unauthorized {
                    url: self.base.clone(),
                    token_given: self.token.is_some(),
                }
                .into());
            }
            let bytes = read_bounded(resp, &self.base).await?;
            if status == reqwest::StatusCode::FORBIDDEN {
                let why = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]);
                let why = why.trim().replace(['\n', '\r'], " ");
                return Err(RemoteError::Forbidden {
                    url: self.base.clone(),
                    why,
                }
                .into());
            }
            if !status.is_success() {
                return Err(RemoteError::Status {
                    url: self.base.clone(),
                    status: status.to_string(),
                    body: String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned(),
                }
                .into());
            }
            proto::decode(&bytes)
        })
    }

    fn describe(&self) -> String {
        self.base.clone()
    }
}

/// Read a response body of at most one protocol frame (a larger one is refused, declared or
/// not).
async fn read_bounded(mut resp: reqwest::Response, base: &str) -> Result<Vec<u8>> {
    let limit = MAX_FRAME + 4096;
    let too_big = || {
        Error::from(RemoteError::ResponseTooLarge {
            url: base.to_string(),
            limit,
        })
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| RemoteError::transport(base, e))?
    {
        if out.len() + chunk.len() > limit {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Settings of `dvol serve --listen`.
pub struct ServeOptions {
    pub listen: String,
    pub tokens: Tokens,
    pub store: PathBuf,
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Clone)]
struct AppState {
    tokens: Arc<Tokens>,
    server: Arc<Server>,
}

/// Run the HTTP server until the process is stopped. `on_ready` gets the bound address.
pub fn serve(opts: ServeOptions, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    use axum::extract::DefaultBodyLimit;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RemoteError::setup("cannot start the server runtime", e))?;
    let server = Server::new(&opts.store);
    server.backend().create_private_root()?;
    let state = AppState {
        tokens: Arc::new(opts.tokens),
        server: Arc::new(server),
    };
    let app = axum::Router::new()
        .route("/v1/rpc", axum::routing::post(rpc))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    rt.block_on(async move {
        let addr: SocketAddr = tokio::net::lookup_host(&opts.listen)
            .await
            .map_err(|e| RemoteError::setup(format!("cannot resolve {}", opts.listen), e))?
            .next()
            .ok_or_else(|| {
                RemoteError::setup(format!("cannot resolve {}", opts.listen), "no address")
            })?;
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| RemoteError::setup(format!("cannot listen on {addr}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RemoteError::setup(format!("cannot listen on {addr}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| RemoteError::setup(format!("cannot listen on {addr}"), e))?;
        let result = match opts.tls {
            Some((cert, key)) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                    .await
                    .map_err(|e| {
                        RemoteError::setup(
                            format!(
                                "cannot load TLS certificate {} / key {}",
                                cert.display(),
                                key.display()
                            ),
                            e,
                        )
                    })?;
                on_ready(bound);
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(config)
                    .acceptor(LimitAcceptor::default());
                let mut server = axum_server::from_tcp(listener).acceptor(tls);
                // A header-read timeout for slow or half-open requests.
                server
                    .http_builder()
                    .http1()
                    .timer(HyperTimer)
                    .header_read_timeout(HEADER_TIMEOUT);
                server.serve(app.into_make_service()).await
            }
            None => {
                on_ready(bound);
                let mut server = axum_server::from_tcp(listener).acceptor(LimitAcceptor::default());
                // A header-read timeout for slow or half-open requests.
                server
                    .http_builder()
                    .http1()
                    .timer(HyperTimer)
                    .header_read_timeout(HEADER_TIMEOUT);
                server.serve(app.into_make_service()).await
            }
        };
        result.map_err(|e| RemoteError::setup("server failed", e))
    })
}

/// Largest request body the server accepts.
const MAX_BODY: usize = MAX_FRAME + 4096;

async fn auth(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(grant) = state.tokens.authenticate(given.as_bytes()).cloned() else {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response();
    };
    req.extensions_mut().insert(grant);
    // A declared body over the limit is refused before any of it is read.
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return (
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            [(axum::http::header::CONNECTION, "close")],
            format!("request body over {MAX_BODY} bytes\n"),
        )
            .into_response();
    }
    next.run(req).await
}

async fn rpc(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(grant): axum::Extension<Grant>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let server = state.server.clone();
    let start = std::time::Instant::now();
    let bytes_in = body.len();
    let scope = grant.scope.name();
    let (outcome, op) =
        tokio::task::spawn_blocking(move || match proto::decode::<Request>(&body) {
            Ok(req) => {
                let op = req.op_name();
                (server.handle(&grant, req), op)
            }
            Err(e) => (Outcome::Answer(Response::Error(e.to_string())), "malformed"),
        })
        .await
        .unwrap_or_else(|e| {
            let failed = Response::Error(format!("handler failed: {e}"));
            (Outcome::Answer(failed), "panic")
        });
    let resp = match outcome {
        Outcome::Answer(resp) => resp,
        Outcome::Refused(why) => {
            tracing::info!(target: "dvol::serve", "rpc op={op} scope={scope} refused: {why}");
            return (axum::http::StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
        }
    };
    let failed = matches!(resp, Response::Error(_));
    let body = proto::encode(&resp);
    // One access-log line per request (DVOL_LOG=dvol=info shows them).
    tracing::info!(
        target: "dvol::serve",
        "rpc op={op} scope={scope} bytes_in={bytes_in} bytes_out={} us={} error={failed}",
        body.len(),
        start.elapsed().as_micros()
    );
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response()
}
