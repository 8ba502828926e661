//! Timestamps as objects carry them (`metav1.Time`, whole seconds) and kubectl's AGE column.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Now, in whole seconds: all that an object's JSON form keeps, so a timestamp written and read back
/// compares equal.
pub fn now() -> Time {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    from_unix_seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
}

/// A `Time` from seconds since the Unix epoch (clamped to what the type can hold).
pub fn from_unix_seconds(seconds: i64) -> Time {
    let clamped = seconds.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    Time(Timestamp::from_second(clamped).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(time: &Time) -> i64 {
    time.0.as_second()
}

/// nginx's `$time_local` in UTC, for access logs in nginx's formats:
/// `30/Nov/2026:20:45:01 +0000`.
pub fn nginx_time_local(unix_seconds: i64) -> String {
    let time = from_unix_seconds(unix_seconds).0;
    time.strftime("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

/// kubectl's age format: `45s`, `12m`, `5h`, `3d`, `2y` (the largest whole unit, like kubectl's
/// short form). Negative ages (clock skew) show as `0s`.
pub fn format_age(created: &Time, now: &Time) -> String {
    let seconds = (unix_seconds(now) - unix_seconds(created)).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s if s < 86400 * 365 * 2 => format!("{}d", s / 86400),
        s => format!("{}y", s / (86400 * 365)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_time_local_is_day_month_year_time_and_zone() {
        assert_eq!(nginx_time_local(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(
            nginx_time_local(1_796_071_501),
            "30/Nov/2026:20:45:01 +0000"
        );
        assert_eq!(nginx_time_local(951_782_400), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn ages_like_kubectl() {
        let t0 = from_unix_seconds(1_700_000_000);
        let at = |s: i64| from_unix_seconds(1_700_000_000 + s);
        assert_eq!(format_age(&t0, &at(5)), "5s");
        assert_eq!(format_age(&t0, &at(119)), "119s");
        assert_eq!(format_age(&t0, &at(600)), "10m");
        assert_eq!(format_age(&t0, &at(3 * 3600)), "3h");
        assert_eq!(format_age(&t0, &at(3 * 86400)), "3d");
        assert_eq!(format_age(&t0, &at(-5)), "0s");
    }

    #[test]
    fn now_round_trips_through_json() {
        let t = now();
        let json = serde_json::to_value(&t).unwrap();
        let back: Time = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
        assert!(unix_seconds(&t) > 1_600_000_000);
    }
}
