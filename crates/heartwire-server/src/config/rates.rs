//! How fast clients may connect and send, and how many connections one address or
//! one user may hold.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::{declared_defaults, parse};

/// Rates and per-client connection counts.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "Rate limits")]
pub struct RateLimits {
    /// Messages one connection may send, as N/s or N/m (heartbeats and pings are not
    /// counted); one more is dropped and answered with the error rate_limited and a
    /// retry hint; 0/s sets no limit
    #[arg(
        long,
        env = "HEARTWIRE_MESSAGE_RATE",
        value_name = "RATE",
        default_value = "1000/s"
    )]
    pub message_rate: Rate,

    /// Messages a connection may send at once above --message-rate; a connection
    /// that sends this many more after being told to wait is closed with 1008 "rate
    /// limited"
    #[arg(
        long,
        env = "HEARTWIRE_MESSAGE_BURST",
        value_name = "N",
        default_value = "1000"
    )]
    pub message_burst: u32,

    /// New TCP connections the whole node accepts, as N/s or N/m (with one second's
    /// worth at once); beyond it they are answered HTTP 503 with Retry-After; 0/s
    /// sets no limit
    #[arg(
        long,
        env = "HEARTWIRE_ACCEPT_RATE",
        value_name = "RATE",
        default_value = "2000/s"
    )]
    pub accept_rate: Rate,

    /// WebSocket connections one client address may hold; one more is refused with
    /// HTTP 429 and Retry-After (0: no limit)
    #[arg(
        long,
        env = "HEARTWIRE_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        default_value = "1000"
    )]
    pub max_connections_per_ip: usize,

    /// WebSocket connections one identified user may hold; one more is refused with
    /// HTTP 429 and Retry-After (0: no limit)
    #[arg(
        long,
        env = "HEARTWIRE_MAX_CONNECTIONS_PER_USER",
        value_name = "N",
        default_value = "100"
    )]
    pub max_connections_per_user: usize,

    /// Believe the X-Forwarded-For header of requests from these addresses (CIDR
    /// blocks such as 10.0.0.0/8, or single addresses): the client's address is then
    /// the last one in it that is not a trusted proxy. Repeatable; the environment
    /// variable holds one (none unless given: the header is ignored)
    #[arg(
        long = "trusted-proxy",
        env = "HEARTWIRE_TRUSTED_PROXY",
        value_name = "CIDR",
        value_parser = parse::cidr
    )]
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RateLimits {
    fn default() -> Self {
        declared_defaults()
    }
}

/// So many events per period, such as `50/s`; a count of 0 sets no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per `per`.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Whether the rate limits anything.
    pub fn is_limited(&self) -> bool {
        self.count > 0
    }

    /// Events per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = || format!("not a rate like 50/s or 600/m: {text:?}");
        let (count, per) = text.trim().split_once('/').ok_or_else(wrong)?;
        let count: u32 = count.trim().parse().map_err(|_| wrong())?;
        let per = per.trim();
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
            parse::duration(per)?
        } else {
            parse::duration(&format!("1{per}"))?
        };
        if per.is_zero() {
            return Err(wrong());
        }
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_people_write_them() {
        let rate: Rate = "50/s".parse().unwrap();
        assert_eq!(rate.per_second(), 50.0);
        assert_eq!("600/m".parse::<Rate>().unwrap().per_second(), 10.0);
        assert_eq!("5/100ms".parse::<Rate>().unwrap().per_second(), 50.0);
        assert!(!"0/s".parse::<Rate>().unwrap().is_limited());
        assert!("fast".parse::<Rate>().unwrap_err().contains("not a rate"));
        assert!("5/0s".parse::<Rate>().is_err());
    }
}
