//! S3 (MinIO) helpers: storage options and the `object_store` that delta-rs (and so the worker)
//! builds for an `s3://` URL.

use std::collections::HashMap;
use std::process::Command;

use anyhow::{Context, Result, bail};
use deltalake::ObjectStore;
use std::sync::Arc;
use url::Url;

use crate::Testbed;

impl Testbed {
    /// The storage options a Table's credentials Secret would carry for the testbed's S3:
    /// endpoint, keys, region and plain HTTP.
    pub fn s3_storage_options(&self) -> Result<HashMap<String, String>> {
        let mut o = HashMap::new();
        o.insert(
            "AWS_ENDPOINT_URL".into(),
            self.var("S3_ENDPOINT")?.to_string(),
        );
        o.insert(
            "AWS_ACCESS_KEY_ID".into(),
            self.var("AWS_ACCESS_KEY_ID")?.to_string(),
        );
        o.insert(
            "AWS_SECRET_ACCESS_KEY".into(),
            self.var("AWS_SECRET_ACCESS_KEY")?.to_string(),
        );
        o.insert("AWS_REGION".into(), self.var("AWS_REGION")?.to_string());
        o.insert("AWS_ALLOW_HTTP".into(), "true".into());
        Ok(o)
    }

    /// The testbed bucket (`S3_BUCKET`).
    pub fn s3_bucket(&self) -> Result<&str> {
        self.var("S3_BUCKET")
    }

    /// `s3://<bucket>/<prefix>` for a table or a test's objects.
    pub fn s3_url(&self, prefix: &str) -> Result<Url> {
        let u = format!(
            "s3://{}/{}",
            self.s3_bucket()?,
            prefix.trim_start_matches('/')
        );
        Url::parse(&u).with_context(|| format!("bad S3 URL {u}"))
    }

    /// The object store delta-rs builds for `url` with the testbed's storage options (the
    /// `deltalake` S3 factory registered by its `s3` feature; object_store 0.13).
    pub fn s3_object_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        crate::install_crypto_provider();
        deltalake::logstore::store_for(url, self.s3_storage_options()?)
            .with_context(|| format!("object store for {url}"))
    }

    /// A raw S3 PUT with SigV4 (curl `--aws-sigv4`), independent of object_store; returns the
    /// HTTP status. Used to show that the server answers 412 to `If-None-Match: *`.
    pub fn s3_raw_put(&self, key: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<u16> {
        let url = format!(
            "{}/{}/{}",
            self.var("S3_ENDPOINT")?,
            self.s3_bucket()?,
            key.trim_start_matches('/')
        );
        let dir = std::env::temp_dir().join(crate::unique_name("s3put"));
        std::fs::write(&dir, body)?;
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            "-X",
            "PUT",
        ])
        .arg("--aws-sigv4")
        .arg(format!("aws:amz:{}:s3", self.var("AWS_REGION")?))
        .arg("-u")
        .arg(format!(
            "{}:{}",
            self.var("AWS_ACCESS_KEY_ID")?,
            self.var("AWS_SECRET_ACCESS_KEY")?
        ))
        // curl 7.88 signs this header when given; MinIO wants the payload hash declared
        .args([
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "-H",
            "Content-Type: application/octet-stream",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", dir.display()));
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.arg(&url);
        let out = cmd.output().context("running curl")?;
        let _ = std::fs::remove_file(&dir);
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match code.parse::<u16>() {
            Ok(c) if c != 0 => Ok(c),
            _ => bail!(
                "curl PUT {url} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
