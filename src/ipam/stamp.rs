//! Times in IPAM objects. The `timestamp` allocation attribute is written as Calico's CNI plugin
//! writes it, Go's `time.Now().UTC().String()` (`2006-01-02 15:04:05.999999999 +0000 UTC`); earlier
//! Ocelot releases wrote RFC 3339, so both forms are read. Claim times are RFC 3339 with seconds
//! (a `metav1.Time`). Formatting and parsing are jiff's (already in the tree through k8s-openapi).
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Go's `Time.String()` layout for a UTC time, in jiff's strftime syntax: `%.f` prints the
/// fraction without trailing zeros and nothing for whole seconds, as Go's `.999999999` does.
const GO_UTC: &str = "%Y-%m-%d %H:%M:%S%.f +0000 UTC";

/// The text form a stored `timestamp` was read in, so it is written back unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StampForm {
    /// `2006-01-02 15:04:05.999999999 +0000 UTC` (Calico's).
    Go,
    /// `2006-01-02T15:04:05Z`, fraction if any (Ocelot before 0.2).
    Rfc3339,
}

/// Nanoseconds since the epoch; times before 1970 count as the epoch, times past 2554 as the end
/// of the u64 range.
pub(crate) fn unix_nanos_u64(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

fn timestamp(nanos: u64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(nanos)).expect("u64 nanoseconds are within jiff's range")
}

/// A stored stamp in the given form.
pub(crate) fn render(nanos: u64, form: StampForm) -> String {
    let ts = timestamp(nanos);
    match form {
        StampForm::Go => ts.strftime(GO_UTC).to_string(),
        StampForm::Rfc3339 => ts.to_string(),
    }
}

/// Calico's form of a time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_utc_string(t: SystemTime) -> String {
    render(unix_nanos_u64(t), StampForm::Go)
}

/// The nanoseconds of a `timestamp` in either form, only when rendering them again gives back
/// exactly the same text (so a record read and written back is unchanged); None otherwise.
pub(crate) fn parse(s: &str) -> Option<(u64, StampForm)> {
    let (ts, form) = match jiff::fmt::strtime::parse(GO_UTC, s) {
        Ok(tm) => (
            tm.to_datetime()
                .ok()?
                .to_zoned(TimeZone::UTC)
                .ok()?
                .timestamp(),
            StampForm::Go,
        ),
        Err(_) => (s.parse::<Timestamp>().ok()?, StampForm::Rfc3339),
    };
    let nanos = u64::try_from(ts.as_nanosecond()).ok()?;
    (render(nanos, form) == s).then_some((nanos, form))
}

/// UTC RFC 3339 with whole seconds (what Calico writes for `affinityClaimTime`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(Timestamp::MAX)
        .to_string()
}
