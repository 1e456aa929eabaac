//! A small frame for the StarRocks functions: each one is a name, its aliases, how its arguments
//! are coerced, its return type and a vectorized body over Arrow arrays.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, AsArray, Int64Array, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use deltalake::datafusion::common::{Result, plan_err};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// Field metadata that marks a text value as JSON (the result of a JSON function or a JSON
/// column), so that `json_object` and `json_array` embed it instead of quoting it.
pub const JSON_EXTENSION: (&str, &str) = ("ARROW:extension:name", "arrow.json");

/// Whether a field holds JSON text.
pub fn is_json_field(field: &Field) -> bool {
    field
        .metadata()
        .get(JSON_EXTENSION.0)
        .is_some_and(|v| v == JSON_EXTENSION.1)
}

type CoerceFn = dyn Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync;
type InvokeFn = dyn Fn(&Call) -> Result<ArrayRef> + Send + Sync;

/// The arguments of one call, as arrays of `rows` rows.
pub struct Call {
    pub args: Vec<ArrayRef>,
    pub fields: Vec<FieldRef>,
    pub rows: usize,
}

impl Call {
    /// Argument `i` as text (NULL where it is NULL).
    pub fn text(&self, i: usize) -> Result<StringArray> {
        Ok(cast(&self.args[i], &DataType::Utf8)?
            .as_string::<i32>()
            .clone())
    }

    /// Argument `i` as BIGINT.
    pub fn int(&self, i: usize) -> Result<Int64Array> {
        Ok(cast(&self.args[i], &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone())
    }

    /// Whether argument `i` is JSON text.
    pub fn is_json(&self, i: usize) -> bool {
        self.fields.get(i).is_some_and(|f| is_json_field(f))
    }
}

/// One StarRocks function.
pub struct Udf {
    name: &'static str,
    aliases: Vec<String>,
    signature: Signature,
    /// Distinguishes two instances of the same function (the job's time zone).
    identity: String,
    coerce: Box<CoerceFn>,
    returns: DataType,
    json: bool,
    invoke: Box<InvokeFn>,
}

impl Udf {
    /// A function returning `returns`, whose arguments `coerce` maps to the types `invoke` reads.
    pub fn new(
        name: &'static str,
        returns: DataType,
        coerce: impl Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync + 'static,
        invoke: impl Fn(&Call) -> Result<ArrayRef> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            aliases: Vec::new(),
            signature: Signature::user_defined(Volatility::Immutable),
            identity: String::new(),
            coerce: Box::new(coerce),
            returns,
            json: false,
            invoke: Box::new(invoke),
        }
    }

    pub fn aliases(mut self, aliases: &[&str]) -> Self {
        self.aliases = aliases.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Evaluated for every batch (the current time), never folded at plan time.
    pub fn volatile(mut self) -> Self {
        self.signature = Signature::user_defined(Volatility::Volatile);
        self
    }

    /// The result is JSON text.
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }

    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into();
        self
    }

    pub fn build(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }
}

impl fmt::Debug for Udf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Udf").field("name", &self.name).finish()
    }
}

impl PartialEq for Udf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.identity == other.identity
    }
}

impl Eq for Udf {}

impl Hash for Udf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.identity.hash(state);
    }
}

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        (self.coerce)(arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        let field = Field::new(self.name, self.returns.clone(), true);
        Ok(Arc::new(if self.json {
            field.with_metadata(
                [(JSON_EXTENSION.0.to_string(), JSON_EXTENSION.1.to_string())].into(),
            )
        } else {
            field
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar && !args.args.is_empty() {
            1
        } else {
            args.number_rows
        };
        let call = Call {
            args: args
                .args
                .iter()
                .map(|a| a.to_array(rows))
                .collect::<Result<_>>()?,
            fields: args.arg_fields,
            rows,
        };
        let out = (self.invoke)(&call)?;
        if all_scalar && !call.args.is_empty() {
            Ok(ColumnarValue::Scalar(
                deltalake::datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// Coercion: exactly these types, for `counts` of arguments.
pub fn exactly(
    name: &'static str,
    usage: &'static str,
    forms: Vec<Vec<DataType>>,
) -> impl Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync + 'static {
    move |types: &[DataType]| {
        forms
            .iter()
            .find(|f| f.len() == types.len())
            .cloned()
            .map_or_else(|| plan_err!("{name} takes {usage}"), Ok)
    }
}

/// Coercion: any number of arguments (within `min..=max`), each to `to`.
pub fn each(
    name: &'static str,
    usage: &'static str,
    min: usize,
    max: usize,
    to: DataType,
) -> impl Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync + 'static {
    move |types: &[DataType]| {
        if types.len() < min || types.len() > max {
            return plan_err!("{name} takes {usage}");
        }
        Ok(vec![to.clone(); types.len()])
    }
}

/// Coercion: the first argument keeps its type (a date, datetime or text), the rest as given.
pub fn datetime_then(
    name: &'static str,
    usage: &'static str,
    rest: Vec<Vec<DataType>>,
) -> impl Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync + 'static {
    move |types: &[DataType]| {
        let Some((first, others)) = types.split_first() else {
            return plan_err!("{name} takes {usage}");
        };
        let Some(form) = rest.iter().find(|f| f.len() == others.len()) else {
            return plan_err!("{name} takes {usage}");
        };
        let first = match first {
            DataType::Null => DataType::Utf8,
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _) => first.clone(),
            // Numbers such as 20190625 are dates written as digits.
            _ => DataType::Utf8,
        };
        let mut out = vec![first];
        out.extend(form.iter().cloned());
        Ok(out)
    }
}
