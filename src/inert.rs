//! Making untrusted text inert where it is shown (SPEC §12): Zoho's answers and the config may carry
//! control characters, Slack markup and endless strings, and none of it may forge a log line, drive a
//! terminal, ping a Slack channel or bloat an alert.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a log line or a terminal as itself: C0 and C1 controls (CR, LF, ESC,
/// ...), DEL, and the Unicode bidirectional overrides that make text read differently than it is.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// `s` with every control character written as an escape (`\n`, `\r`, `\t`, `\u{1b}`), so it stays
/// on one line and cannot send terminal sequences. Borrowed when there is nothing to escape.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape_controls`] line by line: the line breaks of a multi-line text (a diff) stay, every
/// other control character is escaped.
pub fn escape_controls_in_lines(s: &str) -> String {
    s.split('\n').map(escape_controls).collect::<Vec<_>>().join("\n")
}

/// Slack's three control characters escaped (`&amp;`, `&lt;`, `&gt;`), as Slack documents: no
/// `<!channel>`, `<@user>` or `<https://...|label>` link can come out of the text.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `s` cut to at most `max` characters, with `…` marking the cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_is_untouched() {
        assert!(matches!(escape_controls("smtp.zoho.com ✓"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\r\nERROR forged\u{1b}[31m\u{202E}"),
            "a\\r\\nERROR forged\\u{1b}[31m\\u{202e}"
        );
    }

    #[test]
    fn lines_stay_lines_and_nothing_else_passes() {
        assert_eq!(escape_controls_in_lines("-a\r\n+b\u{9b}\n"), "-a\\r\n+b\\u{9b}\n");
    }

    #[test]
    fn slack_markup_is_escaped() {
        assert_eq!(
            slack_escape("<!channel> <https://evil.example|x> & co"),
            "&lt;!channel&gt; &lt;https://evil.example|x&gt; &amp; co"
        );
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate_chars("héllo", 10), "héllo");
        assert_eq!(truncate_chars("héllo", 2), "hé…");
    }
}
