//! Tells systemd that this process is the service's main process now
//! (`sd_notify` `MAINPID=`), before the old process may exit: otherwise systemd would
//! take the old process's exit for the service's end and stop the new one with it.
//! Needs `NotifyAccess=all` in the unit (docs/DEPLOY.md); without `NOTIFY_SOCKET` in the
//! environment (not under systemd) it does nothing.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `MAINPID=<this process>` to systemd, when running under it.
pub(crate) fn main_pid() -> io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let address = match path.as_encoded_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&path)?,
    };
    let socket = UnixDatagram::unbound()?;
    let message = format!("MAINPID={}\n", std::process::id());
    socket.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}
