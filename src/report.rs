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

/// How many characters of a value from a request are shown at most.
pub const UNTRUSTED_CHARS: usize = 120;

/// Text a client sent (a form key, an audience it asked for), to show in a refusal or a log
/// line: shown with every control character and quote escaped (so it can never start a line of
/// its own), and cut to [`UNTRUSTED_CHARS`] characters, the cut marked.
#[derive(Clone, PartialEq, Eq)]
pub struct Untrusted(String);

impl Untrusted {
    /// Keeps at most [`UNTRUSTED_CHARS`] characters of `text` (and whether it was cut).
    pub fn new(text: &str) -> Self {
        let mut kept: String = text.chars().take(UNTRUSTED_CHARS).collect();
        if kept.len() < text.len() {
            kept.push('\u{2026}');
        }
        Self(kept)
    }

    /// The text as received (cut), for comparisons; never print it with this.
    pub fn raw(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0.escape_debug())
    }
}

impl std::fmt::Debug for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_cannot_start_a_line_and_is_cut() {
        let forged = "x\n2026-12-07T00:00:00Z  INFO token issued org_guid=victim";
        let shown = Untrusted::new(forged).to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.contains("\\n2026"), "{shown}");
        let long = "a".repeat(30_000);
        let shown = Untrusted::new(&long).to_string();
        assert!(
            shown.chars().count() <= UNTRUSTED_CHARS + 3,
            "{}",
            shown.len()
        );
        assert!(shown.ends_with("\u{2026}\""), "{shown}");
        assert_eq!(Untrusted::new("\"").to_string(), r#""\"""#);
    }

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
