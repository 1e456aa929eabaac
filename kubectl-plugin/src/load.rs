//! `kubectl routineload load`: the client side of Stream Load. The request (headers from the
//! flags), the worker (from its heartbeat Lease) and the exit status are decided by the pure
//! functions here; [`send`] streams the body over HTTP/1.1 with `Expect: 100-continue`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use routine_load_api::load::{
    CSV_ONLY_HEADERS, DEFAULT_TIMEOUT_SECS, JSON_ONLY_HEADERS, STREAM_LOAD_HEADERS, valid_label,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{LOAD_FLAG_HEADERS, LoadArgs};
use crate::http::{end_of_head, parse_response, status_of};

/// Headers the plugin sets itself; `-H` may not.
const TRANSPORT_HEADERS: &[&str] = &[
    "authorization",
    "content-length",
    "transfer-encoding",
    "expect",
    "host",
    "connection",
];
/// How long to wait for `100 Continue` before sending the body anyway (the worker answers it
/// once it has checked the token, taken the label and opened the table).
const CONTINUE_WAIT: Duration = Duration::from_secs(30);
/// Time for the answer past the load's own timeout.
const ANSWER_MARGIN: Duration = Duration::from_secs(30);

/// The flag that sets `header`, for messages.
fn flag_of(header: &str) -> String {
    match header {
        "timeout" => "--timeout".into(),
        "label" => "--label".into(),
        h => LOAD_FLAG_HEADERS
            .iter()
            .find(|(_, hh, _)| *hh == h)
            .map_or_else(|| format!("-H '{h}: ...'"), |(f, _, _)| f.to_string()),
    }
}

/// The Stream Load headers of a load under `label`: the flags' settings, then the `-H` ones.
/// Refuses, saying what to fix: `-H` without `name: value`, headers the plugin sets itself,
/// headers the workers do not take, a header given twice (by a flag and `-H`, or twice), and
/// settings of the other format.
pub fn request_headers(args: &LoadArgs, label: &str) -> Result<Vec<(String, String)>, String> {
    if !valid_label(label) {
        return Err(format!(
            "--label {label}: not a valid label: 1 to 128 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit"
        ));
    }
    let mut out: Vec<(String, String)> = vec![("label".into(), label.into())];
    let mut from_flags = args.settings.clone();
    for raw in &args.headers {
        let Some((name, value)) = raw.split_once(':') else {
            return Err(format!(
                "-H '{raw}': expected 'name: value', as curl's -H (for instance -H 'enclose: \"')"
            ));
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        if name == "label" {
            return Err(format!("-H '{raw}': give the label with --label"));
        }
        if TRANSPORT_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "-H '{raw}': {name} is set by the plugin (credentials: --token / --token-file)"
            ));
        }
        if !STREAM_LOAD_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "-H '{raw}': the workers take no Stream Load header '{name}'; they take {}",
                STREAM_LOAD_HEADERS.join(", ")
            ));
        }
        from_flags.push((name, value));
    }
    for (name, value) in from_flags {
        if out.iter().any(|(n, _)| *n == name) {
            let flag = flag_of(&name);
            return Err(if flag.starts_with("-H") {
                format!("header {name} given twice: give it once")
            } else {
                format!("header {name} given twice (by {flag} and -H): give it once, with {flag}")
            });
        }
        if name == "format" && !matches!(value.to_ascii_lowercase().as_str(), "csv" | "json") {
            return Err(format!("--format {value}: Stream Load takes csv or json"));
        }
        if name == "max_filter_ratio"
            && !value.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r))
        {
            return Err(format!(
                "--max-filter-ratio {value}: a number from 0 to 1 (the largest share of filtered rows)"
            ));
        }
        out.push((name, value));
    }
    let json = out
        .iter()
        .any(|(n, v)| n == "format" && v.eq_ignore_ascii_case("json"));
    let wrong = if json {
        CSV_ONLY_HEADERS
    } else {
        JSON_ONLY_HEADERS
    };
    if let Some((name, _)) = out.iter().find(|(n, _)| wrong.contains(&n.as_str())) {
        return Err(if json {
            format!(
                "{} applies only to CSV: drop it, or load CSV (no --format json)",
                flag_of(name)
            )
        } else {
            format!("{} applies only to JSON: add --format json", flag_of(name))
        });
    }
    Ok(out)
}

/// The load's timeout in seconds (the `timeout` header, else StarRocks' default).
pub fn timeout_of(headers: &[(String, String)]) -> u64 {
    headers
        .iter()
        .find(|(n, _)| n == "timeout")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_SECS)
}

/// A label for a load without `--label`: `load-<UTC time>-<8 hex digits>`.
pub fn generated_label(now: chrono::DateTime<chrono::Utc>, entropy: u64) -> String {
    format!(
        "load-{}-{:08x}",
        now.format("%Y%m%d-%H%M%S"),
        entropy & 0xffff_ffff
    )
}

/// A worker's heartbeat Lease, as far as choosing it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerLease {
    pub name: String,
    /// Its `routineload.io/url` annotation.
    pub url: Option<String>,
    /// Seconds since it was renewed (`None`: never).
    pub renewed_ago: Option<i64>,
    pub duration_secs: i64,
}

/// The base URLs of the workers to send a load under `label` to, in the order to try them:
/// among live Leases (renewed within their duration) with a URL, sorted by name, first the one
/// the label's fingerprint picks, so a retry with the same label goes to the same worker while
/// the workers stay the same; then the others after it by name (wrapping around), for when the
/// first can't be reached (a pod gone before its Lease expired). Never empty.
pub fn choose_workers(leases: &[WorkerLease], label: &str) -> Result<Vec<String>, String> {
    let mut live: Vec<&WorkerLease> = leases
        .iter()
        .filter(|l| l.url.is_some())
        .filter(|l| l.renewed_ago.is_some_and(|a| a <= l.duration_secs))
        .collect();
    if live.is_empty() {
        let without_url = leases.iter().filter(|l| l.url.is_none()).count();
        return Err(format!(
            "no live worker found: {} heartbeat Lease(s) (label routineload.io/worker), {} of them without the routineload.io/url annotation (workers older than this plugin); give the worker with --url http://HOST:PORT (from outside the cluster: kubectl port-forward svc/FULLNAME-worker 8040, then --url http://127.0.0.1:8040)",
            leases.len(),
            without_url
        ));
    }
    live.sort_by(|a, b| a.name.cmp(&b.name));
    let first = routine_load_api::names::start_fingerprint(label) as usize % live.len();
    Ok((0..live.len())
        .map(|k| {
            live[(first + k) % live.len()]
                .url
                .clone()
                .unwrap_or_default()
        })
        .collect())
}

/// The worker could not be reached at all (no connection): nothing of the load was sent, so
/// another worker may take it.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// The Stream Load URL of `table` in `namespace` on the worker at `base`
/// (`http://host:port` or `https://host:port`).
pub fn load_url(base: &str, namespace: &str, table: &str) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    let Some(authority) = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
    else {
        return Err(format!(
            "--url {base}: expected http://HOST:PORT or https://HOST:PORT"
        ));
    };
    if authority.contains('/') {
        return Err(format!(
            "--url {base}: give the worker only (http://HOST:PORT); the plugin adds /api/{namespace}/{table}/_stream_load"
        ));
    }
    Ok(format!("{base}/api/{namespace}/{table}/_stream_load"))
}

/// How an https:// worker's certificate is checked: against the CA certificates of `cacert`
/// (PEM), else the system's.
pub fn tls_connector(cacert: Option<&str>) -> Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match cacert {
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .with_context(|| format!("--cacert {file}: reading it"))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--cacert {file}: not PEM certificates"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!("--cacert {file}: no CA certificate in it");
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                bail!("no system CA certificates found: give the worker's CA with --cacert FILE");
            }
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// The exit status and, when not 0, what to tell the user.
pub fn verdict(http_status: u16, answer: &Value, ok_if_exists: bool) -> (i32, Option<String>) {
    let status = answer["Status"].as_str().unwrap_or_default();
    let label = answer["Label"].as_str().unwrap_or_default();
    match (http_status, status) {
        (200, "Success") => (0, None),
        (200, "Label Already Exists") => {
            let state = answer["ExistingJobStatus"].as_str().unwrap_or("UNKNOWN");
            if ok_if_exists && state == "FINISHED" {
                (0, None)
            } else {
                (
                    3,
                    Some(format!(
                        "label {label} is already used (state {state}): nothing was loaded this time; `kubectl get load {label}` shows that load{}",
                        if state == "FINISHED" {
                            " (--ok-if-exists exits 0 for a FINISHED one)"
                        } else {
                            "; run again with the same label once it ended"
                        }
                    )),
                )
            }
        }
        (200, _) => {
            let mut m = format!(
                "the load failed: {}",
                answer["Message"].as_str().unwrap_or("no message")
            );
            if let Some(url) = answer["ErrorURL"].as_str()
                && !m.contains(url)
            {
                m.push_str(&format!("; the filtered rows: curl {url}"));
            }
            (1, Some(m))
        }
        (code, _) => (
            1,
            Some(format!(
                "the worker refused the load (HTTP {code}): {}",
                answer["Message"].as_str().unwrap_or("see its answer")
            )),
        ),
    }
}

/// Where the body comes from.
pub enum Body {
    /// A file of known length (`Content-Length`).
    File(tokio::fs::File, u64),
    /// stdin (`Transfer-Encoding: chunked`).
    Stdin,
}

/// The request head of a Stream Load PUT.
pub fn request_head(
    host: &str,
    port: u16,
    path: &str,
    token: &str,
    headers: &[(String, String)],
    length: Option<u64>,
) -> String {
    let mut head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kubectl-routineload/{}\r\nAccept: application/json\r\nAuthorization: Bearer {token}\r\nExpect: 100-continue\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

async fn write_body<S: AsyncWrite + Unpin>(conn: &mut S, body: Body) -> std::io::Result<()> {
    match body {
        Body::File(mut f, _) => {
            tokio::io::copy(&mut f, conn).await?;
        }
        Body::Stdin => {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                // stdin is read on a blocking thread (no async stdin in this build of tokio).
                let (b, n) = tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    let n = std::io::stdin().lock().read(&mut buf);
                    (buf, n)
                })
                .await
                .map_err(std::io::Error::other)?;
                buf = b;
                let n = n?;
                if n == 0 {
                    break;
                }
                conn.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                conn.write_all(&buf[..n]).await?;
                conn.write_all(b"\r\n").await?;
            }
            conn.write_all(b"0\r\n\r\n").await?;
        }
    }
    conn.flush().await
}

/// PUTs `body` to `url` and returns the HTTP status and the answer. The body is sent after the
/// worker's `100 Continue` (or after [`CONTINUE_WAIT`] without one); a final answer before it
/// (a refused token, a label already used) sends no body at all. An https:// URL is reached
/// over TLS checked by `tls`.
pub async fn send(
    url: &str,
    tls: Option<&tokio_rustls::TlsConnector>,
    token: &str,
    headers: &[(String, String)],
    body: Body,
    load_timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    let (https, host, port, path) = crate::http::split_any_url(url)?;
    let length = match &body {
        Body::File(_, n) => Some(*n),
        Body::Stdin => None,
    };
    let head = request_head(&host, port, &path, token, headers, length);
    let exchange = async {
        let conn = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| {
                anyhow::Error::new(Unreachable(format!("connecting to the worker at {host}:{port}: {e} (from outside the cluster: kubectl port-forward svc/FULLNAME-worker 8040 and --url http://127.0.0.1:8040)")))
            })?;
        conn.set_nodelay(true).ok();
        if !https {
            return exchange_on(conn, &head, body).await;
        }
        let connector = tls.context("an https:// worker needs TLS settings")?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .with_context(|| format!("{host}: not a host name for TLS"))?;
        let conn = connector.connect(name, conn).await.with_context(|| {
            format!(
                "TLS handshake with the worker at {host}:{port} (is its CA given with --cacert?)"
            )
        })?;
        exchange_on(conn, &head, body).await
    };
    tokio::time::timeout(load_timeout + ANSWER_MARGIN, exchange)
        .await
        .with_context(|| {
            format!(
                "no answer from {url} within the load's timeout ({} s) plus {} s",
                load_timeout.as_secs(),
                ANSWER_MARGIN.as_secs()
            )
        })?
}

/// Reads to the end of the answer; a TLS peer that closes without `close_notify` after its
/// answer ends it too.
async fn read_answer<S: AsyncRead + Unpin>(conn: &mut S, raw: &mut Vec<u8>) -> std::io::Result<()> {
    match conn.read_to_end(raw).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(()),
        r => r.map(|_| ()),
    }
}

/// The request on an open connection: the head, the body after `100 Continue`, the answer.
async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    head: &str,
    body: Body,
) -> Result<(u16, Vec<u8>)> {
    conn.write_all(head.as_bytes())
        .await
        .context("sending the request")?;
    // TLS may hold written bytes back until flushed.
    conn.flush().await.context("sending the request")?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    // Wait for `100 Continue` or a final answer.
    let early = loop {
        if let Some(end) = end_of_head(&raw) {
            if status_of(&raw[..end]) == Some(100) {
                raw.drain(..end);
                break false;
            }
            break true;
        }
        match tokio::time::timeout(CONTINUE_WAIT, conn.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) => bail!("the worker closed the connection before answering"),
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e).context("reading the worker's answer"),
        }
    };
    if !early && let Err(e) = write_body(&mut conn, body).await {
        // The worker may answer (and close) before reading everything: read its answer.
        let mut rest = Vec::new();
        if read_answer(&mut conn, &mut rest).await.is_err() || rest.is_empty() && raw.is_empty() {
            return Err(e).context("sending the body");
        }
        raw.extend_from_slice(&rest);
    }
    read_answer(&mut conn, &mut raw)
        .await
        .context("reading the worker's answer")?;
    // A `100 Continue` that came after the wait.
    if let Some(end) = end_of_head(&raw)
        && status_of(&raw[..end]) == Some(100)
    {
        raw.drain(..end);
    }
    parse_response(&raw)
}

/// The bearer token: `--token`, `--token-file`, else the kubeconfig user's (`auth_info`
/// serialized as in the kubeconfig: `token`, `tokenFile`, else its exec plugin's token).
pub fn token_from(args: &LoadArgs, auth_info: Option<&Value>) -> Result<String, String> {
    let read = |path: &str, what: &str| {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("reading the token file {path} ({what}): {e}"))
    };
    let token = if let Some(t) = &args.token {
        t.trim().to_string()
    } else if let Some(f) = &args.token_file {
        read(f, "--token-file")?
    } else {
        let Some(info) = auth_info else {
            return Err("no credentials: give --token or --token-file".into());
        };
        if let Some(t) = info["token"].as_str() {
            t.trim().to_string()
        } else if let Some(f) = info["tokenFile"].as_str() {
            read(f, "the kubeconfig user's tokenFile")?
        } else if !info["exec"].is_null() {
            exec_token(&info["exec"])?
        } else {
            let how = if !info["auth-provider"].is_null() {
                "an auth-provider"
            } else if !info["client-certificate"].is_null()
                || !info["client-certificate-data"].is_null()
            {
                "a client certificate"
            } else {
                "no token"
            };
            return Err(format!(
                "the kubeconfig user authenticates with {how}, which the workers can't check: give a Kubernetes token with --token (for instance --token $(kubectl create token loader -n NS)) or --token-file"
            ));
        }
    };
    if token.is_empty() {
        return Err("the token is empty: give --token or --token-file".into());
    }
    Ok(token)
}

/// The token of the kubeconfig user's exec credential plugin (as kubectl runs it: the
/// ExecCredential it prints, `status.token`), run non-interactively.
pub fn exec_token(exec: &Value) -> Result<String, String> {
    let command = exec["command"]
        .as_str()
        .ok_or("the kubeconfig user's exec plugin names no command")?;
    let api_version = exec["apiVersion"]
        .as_str()
        .unwrap_or("client.authentication.k8s.io/v1");
    let mut cmd = std::process::Command::new(command);
    for a in exec["args"].as_array().into_iter().flatten() {
        cmd.arg(a.as_str().unwrap_or_default());
    }
    for e in exec["env"].as_array().into_iter().flatten() {
        if let (Some(n), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
            cmd.env(n, v);
        }
    }
    let info = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": false},
    });
    cmd.env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(std::process::Stdio::null());
    let out = cmd.output().map_err(|e| {
        format!("running the kubeconfig user's exec plugin {command}: {e}; give --token instead")
    })?;
    if !out.status.success() {
        return Err(format!(
            "the kubeconfig user's exec plugin {command} failed ({}): {}; give --token instead",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let credential: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!("the kubeconfig user's exec plugin {command} printed no ExecCredential: {e}")
    })?;
    credential["status"]["token"]
        .as_str()
        .map(|t| t.trim().to_string())
        .ok_or_else(|| {
            format!(
                "the kubeconfig user's exec plugin {command} gave no token (a client certificate?), which the workers can't check: give --token"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(settings: &[(&str, &str)], headers: &[&str]) -> LoadArgs {
        LoadArgs {
            table: "t".into(),
            settings: settings
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn every_stream_load_header_has_a_flag() {
        for header in STREAM_LOAD_HEADERS {
            assert!(
                flag_of(header).starts_with("--"),
                "the worker takes '{header}' but the plugin has no flag for it"
            );
        }
    }

    #[test]
    fn headers_come_from_flags_and_dash_h() {
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            &'a [(&'a str, &'a str)],
        );
        let cases: &[Case] = &[
            (&[], &[], &[("label", "l1")]),
            (
                &[("column_separator", ","), ("columns", "a,b,c=a+b")],
                &[],
                &[
                    ("label", "l1"),
                    ("column_separator", ","),
                    ("columns", "a,b,c=a+b"),
                ],
            ),
            (
                &[("format", "json"), ("strip_outer_array", "true")],
                &["JSON_ROOT: $.data"],
                &[
                    ("label", "l1"),
                    ("format", "json"),
                    ("strip_outer_array", "true"),
                    ("json_root", "$.data"),
                ],
            ),
            (
                &[
                    ("max_filter_ratio", "0.1"),
                    ("strict_mode", "true"),
                    ("timeout", "30"),
                ],
                &["enclose:\"", "partitions: p1,p2"],
                &[
                    ("label", "l1"),
                    ("max_filter_ratio", "0.1"),
                    ("strict_mode", "true"),
                    ("timeout", "30"),
                    ("enclose", "\""),
                    ("partitions", "p1,p2"),
                ],
            ),
        ];
        for (settings, headers, want) in cases {
            let got = request_headers(&args(settings, headers), "l1")
                .unwrap_or_else(|e| panic!("{settings:?} {headers:?}: {e}"));
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{settings:?} {headers:?}");
        }
    }

    #[test]
    fn bad_requests_say_what_to_fix() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[], &["colums: a"], "l1", "no Stream Load header 'colums'"),
            (&[], &["columns a"], "l1", "expected 'name: value'"),
            (&[], &["label: x"], "l1", "give the label with --label"),
            (&[], &["Authorization: Bearer x"], "l1", "set by the plugin"),
            (&[], &["Expect: 100-continue"], "l1", "set by the plugin"),
            (
                &[("columns", "a")],
                &["columns: b"],
                "l1",
                "given twice (by --columns and -H): give it once, with --columns",
            ),
            (
                &[],
                &["enclose: a", "enclose: b"],
                "l1",
                "header enclose given twice",
            ),
            (&[("format", "parquet")], &[], "l1", "takes csv or json"),
            (
                &[("max_filter_ratio", "2")],
                &[],
                "l1",
                "a number from 0 to 1",
            ),
            (
                &[("max_filter_ratio", "x")],
                &[],
                "l1",
                "a number from 0 to 1",
            ),
            (
                &[("jsonpaths", "[\"$.a\"]")],
                &[],
                "l1",
                "--jsonpaths applies only to JSON: add --format json",
            ),
            (
                &[("format", "json"), ("column_separator", ",")],
                &[],
                "l1",
                "--column-separator applies only to CSV",
            ),
            (&[], &[], "Wiki_1", "not a valid label"),
            (&[], &[], "", "not a valid label"),
        ];
        for (settings, headers, label, want) in cases {
            let err = request_headers(&args(settings, headers), label)
                .expect_err(&format!("{settings:?} {headers:?} {label}"));
            assert!(err.contains(want), "{settings:?} {headers:?}: {err}");
        }
    }

    #[test]
    fn generated_labels_are_valid_labels() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T01:02:03Z")
            .unwrap()
            .to_utc();
        let cases = [
            (0u64, "load-20261202-010203-00000000"),
            (0xdead_beef_1234_5678, "load-20261202-010203-12345678"),
        ];
        for (entropy, want) in cases {
            let l = generated_label(now, entropy);
            assert_eq!(l, want);
            assert!(valid_label(&l), "{l}");
        }
    }

    #[test]
    fn the_worker_is_a_live_lease_chosen_by_the_label() {
        let lease = |name: &str, url: Option<&str>, ago: Option<i64>| WorkerLease {
            name: name.into(),
            url: url.map(String::from),
            renewed_ago: ago,
            duration_secs: 20,
        };
        let live = [
            lease("w0", Some("http://a:8040"), Some(1)),
            lease("w1", Some("http://b:8040"), Some(20)),
        ];
        let dead = [
            lease("w2", Some("http://c:8040"), Some(21)),
            lease("w3", Some("http://d:8040"), None),
            lease("w4", None, Some(1)),
        ];
        let all: Vec<WorkerLease> = dead.iter().chain(live.iter()).cloned().collect();
        for label in ["l1", "l2", "l3", "wiki-1"] {
            let got = choose_workers(&all, label).unwrap()[0].clone();
            assert!(
                got == "http://a:8040" || got == "http://b:8040",
                "{label}: {got}"
            );
            // The same label, the same worker, whatever the Lease order.
            let mut reversed = all.clone();
            reversed.reverse();
            assert_eq!(choose_workers(&reversed, label).unwrap()[0], got, "{label}");
        }
        let picked: std::collections::HashSet<String> = (0..20)
            .map(|i| choose_workers(&all, &format!("label-{i}")).unwrap()[0].clone())
            .collect();
        assert_eq!(picked.len(), 2, "labels spread over the live workers");
        // Every live worker once (the chosen one first: above).
        for label in ["l1", "l2", "wiki-1"] {
            let mut order = choose_workers(&all, label).unwrap();
            order.sort();
            assert_eq!(order, ["http://a:8040", "http://b:8040"], "{label}");
        }
        let three = [
            lease("w0", Some("http://a:8040"), Some(1)),
            lease("w1", Some("http://b:8040"), Some(1)),
            lease("w2", Some("http://c:8040"), Some(1)),
        ];
        let rotations = [
            ["http://a:8040", "http://b:8040", "http://c:8040"],
            ["http://b:8040", "http://c:8040", "http://a:8040"],
            ["http://c:8040", "http://a:8040", "http://b:8040"],
        ];
        for i in 0..20 {
            let order = choose_workers(&three, &format!("label-{i}")).unwrap();
            assert!(
                rotations.iter().any(|r| order == *r),
                "label-{i}: {order:?} is a rotation of the workers by name"
            );
        }
        let err = choose_workers(&dead, "l1").unwrap_err();
        assert!(
            err.contains("no live worker") && err.contains("--url"),
            "{err}"
        );
        assert!(
            err.contains("1 of them without the routineload.io/url"),
            "{err}"
        );
    }

    #[test]
    fn load_urls() {
        let cases = [
            (
                "http://10.0.0.5:8040",
                Ok("http://10.0.0.5:8040/api/ns/t/_stream_load"),
            ),
            (
                "http://127.0.0.1:8040/",
                Ok("http://127.0.0.1:8040/api/ns/t/_stream_load"),
            ),
            ("https://w:8443", Ok("https://w:8443/api/ns/t/_stream_load")),
            (
                "w:8040",
                Err("expected http://HOST:PORT or https://HOST:PORT"),
            ),
            ("https://w:8443/x", Err("give the worker only")),
            (
                "http://w:8040/api/ns/t/_stream_load",
                Err("give the worker only"),
            ),
        ];
        for (base, want) in cases {
            match (load_url(base, "ns", "t"), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w),
                (Err(e), Err(w)) => assert!(e.contains(w), "{base}: {e}"),
                (got, want) => panic!("{base}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn exit_status_follows_the_answer() {
        let ok = json!({"Status": "Success", "Label": "l"});
        let exists = json!({"Status": "Label Already Exists", "Label": "l", "ExistingJobStatus": "FINISHED"});
        let loading =
            json!({"Status": "Label Already Exists", "Label": "l", "ExistingJobStatus": "LOADING"});
        let failed = json!({"Status": "Fail", "Label": "l", "Message": "too many filtered rows", "ErrorURL": "http://w/api/_load_error_log?file=x"});
        let refused = json!({"Status": "Fail", "Message": "no credentials"});
        // (HTTP status, answer, --ok-if-exists, exit status, in the note)
        let cases = [
            (200, &ok, false, 0, None),
            (
                200,
                &exists,
                false,
                3,
                Some("already used (state FINISHED)"),
            ),
            (200, &exists, true, 0, None),
            (200, &loading, true, 3, Some("once it ended")),
            (
                200,
                &failed,
                false,
                1,
                Some("curl http://w/api/_load_error_log?file=x"),
            ),
            (200, &failed, true, 1, Some("too many filtered rows")),
            (401, &refused, false, 1, Some("HTTP 401): no credentials")),
        ];
        for (code, answer, ok_if_exists, want, note) in cases {
            let (got, message) = verdict(code, answer, ok_if_exists);
            assert_eq!(got, want, "{answer} {ok_if_exists}");
            match note {
                None => assert_eq!(message, None),
                Some(n) => assert!(
                    message.as_deref().unwrap_or_default().contains(n),
                    "{message:?}"
                ),
            }
        }
    }

    #[test]
    fn the_request_head_streams_with_expect_continue() {
        let h = |len| {
            request_head(
                "w",
                8040,
                "/api/ns/t/_stream_load",
                "TOKEN",
                &[("label".into(), "l1".into())],
                len,
            )
        };
        let file = h(Some(10));
        for want in [
            "PUT /api/ns/t/_stream_load HTTP/1.1\r\n",
            "Authorization: Bearer TOKEN\r\n",
            "Expect: 100-continue\r\n",
            "Content-Length: 10\r\n",
            "label: l1\r\n",
        ] {
            assert!(file.contains(want), "{want:?} in {file}");
        }
        assert!(file.ends_with("\r\n\r\n"));
        assert!(h(None).contains("Transfer-Encoding: chunked\r\n"));
    }

    /// A worker stand-in on a local port: reads the request head, answers with the final answer
    /// at once (a refused token, a label already used), or with `continue_first` `100 Continue`
    /// then the final answer once the body is read, and returns the body bytes it received
    /// after the head.
    async fn serve_once(continue_first: bool) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            while end_of_head(&raw).is_none() {
                let n = conn.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
            }
            let end = end_of_head(&raw).unwrap();
            let mut body = raw.split_off(end);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
            if continue_first {
                conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .unwrap();
                while body.len() < 5 {
                    let n = conn.read(&mut buf).await.unwrap();
                    body.extend_from_slice(&buf[..n]);
                }
                conn.write_all(answer).await.unwrap();
            } else {
                conn.write_all(answer).await.unwrap();
                conn.shutdown().await.ok();
                // Whatever the client still sends before it sees the answer.
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut rest)).await;
                body.extend_from_slice(&rest);
            }
            body
        });
        (format!("http://{addr}/api/ns/t/_stream_load"), handle)
    }

    #[tokio::test]
    async fn the_body_is_sent_after_100_continue_and_not_after_a_final_answer() {
        let file = std::env::temp_dir().join(format!("rl-body-{}", std::process::id()));
        std::fs::write(&file, b"a,b\nc").unwrap();
        let body = || async { Body::File(tokio::fs::File::open(&file).await.unwrap(), 5) };
        let headers = [("label".to_string(), "l1".to_string())];
        // (worker answers 100 Continue first, body the worker receives)
        for (continue_first, want) in [(true, &b"a,b\nc"[..]), (false, &b""[..])] {
            let (url, server) = serve_once(continue_first).await;
            let (code, answer) = send(
                &url,
                None,
                "T",
                &headers,
                body().await,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            assert_eq!(
                (code, answer.as_slice()),
                (200, &b"{}"[..]),
                "{continue_first}"
            );
            assert_eq!(
                server.await.unwrap(),
                want,
                "continue first: {continue_first}"
            );
        }
    }

    #[test]
    fn tokens_come_from_flags_then_the_kubeconfig() {
        let dir = std::env::temp_dir().join(format!("rl-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let file = file.display().to_string();
        let with = |token: Option<&str>, token_file: Option<&str>| LoadArgs {
            token: token.map(String::from),
            token_file: token_file.map(String::from),
            ..Default::default()
        };
        let kube_token = json!({"token": "from-kubeconfig"});
        let kube_file = json!({"tokenFile": file});
        let exec = json!({"exec": {
            "command": "sh",
            "args": ["-c", "printf '{\"status\": {\"token\": \"%s\"}}' \"$T\""],
            "env": [{"name": "T", "value": "from-exec"}],
        }});
        let exec_fails =
            json!({"exec": {"command": "sh", "args": ["-c", "echo expired >&2; exit 1"]}});
        let exec_cert = json!({"exec": {"command": "sh", "args": ["-c", "echo '{\"status\": {\"clientCertificateData\": \"x\"}}'"]}});
        let cert = json!({"client-certificate-data": "..."});
        // (flags, kubeconfig user, token or error)
        let cases: Vec<(LoadArgs, Option<&Value>, Result<&str, &str>)> = vec![
            (with(Some("flag"), None), Some(&kube_token), Ok("flag")),
            (with(None, Some(&file)), Some(&kube_token), Ok("from-file")),
            (with(None, None), Some(&kube_token), Ok("from-kubeconfig")),
            (with(None, None), Some(&kube_file), Ok("from-file")),
            (with(None, None), Some(&exec), Ok("from-exec")),
            (
                with(None, None),
                Some(&exec_fails),
                Err("exec plugin sh failed (exit status: 1): expired"),
            ),
            (with(None, None), Some(&exec_cert), Err("gave no token")),
            (with(None, None), Some(&cert), Err("a client certificate")),
            (with(None, None), None, Err("give --token")),
            (
                with(None, Some("/nonexistent/t")),
                None,
                Err("reading the token file"),
            ),
            (with(Some(" "), None), None, Err("the token is empty")),
        ];
        for (a, info, want) in cases {
            match (token_from(&a, info), want) {
                (Ok(t), Ok(w)) => assert_eq!(t, w),
                (Err(e), Err(w)) => assert!(e.contains(w), "{e}"),
                (got, want) => panic!("{a:?}: {got:?}, want {want:?}"),
            }
        }
    }
}
