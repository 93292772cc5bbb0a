//! Opening a tokio-postgres connection to a placement: [`PgBackend`], the connection kind of
//! [`Router::client`](crate::Router::client) and [`Router::with_tenant`](crate::Router::with_tenant).

use std::future::Future;

use tokio_postgres::Client;

use crate::backend::{Backend, ConnectError};
use crate::directory::Placement;
use crate::pool::BudgetPermit;

/// tokio-postgres connections ([`tokio_postgres::Client`]): the kind [`Router::client`] hands out.
/// The connection task holds the [`BudgetPermit`] until the server has closed the socket.
///
/// [`Router::client`]: crate::Router::client
#[derive(Debug, Clone, Copy, Default)]
pub struct PgBackend;

impl Backend for PgBackend {
    type Conn = Client;
    type Error = tokio_postgres::Error;

    async fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> Result<Client, ConnectError> {
        self.connect_config(&placement.config, permit).await
    }

    fn is_closed(conn: &Client) -> bool {
        conn.is_closed()
    }

    fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
        error.code().map(|c| c.code())
    }
}

impl PgBackend {
    /// Opens a client with `config`; its connection task holds `permit` until the server has
    /// closed the socket.
    pub(crate) async fn connect_config(
        &self,
        config: &tokio_postgres::Config,
        permit: BudgetPermit,
    ) -> Result<Client, ConnectError> {
        let (client, connection) = open(config).await.map_err(|e| {
            let code = e.code().map(|c| c.code().to_string());
            ConnectError::from_sqlstate(code.as_deref(), e)
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
            // The server has closed it: its backend has left pg_stat_activity.
            drop(permit);
        });
        Ok(client)
    }
}

/// A connection whose future completes only when the server has closed the socket: after
/// `Terminate`, it shuts down its side and reads until the server's end of file. The server clears
/// the backend's `pg_stat_activity` entry before it closes the socket, so a budget permit released
/// when this completes keeps the server's own count within the budget.
struct ClosingStream {
    stream: tokio::net::TcpStream,
    shut: bool,
}

impl tokio::io::AsyncRead for ClosingStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ClosingStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;
        if !self.shut {
            match std::pin::Pin::new(&mut self.stream).poll_shutdown(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => self.shut = true,
            }
        }
        let mut scratch = [0u8; 512];
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut scratch);
            match std::pin::Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
            }
        }
    }
}

/// A connection to the first TCP host of `config` (through [`ClosingStream`]); other hosts
/// (Unix sockets) connect the ordinary way.
async fn open(
    config: &tokio_postgres::Config,
) -> Result<
    (
        Client,
        std::pin::Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>,
    ),
    tokio_postgres::Error,
> {
    use tokio_postgres::config::Host;
    if let (Some(Host::Tcp(host)), Some(port)) =
        (config.get_hosts().first(), config.get_ports().first())
    {
        match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (client, connection) = config
                    .connect_raw(
                        ClosingStream {
                            stream,
                            shut: false,
                        },
                        tokio_postgres::NoTls,
                    )
                    .await?;
                return Ok((client, Box::pin(connection)));
            }
            Err(_) => {
                // Let the driver produce its usual connection error.
            }
        }
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    Ok((client, Box::pin(connection)))
}
