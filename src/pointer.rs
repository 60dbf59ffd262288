//! JSON-pointer paths (RFC 6901) as auditd writes them, and the `ignore` patterns matched against them.
//!
//! A path segment of an identity-ordered array is the item's identity, not its position
//! (`/reply_addresses/4000000025003/smtpDetails/host`), so patterns and change paths agree.

/// Escapes one segment for a JSON pointer (`~` → `~0`, `/` → `~1`).
pub fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Joins segments (unescaped) into a pointer.
pub fn join(segments: &[String]) -> String {
    segments.iter().map(|s| format!("/{}", escape_segment(s))).collect()
}

/// One segment of an ignore pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternSegment {
    /// Matches exactly this (unescaped) segment.
    Literal(String),
    /// `*`: any one segment.
    One,
    /// `**`: any number of segments, none included.
    Any,
}

/// An `ignore` pattern: a JSON pointer where `*` stands for one segment and `**` for any number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<PatternSegment>,
}

impl PathPattern {
    /// Parses a pattern such as `/reply_addresses/*/displayName` or `/**/font`.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| format!("ignore pattern `{text}` must start with `/` (a JSON pointer)"))?;
        if rest.is_empty() {
            return Err(format!("ignore pattern `{text}` would ignore the whole document"));
        }
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            let seg = match raw {
                "*" => PatternSegment::One,
                "**" => PatternSegment::Any,
                _ if raw.contains('*') => {
                    return Err(format!(
                        "ignore pattern `{text}`: `*` must be a whole segment (`/a/*/b` or `/**/b`)"
                    ))
                }
                _ => PatternSegment::Literal(raw.replace("~1", "/").replace("~0", "~")),
            };
            segments.push(seg);
        }
        Ok(PathPattern {
            text: text.to_string(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does the pattern match this path (unescaped segments)?
    pub fn matches(&self, path: &[String]) -> bool {
        fn go(pat: &[PatternSegment], path: &[String]) -> bool {
            match pat.split_first() {
                None => path.is_empty(),
                Some((PatternSegment::Any, rest)) => (0..=path.len()).any(|skip| go(rest, &path[skip..])),
                Some((seg, rest)) => match path.split_first() {
                    None => false,
                    Some((first, path_rest)) => {
                        let ok = match seg {
                            PatternSegment::One => true,
                            PatternSegment::Literal(l) => l == first,
                            PatternSegment::Any => unreachable!("handled above"),
                        };
                        ok && go(rest, path_rest)
                    }
                },
            }
        }
        go(&self.segments, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('/').skip(1).map(str::to_string).collect()
    }

    #[test]
    fn star_matches_one_segment_and_double_star_any() {
        let pat = PathPattern::parse("/reply_addresses/*/displayName").unwrap();
        assert!(pat.matches(&p("/reply_addresses/400/displayName")));
        assert!(!pat.matches(&p("/reply_addresses/400/smtp/displayName")));
        let any = PathPattern::parse("/**/font").unwrap();
        assert!(any.matches(&p("/font")));
        assert!(any.matches(&p("/default/x/font")));
        assert!(!any.matches(&p("/default/font/size")));
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(PathPattern::parse("reply").unwrap_err().contains("must start with `/`"));
        assert!(PathPattern::parse("/a*b").is_err());
        assert!(PathPattern::parse("/").is_err());
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(join(&["a/b".into(), "c~d".into()]), "/a~1b/c~0d");
        assert!(PathPattern::parse("/a~1b").unwrap().matches(&["a/b".to_string()]));
    }
}
