//! The Docker volume plugin: Docker's plugin protocol (JSON over HTTP POST on a unix socket)
//! served with axum. See docs/docker.md for every call and the decisions behind them.
//!
//! Every call answers HTTP 200 with a JSON body; failures carry the message in `"Err"`, which
//! Docker shows to the user. Repository work runs in `spawn_blocking`; the repository's file
//! locks make concurrent calls safe.

mod driver;
mod error;

pub use driver::{
    check_create, CreateRequest, Driver, Source, VolumeView, OPT_CLONE, OPT_FROM, OPT_MEMBER,
};
pub use error::PluginError;

use crate::error::IoContext;
use crate::{Error, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where Docker looks for socket plugins; the file name is the driver name.
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/dvol.sock";

/// The content type of Docker's plugin protocol.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// Largest request body accepted (Docker's bodies are a few hundred bytes); a larger one is
/// answered with an `"Err"` without being read further.
pub const MAX_BODY: usize = 1 << 20;

/// Longest mount `ID` accepted (Docker sends 64 hex digits); mount ids are kept in memory.
pub const MAX_ID_LEN: usize = 256;

/// The body of a `VolumeDriver.*` call, as Docker sends it. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Request {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Opts")]
    pub opts: Option<BTreeMap<String, String>>,
}

/// Decode a request body: empty (or white space only) is an empty request; anything larger
/// than [`MAX_BODY`], not JSON, or not of the expected shape is an error (serde_json also
/// refuses nesting deeper than 128 levels, so hostile bodies cannot exhaust the stack).
pub fn decode_request(body: &[u8]) -> Result<Request> {
    if body.len() > MAX_BODY {
        return Err(too_large());
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Request::default());
    }
    let req: Request =
        serde_json::from_slice(body).map_err(|e| PluginError::BadBody(e.to_string()))?;
    if req.id.len() > MAX_ID_LEN {
        return Err(PluginError::BadBody(format!("ID is longer than {MAX_ID_LEN} bytes")).into());
    }
    Ok(req)
}

fn too_large() -> Error {
    PluginError::BadBody(format!(
        "larger than the plugin's limit of {MAX_BODY} bytes"
    ))
    .into()
}

fn reply(body: Value) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn err_reply(e: &Error) -> Response {
    reply(json!({ "Err": e.to_string() }))
}

/// How long a client may take to send its request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request body, read with the plugin's limits: a `Content-Length` over [`MAX_BODY`] is
/// refused before reading anything, a body that grows past it (chunked) when it does, and a
/// body not complete within [`BODY_TIMEOUT`] is refused too. Never rejects the request
/// itself: the handler answers every failure with an `"Err"`.
struct Body(Result<Bytes>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = std::convert::Infallible;

    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Ok(Body(Err(too_large())));
        }
        let read = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, state)).await;
        Ok(Body(match read {
            Err(_) => Err(PluginError::BadBody(format!(
                "not received within {}s",
                BODY_TIMEOUT.as_secs()
            ))
            .into()),
            Ok(Err(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Ok(Err(e)) => Err(PluginError::BadBody(e.to_string()).into()),
            Ok(Ok(b)) => Ok(b),
        }))
    }
}

fn parse(body: Body) -> std::result::Result<Request, Box<Response>> {
    body.0
        .and_then(|bytes| decode_request(&bytes))
        .map_err(|e| {
            tracing::warn!("{e}");
            Box::new(err_reply(&e))
        })
}

/// Run blocking driver work and turn its result into a reply; logs how long it took.
async fn blocking<T: Send + 'static>(
    call: &'static str,
    driver: &Arc<Driver>,
    work: impl FnOnce(&Driver) -> Result<T> + Send + 'static,
    ok: impl FnOnce(T) -> Value,
) -> Response {
    let d = Arc::clone(driver);
    let start = std::time::Instant::now();
    let r = tokio::task::spawn_blocking(move || work(&d))
        .await
        .unwrap_or_else(|e| {
            Err(PluginError::Task {
                what: "task",
                detail: e.to_string(),
            }
            .into())
        });
    let ms = start.elapsed().as_millis() as u64;
    match r {
        Ok(v) => {
            tracing::debug!(call, ms, "done");
            reply(ok(v))
        }
        Err(e) => {
            tracing::warn!(call, ms, "{e}");
            err_reply(&e)
        }
    }
}

async fn activate() -> Response {
    reply(json!({ "Implements": ["VolumeDriver"] }))
}

async fn capabilities() -> Response {
    reply(json!({ "Capabilities": { "Scope": "local" } }))
}

async fn create(State(d): State<Arc<Driver>>, body: Body) -> Response {
    let req = match parse(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    tracing::info!(volume = %req.name, opts = ?req.opts, "Create");
    let opts = req.opts.unwrap_or_default();
    blocking(
        "Create",
        &d,
        move |d| d.create(&req.name, &opts),
        |_| json!({ "Err": "" }),
    )
    .await
}

async fn remove(State(d): State<Arc<Driver>>, body: Body) -> Response {
    let req = match parse(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    blocking(
        "Remove",
        &d,
        move |d| d.remove(&req.name),
        |_| json!({ "Err": "" }),
    )
    .await
}

async fn mount(State(d): State<Arc<Driver>>, body: Body) -> Response {
    let req = match parse(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    tracing::info!(volume = %req.name, id = %req.id, "Mount");
    blocking(
        "Mount",
        &d,
        move |d| d.mount(&req.name, &req.id),
        |p| json!({ "Mountpoint": p.display().to_string(), "Err": "" }),
    )
    .await
}

async fn unmount(State(d): State<Arc<Driver>>, body: Body) -> Response {
    let req = match parse(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    tracing::info!(volume = %req.name, id = %req.id, "Unmount");
    blocking(
        "Unmount",
        &d,
        move |d| d.unmount(&req.name, &req.id),
        |_| json!({ "Err": "" }),
    )
    .await
}

async fn path(State(d): State<Arc<Driver>>, body: Body) -> Response {
    let req = match parse(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    blocking(
        "Path",
        &d,
        move |d| d.view(&req.name),
        |v| json!({ "Mountpoint": v.mountpoint.display().to_string(), "Err": "" }),
    )
    .await
}

async fn get(State(d): State<Arc<Driver>>, body: Body) -> Response {
    let req = match parse(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    blocking(
        "Get",
        &d,
        move |d| d.get(&req.name),
        |(v, status)| {
            // dvol's own engine lookups read this back without a typed Status (docker/inspect).
            json!({
                "Volume": {
                    "Name": v.name,
                    "Mountpoint": v.mountpoint.display().to_string(),
                    "Status": status,
                },
                "Err": "",
            })
        },
    )
    .await
}

async fn list(State(d): State<Arc<Driver>>) -> Response {
    blocking(
        "List",
        &d,
        |d| d.list(),
        |vs| {
            let vols: Vec<Value> = vs
                .into_iter()
                .map(
                    |v| json!({ "Name": v.name, "Mountpoint": v.mountpoint.display().to_string() }),
                )
                .collect();
            json!({ "Volumes": vols, "Err": "" })
        },
    )
    .await
}

async fn unknown_call(uri: axum::http::Uri) -> Response {
    let mut r = reply(json!({ "Err": format!("unknown plugin call {}", uri.path()) }));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

async fn not_post(uri: axum::http::Uri) -> Response {
    let mut r = reply(json!({ "Err": format!("{}: plugin calls are POST requests", uri.path()) }));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// The plugin's HTTP routes.
pub fn router(driver: Arc<Driver>) -> Router {
    Router::new()
        .route("/Plugin.Activate", post(activate))
        .route("/VolumeDriver.Create", post(create))
        .route("/VolumeDriver.Remove", post(remove))
        .route("/VolumeDriver.Mount", post(mount))
        .route("/VolumeDriver.Unmount", post(unmount))
        .route("/VolumeDriver.Path", post(path))
        .route("/VolumeDriver.Get", post(get))
        .route("/VolumeDriver.List", post(list))
        .route("/VolumeDriver.Capabilities", post(capabilities))
        .fallback(unknown_call)
        .method_not_allowed_fallback(not_post)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(driver)
}

/// Bind the unix socket, mode 0660 before anyone else can reach it (never world-writable, not
/// even between bind and chmod). Missing parent directories are created mode 0755 whatever the umask;
/// existing ones are left as they are. A stale socket (nothing answers on it) is replaced;
/// a socket with a live server behind it, or a path that is not a socket, is an error and
/// is left untouched.
pub fn bind(socket: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .at("create", dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        if !meta.file_type().is_socket() {
            return Err(PluginError::SocketTaken {
                path: socket.to_path_buf(),
                reason: "exists and is not a socket: refusing to replace it",
            }
            .into());
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(PluginError::SocketTaken {
                path: socket.to_path_buf(),
                reason: "is in use: another plugin answers on it (stop it first, or choose \
                         another --socket)",
            }
            .into());
        }
        std::fs::remove_file(socket).at("remove stale socket", socket)?;
    }
    // bind(2) creates the socket file with mode 0777 & !umask. Rather than change the
    // process-wide umask (other threads run), bind inside a fresh private (0700) directory
    // beside the socket, chmod there, then rename into place: nobody else can reach the
    // socket before it is 0660.
    let dir = match socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    let private = tempfile::Builder::new()
        .prefix(".dvol-bind-")
        .tempdir_in(dir)
        .at("create a private directory in", dir)?;
    let staged = private.path().join("s");
    let listener = tokio::net::UnixListener::bind(&staged).at("bind", socket)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o660))
        .at("chmod", socket)?;
    std::fs::rename(&staged, socket).at("rename the new socket to", socket)?;
    Ok(listener)
}

/// Serve the plugin (in cluster mode with `cluster`) for the dvol root `root` until `shutdown` resolves: on `activated`, the
/// socket systemd passed (socket activation: Docker's calls queue in the kernel while the
/// plugin restarts, and the socket stays when it exits), else on `socket`, which is bound
/// here and removed at the end.
pub async fn serve(
    root: &Path,
    options: crate::repo::Options,
    cluster: Option<crate::cluster::ClusterOptions>,
    socket: &Path,
    activated: Option<std::os::unix::net::UnixListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (root, opts) = (root.to_path_buf(), options);
    let driver = Arc::new(
        tokio::task::spawn_blocking(move || match cluster {
            Some(c) => Driver::new_clustered(&root, opts, c),
            None => Driver::new(&root, opts),
        })
        .await
        .map_err(|e| PluginError::Task {
            what: "start",
            detail: e.to_string(),
        })??,
    );
    let (listener, owned) = match activated {
        Some(l) => (
            tokio::net::UnixListener::from_std(l).at("socket activation", socket)?,
            false,
        ),
        None => (bind(socket)?, true),
    };
    tracing::info!(root = %driver.root().display(), socket = %socket.display(),
        activated = !owned, "serving");
    let socket: PathBuf = socket.to_path_buf();
    let r = axum::serve(listener, router(driver))
        .with_graceful_shutdown(shutdown)
        .await
        .at("serve", &socket);
    if owned {
        let _ = std::fs::remove_file(&socket);
    }
    r
}
