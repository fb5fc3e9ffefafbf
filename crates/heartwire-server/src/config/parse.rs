//! How option values are read from text, wherever the text comes from (a flag, an
//! environment variable or the config file): these are clap value parsers, and each
//! error says what was expected.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytesize::ByteSize;

/// The longest duration an option takes: deadlines are instants this far ahead,
/// which must not overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration such as `500ms`, `20s` or `1h 30m` (`0` is zero), at most a year.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("not a duration like 500ms or 20s ({err})"))?;
    if duration > MAX_DURATION {
        return Err(format!(
            "{text} is longer than a year, the longest duration taken"
        ));
    }
    Ok(duration)
}

/// A block of addresses such as `10.0.0.0/8`, or one address.
pub(crate) fn cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("not an address or a CIDR block like 10.0.0.0/8: {text:?}"))
}

/// A size in bytes such as `65536`, `64KiB` or `1MiB`.
pub(crate) fn size(text: &str) -> Result<usize, String> {
    let size: ByteSize = text
        .parse()
        .map_err(|err| format!("not a size like 64KiB or 1MiB ({err})"))?;
    usize::try_from(size.as_u64()).map_err(|_| format!("{size} is too large for this machine"))
}

/// Where to listen: `HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`: a
/// name is resolved now, its first address taken), `:PORT` (every interface, as
/// in Go and Node) or a bare `PORT` (loopback only, like the default).
pub(crate) fn listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let port = |digits: &str| {
        digits.parse::<u16>().map_err(|_| {
            format!("{text:?} has no port 0-65535 (write 127.0.0.1:8080, :8080 or 8080)")
        })
    };
    if let Some(digits) = text.strip_prefix(':') {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port(digits)?)));
    }
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port(text)?)));
    }
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let Some((host, digits)) = text.rsplit_once(':') else {
        return Err(format!(
            "{text:?} is not an address to listen on (write 127.0.0.1:8080, :8080 or 8080)"
        ));
    };
    let port = port(digits)?;
    (host, port)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {host:?} ({err})"))?
        .next()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("soon").unwrap_err().contains("not a duration"));
        assert!(
            duration("18446744073709551615s")
                .unwrap_err()
                .contains("a year")
        );
        assert_eq!(duration("365d"), Ok(MAX_DURATION));
        assert_eq!(cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(cidr("::1").unwrap().to_string(), "::1/128");
        assert!(cidr("ten").unwrap_err().contains("CIDR"));
        assert_eq!(size("65536"), Ok(65536));
        assert_eq!(size("64KiB"), Ok(64 * 1024));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert!(size("big").unwrap_err().contains("not a size"));
    }

    #[test]
    fn listen_addresses_read_as_people_write_them() {
        let addr = |text: &str| listen(text).map(|addr| addr.to_string());
        assert_eq!(addr("127.0.0.1:8080"), Ok("127.0.0.1:8080".into()));
        assert_eq!(addr("[::1]:9000"), Ok("[::1]:9000".into()));
        assert_eq!(addr(":8080"), Ok("0.0.0.0:8080".into()));
        assert_eq!(addr("8080"), Ok("127.0.0.1:8080".into()));
        let local = listen("localhost:8080").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        assert!(listen("8080000").unwrap_err().contains("no port"));
        assert!(listen("localhost").unwrap_err().contains("not an address"));
        assert!(
            listen("host.invalid:80")
                .unwrap_err()
                .contains("cannot resolve")
        );
    }
}
