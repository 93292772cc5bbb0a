//! The wire protocol over WebSocket: `GET /v2` on the SQL-over-HTTP listener, as the Neon
//! serverless driver's `Pool` and `Client` speak it (`neonConfig.wsProxy`). The WebSocket is a
//! byte stream: the protocol's bytes travel in binary messages cut anywhere, and the session is
//! the one of the TCP front door ([`PgService::startup`]), with TLS being the listener's own.
//! The `?address=` the driver appends names the server it thinks it reaches; the tenant comes
//! from the login, so it is ignored.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::PgService;

/// Largest WebSocket message taken from a client (the protocol's messages span several).
pub const MAX_WS_MESSAGE: usize = 16 << 20;

/// Answers `GET /v2`: upgrades, then serves the session; `secure` when the listener speaks TLS,
/// `loopback` when the client is on this host.
pub fn upgrade(
    ws: WebSocketUpgrade,
    service: Arc<PgService>,
    secure: bool,
    loopback: bool,
) -> Response {
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| async move {
            metrics::counter!("pgfleet_pg_websocket_sessions_total").increment(1);
            Box::pin(service.startup(WsStream::new(socket), BytesMut::new(), secure, loopback))
                .await;
        })
}

/// A WebSocket as a byte stream.
#[derive(Debug)]
pub struct WsStream {
    ws: WebSocket,
    pending: Bytes,
    closed: bool,
}

impl WsStream {
    fn new(ws: WebSocket) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            closed: false,
        }
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.closed {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Text(t))) => self.pending = Bytes::from(t.as_str().to_owned()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => self.closed = true,
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let ws = Pin::new(&mut self.ws);
        ready!(Sink::<Message>::poll_ready(ws, cx)).map_err(std::io::Error::other)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(std::io::Error::other)?;
        // Each write is one message, sent now (the relay writes whole batches of messages).
        let _ = Sink::<Message>::poll_flush(Pin::new(&mut self.ws), cx)
            .map_err(std::io::Error::other)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Sink::<Message>::poll_flush(Pin::new(&mut self.ws), cx).map_err(std::io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Sink::<Message>::poll_close(Pin::new(&mut self.ws), cx).map_err(std::io::Error::other)
    }
}
