//! The task of an accepted WebSocket: it waits for hyper to hand the upgraded
//! stream over, then it is the connection's own future.
//!
//! A named future rather than an `async` block: an async block keeps what it
//! captured (here the closure that makes the connection, with its endpoint, identity
//! and slot) for its whole life, beside the connection that closure made, and an idle
//! connection's memory is mostly its task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::socket::{self, Socket};
use crate::stream::Stream;

/// Waits for the upgrade, then drives what `connection` makes of the socket.
pub(super) enum Upgrading<F, T> {
    Waiting {
        on_upgrade: OnUpgrade,
        settings: socket::Settings,
        connection: F,
    },
    Running(T),
    Done,
}

impl<F, T> Future for Upgrading<F, T>
where
    F: FnOnce(Socket) -> T + Unpin,
    T: Future<Output = ()> + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Self::Waiting { on_upgrade, .. } = this {
            let upgraded = ready!(Pin::new(on_upgrade).poll(cx));
            let Self::Waiting {
                settings,
                connection,
                ..
            } = std::mem::replace(this, Self::Done)
            else {
                unreachable!("matched just above");
            };
            let upgraded = match upgraded {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!(%err, "upgrade failed");
                    return Poll::Ready(());
                }
            };
            match upgraded.downcast::<TokioIo<Stream>>() {
                Ok(parts) => {
                    let socket = Socket::new(parts.io.into_inner(), parts.read_buf, settings);
                    *this = Self::Running(connection(socket));
                }
                Err(_) => {
                    tracing::error!("upgraded connection is not the listener's stream");
                    return Poll::Ready(());
                }
            }
        }
        match this {
            Self::Running(task) => {
                ready!(Pin::new(task).poll(cx));
                *this = Self::Done;
                Poll::Ready(())
            }
            Self::Waiting { .. } | Self::Done => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::{Socket, Upgrading};
    use crate::connection::ConnectionTask;
    use crate::endpoint::echo::Echo;
    use crate::endpoint::native::Native;
    use crate::endpoint::ws4redis::Ws4Redis;

    /// The largest task future of a connection for which tokio's task allocation is
    /// 640 bytes: tokio adds 104 bytes of header and bookkeeping and rounds the
    /// allocation up to a multiple of 128 bytes, so 8 bytes more make it 768.
    const LARGEST_FUTURE: usize = 536;

    /// The size of a connection's task future on `E` (its making closure is smaller
    /// than the connection it makes, so a function stands in for it).
    fn task_size<E>() -> usize {
        size_of::<Upgrading<fn(Socket) -> ConnectionTask<E>, ConnectionTask<E>>>()
    }

    #[test]
    fn a_connection_task_fits_in_640_bytes_on_every_endpoint() {
        for (endpoint, size) in [
            ("native", task_size::<Native>()),
            ("echo", task_size::<Echo>()),
            ("ws4redis", task_size::<Ws4Redis>()),
        ] {
            assert!(
                size <= LARGEST_FUTURE,
                "a {endpoint} connection's future is {size} B, more than {LARGEST_FUTURE} B: \
                 move what few connections use into connection::rare"
            );
        }
    }
}
