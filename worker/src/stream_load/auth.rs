//! Who may load: the request's bearer token checked with a TokenReview, then a
//! SubjectAccessReview for `create` on `loads` (group routineload.io) in the load's namespace.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

/// Why a request may not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or the API server does not accept them (HTTP 401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not create loads in the namespace (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The reviews themselves failed (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

/// The bearer token of a request: `Authorization: Bearer TOKEN`, or Basic credentials whose
/// password is the token (so `curl -u user:TOKEN`, as in StarRocks' examples, works).
pub fn bearer_token(headers: &HeaderMap) -> Result<String, AuthError> {
    let missing = || {
        AuthError::Unauthenticated(
            "no credentials: send a Kubernetes token as 'Authorization: Bearer TOKEN' (or curl -u user:TOKEN)".into(),
        )
    };
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(missing)?;
    let token = match scheme.to_ascii_lowercase().as_str() {
        "bearer" => rest.trim().to_string(),
        "basic" => {
            let decoded = base64_decode(rest.trim()).ok_or_else(missing)?;
            let text = String::from_utf8(decoded).map_err(|_| missing())?;
            text.split_once(':')
                .map(|(_, p)| p.to_string())
                .ok_or_else(missing)?
        }
        _ => return Err(missing()),
    };
    if token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Checks that the token's holder may create loads in `namespace`; returns the user name.
pub async fn authorize(
    client: &Client,
    token: String,
    namespace: &str,
) -> Result<String, AuthError> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token,
            audiences: None,
        },
        ..Default::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| AuthError::Unavailable(format!("reviewing the token (TokenReview): {e}")))?;
    let status = reviewed.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(AuthError::Unauthenticated(format!(
            "the token was not accepted by the API server{}",
            status.error.map(|e| format!(": {e}")).unwrap_or_default()
        )));
    }
    let user = status.user.unwrap_or_default();
    let name = user.username.clone().unwrap_or_default();
    let access = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username,
            groups: user.groups,
            uid: user.uid,
            extra: user.extra,
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                verb: Some("create".into()),
                group: Some(routine_load_api::names::GROUP.into()),
                resource: Some("loads".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let decided = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &access)
        .await
        .map_err(|e| {
            AuthError::Unavailable(format!("checking permissions (SubjectAccessReview): {e}"))
        })?;
    if decided.status.is_some_and(|s| s.allowed) {
        Ok(name)
    } else {
        Err(AuthError::Forbidden(format!(
            "{name} may not load into namespace {namespace}: it needs 'create' on 'loads' (group routineload.io) there"
        )))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn tokens_come_from_bearer_or_basic_credentials() {
        let cases = [
            (Some("Bearer abc.def"), Ok("abc.def")),
            (Some("bearer abc"), Ok("abc")),
            // root:tok
            (Some("Basic cm9vdDp0b2s="), Ok("tok")),
            (None, Err(())),
            (Some("Bearer "), Err(())),
            (Some("Digest x"), Err(())),
            (Some("Basic cm9vdDo="), Err(())),
        ];
        for (header, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(v) = header {
                h.insert(AUTHORIZATION, HeaderValue::from_static(v));
            }
            let got = bearer_token(&h);
            match want {
                Ok(t) => assert_eq!(got.as_deref(), Ok(t), "{header:?}"),
                Err(()) => assert!(
                    matches!(got, Err(AuthError::Unauthenticated(_))),
                    "{header:?}: {got:?}"
                ),
            }
        }
    }
}
