//! Reading `/metrics` the way Prometheus would: a plain HTTP GET and a strict text-format parser.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// A plain HTTP/1.0 GET on loopback: (status, content type, body).
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// One series: a metric name and its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Series {
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Series {
        Series {
            name: name.to_string(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }
}

/// `GET /metrics`, checked to be Prometheus text, as series → value.
pub fn scrape(port: u16) -> BTreeMap<Series, f64> {
    let (status, content_type, body) = http_get(port, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    parse_prometheus_text(&body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{body}"))
}

/// A strict reader of the Prometheus text exposition format 0.0.4: `# HELP`/`# TYPE` lines, then
/// samples `name{label="value",...} value`, every sample of a declared family, histograms with
/// `le` buckets that end in `+Inf` and agree with `_count`.
pub fn parse_prometheus_text(text: &str) -> Result<BTreeMap<Series, f64>, String> {
    fn valid_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    fn value(s: &str) -> Result<f64, String> {
        match s {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ => s.parse().map_err(|_| format!("bad value {s:?}")),
        }
    }
    fn labels(s: &str) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        let mut rest = s;
        while !rest.is_empty() {
            let (name, after) = rest.split_once("=\"").ok_or(format!("bad labels {s:?}"))?;
            if !valid_name(name) || name.starts_with("__") {
                return Err(format!("bad label name {name:?}"));
            }
            let mut val = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => val.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => val.push(c),
                        _ => return Err(format!("bad escape in {s:?}")),
                    },
                    Some((_, c)) => val.push(c),
                    None => return Err(format!("unterminated label value in {s:?}")),
                }
            };
            if out.insert(name.to_string(), val).is_some() {
                return Err(format!("label {name} twice in {s:?}"));
            }
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        Ok(out)
    }

    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), _) if !valid_name(name) => return Err(format!("bad HELP {line:?}")),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_name(name) || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(format!("bad TYPE {line:?}"));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(format!("TYPE of {name} twice"));
                    }
                }
                (Some("TYPE"), _, _) => return Err(format!("bad TYPE {line:?}")),
                _ => {}
            }
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').ok_or(format!("unclosed labels in {line:?}"))?;
                (
                    Series {
                        name: line[..open].to_string(),
                        labels: labels(&line[open + 1..close])?,
                    },
                    line[close + 1..].trim_start(),
                )
            }
            None => {
                let (name, rest) = line.split_once(' ').ok_or(format!("no value in {line:?}"))?;
                (
                    Series {
                        name: name.to_string(),
                        labels: BTreeMap::new(),
                    },
                    rest,
                )
            }
        };
        if !valid_name(&series.name) {
            return Err(format!("bad metric name in {line:?}"));
        }
        let mut fields = rest.split(' ');
        let v = value(fields.next().unwrap_or(""))?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| format!("bad timestamp in {line:?}"))?;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                series
                    .name
                    .strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram" || k == "summary"))
            })
            .unwrap_or(&series.name)
            .to_string();
        if !types.contains_key(&family) {
            return Err(format!("sample {} has no TYPE line before it", series.name));
        }
        if samples.insert(series.clone(), v).is_some() {
            return Err(format!("{series:?} appears twice"));
        }
    }
    for (name, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let buckets: Vec<(&Series, &f64)> = samples
            .iter()
            .filter(|(s, _)| s.name == format!("{name}_bucket"))
            .collect();
        let inf = buckets
            .iter()
            .find(|(s, _)| s.labels.get("le").map(String::as_str) == Some("+Inf"))
            .ok_or(format!("{name} has no +Inf bucket"))?;
        let count = samples
            .get(&Series::new(&format!("{name}_count"), &[]))
            .ok_or(format!("{name} has no _count"))?;
        if inf.1 != count {
            return Err(format!("{name}: +Inf bucket {} != count {count}", inf.1));
        }
    }
    Ok(samples)
}

#[test]
fn the_prometheus_reader_rejects_what_prometheus_would() {
    assert!(parse_prometheus_text("# TYPE up gauge\nup 1\n").is_ok());
    assert!(parse_prometheus_text("up 1\n").is_err(), "no TYPE");
    assert!(parse_prometheus_text("# TYPE up gauge\nup{a=\"1} 1\n").is_err());
    assert!(parse_prometheus_text("# TYPE up gauge\nup one\n").is_err());
    assert!(parse_prometheus_text("# TYPE 1up gauge\n").is_err());
    let parsed = parse_prometheus_text("# TYPE x gauge\nx{a=\"q\\\"uote\",b=\"2\"} 3\n").unwrap();
    assert_eq!(parsed[&Series::new("x", &[("a", "q\"uote"), ("b", "2")])], 3.0);
}
