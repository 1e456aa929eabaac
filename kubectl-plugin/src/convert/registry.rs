//! StarRocks' `confluent.schema.registry.url` as the job's `schemaRegistry`: StarRocks takes
//! credentials inside the URL (`https://user:password@host:8081`); the job keeps the URL
//! without them and reads them from a Secret (keys `username` and `password`).

/// A registry URL split into the URL the job names and the credentials it held.
#[derive(Debug, PartialEq)]
pub struct RegistryUrl {
    pub url: String,
    pub credentials: Option<(String, String)>,
}

/// Splits `url` (`http(s)://[user[:password]@]host[:port][/path]`).
pub fn split(url: &str) -> Result<RegistryUrl, String> {
    let url = url.trim();
    let bad = |why: &str| format!("\"confluent.schema.registry.url\" = \"{url}\": {why}");
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| matches!(s.to_ascii_lowercase().as_str(), "http" | "https"))
        .ok_or_else(|| bad("expected http://host:port or https://host:port"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
            (Some((user.to_string(), password.to_string())), host)
        }
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(RegistryUrl {
        // The job's URL rule takes the scheme in lower case only.
        url: format!("{}://{host}{path}", scheme.to_ascii_lowercase()),
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL and the URL and credentials it splits into, or a piece of the error.
    type Case = (
        &'static str,
        Result<(&'static str, Option<(&'static str, &'static str)>), &'static str>,
    );

    #[test]
    fn registry_urls() {
        let cases: &[Case] = &[
            (
                "http://172.26.1.2:8081",
                Ok(("http://172.26.1.2:8081", None)),
            ),
            (
                " https://registry.example.com/apis/ccompat/v7 ",
                Ok(("https://registry.example.com/apis/ccompat/v7", None)),
            ),
            (
                "https://loader:s3cr:et@registry:8081",
                Ok(("https://registry:8081", Some(("loader", "s3cr:et")))),
            ),
            (
                "http://key@registry:8081/",
                Ok(("http://registry:8081/", Some(("key", "")))),
            ),
            // The job's URL rule takes the scheme in lower case.
            ("HTTPS://registry:8081", Ok(("https://registry:8081", None))),
            ("registry:8081", Err("expected http://host:port")),
            ("ftp://registry", Err("expected http://host:port")),
            ("http://user:pw@/x", Err("no host")),
        ];
        for (url, want) in cases {
            let got = split(url);
            match want {
                Ok((u, c)) => assert_eq!(
                    got,
                    Ok(RegistryUrl {
                        url: u.to_string(),
                        credentials: c.map(|(a, b)| (a.to_string(), b.to_string())),
                    }),
                    "{url}"
                ),
                Err(w) => {
                    let e = got.expect_err(url);
                    assert!(e.contains(w), "{url}: {e}");
                }
            }
        }
    }
}
