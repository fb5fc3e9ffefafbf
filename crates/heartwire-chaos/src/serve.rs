//! `heartwire chaos proxy`: the fault proxy and its control API as a process, until
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::fault::Fault;
use crate::proxy::Proxy;
use crate::{Error, control};

/// Options of `heartwire chaos proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProxyArgs {
    /// Where clients connect, e.g. 127.0.0.1:9000
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The server every connection is forwarded to, as HOST:PORT (resolved again for
    /// each connection), e.g. 127.0.0.1:8080
    #[arg(long, value_name = "ADDR")]
    upstream: String,
    /// Where the control API listens (GET and POST /fault, GET /connections); it has
    /// no authentication, so keep it on a loopback or private address
    #[arg(long, value_name = "ADDR")]
    control: SocketAddr,
    /// The fault in force at start, as the JSON that POST /fault takes
    #[arg(long, value_name = "JSON", default_value = r#"{"kind":"none"}"#, value_parser = parse_fault)]
    fault: Fault,
}

fn parse_fault(json: &str) -> Result<Fault, Error> {
    Fault::from_json(json.as_bytes())
}

pub(crate) fn run(args: ProxyArgs) -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new().map_err(Error::Runtime)?;
    runtime.block_on(serve(args))
}

async fn serve(args: ProxyArgs) -> Result<(), Error> {
    let proxy = Proxy::bind(args.listen, args.upstream.clone()).await?;
    proxy.set(args.fault);
    let control = TcpListener::bind(args.control)
        .await
        .map_err(|source| Error::Listen {
            addr: args.control,
            source,
        })?;
    let control_addr = control.local_addr().map_err(Error::Control)?;
    println!(
        "chaos proxy listening on {}, forwarding to {}; control API on http://{control_addr}/fault",
        proxy.local_addr(),
        args.upstream,
    );
    tracing::info!(fault = %args.fault, "fault at start");
    control::serve(control, proxy.handle(), stopped()).await
}

/// Completes on Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
