//! The bound on what one event may hold.

use serde::Serialize;

/// The default largest value of one event, in bytes of JSON: 2 MiB. A task's output, a
/// workflow's input and output, a signal's payload larger than this is refused with an error
/// that says which and how large; raise it with the worker's or the client's setting.
pub const MAX_EVENT_BYTES: usize = 2 * 1024 * 1024;

/// Whether `value`, as JSON, fits in `limit` bytes; the error names `what`, its size and the
/// `setting` that raises the limit.
pub(crate) fn check<T: Serialize + ?Sized>(
    what: &str,
    value: &T,
    limit: usize,
    setting: &str,
) -> Result<(), String> {
    let mut counter = Counter { bytes: 0, limit };
    // Writing stops as soon as the limit is passed, so a huge value costs no more than the
    // limit to measure.
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => Ok(()),
        Err(_) if counter.bytes > limit => Err(format!(
            "{what} is over {} of JSON, the limit of one event ({setting}); store large data elsewhere and pass a reference",
            size(limit)
        )),
        Err(e) => Err(format!("{what} cannot be encoded: {e}")),
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

struct Counter {
    bytes: usize,
    limit: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        if self.bytes > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_over_the_limit_is_refused_with_its_name_and_the_setting() {
        let value = serde_json::json!({"text": "x".repeat(2000)});
        assert!(check("the output", &value, 4096, "max").is_ok());
        let err = check("the output of task a/b", &value, 1024, "Options::max").unwrap_err();
        assert_eq!(
            err,
            "the output of task a/b is over 1 KiB of JSON, the limit of one event (Options::max); store large data elsewhere and pass a reference"
        );
    }
}
