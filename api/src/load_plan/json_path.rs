//! The JSON path subset StarRocks' `jsonpaths` and `json_root` use: `$`, `.key`, `['key']`, `[n]`.

use std::fmt;

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A parsed JSON path such as `$.user.name` or `$.items[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses a path; the message says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let mut rest = t
            .strip_prefix('$')
            .ok_or_else(|| format!("JSON path '{text}' must start with '$'"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let key = &after[..end];
                if key.is_empty() {
                    return Err(format!("JSON path '{text}' has an empty member name"));
                }
                steps.push(Step::Key(key.to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("JSON path '{text}' has an unclosed '['"))?;
                let inner = after[..end].trim();
                let quoted = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                match quoted {
                    Some(key) => steps.push(Step::Key(key.to_string())),
                    None => steps.push(Step::Index(inner.parse().map_err(|_| {
                        format!(
                            "JSON path '{text}': '[{inner}]' is neither an index nor a quoted name"
                        )
                    })?)),
                }
                rest = &after[end + 1..];
            } else {
                return Err(format!(
                    "JSON path '{text}': expected '.' or '[' at '{rest}'"
                ));
            }
        }
        Ok(Self {
            text: t.to_string(),
            steps,
        })
    }

    /// A path reading the top-level member `name`.
    pub fn member(name: &str) -> Self {
        Self {
            text: format!("$.{name}"),
            steps: vec![Step::Key(name.to_string())],
        }
    }

    /// The steps from the root.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Follows the path in a JSON value.
    pub fn find<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.steps.iter().try_fold(value, |v, step| match step {
            Step::Key(k) => v.as_object()?.get(k),
            Step::Index(i) => v.as_array()?.get(*i),
        })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_members_and_elements() {
        let v = json!({"a": {"b": [10, {"c": "x"}]}, "d e": 1});
        assert_eq!(
            JsonPath::parse("$.a.b[0]").unwrap().find(&v),
            Some(&json!(10))
        );
        assert_eq!(
            JsonPath::parse("$.a.b[1].c").unwrap().find(&v),
            Some(&json!("x"))
        );
        assert_eq!(
            JsonPath::parse("$['d e']").unwrap().find(&v),
            Some(&json!(1))
        );
        assert_eq!(JsonPath::parse("$").unwrap().find(&v), Some(&v));
        assert_eq!(JsonPath::parse("$.missing").unwrap().find(&v), None);
    }

    #[test]
    fn refuses_malformed_paths() {
        assert!(
            JsonPath::parse("a.b")
                .unwrap_err()
                .contains("must start with '$'")
        );
        assert!(JsonPath::parse("$.a[").unwrap_err().contains("unclosed"));
        assert!(
            JsonPath::parse("$.a[x]")
                .unwrap_err()
                .contains("neither an index")
        );
        assert!(
            JsonPath::parse("$..a")
                .unwrap_err()
                .contains("empty member")
        );
    }
}
