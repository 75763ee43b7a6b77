//! `[listen] tcp_allow`: which clients may use the TCP listener (a Postfix on another host).
//! Whoever can connect can send requests in any sender's name, so loopback (every local user)
//! is allowed only by default or by name, and always warned about.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use super::{ConfigError, invalid};

/// The clients the TCP listener answers; any other connection is closed unanswered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TcpAllow {
    /// Loopback clients only (`tcp_allow` empty, as before it existed).
    #[default]
    Loopback,
    /// Any address (`tcp_allow_remote = true`, v3).
    Any,
    /// These addresses and networks.
    Nets(Vec<IpNet>),
}

impl TcpAllow {
    /// Whether a client at `ip` is answered (an IPv4 client of a dual-stack socket included).
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match self {
            Self::Loopback => ip.is_loopback(),
            Self::Any => true,
            Self::Nets(nets) => nets.iter().any(|n| n.contains(&ip)),
        }
    }

    /// Whether loopback clients (every local user) are answered.
    #[must_use]
    pub fn lets_loopback_in(&self) -> bool {
        match self {
            Self::Loopback | Self::Any => true,
            // 127.0.0.2 is as much every local user's as 127.0.0.1.
            Self::Nets(nets) => nets.iter().any(|n| {
                n.network().is_loopback()
                    || n.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST))
                    || n.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST))
            }),
        }
    }

    /// The entries no client of a listener bound to `bound` can match: remote networks on a
    /// loopback address, loopback on another one, the other address family.
    #[must_use]
    pub fn unreachable(&self, bound: SocketAddr) -> Vec<IpNet> {
        let Self::Nets(nets) = self else { return Vec::new() };
        let ip = bound.ip();
        nets.iter()
            .filter(|n| {
                let family = matches!((n, ip), (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_)))
                    || (matches!(n, IpNet::V4(_)) && ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED));
                let loopback_net = n.network().is_loopback();
                let reach = if ip.is_unspecified() {
                    true
                } else if ip.is_loopback() {
                    loopback_net
                } else {
                    !loopback_net
                };
                !(family && reach)
            })
            .copied()
            .collect()
    }
}

/// The raw list (addresses or CIDR networks) and `tcp_allow_remote`.
pub(super) fn validate(raw: &[String], remote: bool) -> Result<TcpAllow, ConfigError> {
    if remote {
        return Ok(TcpAllow::Any);
    }
    if raw.is_empty() {
        return Ok(TcpAllow::Loopback);
    }
    let nets = raw
        .iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map(|n| n.trunc()).map_err(
                |_| {
                    invalid(
                        "listen.tcp_allow",
                        format!("{s:?} is not an address or a network like \"192.0.2.0/24\""),
                    )
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TcpAllow::Nets(nets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn who_is_answered() {
        let nets = validate(&["192.0.2.0/24".into(), "2001:db8::5".into()], false).expect("valid");
        assert!(nets.allows(ip("192.0.2.77")) && nets.allows(ip("2001:db8::5")));
        assert!(nets.allows(ip("::ffff:192.0.2.9")), "an IPv4 client of a dual-stack socket");
        assert!(
            !nets.allows(ip("127.0.0.1"))
                && !nets.allows(ip("198.51.100.1"))
                && !nets.allows(ip("2001:db8::6"))
        );
        assert!(!nets.lets_loopback_in());
        assert!(TcpAllow::Loopback.allows(ip("127.0.0.2")) && !TcpAllow::Loopback.allows(ip("192.0.2.1")));
        assert!(validate(&[], true).expect("v3").allows(ip("203.0.113.1")));
        for local in ["127.0.0.1", "127.0.0.2", "0.0.0.0/0", "::1"] {
            assert!(validate(&[local.into()], false).expect("valid").lets_loopback_in(), "{local}");
        }
        assert!(validate(&["nowhere".into()], false).is_err());
    }

    #[test]
    fn entries_no_client_of_the_bound_address_can_match() {
        let nets = validate(&["10.0.0.0/8".into(), "127.0.0.1".into(), "2001:db8::/32".into()], false)
            .expect("valid");
        let names = |bound: &str| -> Vec<String> {
            nets.unreachable(bound.parse().expect("socket address")).iter().map(ToString::to_string).collect()
        };
        assert_eq!(names("127.0.0.1:10040"), ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(names("10.0.0.5:10040"), ["127.0.0.1/32", "2001:db8::/32"]);
        assert_eq!(names("0.0.0.0:10040"), ["2001:db8::/32"]);
        assert!(names("[::]:10040").is_empty());
    }
}
