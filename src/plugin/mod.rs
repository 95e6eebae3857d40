//! The Docker volume plugin: Docker's plugin protocol (JSON over HTTP POST on a unix socket)
//! served with axum. See docs/docker.md for every call and the decisions behind them.
//!
//! Every call answers HTTP 200 with a JSON body; failures carry the message in `"Err"`, which
//! Docker shows to the user. Repository work runs in `spawn_blocking`; the repository's file
//! locks make concurrent calls safe.

mod driver;

pub use driver::{Driver, VolumeView, OPT_FROM};

use crate::error::IoContext;
use crate::{Error, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Request {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Opts")]
    opts: Option<BTreeMap<String, String>>,
}

fn reply(body: Value) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn parse(body: &Bytes) -> std::result::Result<Request, Box<Response>> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Request::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(reply(json!({ "Err": format!("bad request body: {e}") }))))
}

/// Run blocking driver work and turn its result into a reply.
async fn blocking<T: Send + 'static>(
    driver: &Arc<Driver>,
    work: impl FnOnce(&Driver) -> Result<T> + Send + 'static,
    ok: impl FnOnce(T) -> Value,
) -> Response {
    let d = Arc::clone(driver);
    let r = tokio::task::spawn_blocking(move || work(&d))
        .await
        .unwrap_or_else(|e| Err(Error::Other(format!("plugin task failed: {e}"))));
    match r {
        Ok(v) => reply(ok(v)),
        Err(e) => {
            tracing::warn!("{e}");
            reply(json!({ "Err": e.to_string() }))
        }
    }
}

async fn activate() -> Response {
    reply(json!({ "Implements": ["VolumeDriver"] }))
}

async fn capabilities() -> Response {
    reply(json!({ "Capabilities": { "Scope": "local" } }))
}

async fn create(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    tracing::info!(volume = %req.name, opts = ?req.opts, "Create");
    let opts = req.opts.unwrap_or_default();
    blocking(
        &d,
        move |d| d.create(&req.name, &opts),
        |_| json!({ "Err": "" }),
    )
    .await
}

async fn remove(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    blocking(&d, move |d| d.remove(&req.name), |_| json!({ "Err": "" })).await
}

async fn mount(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    tracing::info!(volume = %req.name, id = %req.id, "Mount");
    blocking(
        &d,
        move |d| d.mount(&req.name, &req.id),
        |p| json!({ "Mountpoint": p.display().to_string(), "Err": "" }),
    )
    .await
}

async fn unmount(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    tracing::info!(volume = %req.name, id = %req.id, "Unmount");
    blocking(
        &d,
        move |d| d.unmount(&req.name, &req.id),
        |_| json!({ "Err": "" }),
    )
    .await
}

async fn path(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    blocking(
        &d,
        move |d| d.view(&req.name),
        |v| json!({ "Mountpoint": v.mountpoint.display().to_string(), "Err": "" }),
    )
    .await
}

async fn get(State(d): State<Arc<Driver>>, body: Bytes) -> Response {
    let req = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    blocking(
        &d,
        move |d| d.view(&req.name),
        |v| {
            // Status stays empty: typed clients (bollard) only accept a map of objects there.
            json!({
                "Volume": {
                    "Name": v.name,
                    "Mountpoint": v.mountpoint.display().to_string(),
                    "Status": {},
                },
                "Err": "",
            })
        },
    )
    .await
}

async fn list(State(d): State<Arc<Driver>>) -> Response {
    blocking(
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
        .with_state(driver)
}

/// Bind the unix socket (mode 0660, parent directories created). A stale socket file is
/// replaced; one with a live server behind it is an error.
pub fn bind(socket: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).at("create", dir)?;
    }
    if std::fs::symlink_metadata(socket).is_ok() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(Error::Other(format!(
                "{} is in use by a running plugin",
                socket.display()
            )));
        }
        std::fs::remove_file(socket).at("remove stale socket", socket)?;
    }
    let listener = tokio::net::UnixListener::bind(socket).at("bind", socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660)).at("chmod", socket)?;
    Ok(listener)
}

/// Serve the plugin for the dvol root `root` on `socket` until `shutdown` resolves, then
/// remove the socket.
pub async fn serve(
    root: &Path,
    socket: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let driver = Arc::new(Driver::new(root)?);
    let listener = bind(socket)?;
    tracing::info!(root = %driver.root().display(), socket = %socket.display(), "serving");
    let socket: PathBuf = socket.to_path_buf();
    let r = axum::serve(listener, router(driver))
        .with_graceful_shutdown(shutdown)
        .await
        .at("serve", &socket);
    let _ = std::fs::remove_file(&socket);
    r
}
