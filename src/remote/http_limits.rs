//! Connection limits of `dvol serve --listen`: a cap on concurrent connections and on
//! connections per client address (over the cap a connection is closed at once), and an idle
//! timeout on every connection (no byte read or written for [`IDLE_TIMEOUT`] while the
//! server waits to read closes it: half-open requests, stalled bodies, idle keep-alives).
//! Header reads are bounded separately by hyper's header-read timeout ([`HyperTimer`]).
//! Must not know about the protocol or tokens.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Most connections served at once (kept well under a 512 file-descriptor limit).
pub const MAX_CONNECTIONS: usize = 384;
/// Most connections from one client address.
pub const MAX_PER_ADDRESS: usize = 32;
/// A connection that moves no byte for this long while the server waits for it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts of open connections, in total and per address.
#[derive(Clone, Default)]
pub struct Limiter {
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

impl Limiter {
    /// A slot for a connection from `ip`, or `None` when a cap is reached.
    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().expect("limiter lock");
        let per = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= MAX_CONNECTIONS || per >= MAX_PER_ADDRESS {
            return None;
        }
        open.0 += 1;
        open.1.insert(ip, per + 1);
        Some(Slot {
            limiter: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; dropping it frees the slot.
struct Slot {
    limiter: Limiter,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().expect("limiter lock");
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// An axum-server acceptor that applies the caps and wraps each stream in [`Guarded`].
#[derive(Clone, Default)]
pub struct LimitAcceptor {
    limiter: Limiter,
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Guarded<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let admitted = stream
            .peer_addr()
            .ok()
            .and_then(|a| self.limiter.admit(a.ip()));
        std::future::ready(match admitted {
            Some(slot) => Ok((
                Guarded {
                    inner: stream,
                    _slot: slot,
                    idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
                },
                service,
            )),
            None => Err(io::Error::other("connection limit reached")),
        })
    }
}

/// A stream that holds its connection slot and fails when idle too long.
pub struct Guarded<T> {
    inner: T,
    _slot: Slot,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl<T> Guarded<T> {
    fn progressed(&mut self) {
        self.idle
            .as_mut()
            .reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.progressed();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's timer on tokio's clock (needed for hyper's header-read timeout).
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer;

struct HyperSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for HyperSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::from_std(deadline),
        ))))
    }
}
