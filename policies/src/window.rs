//! Time windows: `days = "mon-fri"`, `hours = "08:00-18:00"`, `timezone = "Europe/Berlin"`.

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

/// When a rule applies, in a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeWindow {
    /// Days of the week it applies on (local time), Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight: from (inclusive) and to (exclusive). `to < from`
    /// crosses midnight (the day is the day it started).
    pub minutes: Option<(u32, u32)>,
    /// The zone `days` and `minutes` are in.
    pub zone: Tz,
    /// How the window was written, for explanations.
    pub text: String,
}

fn day_index(name: &str) -> Option<usize> {
    DAYS.iter().position(|(n, _)| *n == name)
}

/// Parses `mon-fri`, `sat,sun`, `mon-wed,fri`.
pub fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for part in s.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let lookup = |d: &str| {
            day_index(&d.trim().to_ascii_lowercase()).ok_or_else(|| {
                format!(
                    "unknown day '{}': use mon, tue, wed, thu, fri, sat, sun",
                    d.trim()
                )
            })
        };
        let (from, to) = (lookup(a)?, lookup(b)?);
        let mut i = from;
        loop {
            days[i] = true;
            if i == to {
                break;
            }
            i = (i + 1) % 7;
        }
    }
    Ok(days)
}

fn parse_clock(s: &str) -> Result<u32, String> {
    if s == "24:00" {
        return Ok(24 * 60);
    }
    let t = NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| format!("'{s}' is not a time of day (HH:MM)"))?;
    Ok(t.hour() * 60 + t.minute())
}

/// Parses `08:00-18:00` (end exclusive; `22:00-06:00` crosses midnight).
pub fn parse_hours(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a range of hours like 08:00-18:00"))?;
    let (from, to) = (parse_clock(a.trim())?, parse_clock(b.trim())?);
    if from == to {
        return Err(format!("'{s}' is an empty range: it can never match"));
    }
    Ok((from, to))
}

/// Parses an IANA time zone name (`UTC`, `Europe/Berlin`).
pub fn parse_zone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("unknown time zone '{s}' (use an IANA name such as Europe/Berlin)"))
}

impl TimeWindow {
    /// Whether `at` falls in the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone);
        let today = local.weekday().num_days_from_monday() as usize;
        let now = local.hour() * 60 + local.minute();
        match self.minutes {
            None => self.days[today],
            Some((from, to)) if from < to => self.days[today] && now >= from && now < to,
            Some((from, to)) => {
                // Crosses midnight: late today, or early on the day after a listed day.
                let yesterday = (today + 6) % 7;
                (self.days[today] && now >= from) || (self.days[yesterday] && now < to)
            }
        }
    }

    /// The local time of `at`, for explanations (`Tue 19:02 Europe/Berlin`).
    pub fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.zone)
            .format("%a %H:%M %Z")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn window(days: &str, hours: Option<&str>, zone: &str) -> TimeWindow {
        TimeWindow {
            days: parse_days(days).unwrap(),
            minutes: hours.map(|h| parse_hours(h).unwrap()),
            zone: parse_zone(zone).unwrap(),
            text: String::new(),
        }
    }

    #[test]
    fn office_hours_in_a_zone() {
        let w = window("mon-fri", Some("08:00-18:00"), "Europe/Berlin");
        // 2026-11-26 is a Thursday; Berlin is UTC+1 in November.
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).unwrap();
        assert!(w.contains(at(7, 0))); // 08:00 local
        assert!(!w.contains(at(6, 59)));
        assert!(!w.contains(at(17, 0))); // 18:00 local: end is exclusive
        let saturday = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        assert!(!w.contains(saturday));
        assert_eq!(w.local(at(18, 2)), "Thu 19:02 CET");
    }

    #[test]
    fn night_shift_crosses_midnight() {
        let w = window("fri", Some("22:00-06:00"), "UTC");
        let fri_late = Utc.with_ymd_and_hms(2026, 11, 27, 23, 0, 0).unwrap();
        let sat_early = Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0).unwrap();
        let sat_late = Utc.with_ymd_and_hms(2026, 11, 28, 23, 0, 0).unwrap();
        assert!(w.contains(fri_late) && w.contains(sat_early) && !w.contains(sat_late));
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert_eq!(
            parse_days("sat-mon").unwrap(),
            [true, false, false, false, false, true, true]
        );
        assert!(parse_days("mon-fry")
            .unwrap_err()
            .contains("unknown day 'fry'"));
        assert!(parse_hours("08:00-08:00").unwrap_err().contains("never"));
        assert!(parse_hours("8am-5pm").is_err());
        assert!(parse_zone("Mars/Olympus").is_err());
    }
}
