//! Typed values parsed once, at the API boundary: Go durations and BGP peer addresses.
//!
//! Calico's API carries these as strings. Each has exactly one parser here; validation, peer
//! expansion and BIRD rendering all call it, so they cannot disagree about what is valid (two
//! parsers once did: a valid `maxRestartTime: 1.5m` silently dropped graceful restart).
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A stable, machine-readable reason for a value that does not parse (for Events, conditions and
/// metric labels). The spelling never changes once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not a Go duration (`120s`, `1.5m`, `1h30m`, `0`).
    InvalidDuration,
    /// A duration below zero where only zero or more makes sense.
    NegativeDuration,
    /// Not an address, `v4:port` or `[v6]:port`.
    InvalidPeerAddress,
    /// Port 0 in a peer address.
    PeerPortZero,
}

impl Reason {
    /// The reason as written into conditions and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidDuration => "InvalidDuration",
            Reason::NegativeDuration => "NegativeDuration",
            Reason::InvalidPeerAddress => "InvalidPeerAddress",
            Reason::PeerPortZero => "PeerPortZero",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that did not parse: what it was, the stable reason, and what would have been valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not valid: {message} [{reason}]")]
pub struct ValueError {
    /// The stable reason.
    pub reason: Reason,
    /// The value as given.
    pub value: String,
    /// What is expected, in words.
    pub message: &'static str,
}

fn err(reason: Reason, value: &str, message: &'static str) -> ValueError {
    ValueError {
        reason,
        value: value.to_string(),
        message,
    }
}

const DURATION_HELP: &str =
    "expected a duration such as 120s, 1.5m or 1h30m (units ns, us, ms, s, m, h), or 0";

/// A non-negative Go `time.Duration` (the form Kubernetes' `metav1.Duration` accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Parses Go's `time.ParseDuration` syntax: an optional `+`, then one or more
    /// `<decimal><unit>` terms (`1.5h`, `.5s`, `1h30m`), or a bare `0`. Negative values are refused:
    /// no Calico field that takes a duration means anything below zero.
    pub fn parse(s: &str) -> Result<GoDuration, ValueError> {
        let bad = || err(Reason::InvalidDuration, s, DURATION_HELP);
        let mut rest = s;
        if let Some(r) = rest.strip_prefix('-') {
            return match GoDuration::parse(r) {
                Ok(d) if d.0.is_zero() => Ok(d),
                Ok(_) => Err(err(Reason::NegativeDuration, s, "must be zero or more")),
                Err(_) => Err(bad()),
            };
        }
        rest = rest.strip_prefix('+').unwrap_or(rest);
        if rest == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (int, after) = rest.split_at(int_len);
            let (frac, after) = match after.strip_prefix('.') {
                Some(a) => {
                    let n = a.bytes().take_while(u8::is_ascii_digit).count();
                    a.split_at(n)
                }
                None => ("", after),
            };
            if int.is_empty() && frac.is_empty() {
                return Err(bad());
            }
            let unit_len = after
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(after.len(), |(i, _)| i);
            let (unit, after) = after.split_at(unit_len);
            let nanos_per: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(bad()),
            };
            let whole: u128 = if int.is_empty() {
                0
            } else {
                int.parse().map_err(|_| bad())?
            };
            let mut term = whole.checked_mul(nanos_per).ok_or_else(bad)?;
            // Fraction digits beyond nanosecond precision are dropped, as Go does.
            let mut scale = nanos_per;
            for d in frac.bytes() {
                scale /= 10;
                if scale == 0 {
                    break;
                }
                term += u128::from(d - b'0') * scale;
            }
            total = total.checked_add(term).ok_or_else(bad)?;
            rest = after;
        }
        // Go's Duration is an int64 of nanoseconds.
        if total > i64::MAX as u128 {
            return Err(bad());
        }
        Ok(GoDuration(Duration::from_nanos(total as u64)))
    }

    /// Whole seconds rounded half away from zero, as Go's `math.Round(d.Seconds())` (how Calico
    /// writes `graceful restart time`): 1.5s → 2, 1.4s → 1, 90s → 90.
    pub fn rounded_seconds(self) -> u32 {
        let nanos = self.0.as_nanos();
        let secs = (nanos + 500_000_000) / 1_000_000_000;
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// Whole seconds, fractions dropped, as Felix reads `time.Duration` into integer settings.
    pub fn truncated_seconds(self) -> u32 {
        u32::try_from(self.0.as_secs()).unwrap_or(u32::MAX)
    }
}

/// A BGPPeer `peerIP`: an address with an optional port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddress {
    /// The peer's address.
    pub ip: IpAddr,
    /// The port, when one is given (1-65535).
    pub port: Option<u16>,
}

const PEER_HELP: &str =
    "expected an IP address, IPv4:port or [IPv6]:port with a port from 1 to 65535";

impl PeerAddress {
    /// Parses `a.b.c.d`, `a.b.c.d:port`, a bare IPv6 address or `[v6]:port`. An IPv6 address with
    /// a port must be bracketed (`fd00::1:179` is the address fd00::1:179, not port 179).
    pub fn parse(s: &str) -> Result<PeerAddress, ValueError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(PeerAddress { ip, port: None });
        }
        let sa: SocketAddr = s
            .parse()
            .map_err(|_| err(Reason::InvalidPeerAddress, s, PEER_HELP))?;
        if sa.port() == 0 {
            return Err(err(Reason::PeerPortZero, s, PEER_HELP));
        }
        Ok(PeerAddress {
            ip: sa.ip(),
            port: Some(sa.port()),
        })
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (ip, None) => write!(f, "{ip}"),
            (IpAddr::V4(ip), Some(p)) => write!(f, "{ip}:{p}"),
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> f64 {
        GoDuration::parse(s).unwrap().0.as_secs_f64()
    }

    #[test]
    fn durations_parse_as_go_does() {
        assert_eq!(secs("120s"), 120.0);
        assert_eq!(secs("1.5m"), 90.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs(".5s"), 0.5);
        assert_eq!(secs("5.s"), 5.0);
        assert_eq!(secs("1500ms"), 1.5);
        assert_eq!(secs("2us"), 2e-6);
        assert_eq!(secs("3µs"), 3e-6);
        assert_eq!(secs("1h1m1s1ms1us1ns"), 3661.001001001);
        assert_eq!(secs("0"), 0.0);
        assert_eq!(secs("+0"), 0.0);
        assert_eq!(secs("-0"), 0.0);
        assert_eq!(secs("0s"), 0.0);
    }

    #[test]
    fn bad_durations_carry_a_stable_reason() {
        for bad in [
            "", "1", "s", ".s", "1d", "1.5", "1 s", "1s ", "--1s", "120 s", "1e3s",
        ] {
            let e = GoDuration::parse(bad).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidDuration, "{bad:?}");
            assert_eq!(e.reason.as_str(), "InvalidDuration");
        }
        let e = GoDuration::parse("-1s").unwrap_err();
        assert_eq!(e.reason, Reason::NegativeDuration);
        assert!(
            GoDuration::parse("9999999999h").is_err(),
            "beyond Go's int64 nanoseconds"
        );
        assert!(e.to_string().contains("\"-1s\""), "{e}");
    }

    #[test]
    fn seconds_round_as_go_math_round() {
        let r = |s: &str| GoDuration::parse(s).unwrap().rounded_seconds();
        assert_eq!(r("1.5s"), 2);
        assert_eq!(r("1.4s"), 1);
        assert_eq!(r("2.5s"), 3, "half away from zero, not to even");
        assert_eq!(r("1.5m"), 90);
        assert_eq!(r("499ms"), 0);
        assert_eq!(GoDuration::parse("1.9s").unwrap().truncated_seconds(), 1);
    }

    #[test]
    fn peer_addresses() {
        let p = PeerAddress::parse("198.19.15.254").unwrap();
        assert_eq!((p.ip.to_string(), p.port), ("198.19.15.254".into(), None));
        assert_eq!(
            PeerAddress::parse("10.0.0.1:1790").unwrap().port,
            Some(1790)
        );
        let v6 = PeerAddress::parse("[fd00::1]:179").unwrap();
        assert_eq!((v6.ip.to_string(), v6.port), ("fd00::1".into(), Some(179)));
        assert_eq!(v6.to_string(), "[fd00::1]:179");
        let bare = PeerAddress::parse("fd00::1:179").unwrap();
        assert_eq!(bare.port, None, "unbracketed IPv6 is all address");
        assert_eq!(
            PeerAddress::parse("10.0.0.1:0").unwrap_err().reason,
            Reason::PeerPortZero
        );
        assert_eq!(
            PeerAddress::parse("[fd00::1]:0").unwrap_err().reason,
            Reason::PeerPortZero
        );
        for bad in [
            "10.0.0.1:70000",
            "fd00::1:179x",
            "host1",
            "",
            "[fd00::1]",
            "10.0.0.1:",
        ] {
            assert_eq!(
                PeerAddress::parse(bad).unwrap_err().reason,
                Reason::InvalidPeerAddress,
                "{bad:?}"
            );
        }
    }
}
