//! Minimal HTTP to the workers: a GET of their error logs (`http://host:port/api/_load_error_log`)
//! and the response parsing `load` shares.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `(host, port, path?query)` of an `http://` URL.
pub fn split_url(url: &str) -> Result<(String, u16, String)> {
    if url.starts_with("https://") {
        bail!("{url}: only http:// error log URLs can be fetched; open it with curl");
    }
    let (_, host, port, path) = split_any_url(url)?;
    Ok((host, port, path))
}

/// `(https, host, port, path?query)` of an `http://` or `https://` URL (ports 80 and 443 by
/// default).
pub fn split_any_url(url: &str) -> Result<(bool, String, u16, String)> {
    let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => bail!("{url}: not an http:// or https:// URL"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse::<u16>()
                .with_context(|| format!("{url}: bad port '{p}'"))?,
        ),
        _ => (authority, if https { 443 } else { 80 }),
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    Ok((
        https,
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        path.to_string(),
    ))
}

/// The length of a response head, up to and including its blank line, once `buf` holds it.
pub fn end_of_head(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The status code of a response head (`HTTP/1.1 100 Continue`).
pub fn status_of(head: &[u8]) -> Option<u16> {
    String::from_utf8_lossy(head)
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Splits a complete raw HTTP response into status code and body: the body by its
/// Content-Length, de-chunked, or all that followed the head.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let end = end_of_head(raw).context("malformed HTTP response (no end of headers)")?;
    let status = status_of(&raw[..end]).context("malformed HTTP status line")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let rest = &raw[end..];
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        let mut out = Vec::new();
        let mut r = rest;
        loop {
            let line_end = r
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("truncated chunked answer")?;
            let size_text = String::from_utf8_lossy(&r[..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size '{size_text}'"))?;
            r = &r[line_end + 2..];
            if size == 0 {
                return Ok((status, out));
            }
            if r.len() < size {
                bail!("truncated chunked answer");
            }
            out.extend_from_slice(&r[..size]);
            r = r.get(size + 2..).unwrap_or_default();
        }
    }
    match header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) if n <= rest.len() => Ok((status, rest[..n].to_vec())),
        Some(n) => bail!("truncated answer: {} of {n} bytes", rest.len()),
        None => Ok((status, rest.to_vec())),
    }
}

/// GETs `url` (HTTP/1.0: the server answers with the whole body and closes).
pub async fn get(url: &str, timeout: Duration) -> Result<Vec<u8>> {
    let (host, port, path) = split_url(url)?;
    let fetch = async {
        let mut conn = TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| {
                format!(
                    "connecting to {host}:{port} (a worker pod address may need `kubectl port-forward`)"
                )
            })?;
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kubectl-routineload\r\nAccept: */*\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(timeout, fetch)
        .await
        .with_context(|| format!("{url}: no answer within {timeout:?}"))??;
    let (status, body) = parse_response(&raw).with_context(|| url.to_string())?;
    if status != 200 {
        bail!(
            "{url}: HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}

/// The `http://` URLs in a text (a reason or message naming an error log).
pub fn urls_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("http://") {
        let url: String = rest[i..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ';' | '"' | '\'' | ')'))
            .collect();
        let url = url.trim_end_matches('.').to_string();
        rest = &rest[i + "http://".len()..];
        if url.len() > "http://".len() {
            out.push(url);
        }
    }
    out
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let mut count = 0;
    for (i, b) in trimmed.bytes().enumerate().rev() {
        if b == b'\n' {
            count += 1;
            if count == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        let cases = [
            (
                "http://10.0.0.5:8040/api/_load_error_log?file=a.log",
                ("10.0.0.5", 8040, "/api/_load_error_log?file=a.log"),
            ),
            ("http://worker-0/x", ("worker-0", 80, "/x")),
            ("http://h:1", ("h", 1, "/")),
            ("http://[::1]:8040/p", ("::1", 8040, "/p")),
        ];
        for (url, (h, p, path)) in cases {
            let got = split_url(url).unwrap();
            assert_eq!(got, (h.to_string(), p, path.to_string()), "{url}");
        }
        for bad in ["https://h/x", "ftp://h", "http://:80/x", "http://h:x/"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
        // (URL, https, host, port, path): Stream Load takes both schemes.
        let cases = [
            ("https://w:8443/api", true, "w", 8443, "/api"),
            ("https://w/api", true, "w", 443, "/api"),
            ("http://w/api", false, "w", 80, "/api"),
        ];
        for (url, https, h, p, path) in cases {
            assert_eq!(
                split_any_url(url).unwrap(),
                (https, h.to_string(), p, path.to_string()),
                "{url}"
            );
        }
    }

    #[test]
    fn responses_parse() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abc"[..]));
        let (s, _) = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nno").unwrap();
        assert_eq!(s, 404);
        assert!(parse_response(b"garbage").is_err());
        let cases: [(&[u8], u16, &[u8]); 4] = [
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", 200, b"{}"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra", 200, b"{}"),
            (b"HTTP/1.1 401 Unauthorized\r\n\r\n{\"a\":1}", 401, b"{\"a\":1}"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                200,
                b"abcde",
            ),
        ];
        for (raw, code, body) in cases {
            assert_eq!(parse_response(raw).unwrap(), (code, body.to_vec()));
        }
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
    }

    #[test]
    fn urls_are_found_in_reasons() {
        let cases: [(&str, &[&str]); 4] = [
            (
                "current error rows: 1 ... first error: Error: x. See http://10.0.0.5:8040/api/_load_error_log?file=a.log",
                &["http://10.0.0.5:8040/api/_load_error_log?file=a.log"],
            ),
            (
                "logs: http://a/x, http://b/y; (http://c/z).",
                &["http://a/x", "http://b/y", "http://c/z"],
            ),
            ("no url here", &[]),
            ("http:// alone", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(urls_in(text), want, "{text}");
        }
    }

    #[test]
    fn tails() {
        let cases = [
            ("a\nb\nc\n", 2, "b\nc\n"),
            ("a\nb\nc", 2, "b\nc"),
            ("a\nb\nc\n", 5, "a\nb\nc\n"),
            ("a\nb\nc\n", 1, "c\n"),
            ("a\n", 0, ""),
        ];
        for (text, n, want) in cases {
            assert_eq!(tail(text, n), want, "{text:?} {n}");
        }
    }
}
