//! One flow of a proxied connection: bytes read from one socket and written to the
//! other, through the fault in force.
//!
//! A reader and a writer run side by side, joined by a bounded queue of chunks, so a
//! delayed or paced flow keeps reading (as a real link holds bytes in flight) until
//! [`QUEUE_CHUNKS`] wait, then pushes back on the sender through TCP.
//!
//! - The reader records every read for the idle cut, discards what a blackhole covers,
//!   and stamps each chunk with the time it is due (latency, order kept).
//! - The writer waits until a chunk is due, checks the blackhole again (a fault
//!   applies at once, also to bytes already queued), paces it when a bandwidth fault
//!   covers the flow, and writes it.
//! - An end of stream from the source is passed on as a half-close, a reset as the
//!   end of the connection; a severed flow passes on neither.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::fault::Flow;
use crate::shaping::{Pacer, Schedule, draw_delay, pace_quantum};
use crate::switch::{Birth, Setting};
use crate::traffic::Traffic;

/// The size of one read.
const READ_BUFFER: usize = 16 * 1024;
/// Chunks a flow holds in flight before it stops reading.
const QUEUE_CHUNKS: usize = 64;

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The source finished (or a blackhole swallowed its end): nothing more will come.
    Finished,
    /// A socket failed or was reset: the whole connection must go.
    Broken,
}

enum Item {
    Chunk { bytes: Vec<u8>, due: Instant },
    EndOfStream,
    Reset,
}

/// What a flow needs to know of its connection.
#[derive(Clone)]
pub(crate) struct FlowContext<'a> {
    pub(crate) flow: Flow,
    pub(crate) birth: Birth,
    pub(crate) setting: watch::Receiver<Setting>,
    pub(crate) traffic: &'a Traffic,
}

impl FlowContext<'_> {
    fn severed(&self) -> bool {
        self.setting.borrow().severs(&self.birth, self.flow)
    }
}

/// Forwards `flow` from `source` to `sink` until it ends.
pub(crate) async fn run(
    context: FlowContext<'_>,
    source: impl AsyncRead + Unpin,
    sink: impl AsyncWrite + Unpin,
) -> Ended {
    let (queue, queued) = mpsc::channel(QUEUE_CHUNKS);
    let read = std::pin::pin!(read(context.clone(), source, queue));
    let mut write = std::pin::pin!(write(context, sink, queued));
    tokio::select! {
        ended = &mut write => ended,
        () = read => write.await,
    }
}

async fn read(
    context: FlowContext<'_>,
    mut source: impl AsyncRead + Unpin,
    queue: mpsc::Sender<Item>,
) {
    let mut buffer = vec![0; READ_BUFFER];
    let mut schedule = Schedule::default();
    let mut rng = SmallRng::from_os_rng();
    loop {
        let read = match source.read(&mut buffer).await {
            Ok(0) => Item::EndOfStream,
            Ok(read) => {
                let now = Instant::now();
                context.traffic.read(now);
                let latency = {
                    let setting = context.setting.borrow();
                    if setting.severs(&context.birth, context.flow) {
                        context.traffic.discarded(context.flow, read);
                        continue;
                    }
                    setting.fault.latency(context.flow)
                };
                let delay = latency
                    .map(|(fixed, jitter)| draw_delay(fixed, jitter, &mut rng))
                    .unwrap_or_default();
                Item::Chunk {
                    bytes: buffer[..read].to_vec(),
                    due: schedule.due(now, delay),
                }
            }
            Err(_) => Item::Reset,
        };
        let last = !matches!(read, Item::Chunk { .. });
        if queue.send(read).await.is_err() || last {
            return;
        }
    }
}

async fn write(
    context: FlowContext<'_>,
    mut sink: impl AsyncWrite + Unpin,
    mut queued: mpsc::Receiver<Item>,
) -> Ended {
    let mut pacer = Pacer::default();
    while let Some(item) = queued.recv().await {
        let (bytes, due) = match item {
            Item::Chunk { bytes, due } => (bytes, due),
            Item::EndOfStream if context.severed() => return Ended::Finished,
            Item::EndOfStream => {
                return match sink.shutdown().await {
                    Ok(()) => Ended::Finished,
                    Err(_) => Ended::Broken,
                };
            }
            Item::Reset if context.severed() => return Ended::Finished,
            Item::Reset => return Ended::Broken,
        };
        wait_until(due).await;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            if context.severed() {
                context.traffic.discarded(context.flow, rest.len());
                break;
            }
            let rate = context.setting.borrow().fault.bandwidth(context.flow);
            let piece = match rate {
                Some(rate) => {
                    let piece = &rest[..pace_quantum(rate, READ_BUFFER).min(rest.len())];
                    let sent_at = pacer.sent_at(Instant::now(), piece.len(), rate);
                    wait_until(sent_at).await;
                    if context.severed() {
                        continue;
                    }
                    piece
                }
                None => {
                    pacer.idle();
                    rest
                }
            };
            if sink.write_all(piece).await.is_err() {
                return Ended::Broken;
            }
            context.traffic.forwarded(context.flow, piece.len());
            rest = &rest[piece.len()..];
        }
    }
    Ended::Finished
}

/// Sleeps until `at`, without a trip through the timer when it has passed already
/// (the timer fires on its next tick, up to a millisecond late).
async fn wait_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at.into()).await;
    }
}
