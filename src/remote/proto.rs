//! The request/response protocol that carries [`Backend`] operations over ssh (length-prefixed
//! frames on stdin/stdout of `dvol serve --stdio`) and HTTP (one `POST /v1/rpc` per request).
//! Messages are postcard-encoded; a frame is `u32 little-endian length` + message.

use super::{Backend, CasOutcome, RemoteError};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// Protocol version exchanged in `Hello`.
pub const PROTO_VERSION: u32 = 1;
/// Largest frame accepted (a 64 MiB pack plus headroom).
pub const MAX_FRAME: usize = 80 << 20;

/// One backend operation.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Hello {
        version: u32,
    },
    List {
        prefix: String,
    },
    Get {
        key: String,
    },
    GetRange {
        key: String,
        offset: u64,
        len: u64,
    },
    Put {
        key: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Cas {
        key: String,
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// The volumes that have refs (remote gc); a scoped token sees only those it matches.
    ListVolumes,
}

impl Request {
    /// Short name of the operation, for logs.
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::List { .. } => "list",
            Request::Get { .. } => "get",
            Request::GetRange { .. } => "get_range",
            Request::Put { .. } => "put",
            Request::Cas { .. } => "cas",
            Request::Delete { .. } => "delete",
            Request::ListVolumes => "list_volumes",
        }
    }
}

/// The answer to one [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Hello { version: u32 },
    Done,
    Keys(Vec<String>),
    Data(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Cas(CasOutcome),
    Error(String),
}

/// Run one request against a backend (the server side of every carrier).
pub fn handle(backend: &dyn Backend, req: Request) -> Response {
    let result = match req {
        Request::Hello { .. } => Ok(Response::Hello {
            version: PROTO_VERSION,
        }),
        Request::List { prefix } => backend.list(&prefix).map(Response::Keys),
        Request::Get { key } => backend.get(&key).map(Response::Data),
        Request::GetRange { key, offset, len } => backend
            .get_range(&key, offset, len)
            .map(|d| Response::Data(Some(d))),
        Request::Put { key, data } => backend.put(&key, data).map(|()| Response::Done),
        Request::Cas { key, expected, new } => backend
            .cas(&key, expected.as_deref(), new)
            .map(Response::Cas),
        Request::Delete { key } => backend.delete(&key).map(|()| Response::Done),
        Request::ListVolumes => backend.list_volumes().map(Response::Keys),
    };
    result.unwrap_or_else(|e| Response::Error(e.to_string()))
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    postcard::to_stdvec(msg).expect("message serializes")
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| RemoteError::Malformed(e.to_string()).into())
}

/// Write one frame.
pub fn write_frame(w: &mut dyn Write, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// Read one frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut dyn Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit"),
        ));
    }
    // Grow with the bytes that actually arrive: a peer that claims a large frame and sends
    // little costs little memory.
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("frame cut short: {} of {len} bytes", buf.len()),
        ));
    }
    Ok(Some(buf))
}

/// Turn a response into a typed result for the client side.
pub fn expect_done(r: Response) -> Result<()> {
    match r {
        Response::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

pub fn expect_keys(r: Response) -> Result<Vec<String>> {
    match r {
        Response::Keys(k) => Ok(k),
        other => Err(unexpected(other)),
    }
}

pub fn expect_data(r: Response) -> Result<Option<Vec<u8>>> {
    match r {
        Response::Data(d) => Ok(d),
        other => Err(unexpected(other)),
    }
}

pub fn expect_cas(r: Response) -> Result<CasOutcome> {
    match r {
        Response::Cas(c) => Ok(c),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Response) -> Error {
    match r {
        Response::Error(e) => RemoteError::Server(e).into(),
        other => RemoteError::UnexpectedResponse(format!("{other:?}")).into(),
    }
}

/// Check the answer to [`Request::Hello`] from `remote`.
pub fn check_hello(remote: &str, r: Response) -> Result<()> {
    match r {
        Response::Hello { version } if version == PROTO_VERSION => Ok(()),
        Response::Hello { version } => Err(RemoteError::ProtocolVersion {
            remote: remote.to_string(),
            theirs: version,
            ours: PROTO_VERSION,
        }
        .into()),
        other => Err(RemoteError::UnexpectedGreeting {
            remote: remote.to_string(),
            greeting: format!("{other:?}"),
        }
        .into()),
    }
}

/// A client that sends requests one at a time and reads the answers (ssh and HTTP clients
/// implement `call`; this turns it into a [`Backend`]).
pub trait Call: Send + Sync {
    fn call(&self, req: Request) -> Result<Response>;
    fn describe(&self) -> String;
}

/// Every [`Call`] is a backend.
pub struct RpcBackend<C: Call>(pub C);

impl<C: Call> Backend for RpcBackend<C> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        super::check_prefix(prefix)?;
        let keys = expect_keys(self.0.call(Request::List {
            prefix: prefix.into(),
        })?)?;
        Ok(keys
            .into_iter()
            .filter(|k| k.starts_with(prefix) && super::check_key(k).is_ok())
            .collect())
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        super::check_key(key)?;
        expect_data(self.0.call(Request::Get { key: key.into() })?)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        super::check_key(key)?;
        let d = expect_data(self.0.call(Request::GetRange {
            key: key.into(),
            offset,
            len,
        })?)?
        .unwrap_or_default();
        if d.len() as u64 != len {
            return Err(RemoteError::WrongLength {
                key: key.to_string(),
                got: d.len() as u64,
                want: len,
            }
            .into());
        }
        Ok(d)
    }
    fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        super::check_key(key)?;
        expect_done(self.0.call(Request::Put {
            key: key.into(),
            data,
        })?)
    }
    fn cas(&self, key: &str, expected: Option<&[u8]>, new: Vec<u8>) -> Result<CasOutcome> {
        super::check_key(key)?;
        expect_cas(self.0.call(Request::Cas {
            key: key.into(),
            expected: expected.map(<[u8]>::to_vec),
            new,
        })?)
    }
    fn delete(&self, key: &str) -> Result<()> {
        super::check_key(key)?;
        expect_done(self.0.call(Request::Delete { key: key.into() })?)
    }
    fn list_volumes(&self) -> Result<Vec<String>> {
        let volumes = expect_keys(self.0.call(Request::ListVolumes)?)?;
        Ok(volumes
            .into_iter()
            .filter(|v| crate::names::validate("volume", v).is_ok())
            .collect())
    }
}
