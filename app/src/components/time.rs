//! Times as the reader reads them: in their own time zone, relative to their today.
//!
//! The server does not know the reader's zone, so a page arrives with times in UTC; once
//! it is live in the browser, each time is redrawn in the browser's zone ("Today 09:55",
//! "Yesterday 18:02", "Tuesday 08:15", then a date). The element's `datetime` holds the
//! instant and its `title` (shown on hover) the full date and time.

use chrono::{DateTime, Datelike, FixedOffset, Offset as _, Utc};
use leptos::prelude::*;

/// How `at` reads to someone whose present is `now`, in the zone `offset`: the time of
/// day today, yesterday and in the past week (by weekday), a date before that (with its
/// year when it is not this year's).
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>, offset: FixedOffset) -> String {
    let (at, now) = (at.with_timezone(&offset), now.with_timezone(&offset));
    let clock = at.format("%H:%M");
    match (now.date_naive() - at.date_naive()).num_days() {
        // A time a little ahead of the reader's clock is still today's.
        ..=0 => format!("Today {clock}"),
        1 => format!("Yesterday {clock}"),
        2..=6 => format!("{} {clock}", at.format("%A")),
        _ if at.year() == now.year() => at.format("%b %-d").to_string(),
        _ => at.format("%b %-d, %Y").to_string(),
    }
}

/// The full date and time of `at` in the zone `offset`, with the zone.
pub fn full(at: DateTime<Utc>, offset: FixedOffset) -> String {
    at.with_timezone(&offset)
        .format("%A, %B %-d, %Y, %H:%M:%S (UTC%:z)")
        .to_string()
}

/// `at` as the server renders it, before the browser knows better.
fn in_utc(at: DateTime<Utc>) -> String {
    at.format("%b %-d, %Y, %H:%M UTC").to_string()
}

/// A `<time>` that shows `at` in the reader's zone, relative to their today.
#[component]
pub fn LocalTime(at: DateTime<Utc>, #[prop(optional)] class: &'static str) -> impl IntoView {
    let text = RwSignal::new(in_utc(at));
    let title = RwSignal::new(full(at, Utc.fix()));
    // Effects run in the browser only, after hydration: the first render matches the
    // server's, then the time is redrawn in the reader's zone.
    Effect::new(move |_| {
        if let Some((now, offset)) = browser_clock(at) {
            text.set(relative(at, now, offset));
            title.set(full(at, offset));
        }
    });
    view! { <time class=class datetime=at.to_rfc3339() title=move || title.get()>{move || text.get()}</time> }
}

/// The browser's present, and its zone's offset at `at` (zones change offset over the
/// year, so it is taken at the instant shown).
#[cfg(feature = "hydrate")]
fn browser_clock(at: DateTime<Utc>) -> Option<(DateTime<Utc>, FixedOffset)> {
    let now = DateTime::from_timestamp_millis(js_sys::Date::now() as i64)?;
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
        at.timestamp_millis() as f64
    ));
    // Minutes to add to local time to get UTC: the opposite of the offset.
    let west = date.get_timezone_offset();
    let offset = FixedOffset::west_opt((west * 60.0) as i32)?;
    Some((now, offset))
}

#[cfg(not(feature = "hydrate"))]
fn browser_clock(_at: DateTime<Utc>) -> Option<(DateTime<Utc>, FixedOffset)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn zone(hours: i32) -> FixedOffset {
        FixedOffset::east_opt(hours * 3600).unwrap_or(Utc.fix())
    }

    #[test]
    fn times_read_relative_to_the_readers_own_day() {
        let now = at("2026-12-07T10:00:00Z");
        let utc = zone(0);
        assert_eq!(
            relative(at("2026-12-07T09:55:00Z"), now, utc),
            "Today 09:55"
        );
        assert_eq!(
            relative(at("2026-12-07T10:00:30Z"), now, utc),
            "Today 10:00"
        );
        assert_eq!(
            relative(at("2026-12-06T23:59:00Z"), now, utc),
            "Yesterday 23:59"
        );
        assert_eq!(
            relative(at("2026-12-02T08:15:00Z"), now, utc),
            "Wednesday 08:15"
        );
        assert_eq!(relative(at("2026-11-30T08:15:00Z"), now, utc), "Nov 30");
        assert_eq!(
            relative(at("2025-12-24T08:15:00Z"), now, utc),
            "Dec 24, 2025"
        );
    }

    #[test]
    fn the_readers_zone_decides_the_day_and_the_hour() {
        // 23:30 UTC on the 6th is already the 7th in Tokyo, and still the 6th in New York,
        // where it is past midnight by 06:00 UTC.
        let now = at("2026-12-07T06:00:00Z");
        let then = at("2026-12-06T23:30:00Z");
        assert_eq!(relative(then, now, zone(9)), "Today 08:30");
        assert_eq!(relative(then, now, zone(-5)), "Yesterday 18:30");
        assert_eq!(
            full(then, zone(9)),
            "Monday, December 7, 2026, 08:30:00 (UTC+09:00)"
        );
    }
}
