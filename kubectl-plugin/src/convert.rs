//! `kubectl routineload convert`: a StarRocks `CREATE ROUTINE LOAD` statement to the equivalent
//! `RoutineLoadJob` YAML.
//!
//! The statement is tokenized (quotes `'...'`, `"..."`, backticks, `--`, `#` and `/* */`
//! comments, case-insensitive keywords) and parsed along the grammar of the reference:
//!
//! ```text
//! CREATE ROUTINE LOAD [db.]job ON table
//!     [COLUMNS TERMINATED BY "sep",] [ROWS TERMINATED BY "sep",]
//!     [COLUMNS (col, ..., name = expr),] [WHERE expr,] [[TEMPORARY] PARTITION (p, ...)]
//!     [PROPERTIES ("key" = "value", ...)]
//!     FROM KAFKA ("key" = "value", ...)
//! ```
//!
//! Every property the API has is mapped; secrets among the Kafka client properties go to a
//! Secret stub referenced by `kafka.credentialsSecret`, never into the job spec.
//!
//! `CREATE TABLE` statements convert to `Table` objects in [`create_table`], with this
//! tokenizer and parser.

use std::collections::BTreeMap;

use routine_load_api::job::{ENFORCED_CONSUMER_PROPERTIES, SchemaRegistry, secret_property};
use serde_yaml::{Mapping, Value};

/// Options of a conversion.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Namespace when the statement names no database.
    pub namespace: Option<String>,
    /// Copy secret values from the statement into the Secret stub (default: placeholders).
    pub include_secrets: bool,
}

/// The result of a conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The statement's database, as a namespace name.
    pub namespace: Option<String>,
    /// The job's Kubernetes name.
    pub name: String,
    /// The `Table` the job loads (Kubernetes name).
    pub table: String,
    /// The `RoutineLoadJob` object.
    pub job: Value,
    /// A Secret stub for the Kafka credentials, when the statement carries any.
    pub secret: Option<Value>,
    /// A Secret stub for the schema registry's credentials, when its URL carries them.
    pub registry_secret: Option<Value>,
    /// How names were mapped (renamed objects).
    pub notes: Vec<String>,
    /// Things the user must act on or know (ignored properties, secrets to fill in).
    pub warnings: Vec<String>,
}

/// Placeholder written into the Secret stub instead of a secret value.
pub const SECRET_PLACEHOLDER: &str = "REPLACE_ME";

impl Converted {
    /// The YAML documents: the Secret stub (if any), then the job.
    pub fn to_yaml(&self, statement_head: &str) -> Result<String, serde_yaml::Error> {
        let mut out = format!("# Converted by kubectl-routineload from: {statement_head}\n");
        out.push_str(&format!(
            "# Needs the Table '{}' in the same namespace.\n",
            self.table
        ));
        for secret in [&self.secret, &self.registry_secret].into_iter().flatten() {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(secret)?);
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&self.job)?);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word: keyword or identifier.
    Word(String),
    /// A backtick-quoted identifier.
    Quoted(String),
    /// A string literal: `raw` keeps backslash escapes other than the quote's (separators such
    /// as `\t` and `\x01` pass through to the API, which unescapes them); `value` is unescaped.
    Str {
        raw: String,
        value: String,
    },
    Number(String),
    Punct(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

impl Token {
    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(&self.tok, Tok::Punct(x) if x == p)
    }
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Quoted(q) => format!("`{q}`"),
            Tok::Str { raw, .. } => format!("string \"{raw}\""),
            Tok::Number(n) => format!("number {n}"),
            Tok::Punct(p) => format!("'{p}'"),
        }
    }
}

fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src[..pos.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn mysql_unescape(c: char) -> Option<char> {
    Some(match c {
        '0' => '\0',
        'b' => '\u{8}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'Z' => '\u{1a}',
        _ => return None,
    })
}

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let pos = |i: usize| chars.get(i).map_or(src.len(), |&(p, _)| p);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        let start = pos(i);
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && at(i + 1) == Some('-') || c == '#' {
            while i < chars.len() && chars[i].1 != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            let mut j = i + 2;
            loop {
                match at(j) {
                    None => {
                        let (l, col) = line_col(src, start);
                        return Err(format!("unterminated /* comment at line {l}, column {col}"));
                    }
                    Some('*') if at(j + 1) == Some('/') => break,
                    _ => j += 1,
                }
            }
            i = j + 2;
        } else if c == '\'' || c == '"' {
            let q = c;
            let (mut raw, mut value) = (String::new(), String::new());
            let mut j = i + 1;
            loop {
                match at(j) {
                    None => {
                        let (l, col) = line_col(src, start);
                        return Err(format!(
                            "unterminated string starting with {q} at line {l}, column {col}"
                        ));
                    }
                    Some('\\') if at(j + 1).is_some() => {
                        let n = at(j + 1).unwrap_or('\\');
                        if n == q {
                            raw.push(q);
                        } else {
                            raw.push('\\');
                            raw.push(n);
                        }
                        value.push(mysql_unescape(n).unwrap_or(n));
                        j += 2;
                    }
                    Some(x) if x == q && at(j + 1) == Some(q) => {
                        raw.push(q);
                        value.push(q);
                        j += 2;
                    }
                    Some(x) if x == q => break,
                    Some(x) => {
                        raw.push(x);
                        value.push(x);
                        j += 1;
                    }
                }
            }
            i = j + 1;
            out.push(Token {
                tok: Tok::Str { raw, value },
                start,
                end: pos(i),
            });
        } else if c == '`' {
            let mut name = String::new();
            let mut j = i + 1;
            loop {
                match at(j) {
                    None => {
                        let (l, col) = line_col(src, start);
                        return Err(format!(
                            "unterminated `identifier at line {l}, column {col}"
                        ));
                    }
                    Some('`') if at(j + 1) == Some('`') => {
                        name.push('`');
                        j += 2;
                    }
                    Some('`') => break,
                    Some(x) => {
                        name.push(x);
                        j += 1;
                    }
                }
            }
            i = j + 1;
            out.push(Token {
                tok: Tok::Quoted(name),
                start,
                end: pos(i),
            });
        } else if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while at(j).is_some_and(|x| x.is_alphanumeric() || x == '_' || x == '$') {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Word(src[start..pos(j)].to_string()),
                start,
                end: pos(j),
            });
            i = j;
        } else if c.is_ascii_digit() {
            let mut j = i;
            while at(j).is_some_and(|x| x.is_ascii_alphanumeric() || x == '.') {
                j += 1;
            }
            out.push(Token {
                tok: Tok::Number(src[start..pos(j)].to_string()),
                start,
                end: pos(j),
            });
            i = j;
        } else {
            let two: String = [Some(c), at(i + 1)].into_iter().flatten().collect();
            let len = if ["<=", ">=", "!=", "<>", "==", "||", "&&", "<=>"]
                .iter()
                .any(|op| two == *op)
            {
                2
            } else {
                1
            };
            let p: String = chars[i..i + len].iter().map(|&(_, c)| c).collect();
            i += len;
            out.push(Token {
                tok: Tok::Punct(p),
                start,
                end: pos(i),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The statement

/// A parsed `CREATE ROUTINE LOAD` statement, before mapping to the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    pub database: Option<String>,
    pub job: String,
    pub table: String,
    pub column_separator: Option<String>,
    pub row_delimiter: Option<String>,
    pub columns: Vec<String>,
    pub where_expr: Option<String>,
    pub partitions: Vec<String>,
    pub temporary_partitions: Vec<String>,
    /// INCLUDE METADATA (KEY AS k, ...): (metadata key upper-cased, column name), in order.
    pub include_metadata: Vec<(String, String)>,
    /// PROPERTIES, keys lower-cased, in order.
    pub properties: Vec<(String, String)>,
    /// FROM KAFKA (...), keys lower-cased except after `property.`, in order.
    pub kafka: Vec<(String, String)>,
}

/// What nests inside the entries of a parenthesized list (their commas don't split the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// '(' ... ')' only.
    Parens,
    /// Also '[' (closed by ']' or by ')', as in StarRocks' range values `[("a"), ("b"))`), and
    /// '<' ... '>' after ARRAY, MAP or STRUCT (`MAP<INT, STRING>`).
    Brackets,
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }
    fn peek_at(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.i + n)
    }
    fn where_(&self) -> String {
        match self.peek() {
            Some(t) => {
                let (l, c) = line_col(self.src, t.start);
                format!("at line {l}, column {c} ({})", t.describe())
            }
            None => "at the end of the statement".to_string(),
        }
    }
    fn err<T>(&self, expected: &str) -> Result<T, String> {
        Err(format!("expected {expected} {}", self.where_()))
    }
    fn kw(&mut self, kw: &str) -> Result<(), String> {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.i += 1;
            Ok(())
        } else {
            self.err(kw)
        }
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.peek().is_some_and(|t| t.is_kw(kw));
        if yes {
            self.i += 1;
        }
        yes
    }
    fn punct(&mut self, p: &str) -> Result<(), String> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.err(&format!("'{p}'"))
        }
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        let yes = self.peek().is_some_and(|t| t.is_punct(p));
        if yes {
            self.i += 1;
        }
        yes
    }
    fn ident(&mut self, what: &str) -> Result<String, String> {
        match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => {
                self.i += 1;
                Ok(w)
            }
            _ => self.err(what),
        }
    }
    /// `[db.]name`: the database, when given, and the name (`what` names the name).
    fn qualified_name(&mut self, what: &str) -> Result<(Option<String>, String), String> {
        let first = self.ident(what)?;
        if self.eat_punct(".") {
            let name = self.ident(&format!("{what} after the database name"))?;
            Ok((Some(first), name))
        } else {
            Ok((None, first))
        }
    }
    /// An optional ';' ending the statement, and nothing after it.
    fn end(&mut self) -> Result<(), String> {
        self.eat_punct(";");
        match self.peek() {
            Some(_) => self.err("the end of the statement"),
            None => Ok(()),
        }
    }
    fn string(&mut self, what: &str) -> Result<String, String> {
        match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::Str { raw, .. }) => {
                self.i += 1;
                Ok(raw)
            }
            _ => self.err(what),
        }
    }

    /// Tokens up to the matching ')' of an opened '(' (consumed), split at top-level commas.
    fn paren_list(&mut self, what: &str) -> Result<Vec<(usize, usize)>, String> {
        self.paren_list_with(what, false, Nesting::Parens)
    }

    /// `paren_list`, optionally tolerating a comma before the closing ')' (StarRocks'
    /// documentation writes `"escape"="\\",\n)` in a PROPERTIES list), with entries nesting as
    /// `nesting` says.
    fn paren_list_with(
        &mut self,
        what: &str,
        trailing_comma: bool,
        nesting: Nesting,
    ) -> Result<Vec<(usize, usize)>, String> {
        self.punct("(")?;
        let brackets = nesting == Nesting::Brackets;
        let mut items = Vec::new();
        let (mut depth, mut angle) = (0usize, 0usize);
        let mut start = self.i;
        loop {
            let Some(t) = self.peek() else {
                return self.err(&format!("')' closing {what}"));
            };
            let after_type = brackets
                && self.i > 0
                && matches!(&self.toks[self.i - 1].tok, Tok::Word(w)
                    if ["ARRAY", "MAP", "STRUCT"].iter().any(|k| w.eq_ignore_ascii_case(k)));
            if t.is_punct("(") || (brackets && t.is_punct("[")) {
                depth += 1;
            } else if t.is_punct("<") && (angle > 0 || after_type) {
                angle += 1;
            } else if t.is_punct(">") && angle > 0 {
                angle -= 1;
            } else if (t.is_punct(")") || (brackets && t.is_punct("]"))) && depth > 0 {
                depth -= 1;
            } else if t.is_punct(")") {
                if self.i > start {
                    items.push((start, self.i));
                } else if !items.is_empty() && !trailing_comma {
                    return self.err(&format!("an entry of {what} after ','"));
                }
                self.i += 1;
                return Ok(items);
            } else if t.is_punct(",") && depth == 0 && angle == 0 {
                if self.i == start {
                    return self.err(&format!("an entry of {what}"));
                }
                items.push((start, self.i));
                start = self.i + 1;
            }
            self.i += 1;
        }
    }

    /// `("key" = "value", ...)`.
    fn key_values(&mut self, what: &str) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (a, b) in self.paren_list_with(what, true, Nesting::Parens)? {
            let toks = &self.toks[a..b];
            let text = |t: &Token| match &t.tok {
                Tok::Str { value, .. } => Some(value.clone()),
                Tok::Word(w) | Tok::Quoted(w) | Tok::Number(w) => Some(w.clone()),
                Tok::Punct(_) => None,
            };
            let (key, value) = match toks {
                [k, eq, v] if eq.is_punct("=") => match (text(k), text(v)) {
                    (Some(k), Some(v)) => (k, v),
                    _ => return Err(self.bad_entry(what, a, b)),
                },
                _ => return Err(self.bad_entry(what, a, b)),
            };
            let key = normalize_key(key.trim());
            if out.iter().any(|(k, _)| *k == key) {
                return Err(format!("{what}: property \"{key}\" is given twice"));
            }
            out.push((key, value));
        }
        Ok(out)
    }

    fn bad_entry(&self, what: &str, a: usize, b: usize) -> String {
        let (l, c) = line_col(self.src, self.toks[a].start);
        format!(
            "{what}: expected \"key\" = \"value\" at line {l}, column {c}, found: {}",
            &self.src[self.toks[a].start..self.toks[b - 1].end]
        )
    }

    /// Renders tokens `a..b` as SQL for the expression engine: double-quoted strings (MySQL
    /// string literals) become single-quoted ones, comments become spaces.
    fn render(&self, a: usize, b: usize) -> String {
        let mut out = String::new();
        for k in a..b {
            let t = &self.toks[k];
            if k > a && t.start > self.toks[k - 1].end {
                out.push(' ');
            }
            match &t.tok {
                Tok::Str { value, .. } => {
                    out.push('\'');
                    out.push_str(&value.replace('\'', "''"));
                    out.push('\'');
                }
                _ => out.push_str(&self.src[t.start..t.end]),
            }
        }
        out
    }
}

fn normalize_key(key: &str) -> String {
    match key.split_once('.') {
        Some((p, rest)) if p.eq_ignore_ascii_case("property") => format!("property.{rest}"),
        _ => key.to_ascii_lowercase(),
    }
}

/// Parses a `CREATE ROUTINE LOAD` statement.
pub fn parse(src: &str) -> Result<Statement, String> {
    let toks = tokenize(src)?;
    let mut p = Parser { src, toks, i: 0 };
    let mut st = Statement::default();
    p.kw("CREATE")?;
    p.kw("ROUTINE")?;
    p.kw("LOAD")?;
    (st.database, st.job) = p.qualified_name("the job name")?;
    p.kw("ON")?;
    st.table = p.ident("the table name after ON")?;
    // Load properties, comma separated, in any order.
    loop {
        while p.eat_punct(",") {}
        let Some(t) = p.peek() else {
            return p.err("FROM KAFKA");
        };
        if t.is_kw("PROPERTIES") || t.is_kw("FROM") {
            break;
        }
        if t.is_kw("COLUMNS") && p.peek_at(1).is_some_and(|t| t.is_kw("TERMINATED")) {
            p.i += 2;
            p.kw("BY")?;
            set_once(
                &mut st.column_separator,
                p.string("a quoted column separator")?,
                "COLUMNS TERMINATED BY",
            )?;
        } else if t.is_kw("ROWS") {
            p.i += 1;
            p.kw("TERMINATED")?;
            p.kw("BY")?;
            set_once(
                &mut st.row_delimiter,
                p.string("a quoted row delimiter")?,
                "ROWS TERMINATED BY",
            )?;
        } else if t.is_kw("COLUMNS") {
            p.i += 1;
            if !st.columns.is_empty() {
                return Err("COLUMNS (...) is given twice".into());
            }
            for (a, b) in p.paren_list("COLUMNS")? {
                st.columns.push(columns_entry(&p, a, b));
            }
        } else if t.is_kw("INCLUDE") {
            p.i += 1;
            p.kw("METADATA")?;
            if !st.include_metadata.is_empty() {
                return Err("INCLUDE METADATA (...) is given twice".into());
            }
            for (a, b) in p.paren_list("INCLUDE METADATA")? {
                match &p.toks[a..b] {
                    // Without AS the column is named like the key.
                    [k] if matches!(k.tok, Tok::Word(_)) => {
                        if let Tok::Word(w) = &k.tok {
                            st.include_metadata
                                .push((w.to_ascii_uppercase(), w.clone()));
                        }
                    }
                    [k, as_, n] if as_.is_kw("AS") => {
                        let word = |t: &Token| match &t.tok {
                            Tok::Word(w) | Tok::Quoted(w) => Some(w.clone()),
                            _ => None,
                        };
                        match (word(k), word(n)) {
                            (Some(k), Some(n)) => {
                                st.include_metadata.push((k.to_ascii_uppercase(), n))
                            }
                            _ => {
                                return Err(format!(
                                    "INCLUDE METADATA: expected <KEY> AS <name>, found: {}",
                                    p.render(a, b)
                                ));
                            }
                        }
                    }
                    _ => {
                        return Err(format!(
                            "INCLUDE METADATA: expected <KEY> AS <name>, found: {}",
                            p.render(a, b)
                        ));
                    }
                }
            }
        } else if t.is_kw("WHERE") {
            p.i += 1;
            let a = p.i;
            let mut depth = 0usize;
            while let Some(t) = p.peek() {
                if depth == 0
                    && (t.is_punct(",")
                        || t.is_punct(";")
                        || t.is_kw("PROPERTIES")
                        || (t.is_kw("FROM") && p.peek_at(1).is_some_and(|n| n.is_kw("KAFKA"))))
                {
                    break;
                }
                if t.is_punct("(") {
                    depth += 1;
                } else if t.is_punct(")") {
                    depth = depth.saturating_sub(1);
                }
                p.i += 1;
            }
            if p.i == a {
                return p.err("a condition after WHERE");
            }
            set_once(&mut st.where_expr, p.render(a, p.i), "WHERE")?;
        } else if t.is_kw("TEMPORARY") || t.is_kw("PARTITION") {
            let temporary = p.eat_kw("TEMPORARY");
            p.kw("PARTITION")?;
            let names = p
                .paren_list("PARTITION")?
                .into_iter()
                .map(|(a, b)| match &p.toks[a..b] {
                    [t] => match &t.tok {
                        Tok::Word(w) | Tok::Quoted(w) => w.clone(),
                        Tok::Str { value, .. } => value.clone(),
                        _ => p.render(a, b),
                    },
                    _ => p.render(a, b),
                })
                .collect();
            if temporary {
                st.temporary_partitions = names;
            } else {
                st.partitions = names;
            }
        } else {
            return p.err(
                "COLUMNS TERMINATED BY, ROWS TERMINATED BY, COLUMNS (...), WHERE, PARTITION (...), PROPERTIES (...) or FROM KAFKA",
            );
        }
    }
    if p.eat_kw("PROPERTIES") {
        st.properties = p.key_values("PROPERTIES")?;
    }
    p.kw("FROM")?;
    if !p.eat_kw("KAFKA") {
        return p.err("KAFKA after FROM (only Kafka data sources exist)");
    }
    if p.peek().is_some_and(|t| t.is_punct("(")) {
        st.kafka = p.key_values("FROM KAFKA")?;
    }
    p.end()?;
    Ok(st)
}

fn set_once(slot: &mut Option<String>, value: String, what: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{what} is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// One COLUMNS entry: a bare name (backticks removed) or `name = expr`.
fn columns_entry(p: &Parser<'_>, a: usize, b: usize) -> String {
    let name_of = |t: &Token| match &t.tok {
        Tok::Word(w) => Some(w.clone()),
        Tok::Quoted(w) if w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Some(w.clone())
        }
        Tok::Quoted(_) => Some(p.src[t.start..t.end].to_string()),
        _ => None,
    };
    match &p.toks[a..b] {
        [t] => name_of(t).unwrap_or_else(|| p.render(a, b)),
        [t, eq, ..] if eq.is_punct("=") && b - a > 2 => match name_of(t) {
            Some(n) => format!("{n} = {}", p.render(a + 2, b)),
            None => p.render(a, b),
        },
        _ => p.render(a, b),
    }
}

// ---------------------------------------------------------------------------------------------
// Mapping to the API

/// StarRocks PROPERTIES accepted without an equivalent: they tune StarRocks internals.
const IGNORED_PROPERTIES: &[&str] = &[
    "task_consume_second",
    "task_timeout_second",
    "log_rejected_record_num",
    "exec_mem_limit",
    "load_mem_limit",
    "warehouse",
];

/// The bounds the `RoutineLoadJob` CRD puts on a spec field (`minimum`, `maximum`, and for an
/// integer field without a maximum, the largest value of its `format`): convert checks a
/// StarRocks property against these, so the two can't disagree.
pub fn crd_bounds(field: &str) -> (f64, f64) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    use kube::CustomResourceExt;
    static SPEC: std::sync::OnceLock<BTreeMap<String, JSONSchemaProps>> =
        std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let crd = routine_load_api::RoutineLoadJob::crd();
        crd.spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| s.properties.as_ref())
            .and_then(|p| p.get("spec"))
            .and_then(|s| s.properties.clone())
            .unwrap_or_default()
    });
    let Some(p) = spec.get(field) else {
        panic!("the RoutineLoadJob CRD has no spec field {field}");
    };
    let (type_min, type_max) = match (p.type_.as_deref(), p.format.as_deref()) {
        (Some("integer"), Some("int32")) => (i32::MIN as f64, i32::MAX as f64),
        (Some("integer"), _) => (i64::MIN as f64, i64::MAX as f64),
        _ => (f64::MIN, f64::MAX),
    };
    (p.minimum.unwrap_or(type_min), p.maximum.unwrap_or(type_max))
}

/// StarRocks' numeric PROPERTIES and the spec fields they map to (whose CRD bounds apply).
const NUMERIC_PROPERTIES: &[(&str, &str)] = &[
    ("desired_concurrent_number", "desiredConcurrentNumber"),
    ("max_batch_interval", "maxBatchInterval"),
    ("max_batch_rows", "maxBatchRows"),
    ("max_batch_size", "maxBatchSize"),
    ("max_error_number", "maxErrorNumber"),
    ("max_filter_ratio", "maxFilterRatio"),
];

/// librdkafka `*.location` properties given as StarRocks files (`FILE:name`) and the Secret key
/// that holds the PEM text instead.
const FILE_PROPERTIES: &[(&str, &str)] = &[
    ("ssl.ca.location", "ssl.ca.pem"),
    ("ssl.certificate.location", "ssl.certificate.pem"),
    ("ssl.key.location", "ssl.key.pem"),
];

/// A StarRocks name as a Kubernetes object name: lower case, `_` -> `-`.
pub fn kube_name(name: &str, what: &str) -> Result<String, String> {
    let n: String = name
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.starts_with(|c: char| c.is_ascii_alphanumeric())
                && l.ends_with(|c: char| c.is_ascii_alphanumeric())
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if ok {
        Ok(n)
    } else {
        Err(format!(
            "{what} '{name}' can't be a Kubernetes name (lower case letters, digits and '-')"
        ))
    }
}

/// The namespace of a statement's object: its database as a Kubernetes name (with a note when
/// the spelling changes), else `default` (`-n`).
fn namespace_of(
    database: Option<&str>,
    default: &Option<String>,
    notes: &mut Vec<String>,
) -> Result<Option<String>, String> {
    let Some(db) = database else {
        return Ok(default.clone());
    };
    let ns = kube_name(db, "database name")?;
    if ns != db {
        notes.push(format!("database '{db}' is namespace '{ns}'"));
    }
    Ok(Some(ns))
}

/// `db.name`, or `name` without a database: a statement's object as its head names it.
fn qualified(database: Option<&str>, name: &str) -> String {
    match database {
        Some(db) => format!("{db}.{name}"),
        None => name.to_string(),
    }
}

/// An integer property, within the CRD's bounds of the spec field it maps to.
fn int(key: &str, value: &str, field: &str) -> Result<i64, String> {
    let (min, max) = crd_bounds(field);
    let (min, max) = (min as i64, max as i64);
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("property \"{key}\" = \"{value}\": expected an integer"))?;
    if n < min || n > max {
        // A maximum that is only the field's integer type is not a bound worth stating first.
        let type_max = max == i64::MAX || max == i32::MAX as i64;
        let range = match (type_max, n < min) {
            (true, true) => format!("at least {min}"),
            (true, false) => format!("at most {max}"),
            (false, _) => format!("{min} to {max}"),
        };
        return Err(format!("property \"{key}\" = \"{value}\": must be {range}"));
    }
    Ok(n)
}

/// A number property, within the CRD's bounds of the spec field it maps to.
fn number(key: &str, value: &str, field: &str) -> Result<f64, String> {
    let (min, max) = crd_bounds(field);
    value
        .trim()
        .parse()
        .ok()
        .filter(|r: &f64| (min..=max).contains(r))
        .ok_or_else(|| {
            format!("property \"{key}\" = \"{value}\": must be a number from {min} to {max}")
        })
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "property \"{key}\" = \"{value}\": expected true or false"
        )),
    }
}

fn offset(key: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    let upper = v.to_ascii_uppercase();
    if upper == "OFFSET_BEGINNING" || upper == "OFFSET_END" {
        Ok(upper)
    } else if v.parse::<i64>().is_ok_and(|n| n >= 0)
        || routine_load_api::job::KafkaOffset::try_from(v.to_string())
            .is_ok_and(|o| matches!(o, routine_load_api::job::KafkaOffset::Time(_)))
    {
        Ok(v.to_string())
    } else {
        Err(format!(
            "\"{key}\": offset \"{v}\" is not a number, OFFSET_BEGINNING, OFFSET_END or a time YYYY-MM-DD HH:MM:SS"
        ))
    }
}

/// Converts a parsed statement into a `RoutineLoadJob` (and a Secret stub for credentials).
pub fn convert(st: &Statement, opts: &ConvertOptions) -> Result<Converted, String> {
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    let name = kube_name(&st.job, "job name")?;
    let table = kube_name(&st.table, "table name")?;
    if name != st.job {
        notes.push(format!(
            "job '{}' is named '{name}' (Kubernetes names can't hold '_' or upper case)",
            st.job
        ));
    }
    if table != st.table {
        notes.push(format!(
            "table '{}' is referenced as Table '{table}'",
            st.table
        ));
    }
    let namespace = namespace_of(st.database.as_deref(), &opts.namespace, &mut notes)?;
    if !st.temporary_partitions.is_empty() {
        return Err(format!(
            "TEMPORARY PARTITION ({}): Delta tables have no temporary partitions; load into the table's partitions instead",
            st.temporary_partitions.join(", ")
        ));
    }
    if let Some(p) = st.partitions.iter().find(|p| !p.contains('=')) {
        return Err(format!(
            "PARTITION ({}): '{p}' is a StarRocks partition name; a Delta table's partitions are paths of partition column values: write them as PARTITION (\"dt=2024-05-01\", ...), or drop the clause to load any partition",
            st.partitions.join(", ")
        ));
    }

    let mut spec = Mapping::new();
    fn put(m: &mut Mapping, k: &str, v: Value) {
        m.insert(Value::from(k), v);
    }
    put(&mut spec, "table", table.clone().into());

    // PROPERTIES
    let mut unknown = Vec::new();
    // Kafka client properties (`property.*`) written among PROPERTIES, as a page of StarRocks'
    // documentation does: read with FROM KAFKA's.
    let mut moved: Vec<(String, String)> = Vec::new();
    let mut job_props: BTreeMap<&str, Value> = BTreeMap::new();
    let mut format = None;
    for (key, value) in &st.properties {
        let v = value.trim();
        let (field, val): (&str, Value) = match key.as_str() {
            k if NUMERIC_PROPERTIES.iter().any(|(p, _)| *p == k) => {
                let field = NUMERIC_PROPERTIES
                    .iter()
                    .find(|(p, _)| *p == k)
                    .map_or("", |(_, f)| *f);
                let val: Value = if field == "maxFilterRatio" {
                    number(key, value, field)?.into()
                } else {
                    int(key, value, field)?.into()
                };
                (field, val)
            }
            k if k.starts_with("property.") => {
                warnings.push(format!(
                    "PROPERTIES: \"{k}\" is a Kafka client property: read as if given in FROM KAFKA"
                ));
                moved.push((k.to_string(), value.clone()));
                continue;
            }
            "partial_update" => ("partialUpdate", boolean(key, v)?.into()),
            "merge_condition" => ("mergeCondition", v.into()),
            "partial_update_mode" => {
                warnings.push(format!(
                    "property \"{key}\" = \"{v}\" chooses how StarRocks stores a partial update (row or column mode); the rows a Delta table ends with are the same: ignored"
                ));
                continue;
            }
            "strict_mode" => ("strictMode", boolean(key, v)?.into()),
            "timezone" | "time_zone" => ("timezone", v.into()),
            "format" => {
                let f = v.to_ascii_lowercase();
                if f != "csv" && f != "json" && f != "avro" {
                    return Err(format!(
                        "property \"format\" = \"{value}\": only csv, json and avro are supported"
                    ));
                }
                format = Some(f.clone());
                continue;
            }
            "jsonpaths" => {
                let paths: Vec<String> = serde_json::from_str(v).map_err(|e| {
                    format!(
                        "property \"jsonpaths\" = '{value}': expected a JSON array of paths such as [\"$.a\", \"$.b\"]: {e}"
                    )
                })?;
                (
                    "jsonPaths",
                    Value::Sequence(paths.into_iter().map(Value::from).collect()),
                )
            }
            "json_root" => ("jsonRoot", v.into()),
            "avro_paths" => {
                let paths: Vec<String> = serde_json::from_str(v).map_err(|e| {
                    format!(
                        "property \"avro_paths\" = '{value}': expected a JSON array of paths such as [\"$.a\", \"$.b.c\"]: {e}"
                    )
                })?;
                (
                    "avroPaths",
                    Value::Sequence(paths.into_iter().map(Value::from).collect()),
                )
            }
            "strip_outer_array" => ("stripOuterArray", boolean(key, v)?.into()),
            "enclose" => ("enclose", value.clone().into()),
            "escape" => ("escape", value.clone().into()),
            "trim_space" => ("trimSpace", boolean(key, v)?.into()),
            k if IGNORED_PROPERTIES.contains(&k) => {
                warnings.push(format!(
                    "property \"{k}\" tunes StarRocks internals and has no equivalent: ignored"
                ));
                continue;
            }
            k => {
                unknown.push(k.to_string());
                continue;
            }
        };
        job_props.insert(field, val);
    }
    if !unknown.is_empty() {
        return Err(unknown_properties(
            "PROPERTIES",
            &unknown,
            "desired_concurrent_number, max_batch_interval, max_batch_rows, max_batch_size, max_error_number, max_filter_ratio, strict_mode, timezone, format, jsonpaths, json_root, strip_outer_array, avro_paths, enclose, escape, trim_space",
        ));
    }
    let json = format.as_deref() == Some("json");
    let avro = format.as_deref() == Some("avro");
    if let Some(f) = &format {
        put(&mut spec, "format", f.clone().into());
    }
    if !avro && job_props.contains_key("avroPaths") {
        return Err("property \"avro_paths\" applies only to \"format\" = \"avro\"".to_string());
    }
    if json || avro {
        let f = if avro { "avro" } else { "json" };
        for (clause, set) in [
            ("COLUMNS TERMINATED BY", st.column_separator.is_some()),
            ("ROWS TERMINATED BY", st.row_delimiter.is_some()),
            ("enclose", job_props.contains_key("enclose")),
            ("escape", job_props.contains_key("escape")),
            ("trim_space", job_props.contains_key("trimSpace")),
        ] {
            if set {
                return Err(format!("{clause} applies only to format csv, not {f}"));
            }
        }
    }
    // StarRocks' documentation gives an Avro job's paths as "jsonpaths" too.
    if avro && let Some(paths) = job_props.remove("jsonPaths") {
        if job_props.contains_key("avroPaths") {
            return Err(
                "properties \"jsonpaths\" and \"avro_paths\" are both given: an Avro job has one list of paths; keep one"
                    .to_string(),
            );
        }
        notes.push("\"jsonpaths\" of an Avro job is its avroPaths".to_string());
        job_props.insert("avroPaths", paths);
    }
    if !json {
        for (prop, field) in [
            ("jsonpaths", "jsonPaths"),
            ("json_root", "jsonRoot"),
            ("strip_outer_array", "stripOuterArray"),
        ] {
            if job_props.contains_key(field) {
                return Err(format!(
                    "property \"{prop}\" applies only to \"format\" = \"json\""
                ));
            }
        }
    }
    if let Some(sep) = &st.column_separator {
        put(&mut spec, "columnSeparator", sep.clone().into());
    }
    if let Some(d) = &st.row_delimiter {
        put(&mut spec, "rowDelimiter", d.clone().into());
    }
    for f in ["enclose", "escape", "trimSpace"] {
        if let Some(v) = job_props.remove(f) {
            put(&mut spec, f, v);
        }
    }
    if !st.columns.is_empty() {
        put(
            &mut spec,
            "columns",
            Value::Sequence(st.columns.iter().cloned().map(Value::from).collect()),
        );
    }
    if !st.include_metadata.is_empty() {
        let mut m = Mapping::new();
        for (key, column) in &st.include_metadata {
            let field = match key.as_str() {
                "TOPIC" => "topic",
                "KEY" => "key",
                "PARTITION" => "partition",
                "OFFSET" => "offset",
                "TIMESTAMP_MS" => "timestampMs",
                "HEADERS" => "headers",
                other => {
                    return Err(format!(
                        "INCLUDE METADATA: {other} is not Kafka record metadata; use TOPIC, KEY, PARTITION, OFFSET, TIMESTAMP_MS or HEADERS"
                    ));
                }
            };
            if m.insert(field.into(), column.clone().into()).is_some() {
                return Err(format!("INCLUDE METADATA: {key} is given twice"));
            }
        }
        put(&mut spec, "includeMetadata", Value::Mapping(m));
    }
    // Expressions that can't plan whatever the table (BITMAP/HLL, functions this build lacks).
    for entry in &st.columns {
        if let Some((_, expr)) = entry.split_once('=')
            && let Some(problem) = routine_load_api::load_plan::expression_problem(expr.trim())
        {
            warnings.push(format!("COLUMNS entry '{entry}': {problem}"));
        }
    }
    if let Some(w) = &st.where_expr {
        if let Some(problem) = routine_load_api::load_plan::expression_problem(w) {
            warnings.push(format!("WHERE {w}: {problem}"));
        }
        put(&mut spec, "where", w.clone().into());
    }
    if !st.partitions.is_empty() {
        put(
            &mut spec,
            "partitions",
            Value::Sequence(st.partitions.iter().cloned().map(Value::from).collect()),
        );
    }
    for field in [
        "desiredConcurrentNumber",
        "maxBatchInterval",
        "maxBatchRows",
        "maxBatchSize",
        "maxErrorNumber",
        "maxFilterRatio",
        "strictMode",
        "partialUpdate",
        "mergeCondition",
        "timezone",
        "jsonPaths",
        "jsonRoot",
        "stripOuterArray",
        "avroPaths",
    ] {
        if let Some(v) = job_props.remove(field) {
            put(&mut spec, field, v);
        }
    }

    // FROM KAFKA
    let mut kafka = Mapping::new();
    let mut broker_list = None;
    let mut topic = None;
    let mut partitions: Vec<i32> = Vec::new();
    let mut offsets: Vec<String> = Vec::new();
    let mut default_offset = None;
    let mut properties = Mapping::new();
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    let mut registry = None;
    let mut unknown = Vec::new();
    if let Some((k, _)) = moved
        .iter()
        .find(|(k, _)| st.kafka.iter().any(|(kk, _)| kk == k))
    {
        return Err(format!(
            "\"{k}\" is given both in PROPERTIES and in FROM KAFKA: keep the one in FROM KAFKA"
        ));
    }
    for (key, value) in st.kafka.iter().chain(&moved) {
        let v = value.trim();
        match key.as_str() {
            "kafka_broker_list" => broker_list = Some(v.to_string()),
            "confluent.schema.registry.url" => registry = Some(registry::split(v)?),
            "kafka_topic" => topic = Some(v.to_string()),
            "kafka_partitions" => {
                partitions = v
                    .split(',')
                    .map(|p| {
                        p.trim().parse::<i32>().ok().filter(|p| *p >= 0).ok_or_else(|| {
                            format!(
                                "\"kafka_partitions\" = \"{value}\": '{}' is not a partition number",
                                p.trim()
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            "kafka_offsets" => {
                offsets = v
                    .split(',')
                    .map(|o| offset("kafka_offsets", o))
                    .collect::<Result<_, _>>()?
            }
            k => match k.strip_prefix("property.") {
                Some("kafka_default_offsets") => {
                    default_offset = Some(offset(k, v)?);
                }
                // The worker sets these itself: a `property.*` naming one is ignored with a warning.
                Some(prop) if ENFORCED_CONSUMER_PROPERTIES.contains(&prop) => {
                    warnings.push(format!(
                        "\"{k}\" = \"{v}\" is ignored: the worker sets {prop} itself (a job's offsets are kept in its table, not in a Kafka consumer group)"
                    ));
                }
                Some(prop) => {
                    if let Some(file) = v.strip_prefix("FILE:") {
                        match FILE_PROPERTIES.iter().find(|(p, _)| *p == prop) {
                            Some((_, pem_key)) => {
                                warnings.push(format!(
                                    "\"{k}\" = \"{v}\" names a StarRocks file: put the PEM text of '{file}' under key '{pem_key}' of the credentials Secret"
                                ));
                                secrets.insert((*pem_key).to_string(), String::new());
                            }
                            None => {
                                return Err(format!(
                                    "\"{k}\" = \"{v}\": StarRocks files (FILE:) are supported only for {}",
                                    FILE_PROPERTIES
                                        .iter()
                                        .map(|(p, _)| format!("property.{p}"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ));
                            }
                        }
                    } else if secret_property(prop) {
                        secrets.insert(prop.to_string(), value.clone());
                    } else {
                        properties.insert(prop.into(), v.into());
                    }
                }
                None => unknown.push(k.to_string()),
            },
        }
    }
    if !unknown.is_empty() {
        return Err(unknown_properties(
            "FROM KAFKA",
            &unknown,
            "kafka_broker_list, kafka_topic, kafka_partitions, kafka_offsets, confluent.schema.registry.url and property.* (librdkafka client properties)",
        ));
    }
    let broker_list =
        broker_list.ok_or("FROM KAFKA: \"kafka_broker_list\" is required (host:port, ...)")?;
    let topic = topic.ok_or("FROM KAFKA: \"kafka_topic\" is required")?;
    if !offsets.is_empty() && offsets.len() != partitions.len() {
        return Err(format!(
            "FROM KAFKA: \"kafka_offsets\" has {} entries but \"kafka_partitions\" has {}: give one offset per partition",
            offsets.len(),
            partitions.len()
        ));
    }
    kafka.insert("brokerList".into(), broker_list.into());
    kafka.insert("topic".into(), topic.into());
    if !partitions.is_empty() {
        kafka.insert(
            "partitions".into(),
            Value::Sequence(partitions.into_iter().map(Value::from).collect()),
        );
    }
    if !offsets.is_empty() {
        kafka.insert(
            "offsets".into(),
            Value::Sequence(offsets.into_iter().map(Value::from).collect()),
        );
    }
    if let Some(d) = default_offset {
        kafka.insert("defaultOffset".into(), d.into());
    }
    if !properties.is_empty() {
        kafka.insert("properties".into(), Value::Mapping(properties));
    }
    let secret_name = format!("{name}-kafka-credentials");
    let secret = if secrets.is_empty() {
        None
    } else {
        kafka.insert(
            "credentialsSecret".into(),
            Value::Mapping(Mapping::from_iter([(
                Value::from("name"),
                Value::from(secret_name.clone()),
            )])),
        );
        let keys: Vec<&str> = secrets.keys().map(String::as_str).collect();
        warnings.push(format!(
            "{} kept out of the job spec: fill in Secret '{secret_name}'{} (referenced by spec.kafka.credentialsSecret)",
            keys.join(", "),
            if opts.include_secrets {
                ""
            } else {
                " where it says REPLACE_ME"
            }
        ));
        let mut meta = Mapping::new();
        meta.insert("name".into(), secret_name.into());
        if let Some(ns) = &namespace {
            meta.insert("namespace".into(), ns.clone().into());
        }
        let data: Mapping = secrets
            .into_iter()
            .map(|(k, v)| {
                let v = if opts.include_secrets && !v.is_empty() {
                    v
                } else {
                    SECRET_PLACEHOLDER.to_string()
                };
                (Value::from(k), Value::from(v))
            })
            .collect();
        Some(Value::Mapping(Mapping::from_iter([
            ("apiVersion".into(), "v1".into()),
            ("kind".into(), "Secret".into()),
            ("metadata".into(), Value::Mapping(meta)),
            ("type".into(), "Opaque".into()),
            ("stringData".into(), Value::Mapping(data)),
        ])))
    };
    put(&mut spec, "kafka", Value::Mapping(kafka));
    let registry_secret = match (registry, avro) {
        (None, true) => {
            return Err(
                "\"format\" = \"avro\" needs \"confluent.schema.registry.url\" in FROM KAFKA (the registry that holds the writers' schemas)"
                    .to_string(),
            );
        }
        (Some(_), false) => {
            warnings.push(
                "\"confluent.schema.registry.url\" applies only to \"format\" = \"avro\": ignored"
                    .to_string(),
            );
            None
        }
        (None, false) => None,
        (Some(r), true) => {
            let mut m = Mapping::new();
            m.insert("url".into(), r.url.into());
            let secret = r.credentials.map(|(user, password)| {
                let secret_name = format!("{name}-schema-registry");
                m.insert(
                    "credentialsSecret".into(),
                    Value::Mapping(Mapping::from_iter([(
                        Value::from("name"),
                        Value::from(secret_name.clone()),
                    )])),
                );
                warnings.push(format!(
                    "the schema registry's credentials (in its URL) are kept out of the job spec: fill in Secret '{secret_name}'{} (referenced by spec.schemaRegistry.credentialsSecret)",
                    if opts.include_secrets { "" } else { " where it says REPLACE_ME" }
                ));
                let value = |v: String| {
                    if opts.include_secrets && !v.is_empty() {
                        v
                    } else {
                        SECRET_PLACEHOLDER.to_string()
                    }
                };
                secret_stub(
                    &secret_name,
                    namespace.as_deref(),
                    [
                        (SchemaRegistry::USERNAME_KEY.to_string(), value(user)),
                        (SchemaRegistry::PASSWORD_KEY.to_string(), value(password)),
                    ],
                )
            });
            put(&mut spec, "schemaRegistry", Value::Mapping(m));
            secret
        }
    };

    let mut meta = Mapping::new();
    meta.insert("name".into(), name.clone().into());
    if let Some(ns) = &namespace {
        meta.insert("namespace".into(), ns.clone().into());
    }
    let job = Value::Mapping(Mapping::from_iter([
        ("apiVersion".into(), "routineload.io/v1alpha1".into()),
        ("kind".into(), "RoutineLoadJob".into()),
        ("metadata".into(), Value::Mapping(meta)),
        ("spec".into(), Value::Mapping(spec)),
    ]));
    // The typed API must accept what we produce.
    serde_yaml::from_value::<routine_load_api::RoutineLoadJob>(job.clone())
        .map_err(|e| format!("the converted job does not fit the RoutineLoadJob API: {e}"))?;
    Ok(Converted {
        namespace,
        name,
        table,
        job,
        secret,
        registry_secret,
        notes,
        warnings,
    })
}

/// Plans the converted job against a `Table` (a Table object or its spec, YAML; several
/// documents: the Table named like the statement's table). Returns a one-line summary.
pub fn check_against_table(c: &Converted, table_yaml: &str) -> Result<String, String> {
    use serde::Deserialize;
    let mut specs: Vec<(Option<String>, routine_load_api::TableSpec)> = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(table_yaml) {
        let v = Value::deserialize(doc).map_err(|e| format!("reading the table YAML: {e}"))?;
        if v.is_null() {
            continue;
        }
        let (name, spec) = match v.get("kind").and_then(Value::as_str) {
            Some("Table") => (
                v["metadata"]["name"].as_str().map(str::to_string),
                v.get("spec").cloned().unwrap_or(Value::Null),
            ),
            Some(_) => continue,
            None => (None, v),
        };
        let spec = serde_yaml::from_value(spec)
            .map_err(|e| format!("the table YAML is not a Table spec: {e}"))?;
        specs.push((name, spec));
    }
    let spec = match specs
        .iter()
        .position(|(n, _)| n.as_deref() == Some(&c.table))
    {
        Some(i) => specs.swap_remove(i).1,
        // A bare spec (no name) is the job's table.
        None if specs.len() == 1 && specs[0].0.is_none() => specs.remove(0).1,
        None => {
            let names: Vec<&str> = specs.iter().filter_map(|(n, _)| n.as_deref()).collect();
            return Err(format!(
                "the table YAML holds no Table named '{}' (the job's table){}",
                c.table,
                if names.is_empty() {
                    String::new()
                } else {
                    format!("; it holds {}", names.join(", "))
                }
            ));
        }
    };
    let job: routine_load_api::RoutineLoadJob = serde_yaml::from_value(c.job.clone())
        .map_err(|e| format!("the converted job does not fit the RoutineLoadJob API: {e}"))?;
    let plan = routine_load_api::LoadPlan::build(&job.spec, &c.table, &spec)
        .map_err(|e| format!("the job can't load Table '{}': {e}", c.table))?;
    let placeholders: Vec<&str> = plan
        .source_fields
        .iter()
        .filter(|f| f.column_type.is_none())
        .map(|f| f.name.as_str())
        .collect();
    Ok(format!(
        "planned against Table '{}': {} source field(s) per message, {} column(s) written{}{}",
        c.table,
        plan.source_fields.len(),
        plan.columns.len(),
        if plan.where_filter.is_some() {
            ", WHERE compiled"
        } else {
            ""
        },
        if placeholders.is_empty() {
            String::new()
        } else {
            format!(
                "; {} placeholder(s), not columns of the table, not loaded: {}",
                placeholders.len(),
                placeholders.join(", ")
            )
        }
    ))
}

/// The statement's head (`CREATE ROUTINE LOAD db.job ON table`) for the output's comment.
pub fn head(st: &Statement) -> String {
    format!(
        "CREATE ROUTINE LOAD {} ON {}",
        qualified(st.database.as_deref(), &st.job),
        st.table
    )
}

/// The error for properties a clause does not know, naming them and what it supports.
fn unknown_properties(clause: &str, unknown: &[String], supported: &str) -> String {
    format!(
        "{clause}: unknown or unsupported propert{} {}; supported: {supported}",
        if unknown.len() == 1 { "y" } else { "ies" },
        unknown
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub mod create_table;
mod registry;

/// An Opaque Secret named `name` holding `data` (as stringData).
fn secret_stub(
    name: &str,
    namespace: Option<&str>,
    data: impl IntoIterator<Item = (String, String)>,
) -> Value {
    let mut meta = Mapping::new();
    meta.insert("name".into(), name.into());
    if let Some(ns) = namespace {
        meta.insert("namespace".into(), ns.into());
    }
    let data: Mapping = data
        .into_iter()
        .map(|(k, v)| (Value::from(k), Value::from(v)))
        .collect();
    Value::Mapping(Mapping::from_iter([
        ("apiVersion".into(), "v1".into()),
        ("kind".into(), "Secret".into()),
        ("metadata".into(), Value::Mapping(meta)),
        ("type".into(), "Opaque".into()),
        ("stringData".into(), Value::Mapping(data)),
    ]))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod function_tests;

#[cfg(test)]
mod doc_examples;

#[cfg(test)]
mod property_tests;
