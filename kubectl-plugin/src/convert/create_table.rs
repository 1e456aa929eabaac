//! `kubectl routineload convert` for a StarRocks `CREATE TABLE` statement: the equivalent
//! `Table` YAML.
//!
//! The statement is read with the tokenizer of `CREATE ROUTINE LOAD` and parsed along the
//! grammar of StarRocks' reference (clauses after the column list in any order):
//!
//! ```text
//! CREATE [EXTERNAL] [TEMPORARY] TABLE [IF NOT EXISTS] [db.]table
//!     (col type [agg] [NULL | NOT NULL] [DEFAULT value] [AUTO_INCREMENT] [AS expr]
//!          [COMMENT "..."], ..., [INDEX name (cols) [USING ...] [COMMENT "..."]], ...)
//!     [ENGINE = OLAP]
//!     [DUPLICATE | PRIMARY | UNIQUE | AGGREGATE KEY (cols)]
//!     [COMMENT "table comment"]
//!     [PARTITION BY (cols) | PARTITION BY expr, ... | PARTITION BY RANGE | LIST (cols) (...)]
//!     [DISTRIBUTED BY HASH (cols) | RANDOM [BUCKETS n]]
//!     [ROLLUP (...)] [ORDER BY (cols)]
//!     [PROPERTIES ("key" = "value", ...)] [BROKER PROPERTIES (...)]
//! ```
//!
//! Parsing ([`parse`]) and mapping ([`convert`]) are pure functions. What has an equivalent is
//! mapped (key model, keys, aggregate functions, types, NULL / NOT NULL, DEFAULT, COMMENT,
//! partition columns); what StarRocks uses only for its own storage (bucketing, replication,
//! indexes, sort keys, storage properties) is dropped with a warning naming it; what can't be
//! stored in a Delta table the way StarRocks stores it (HLL, BITMAP, nested and binary types,
//! external tables) is an error saying why.

use routine_load_api::Table;
use routine_load_api::column_type::ColumnType;
use routine_load_api::table::{
    DeletionPolicy, MAX_COLUMNS, MAX_PARTITION_COLUMNS, TableColumn, TableSpec,
};
use routine_load_api::table_model::{AggregateFunction, MAX_KEYS, TableModel};

use super::{Nesting, Parser, Tok, kube_name, namespace_of, qualified, tokenize};

/// Written as `spec.location` when no `--location` is given: not a location the CRD accepts, so
/// the Table can't be applied before it is replaced.
pub const LOCATION_PLACEHOLDER: &str = "REPLACE_ME";

/// Which kind of statement a text holds, by its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// `CREATE ROUTINE LOAD ...`
    RoutineLoad,
    /// `CREATE [EXTERNAL] [TEMPORARY] TABLE ...`
    Table,
    /// `USE db`: the database of the statements after it.
    Use(String),
    /// `CREATE DATABASE [IF NOT EXISTS] db`.
    CreateDatabase(String),
}

/// The kind of the statement `src` holds (comments before it are skipped).
pub fn statement_kind(src: &str) -> Result<StatementKind, String> {
    let toks = tokenize(src)?;
    let mut p = Parser { src, toks, i: 0 };
    let word = |p: &Parser<'_>, n: usize, kw: &str| p.peek_at(n).is_some_and(|t| t.is_kw(kw));
    if p.eat_kw("USE") {
        let db = p.ident("a database name after USE")?;
        p.end()?;
        return Ok(StatementKind::Use(db));
    }
    if !word(&p, 0, "CREATE") {
        return p.err("CREATE TABLE, CREATE ROUTINE LOAD, CREATE DATABASE or USE");
    }
    if word(&p, 1, "ROUTINE") {
        return Ok(StatementKind::RoutineLoad);
    }
    if word(&p, 1, "DATABASE") || word(&p, 1, "SCHEMA") {
        p.i = 2;
        if p.eat_kw("IF") {
            p.kw("NOT")?;
            p.kw("EXISTS")?;
        }
        let db = p.ident("a database name")?;
        // PROPERTIES of a database (its storage volume, replication) are StarRocks' own.
        if p.eat_kw("PROPERTIES") {
            p.key_values("PROPERTIES")?;
        }
        p.end()?;
        return Ok(StatementKind::CreateDatabase(db));
    }
    let mut n = 1;
    while word(&p, n, "EXTERNAL") || word(&p, n, "TEMPORARY") {
        n += 1;
    }
    if word(&p, n, "TABLE") {
        Ok(StatementKind::Table)
    } else {
        p.i = n;
        p.err("TABLE, ROUTINE LOAD or DATABASE after CREATE")
    }
}

/// The statements of a text, split at the `;` that end them (outside strings and comments);
/// texts holding only comments and spaces are left out. Each statement keeps its place: what
/// precedes it is blanked (newlines kept), so that errors give lines and columns of the input.
pub fn split_statements(src: &str) -> Result<Vec<String>, String> {
    let toks = tokenize(src)?;
    let mut ranges = Vec::new();
    let mut start: Option<usize> = None;
    for t in &toks {
        let first = *start.get_or_insert(t.start);
        if t.is_punct(";") {
            ranges.push((first, t.end));
            start = None;
        }
    }
    if let Some(first) = start {
        ranges.push((first, src.len()));
    }
    Ok(ranges
        .into_iter()
        .map(|(a, b)| {
            let blank: String = src[..a]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' })
                .collect();
            blank + &src[a..b]
        })
        .collect())
}

/// Options of [`convert_input`]: the command line's.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// `-n`: the namespace of statements that name no database (before any `USE`).
    pub namespace: Option<String>,
    /// `--include-secrets`: copy a job's Kafka secrets into its Secret stub.
    pub include_secrets: bool,
    /// `--location`: the storage of the (one) table the input creates.
    pub location: Option<String>,
    /// `--table`: the file's name and its YAML, to plan the jobs against.
    pub table_file: Option<(String, String)>,
}

/// What [`convert_input`] prints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConvertedInput {
    /// The YAML documents, in the order of the statements (stdout).
    pub yaml: String,
    /// `note: ...` and `warning: ...` lines (stderr).
    pub messages: Vec<String>,
}

/// Converts every statement of an input: each `CREATE TABLE` to a Table, each `CREATE ROUTINE
/// LOAD` to a job (and its Secret stubs); `USE db` sets the namespace of the statements after
/// it, `CREATE DATABASE` is skipped with a note. A job is planned against `--table` when given,
/// else against the Table the input creates for it, if any.
pub fn convert_input(sql: &str, opts: &InputOptions) -> Result<ConvertedInput, String> {
    let statements = split_statements(sql)?;
    let kinds = statements
        .iter()
        .map(|s| statement_kind(s))
        .collect::<Result<Vec<_>, _>>()?;
    let tables = kinds.iter().filter(|k| **k == StatementKind::Table).count();
    let jobs = kinds
        .iter()
        .filter(|k| **k == StatementKind::RoutineLoad)
        .count();
    if tables + jobs == 0 {
        return Err("the input holds no CREATE TABLE or CREATE ROUTINE LOAD statement".into());
    }
    if jobs == 0 {
        for (flag, set) in [
            ("--table", opts.table_file.is_some()),
            ("--include-secrets", opts.include_secrets),
        ] {
            if set {
                return Err(format!(
                    "{flag} applies to CREATE ROUTINE LOAD, and the input holds only CREATE TABLE"
                ));
            }
        }
    }
    if opts.location.is_some() && tables != 1 {
        return Err(format!(
            "--location is one table's storage, and the input holds {tables} CREATE TABLE statements{}",
            if tables > 1 {
                ": convert them one at a time"
            } else {
                ""
            }
        ));
    }
    let mut out = ConvertedInput::default();
    let several = tables + jobs > 1;
    let say = |out: &mut ConvertedInput, head: &str, notes: &[String], warnings: &[String]| {
        let prefix = if several {
            format!("{head}: ")
        } else {
            String::new()
        };
        out.messages
            .extend(notes.iter().map(|n| format!("note: {prefix}{n}")));
        out.messages
            .extend(warnings.iter().map(|w| format!("warning: {prefix}{w}")));
    };
    // The namespace of each statement: -n, then the database of the last USE before it.
    let mut namespaces = Vec::with_capacity(kinds.len());
    let mut current = opts.namespace.clone();
    for kind in &kinds {
        match kind {
            StatementKind::Use(db) => {
                let ns = kube_name(db, "database name")?;
                out.messages.push(format!(
                    "note: USE {db}: the statements after it that name no database are in namespace '{ns}'"
                ));
                current = Some(ns);
            }
            StatementKind::CreateDatabase(db) => {
                let ns = kube_name(db, "database name")?;
                out.messages.push(format!(
                    "note: CREATE DATABASE {db} is skipped: a database is a namespace; '{ns}' must exist (kubectl create namespace {ns})"
                ));
            }
            StatementKind::Table | StatementKind::RoutineLoad => {}
        }
        namespaces.push(current.clone());
    }
    // Tables first, so that jobs can be planned against the ones the input creates.
    let mut docs = vec![String::new(); statements.len()];
    let mut table_yaml = String::new();
    let mut table_names = Vec::new();
    for (i, text) in statements.iter().enumerate() {
        if kinds[i] != StatementKind::Table {
            continue;
        }
        let st = parse(text)?;
        let head = head(&st);
        let converted = convert(
            &st,
            &TableOptions {
                namespace: namespaces[i].clone(),
                location: opts.location.clone(),
            },
        )
        .map_err(|e| format!("{head}: {e}"))?;
        say(&mut out, &head, &converted.notes, &converted.warnings);
        let yaml = converted.to_yaml(&head).map_err(|e| e.to_string())?;
        table_yaml.push_str(&yaml);
        table_names.push(converted.name.clone());
        docs[i] = yaml;
    }
    let plan_against = match &opts.table_file {
        Some((path, yaml)) => Some((path.clone(), yaml.clone())),
        None if !table_yaml.is_empty() => Some(("the input".to_string(), table_yaml)),
        None => None,
    };
    for (i, text) in statements.iter().enumerate() {
        if kinds[i] != StatementKind::RoutineLoad {
            continue;
        }
        let statement = super::parse(text)?;
        let head = super::head(&statement);
        let converted = super::convert(
            &statement,
            &super::ConvertOptions {
                namespace: namespaces[i].clone(),
                include_secrets: opts.include_secrets,
            },
        )
        .map_err(|e| if several { format!("{head}: {e}") } else { e })?;
        // A job whose Table the input does not create is planned only against --table.
        if let Some((from, yaml)) = &plan_against
            && (opts.table_file.is_some() || table_names.contains(&converted.table))
        {
            let summary =
                super::check_against_table(&converted, yaml).map_err(|e| format!("{from}: {e}"))?;
            say(&mut out, &head, &[summary], &[]);
        }
        say(&mut out, &head, &converted.notes, &converted.warnings);
        docs[i] = converted.to_yaml(&head).map_err(|e| e.to_string())?;
    }
    out.yaml = docs.concat();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The statement

/// The key clause declaring a data model: `DUPLICATE KEY`, `PRIMARY KEY`, ...
fn key_clause(model: TableModel) -> String {
    format!("{} KEY", model.to_string().to_ascii_uppercase())
}

/// A column's DEFAULT.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultValue {
    /// A quoted string or a number: the value's text.
    Literal(String),
    /// `DEFAULT NULL`.
    Null,
    /// `CURRENT_TIMESTAMP`, `(uuid())`, ...: computed by StarRocks when a row is written.
    Expression(String),
}

/// One column definition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnDef {
    pub name: String,
    /// The type as written (`varchar(26)`, `bigint(20)`, `ARRAY<INT>`).
    pub type_text: String,
    /// The aggregate function, upper case (`SUM`, `BITMAP_UNION`, ...).
    pub aggregate: Option<String>,
    /// `NULL` (true), `NOT NULL` (false), or neither.
    pub nullable: Option<bool>,
    pub default: Option<DefaultValue>,
    pub auto_increment: bool,
    /// `AS expr`: a generated column's expression.
    pub generated: Option<String>,
    pub comment: Option<String>,
}

/// A term of PARTITION BY: a column, or an expression over columns.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionExpr {
    Column(String),
    /// `name(args)`; each argument a column (`Ident`), a string (`Str`) or other text.
    Function {
        name: String,
        args: Vec<PartitionArg>,
        text: String,
    },
    /// Any other expression, as written.
    Other(String),
}

impl PartitionExpr {
    fn text(&self) -> &str {
        match self {
            PartitionExpr::Column(c) => c,
            PartitionExpr::Function { text, .. } | PartitionExpr::Other(text) => text,
        }
    }
}

/// An argument of a partition function.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionArg {
    Ident(String),
    Str(String),
    Other(String),
}

/// The PARTITION BY clause.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionDesc {
    /// Expression partitioning: `PARTITION BY (dt, city)`, `PARTITION BY date_trunc('day', dt)`.
    Expressions(Vec<PartitionExpr>),
    /// `PARTITION BY RANGE (cols) (...)`, with the number of partition definitions.
    Range {
        exprs: Vec<PartitionExpr>,
        definitions: usize,
    },
    /// `PARTITION BY LIST (cols) (...)`, with the number of partition definitions.
    List {
        exprs: Vec<PartitionExpr>,
        definitions: usize,
    },
}

/// A parsed `CREATE TABLE` statement, before mapping to the API.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateTable {
    pub external: bool,
    pub temporary: bool,
    pub if_not_exists: bool,
    pub database: Option<String>,
    pub table: String,
    pub columns: Vec<ColumnDef>,
    /// `INDEX ...` definitions of the column list, as written.
    pub indexes: Vec<String>,
    pub engine: Option<String>,
    /// The key clause: the data model it declares, and its columns.
    pub key: Option<(TableModel, Vec<String>)>,
    pub comment: Option<String>,
    pub partition: Option<PartitionDesc>,
    /// `DISTRIBUTED BY ...`, as written.
    pub distribution: Option<String>,
    /// `ROLLUP (...)`, as written.
    pub rollup: Option<String>,
    pub order_by: Vec<String>,
    /// PROPERTIES, keys lower-cased, in order.
    pub properties: Vec<(String, String)>,
    pub broker_properties: Vec<(String, String)>,
}

/// The aggregate functions StarRocks' Aggregate tables take after a column's type.
const AGGREGATE_FUNCTIONS: &[&str] = &[
    "SUM",
    "MAX",
    "MIN",
    "REPLACE",
    "REPLACE_IF_NOT_NULL",
    "HLL_UNION",
    "BITMAP_UNION",
    "PERCENTILE_UNION",
];

/// Clause keywords that end an unparenthesized PARTITION BY list.
const CLAUSES: &[&str] = &[
    "DISTRIBUTED",
    "ORDER",
    "PROPERTIES",
    "ROLLUP",
    "BROKER",
    "COMMENT",
    "ENGINE",
];

impl Parser<'_> {
    /// A parser over tokens `a..b` of this one (for one entry of a list).
    fn sub(&self, a: usize, b: usize) -> Parser<'_> {
        Parser {
            src: self.src,
            toks: self.toks[a..b].to_vec(),
            i: 0,
        }
    }

    /// The unescaped text of a string literal.
    fn string_value(&mut self, what: &str) -> Result<String, String> {
        match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::Str { value, .. }) => {
                self.i += 1;
                Ok(value)
            }
            _ => self.err(what),
        }
    }

    /// Skips a bracketed group starting at the current '(' or '[' (StarRocks' range values
    /// `[("a"), ("b"))` close a '[' with ')'), or '<' after ARRAY/MAP/STRUCT.
    fn skip_group(&mut self, what: &str) -> Result<(), String> {
        let mut depth = 0usize;
        let mut angle = 0usize;
        loop {
            let Some(t) = self.peek() else {
                return self.err(&format!("the end of {what}"));
            };
            if t.is_punct("(") || t.is_punct("[") {
                depth += 1;
            } else if t.is_punct(")") || t.is_punct("]") {
                depth = depth.saturating_sub(1);
            } else if t.is_punct("<") {
                angle += 1;
            } else if t.is_punct(">") {
                angle = angle.saturating_sub(1);
            }
            self.i += 1;
            if depth == 0 && angle == 0 {
                return Ok(());
            }
        }
    }

    /// The entries of a parenthesized list (the '(' and ')' consumed), split at top-level
    /// commas; '[' counts as a bracket and '<' ... '>' after ARRAY, MAP or STRUCT too, so
    /// `MAP<INT, STRING>` and `VALUES [("a"), ("b"))` stay one entry.
    fn entries(&mut self, what: &str) -> Result<Vec<(usize, usize)>, String> {
        self.paren_list_with(what, false, Nesting::Brackets)
    }

    /// `(name, ...)`: a list of column names.
    fn names(&mut self, what: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for (a, b) in self.entries(what)? {
            let mut s = self.sub(a, b);
            let name = s.ident(&format!("a column name in {what}"))?;
            if s.peek().is_some() {
                return s.err(&format!("',' or ')' after column '{name}' in {what}"));
            }
            out.push(name);
        }
        Ok(out)
    }

    /// One term of PARTITION BY, tokens `a..b`.
    fn partition_expr(&self, a: usize, b: usize) -> PartitionExpr {
        let text = self.render(a, b);
        match &self.toks[a..b] {
            [t] => match &t.tok {
                Tok::Word(w) | Tok::Quoted(w) => PartitionExpr::Column(w.clone()),
                _ => PartitionExpr::Other(text),
            },
            [f, open, .., close] if open.is_punct("(") && close.is_punct(")") => {
                let Tok::Word(name) = &f.tok else {
                    return PartitionExpr::Other(text);
                };
                let mut s = self.sub(a + 1, b);
                let Ok(ranges) = s.entries("the function's arguments") else {
                    return PartitionExpr::Other(text);
                };
                if s.peek().is_some() {
                    return PartitionExpr::Other(text);
                }
                let args = ranges
                    .into_iter()
                    .map(|(x, y)| match &s.toks[x..y] {
                        [t] => match &t.tok {
                            Tok::Word(w) | Tok::Quoted(w) => PartitionArg::Ident(w.clone()),
                            Tok::Str { value, .. } => PartitionArg::Str(value.clone()),
                            _ => PartitionArg::Other(s.render(x, y)),
                        },
                        _ => PartitionArg::Other(s.render(x, y)),
                    })
                    .collect();
                PartitionExpr::Function {
                    name: name.to_ascii_lowercase(),
                    args,
                    text,
                }
            }
            _ => PartitionExpr::Other(text),
        }
    }

    /// A parenthesized list of PARTITION BY terms.
    fn partition_exprs(&mut self, what: &str) -> Result<Vec<PartitionExpr>, String> {
        let ranges = self.entries(what)?;
        Ok(ranges
            .into_iter()
            .map(|(a, b)| self.partition_expr(a, b))
            .collect())
    }

    /// The partition definitions after RANGE/LIST (cols), when given: how many.
    fn partition_definitions(&mut self, what: &str) -> Result<usize, String> {
        if self.peek().is_some_and(|t| t.is_punct("(")) {
            Ok(self.entries(what)?.len())
        } else {
            Ok(0)
        }
    }
}

/// One column definition, tokens `a..b` of the column list.
fn column_def(p: &Parser<'_>, a: usize, b: usize) -> Result<ColumnDef, String> {
    let mut c = p.sub(a, b);
    let name = c.ident("a column name")?;
    let in_column = |e: String| format!("column '{name}': {e}");
    let mut col = ColumnDef {
        name: name.clone(),
        ..ColumnDef::default()
    };
    if !matches!(c.peek().map(|t| &t.tok), Some(Tok::Word(_))) {
        return c.err("the column's type").map_err(in_column);
    }
    let type_start = c.i;
    c.i += 1;
    if c.peek().is_some_and(|t| t.is_punct("(") || t.is_punct("<")) {
        c.skip_group("the column's type").map_err(in_column)?;
    }
    col.type_text = c.render(type_start, c.i);
    while let Some(t) = c.peek() {
        let Tok::Word(w) = &t.tok else {
            return c
                .err("NULL, NOT NULL, DEFAULT, COMMENT or ',' in the column definition")
                .map_err(in_column);
        };
        let word = w.to_ascii_uppercase();
        c.i += 1;
        match word.as_str() {
            "NOT" => {
                c.kw("NULL").map_err(in_column)?;
                col.nullable = Some(false);
            }
            "NULL" => col.nullable = Some(true),
            "DEFAULT" => {
                let value = match c.peek().map(|t| t.tok.clone()) {
                    Some(Tok::Str { value, .. }) => {
                        c.i += 1;
                        DefaultValue::Literal(value)
                    }
                    Some(Tok::Number(n)) => {
                        c.i += 1;
                        DefaultValue::Literal(n)
                    }
                    Some(Tok::Punct(m))
                        if m == "-"
                            && matches!(c.peek_at(1).map(|t| &t.tok), Some(Tok::Number(_))) =>
                    {
                        let n = c.render(c.i + 1, c.i + 2);
                        c.i += 2;
                        DefaultValue::Literal(format!("-{n}"))
                    }
                    Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NULL") => {
                        c.i += 1;
                        DefaultValue::Null
                    }
                    Some(Tok::Word(_)) => {
                        let start = c.i;
                        c.i += 1;
                        if c.peek().is_some_and(|t| t.is_punct("(")) {
                            c.skip_group("the DEFAULT expression").map_err(in_column)?;
                        }
                        DefaultValue::Expression(c.render(start, c.i))
                    }
                    Some(Tok::Punct(open)) if open == "(" => {
                        let start = c.i;
                        c.skip_group("the DEFAULT expression").map_err(in_column)?;
                        DefaultValue::Expression(c.render(start, c.i))
                    }
                    _ => {
                        return c.err("a value after DEFAULT").map_err(in_column);
                    }
                };
                col.default = Some(value);
            }
            "AUTO_INCREMENT" => col.auto_increment = true,
            "AS" => {
                let start = c.i;
                let mut depth = 0usize;
                while let Some(t) = c.peek() {
                    if depth == 0 && t.is_kw("COMMENT") {
                        break;
                    }
                    if t.is_punct("(") {
                        depth += 1;
                    } else if t.is_punct(")") {
                        depth = depth.saturating_sub(1);
                    }
                    c.i += 1;
                }
                if c.i == start {
                    return c.err("an expression after AS").map_err(in_column);
                }
                col.generated = Some(c.render(start, c.i));
            }
            "COMMENT" => {
                col.comment = Some(c.string_value("a quoted comment").map_err(in_column)?);
            }
            // StarRocks accepts KEY after a key column's type; the key clause decides.
            "KEY" => {}
            f if AGGREGATE_FUNCTIONS.contains(&f) && col.aggregate.is_none() => {
                col.aggregate = Some(word);
            }
            _ => {
                c.i -= 1;
                return c
                    .err("an aggregate function, NULL, NOT NULL, DEFAULT, AUTO_INCREMENT, AS, COMMENT or ',' in the column definition")
                    .map_err(in_column);
            }
        }
    }
    Ok(col)
}

/// Parses a `CREATE TABLE` statement.
pub fn parse(src: &str) -> Result<CreateTable, String> {
    let toks = tokenize(src)?;
    let mut p = Parser { src, toks, i: 0 };
    let mut st = CreateTable::default();
    p.kw("CREATE")?;
    loop {
        if p.eat_kw("EXTERNAL") {
            st.external = true;
        } else if p.eat_kw("TEMPORARY") {
            st.temporary = true;
        } else {
            break;
        }
    }
    p.kw("TABLE")?;
    if p.eat_kw("IF") {
        p.kw("NOT")?;
        p.kw("EXISTS")?;
        st.if_not_exists = true;
    }
    (st.database, st.table) = p.qualified_name("the table name")?;
    if p.peek().is_some_and(|t| t.is_kw("LIKE")) {
        return Err(format!(
            "CREATE TABLE {} LIKE ...: the statement does not hold the other table's columns; convert that table's CREATE TABLE (SHOW CREATE TABLE prints it)",
            st.table
        ));
    }
    if p.peek().is_some_and(|t| t.is_kw("AS")) {
        return Err(ctas(&st.table));
    }
    for (a, b) in p.entries("the column list")? {
        let first = &p.toks[a];
        if first.is_kw("INDEX") {
            st.indexes.push(p.render(a, b));
        } else {
            st.columns.push(column_def(&p, a, b)?);
        }
    }
    let once = |set: bool, what: &str| -> Result<(), String> {
        if set {
            Err(format!("{what} is given twice"))
        } else {
            Ok(())
        }
    };
    while let Some(t) = p.peek() {
        if t.is_punct(";") {
            p.end()?;
            break;
        }
        let model = [
            TableModel::Duplicate,
            TableModel::Primary,
            TableModel::Unique,
            TableModel::Aggregate,
        ]
        .into_iter()
        .find(|m| t.is_kw(&m.to_string()));
        if let Some(model) = model {
            once(
                st.key.is_some(),
                "the key (DUPLICATE/PRIMARY/UNIQUE/AGGREGATE KEY)",
            )?;
            p.i += 1;
            p.kw("KEY")?;
            let cols = p.names(&key_clause(model))?;
            st.key = Some((model, cols));
        } else if t.is_kw("ENGINE") {
            once(st.engine.is_some(), "ENGINE")?;
            p.i += 1;
            p.eat_punct("=");
            st.engine = Some(p.ident("the engine name after ENGINE =")?);
        } else if t.is_kw("COMMENT") {
            once(st.comment.is_some(), "COMMENT")?;
            p.i += 1;
            p.eat_punct("=");
            st.comment = Some(p.string_value("a quoted table comment")?);
        } else if t.is_kw("PARTITION") {
            once(st.partition.is_some(), "PARTITION BY")?;
            p.i += 1;
            p.kw("BY")?;
            st.partition = Some(if p.eat_kw("RANGE") {
                let exprs = p.partition_exprs("PARTITION BY RANGE")?;
                let definitions = p.partition_definitions("the RANGE partitions")?;
                PartitionDesc::Range { exprs, definitions }
            } else if p.eat_kw("LIST") {
                let exprs = p.partition_exprs("PARTITION BY LIST")?;
                let definitions = p.partition_definitions("the LIST partitions")?;
                PartitionDesc::List { exprs, definitions }
            } else if p.peek().is_some_and(|t| t.is_punct("(")) {
                PartitionDesc::Expressions(p.partition_exprs("PARTITION BY")?)
            } else {
                // `PARTITION BY expr, ...` up to the next clause.
                let mut exprs = Vec::new();
                let mut start = p.i;
                let mut depth = 0usize;
                loop {
                    let end = match p.peek() {
                        None => true,
                        Some(t) => {
                            depth == 0 && (t.is_punct(";") || CLAUSES.iter().any(|kw| t.is_kw(kw)))
                        }
                    };
                    let comma = p.peek().is_some_and(|t| t.is_punct(",")) && depth == 0;
                    if end || comma {
                        if p.i == start {
                            return p.err("a column or expression after PARTITION BY");
                        }
                        exprs.push(p.partition_expr(start, p.i));
                        if end {
                            break;
                        }
                        start = p.i + 1;
                    } else if p.peek().is_some_and(|t| t.is_punct("(")) {
                        depth += 1;
                    } else if p.peek().is_some_and(|t| t.is_punct(")")) {
                        depth = depth.saturating_sub(1);
                    }
                    p.i += 1;
                }
                PartitionDesc::Expressions(exprs)
            });
        } else if t.is_kw("DISTRIBUTED") {
            once(st.distribution.is_some(), "DISTRIBUTED BY")?;
            let start = p.i;
            p.i += 1;
            p.kw("BY")?;
            if p.eat_kw("HASH") {
                p.names("DISTRIBUTED BY HASH")?;
            } else if !p.eat_kw("RANDOM") {
                return p.err("HASH (columns) or RANDOM after DISTRIBUTED BY");
            }
            if p.eat_kw("BUCKETS") {
                if !matches!(p.peek().map(|t| &t.tok), Some(Tok::Number(_))) {
                    return p.err("a number of buckets after BUCKETS");
                }
                p.i += 1;
            }
            st.distribution = Some(p.render(start, p.i));
        } else if t.is_kw("ROLLUP") {
            once(st.rollup.is_some(), "ROLLUP")?;
            let start = p.i;
            p.i += 1;
            p.entries("ROLLUP")?;
            st.rollup = Some(p.render(start, p.i));
        } else if t.is_kw("ORDER") {
            once(!st.order_by.is_empty(), "ORDER BY")?;
            p.i += 1;
            p.kw("BY")?;
            st.order_by = p.names("ORDER BY")?;
        } else if t.is_kw("PROPERTIES") {
            once(!st.properties.is_empty(), "PROPERTIES")?;
            p.i += 1;
            st.properties = p.key_values("PROPERTIES")?;
        } else if t.is_kw("BROKER") {
            once(!st.broker_properties.is_empty(), "BROKER PROPERTIES")?;
            p.i += 1;
            p.kw("PROPERTIES")?;
            st.broker_properties = p.key_values("BROKER PROPERTIES")?;
        } else if t.is_kw("AS") {
            return Err(ctas(&st.table));
        } else {
            return p.err(
                "ENGINE, DUPLICATE/PRIMARY/UNIQUE/AGGREGATE KEY, COMMENT, PARTITION BY, DISTRIBUTED BY, ROLLUP, ORDER BY, PROPERTIES or the end of the statement",
            );
        }
    }
    Ok(st)
}

fn ctas(table: &str) -> String {
    format!(
        "CREATE TABLE {table} ... AS SELECT: the columns come from a query; create the table in StarRocks and convert its SHOW CREATE TABLE output"
    )
}

/// The statement's head (`CREATE TABLE db.table`) for the output's comment.
pub fn head(st: &CreateTable) -> String {
    format!(
        "CREATE TABLE {}{}",
        if st.if_not_exists {
            "IF NOT EXISTS "
        } else {
            ""
        },
        qualified(st.database.as_deref(), &st.table)
    )
}

// ---------------------------------------------------------------------------------------------
// Mapping to the API

/// Options of a table conversion.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// Namespace when the statement names no database.
    pub namespace: Option<String>,
    /// `spec.location` (`s3://bucket/prefix`, `file:///path`); default: [`LOCATION_PLACEHOLDER`].
    pub location: Option<String>,
}

/// The result of a table conversion.
#[derive(Debug, Clone)]
pub struct ConvertedTable {
    /// The Table's Kubernetes name.
    pub name: String,
    /// The `Table` object; its namespace is the statement's database as a namespace name
    /// (else the `-n` namespace).
    pub table: Table,
    /// How names and types were mapped.
    pub notes: Vec<String>,
    /// What was dropped or changed and what is left to do.
    pub warnings: Vec<String>,
}

impl ConvertedTable {
    /// The YAML document of the Table, after a comment naming the statement.
    pub fn to_yaml(&self, statement_head: &str) -> Result<String, serde_yaml::Error> {
        let mut out = format!("# Converted by kubectl-routineload from: {statement_head}\n");
        if self.table.spec.location == LOCATION_PLACEHOLDER {
            out.push_str(
                "# spec.location: replace REPLACE_ME with the table's storage (s3://bucket/prefix or file:///path), or convert with --location.\n",
            );
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&self.table)?);
        Ok(out)
    }
}

/// StarRocks storage PROPERTIES with a reason more precise than "no Delta equivalent".
fn property_reason(key: &str) -> &'static str {
    match key {
        "replication_num" | "replicated_storage" => {
            "the object store keeps the copies of a Delta table's files"
        }
        k if k.starts_with("dynamic_partition.")
            || k == "partition_live_number"
            || k == "partition_ttl"
            || k == "partition_retention_condition" =>
        {
            "a Delta table's partitions appear as rows arrive and are never dropped by time"
        }
        "bloom_filter_columns" => {
            "Delta has no bloom filter indexes (readers skip files by statistics)"
        }
        "enable_persistent_index" | "persistent_index_type" | "primary_index_cache_expire_sec" => {
            "the primary key index is StarRocks' own"
        }
        "colocate_with" => "colocation groups are StarRocks' bucketing",
        "storage_medium" | "storage_cooldown_time" | "storage_cooldown_ttl" | "storage_volume" => {
            "the Table's location decides where the files are"
        }
        "compression" => "the Delta writer chooses the Parquet compression",
        _ => "a StarRocks storage setting with no Delta equivalent",
    }
}

/// A StarRocks column type as a Table column type. Integer display widths (`bigint(20)`) are
/// dropped as StarRocks drops them, with a note.
pub fn map_type(column: &str, text: &str) -> Result<(ColumnType, Option<String>), String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let upper = compact.to_ascii_uppercase();
    let name = upper.split(['(', '<']).next().unwrap_or_default();
    let why = match name {
        "HLL" | "BITMAP" | "PERCENTILE" => Some(format!(
            "Delta has no {name} type ({name} is a StarRocks sketch only its functions read): drop the column, or keep the raw values in a column and compute the aggregate when querying"
        )),
        "ARRAY" | "MAP" | "STRUCT" => Some(
            "a Table's columns have no nested types: use JSON (the value loads as JSON text)"
                .to_string(),
        ),
        "BINARY" | "VARBINARY" => Some(
            "a Table's columns have no binary type: use STRING (for example hex or base64 text)"
                .to_string(),
        ),
        "TIME" => Some("a Table's columns have no TIME type: use VARCHAR(8) or DATETIME".into()),
        _ => None,
    };
    if let Some(why) = why {
        return Err(format!("column '{column}' has type {text}: {why}"));
    }
    if name.parse::<ColumnType>().is_err() {
        return Err(format!(
            "column '{column}' has type {text}, which has no Table equivalent; a Table's types are BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, LARGEINT, FLOAT, DOUBLE, DECIMAL(p,s), DATE, DATETIME, CHAR(n), VARCHAR(n), STRING and JSON"
        ));
    }
    let integer = matches!(
        name,
        "TINYINT" | "SMALLINT" | "INT" | "INTEGER" | "BIGINT" | "LARGEINT"
    );
    let mut note = None;
    let parsed = if integer && upper.contains('(') {
        note = Some(format!(
            "column '{column}': the display width of {text} is dropped (it does not limit values, in StarRocks either)"
        ));
        name.parse::<ColumnType>()
    } else {
        upper.parse::<ColumnType>()
    };
    let ty = parsed.map_err(|e| format!("column '{column}': {e}"))?;
    if (name == "VARCHAR" || name == "CHAR") && !upper.contains('(') {
        note = Some(format!(
            "column '{column}': {text} without a length is {ty}"
        ));
    }
    Ok((ty, note))
}

/// The Table's aggregate function of StarRocks' name (upper case).
fn aggregate_function(column: &str, name: &str) -> Result<AggregateFunction, String> {
    use AggregateFunction::*;
    [Sum, Max, Min, Replace, ReplaceIfNotNull]
        .into_iter()
        .find(|f| f.name() == name)
        .ok_or_else(|| {
            let ty = name.trim_end_matches("_UNION");
            format!(
                "column '{column}' aggregates with {name}: Delta has no {ty} type ({ty} is a StarRocks sketch only its functions read); an Aggregate Table combines values with SUM, MAX, MIN, REPLACE or REPLACE_IF_NOT_NULL"
            )
        })
}

/// Whether `location` is one the Table CRD accepts; the scheme is lower-cased.
fn check_location(location: &str) -> Result<String, String> {
    let (scheme, rest) = location.split_once("://").unwrap_or(("", ""));
    let scheme = scheme.to_ascii_lowercase();
    if ["file", "s3", "s3a"].contains(&scheme.as_str()) && !rest.is_empty() {
        Ok(format!("{scheme}://{rest}"))
    } else {
        Err(format!(
            "--location {location}: expected s3://bucket/prefix, s3a://bucket/prefix or file:///path"
        ))
    }
}

fn valid_column_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Converts a parsed `CREATE TABLE` statement into a `Table`.
pub fn convert(st: &CreateTable, opts: &TableOptions) -> Result<ConvertedTable, String> {
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    if st.external {
        return Err(format!(
            "CREATE EXTERNAL TABLE {}: an external table's data stays in another system; only StarRocks' own (OLAP) tables convert to a Table",
            st.table
        ));
    }
    if let Some(engine) = &st.engine
        && !engine.eq_ignore_ascii_case("olap")
    {
        return Err(format!(
            "ENGINE = {engine}: an external table's data stays in another system; only StarRocks' own (OLAP) tables convert to a Table"
        ));
    }
    let name = kube_name(&st.table, "table name")?;
    if name != st.table {
        notes.push(format!(
            "table '{}' is Table '{name}' (Kubernetes names can't hold '_' or upper case)",
            st.table
        ));
    }
    let namespace = namespace_of(st.database.as_deref(), &opts.namespace, &mut notes)?;
    if st.if_not_exists {
        notes.push(
            "IF NOT EXISTS: kubectl apply creates the Table, or updates an existing one (whose model, keys, location and partitionColumns can't change)"
                .to_string(),
        );
    }
    if st.temporary {
        warnings.push(
            "TEMPORARY: a Table is not bound to a session; it stays until it is deleted"
                .to_string(),
        );
    }
    let location = match &opts.location {
        Some(l) => check_location(l)?,
        None => {
            warnings.push(format!(
                "spec.location is {LOCATION_PLACEHOLDER}: a CREATE TABLE names no storage; replace it with s3://bucket/prefix or file:///path (or convert with --location): the API server refuses the placeholder"
            ));
            LOCATION_PLACEHOLDER.to_string()
        }
    };

    // Model and keys.
    let (model, mut keys) = match &st.key {
        Some((model, cols)) => (*model, cols.clone()),
        None if st.columns.iter().any(|c| c.aggregate.is_some()) => {
            let keys: Vec<String> = st
                .columns
                .iter()
                .filter(|c| c.aggregate.is_none())
                .map(|c| c.name.clone())
                .collect();
            notes.push(format!(
                "no key clause, and columns with aggregate functions: an Aggregate table whose keys are the other columns ({}), as StarRocks makes it",
                keys.join(", ")
            ));
            (TableModel::Aggregate, keys)
        }
        None if !st.order_by.is_empty() => {
            notes.push(format!(
                "ORDER BY ({}) is the Duplicate table's sort key: recorded in keys",
                st.order_by.join(", ")
            ));
            (TableModel::Duplicate, st.order_by.clone())
        }
        None => (TableModel::Duplicate, Vec::new()),
    };
    // StarRocks' column names are case-insensitive; the Table's keys are the columns' spelling.
    for key in &mut keys {
        if let Some(c) = st.columns.iter().find(|c| c.name.eq_ignore_ascii_case(key)) {
            key.clone_from(&c.name);
        }
    }
    if !st.order_by.is_empty() && (st.key.is_some() || model != TableModel::Duplicate) {
        warnings.push(format!(
            "ORDER BY ({}) is ignored: it orders StarRocks' storage; a Delta table keeps rows in the order they load",
            st.order_by.join(", ")
        ));
    }
    if keys.len() > MAX_KEYS {
        return Err(format!(
            "{} lists {} columns; a Table has at most {MAX_KEYS} keys",
            st.key
                .as_ref()
                .map_or("the key".to_string(), |(m, _)| key_clause(*m)),
            keys.len()
        ));
    }

    // Columns.
    if st.columns.is_empty() {
        return Err("the column list is empty".into());
    }
    if st.columns.len() > MAX_COLUMNS {
        return Err(format!(
            "{} columns: a Table has at most {MAX_COLUMNS}",
            st.columns.len()
        ));
    }
    let mut problems = Vec::new();
    let mut columns = Vec::new();
    for (i, c) in st.columns.iter().enumerate() {
        if !valid_column_name(&c.name) {
            problems.push(format!(
                "column '{}': a Table's column names are letters, digits and '_', not starting with a digit",
                c.name
            ));
            continue;
        }
        if st.columns[..i]
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&c.name))
        {
            problems.push(format!("column '{}' is defined twice", c.name));
            continue;
        }
        let ty = match map_type(&c.name, &c.type_text) {
            Ok((ty, note)) => {
                notes.extend(note);
                ty
            }
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let aggregate = match c
            .aggregate
            .as_deref()
            .map(|a| aggregate_function(&c.name, a))
        {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                problems.push(e);
                continue;
            }
            None => None,
        };
        let is_key = keys.contains(&c.name);
        let mut nullable = c.nullable.unwrap_or(true);
        if nullable && is_key && model.is_keyed() {
            warnings.push(format!(
                "key column '{}' is {} in the statement: made NOT NULL, as key columns of {model} Tables are (a row with NULL there is an error row)",
                c.name,
                if c.nullable == Some(true) {
                    "NULL"
                } else {
                    "nullable"
                }
            ));
            nullable = false;
        }
        let default = match &c.default {
            Some(DefaultValue::Literal(v)) => {
                if routine_load_api::load_plan::parse_text(v.as_bytes(), &ty).is_err() {
                    problems.push(format!(
                        "column '{}': DEFAULT \"{v}\" is not a valid {ty}",
                        c.name
                    ));
                    continue;
                }
                Some(v.clone())
            }
            Some(DefaultValue::Expression(e)) => {
                warnings.push(format!(
                    "column '{}': DEFAULT {e} is dropped: a Table's default is a constant (a job can compute the value in COLUMNS: {} = ...)",
                    c.name, c.name
                ));
                None
            }
            Some(DefaultValue::Null) | None => None,
        };
        if c.auto_increment {
            warnings.push(format!(
                "column '{}' is AUTO_INCREMENT: a Table has no generated values; loads must give the column its values",
                c.name
            ));
        }
        if let Some(expr) = &c.generated {
            warnings.push(format!(
                "column '{}' is generated (AS {expr}): a Table's columns are all loaded; a job computes it with COLUMNS (..., {} = {expr})",
                c.name, c.name
            ));
        }
        columns.push(TableColumn {
            name: c.name.clone(),
            column_type: ty.to_string(),
            nullable,
            default,
            comment: c.comment.clone().filter(|s| !s.is_empty()),
            aggregate,
        });
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }

    // Partitions.
    let partition_columns = match &st.partition {
        None => Vec::new(),
        Some(desc) => partition_columns(desc, &columns, &mut notes, &mut warnings)?,
    };

    // What has no equivalent.
    for index in &st.indexes {
        warnings.push(format!(
            "{index} is ignored: Delta tables have no indexes (readers skip files by statistics)"
        ));
    }
    if let Some(d) = &st.distribution {
        warnings.push(format!(
            "{d} is ignored: bucketing is StarRocks' storage layout; a Delta table's files are grouped by partition only"
        ));
    }
    if let Some(r) = &st.rollup {
        warnings.push(format!(
            "{r} is ignored: a Table has no rollups (a reader aggregates when querying)"
        ));
    }
    for (k, v) in &st.properties {
        warnings.push(format!(
            "PROPERTIES \"{k}\" = \"{v}\" is ignored: {}",
            property_reason(k)
        ));
    }
    for (k, v) in &st.broker_properties {
        warnings.push(format!(
            "BROKER PROPERTIES \"{k}\" = \"{v}\" is ignored: a Table's storage credentials are the Secret named by spec.credentialsSecret"
        ));
    }

    let spec = TableSpec {
        columns,
        partition_columns,
        location,
        credentials_secret: None,
        deletion_policy: DeletionPolicy::Retain,
        comment: st.comment.clone().filter(|s| !s.is_empty()),
        model,
        keys,
        maintenance: Default::default(),
    };
    routine_load_api::table_model::validate(&spec).map_err(|e| e.to_string())?;
    let mut table = Table::new(&name, spec);
    table.metadata.namespace = namespace;
    Ok(ConvertedTable {
        name,
        table,
        notes,
        warnings,
    })
}

/// The Delta partition columns of a PARTITION BY clause: columns partition by value (Delta's
/// identity partitioning); `date_trunc('day', d)` of a DATE column is `d`; what else partitions
/// by expressions or ranges is named in a warning and left out.
fn partition_columns(
    desc: &PartitionDesc,
    columns: &[TableColumn],
    notes: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, String> {
    // StarRocks' column names are case-insensitive; the Table's partition columns take the
    // columns' spelling.
    let column = |name: &str| -> Result<&TableColumn, String> {
        columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("PARTITION BY names '{name}', which is not a column"))
    };
    let is_date = |c: &TableColumn| c.parsed_type() == Ok(ColumnType::Date);
    let no_expressions = |text: &str| {
        format!(
            "PARTITION BY {text} is not carried over: a Delta table partitions by column values, not expressions; to partition by it, add a column a job computes with COLUMNS (..., c = {text}) and list it in partitionColumns"
        )
    };
    let mut out: Vec<String> = Vec::new();
    match desc {
        PartitionDesc::Expressions(exprs) => {
            for e in exprs {
                if let PartitionExpr::Column(c) = e {
                    out.push(column(c)?.name.clone());
                } else if let Some(c) = day_truncated(e)
                    && let Ok(col) = column(c)
                    && is_date(col)
                {
                    notes.push(format!(
                        "PARTITION BY {}: one partition per day of the DATE column {c}, as partitionColumns [{c}]",
                        e.text()
                    ));
                    out.push(col.name.clone());
                } else {
                    warnings.push(no_expressions(e.text()));
                }
            }
        }
        PartitionDesc::Range { exprs, definitions } => match exprs.as_slice() {
            [PartitionExpr::Column(c)] if is_date(column(c)?) => {
                warnings.push(format!(
                    "PARTITION BY RANGE ({c}): its {definitions} range partition(s) become one Delta partition per day ({c} is a DATE; Delta partitions by value)"
                ));
                out.push(column(c)?.name.clone());
            }
            _ => warnings.push(format!(
                "PARTITION BY RANGE ({}) is not carried over: a Delta table partitions by column values, not ranges; the Table is not partitioned (list columns in partitionColumns to partition by their values)",
                exprs
                    .iter()
                    .map(PartitionExpr::text)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
        PartitionDesc::List { exprs, definitions } => {
            let mut listed = Vec::new();
            for e in exprs {
                match e {
                    PartitionExpr::Column(c) => {
                        out.push(column(c)?.name.clone());
                        listed.push(c.as_str());
                    }
                    other => warnings.push(no_expressions(other.text())),
                }
            }
            if !listed.is_empty() {
                warnings.push(format!(
                    "PARTITION BY LIST ({}): its {definitions} partition definition(s) are dropped: the Delta table has one partition per distinct value{} (new values need no new partition)",
                    listed.join(", "),
                    if listed.len() > 1 { " combination" } else { "" }
                ));
            }
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for c in out {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    if unique.len() > MAX_PARTITION_COLUMNS {
        return Err(format!(
            "PARTITION BY has {} columns: a Table has at most {MAX_PARTITION_COLUMNS} partition columns",
            unique.len()
        ));
    }
    Ok(unique)
}

/// The column `c` of `date_trunc('day', c)`.
fn day_truncated(e: &PartitionExpr) -> Option<&str> {
    match e {
        PartitionExpr::Function { name, args, .. } if name == "date_trunc" => match args.as_slice()
        {
            [PartitionArg::Str(unit), PartitionArg::Ident(c)]
                if unit.eq_ignore_ascii_case("day") =>
            {
                Some(c)
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
#[path = "create_table_tests.rs"]
mod tests;
