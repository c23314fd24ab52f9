//! Durations and points in time as people type them: `90s`, `30m`, `2h`, `1h30m`, `7d`, or an
//! RFC 3339 time such as `2026-11-27T10:00:00Z`.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WhenError {
    #[error("{0:?} is not a duration: write a number and a unit (s, m, h, d), e.g. 30m or 1h30m")]
    Duration(String),
    #[error(
        "{0:?} is neither a duration (30m, 2h, 7d) nor an RFC 3339 time (2026-11-27T10:00:00Z)"
    )]
    When(String),
}

pub fn parse_duration(text: &str) -> Result<Duration, WhenError> {
    let bad = || WhenError::Duration(text.to_owned());
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let value: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(bad)?;
    }
    if !number.is_empty() {
        // A bare number of seconds, as `kubectl --request-timeout` accepts.
        if total != 0 {
            return Err(bad());
        }
        total = number.parse().map_err(|_| bad())?;
    }
    Ok(Duration::from_secs(total))
}

/// A point in time: an RFC 3339 time, or a duration before `now`.
pub fn parse_when(text: &str, now: Timestamp) -> Result<Timestamp, WhenError> {
    if let Ok(timestamp) = text.trim().parse::<Timestamp>() {
        return Ok(timestamp);
    }
    let duration = parse_duration(text).map_err(|_| WhenError::When(text.to_owned()))?;
    let signed =
        SignedDuration::try_from(duration).map_err(|_| WhenError::When(text.to_owned()))?;
    now.checked_sub(signed)
        .map_err(|_| WhenError::When(text.to_owned()))
}

/// `3d4h`, `2h5m`, `42s`: an age as kubectl prints one.
pub fn age(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        for bad in ["", "m", "5x", "1h5", "-5m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn points_in_time() {
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_when("2h", now).unwrap(),
            "2026-11-27T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            parse_when("2026-11-01T00:00:00+01:00", now).unwrap(),
            "2026-10-31T23:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(matches!(
            parse_when("yesterday", now),
            Err(WhenError::When(_))
        ));
    }

    #[test]
    fn ages() {
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(125)), "2m5s");
        assert_eq!(age(Duration::from_secs(7500)), "2h5m");
        assert_eq!(age(Duration::from_secs(90_000)), "1d1h");
    }
}
