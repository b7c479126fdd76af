//! How an error is shown to a person: its message and every cause, in words, on one line. Errors
//! here keep their causes as `#[source]`; whoever prints one (a log line, `/status`, a command's
//! last line) prints it with [`chain`], never with `Debug`.

/// An error and its causes on one line, `: `-separated; a cause whose text the line already
/// holds is not repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !s_text.is_empty() && !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach the token service")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_every_cause_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(
            chain(&e),
            "cannot reach the token service: connection refused"
        );
    }
}
