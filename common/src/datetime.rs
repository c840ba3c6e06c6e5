//! Datetimes as clients send them (spec/api.md §1.3): RFC 3339 / ISO 8601, a value without an
//! offset is UTC; written back as ISO 8601 UTC with milliseconds.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
}

pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// serde: a required datetime field in a request body.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let parsed = match &value {
        serde_json::Value::String(s) => parse(s),
        // Unix seconds, or milliseconds when too large to be seconds (as pydantic).
        serde_json::Value::Number(n) => n.as_f64().and_then(|f| {
            let secs = if f.abs() > 2e10 { f / 1000.0 } else { f };
            DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
        }),
        _ => None,
    };
    parsed.ok_or_else(|| serde::de::Error::custom(format!("Input should be a valid datetime, got {value}")))
}

/// serde: datetimes in responses.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

/// serde: optional datetimes in responses (`null` when absent).
pub fn serialize_option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format(t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_clients_send() {
        let z = parse("2025-10-16T12:34:56.789Z").unwrap();
        assert_eq!(format(&z), "2025-10-16T12:34:56.789Z");
        assert_eq!(parse("2025-10-16T14:34:56.789+02:00"), Some(z));
        assert_eq!(parse("2025-10-16T12:34:56.789"), Some(z));
        assert_eq!(format(&parse("2025-10-16").unwrap()), "2025-10-16T00:00:00.000Z");
        assert_eq!(parse("yesterday"), None);
    }
}
