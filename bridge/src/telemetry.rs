//! Log setup: `tracing` to stderr, text or JSON, filtered by `FLOWS_BRIDGE_LOG`.
//! At the default level (info) no secret, phone number, email or payload is
//! logged: delivery lines carry ids, event, flow id, screen, outcome and timing.

use std::{fmt, time::SystemTime};

use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

use crate::config::LogFormat;

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// One JSON object per line: `timestamp`, `level`, the event's fields
/// (`message` first) and `target`: the layout of tracing-subscriber's own JSON
/// format with `flatten_event(true)` (a test holds the two to the same
/// objects), written straight into the line instead of through serde. A line
/// per delivery is on the hot path. The bridge opens no spans, so none are
/// written.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        write!(
            writer,
            r#"{{"timestamp":"{}","level":"{}""#,
            humantime::format_rfc3339_micros(SystemTime::now()),
            metadata.level()
        )?;
        let mut fields = JsonFields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(r#","target":"#)?;
        json_string(&mut writer, metadata.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct JsonFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_char(',')?;
                json_string(self.writer, field.name())?;
                self.writer.write_char(':')?;
                value(self.writer)
            })();
        }
    }
}

impl tracing::field::Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| json_string(w, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde writes them as null too.
        self.field(field, |w| match value.is_finite() {
            true => write!(w, "{value}"),
            false => w.write_str("null"),
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| json_string(w, &format!("{value:?}")));
    }
}

/// `value` as a JSON string, escaped as serde_json escapes it.
fn json_string(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    w.write_char('"')?;
    let mut plain = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => "",
            _ => continue,
        };
        w.write_str(&value[plain..i])?;
        if escape.is_empty() {
            write!(w, "\\u{byte:04x}")?;
        } else {
            w.write_str(escape)?;
        }
        plain = i + 1;
    }
    w.write_str(&value[plain..])?;
    w.write_char('"')
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use serde_json::Value as Json;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn events() {
        let detail = "grpc status Unavailable";
        tracing::info!(
            delivery_id = "8f2c\"4d6a\\",
            event = "screen_advance",
            flow_id = "",
            screen = "PAYMENT\n\t\u{1}é",
            outcome = "reply",
            duplicate = false,
            latency_ms = 1.25,
            "delivery answered"
        );
        tracing::warn!(
            status = 401u16,
            delta = -3i64,
            detail = %detail,
            code = ?Some(7),
            nan = f64::NAN,
            "webhook \"rejected\""
        );
        tracing::error!("no fields at all");
    }

    fn parse(lines: &Lines) -> Vec<Json> {
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The same events through tracing-subscriber's JSON format and through
    /// `JsonLines`: the same objects, key for key, but for the timestamp.
    #[test]
    fn lines_match_tracing_subscribers_json() {
        let theirs = Lines::default();
        let writer = theirs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let ours = Lines::default();
        let writer = ours.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let (theirs, ours) = (parse(&theirs), parse(&ours));
        assert_eq!(ours.len(), 3);
        assert_eq!(theirs.len(), 3);
        for (mut theirs, mut ours) in theirs.into_iter().zip(ours) {
            let stamp = ours["timestamp"].as_str().unwrap().to_owned();
            assert!(
                stamp.len() == 27 && stamp.ends_with('Z'),
                "microseconds, UTC: {stamp}"
            );
            theirs.as_object_mut().unwrap().remove("timestamp");
            ours.as_object_mut().unwrap().remove("timestamp");
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "",
            "plain",
            "q\"b\\s/",
            "\u{0}\u{1f}\u{7f}",
            "\n\r\t\u{8}\u{c}",
            "ñ→😀",
        ] {
            let mut ours = String::new();
            json_string(&mut ours, s).unwrap();
            assert_eq!(ours, serde_json::to_string(s).unwrap());
        }
    }
}
