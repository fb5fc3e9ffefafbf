//! The address a client connects from: the peer's, or, when the peer is a trusted
//! proxy (`--trusted-proxy`), the one its `X-Forwarded-For` header names.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client's address, from the TCP peer `peer` and the request's headers.
///
/// Proxies append the address they received from to `X-Forwarded-For`, so the header
/// is read from its end: each address is believed only while the one that added it
/// is trusted; the first address that is not a trusted proxy is the client. A
/// header from an untrusted peer is ignored, since any client can write one.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = canonical(peer);
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// An IPv4 address mapped into IPv6 is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_header_of_an_untrusted_peer_is_ignored() {
        let forged = headers(&["1.2.3.4"]);
        assert_eq!(client_ip(ip("9.9.9.9"), &forged, &[]), ip("9.9.9.9"));
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(client_ip(ip("9.9.9.9"), &forged, &trusted), ip("9.9.9.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_read_from_the_end() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // The client wrote a forged first entry; the proxies appended the rest.
        let chain = headers(&["6.6.6.6, 5.5.5.5", "10.1.1.1"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &chain, &trusted), ip("5.5.5.5"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers(&[]), &trusted),
            ip("10.0.0.2")
        );
        let garbage = headers(&["5.5.5.5, nonsense"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &garbage, &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let peer = ip("::ffff:127.0.0.1");
        assert_eq!(client_ip(peer, &headers(&[]), &[]), ip("127.0.0.1"));
    }
}
