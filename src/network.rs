//! Client networks (`[learn] known_networks`): a client address's prefix (`ipv4_prefix`,
//! `ipv6_prefix`: a /24 or a carrier's /16, a site's /48), which a learned allowance must know.
//! A leaf: std only.

use std::net::IpAddr;

/// Prefix lengths that make a client address a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Networks {
    pub v4: u8,
    pub v6: u8,
}

impl Default for Networks {
    fn default() -> Self {
        Self { v4: 24, v6: 48 }
    }
}

impl Networks {
    /// The network of a client address (`192.0.2.0/24`, `2001:db8:1::/48`); an IPv4-mapped IPv6
    /// address is its IPv4 address. `None` when it is not an address (Postfix's `unknown`).
    #[must_use]
    pub fn of(&self, client: &str) -> Option<String> {
        self.network(client).map(|n| n.to_string())
    }

    /// The same as a value (no text: the request path names a network only when it passes it
    /// to the script).
    #[must_use]
    pub fn network(&self, client: &str) -> Option<Network> {
        let ip: IpAddr = client.parse().ok()?;
        Some(match ip.to_canonical() {
            IpAddr::V4(a) => Network::new(u128::from(u32::from(a)), self.v4.min(32), false),
            IpAddr::V6(a) => Network::new(u128::from(a), self.v6.min(128), true),
        })
    }
}

/// A network: an address's leading `len` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    bits: u128,
    len: u8,
    v6: bool,
}

impl Network {
    fn new(address: u128, len: u8, v6: bool) -> Self {
        let width = if v6 { 128 } else { 32 };
        let host = u32::from(width - len);
        let mask = if host >= 128 { 0 } else { u128::MAX << host } & (u128::MAX >> (128 - u32::from(width)));
        Self { bits: address & mask, len, v6 }
    }

    /// Reads `192.0.2.0/24` or `2001:db8::/48` (a history field's name after `n:`).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (address, len) = text.split_once('/')?;
        let len: u8 = len.parse().ok()?;
        match address.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) if len <= 32 => Some(Self::new(u128::from(u32::from(a)), len, false)),
            IpAddr::V6(a) if len <= 128 => Some(Self::new(u128::from(a), len, true)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", std::net::Ipv6Addr::from(self.bits), self.len)
        } else {
            write!(
                f,
                "{}/{}",
                std::net::Ipv4Addr::from(u32::try_from(self.bits).unwrap_or_default()),
                self.len
            )
        }
    }
}
