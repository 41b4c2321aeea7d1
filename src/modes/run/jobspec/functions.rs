//! The pure functions job files may call (Nomad's HCL2 function set, the common part).
//!
//! `file`, `templatefile`, `try` and `can` need the evaluator and live in `eval.rs`.
//! Errors are plain messages; the evaluator adds the call's location.

use base64::Engine as _;
use serde_json::Value;

use super::value::{self, number, to_number, to_string, type_name, ConversionError, Object};

/// Names of every function a job file may call, for "unknown function" errors.
pub const NAMES: &[&str] = &[
    "abs",
    "base64decode",
    "base64encode",
    "basename",
    "can",
    "ceil",
    "chunklist",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "contains",
    "dirname",
    "distinct",
    "element",
    "file",
    "flatten",
    "floor",
    "format",
    "formatlist",
    "index",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "length",
    "lookup",
    "lower",
    "max",
    "merge",
    "min",
    "range",
    "regex_replace",
    "replace",
    "reverse",
    "slice",
    "sort",
    "split",
    "strrev",
    "substr",
    "templatefile",
    "title",
    "tobool",
    "tolist",
    "tomap",
    "tonumber",
    "toset",
    "tostring",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "try",
    "upper",
    "values",
    "zipmap",
];

/// Why a function call of a job file failed; shown as the reason in the call's located
/// error.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error(transparent)]
    Conversion(#[from] ConversionError),
    #[error("expected {expected} argument{}, got {got}", if *expected == 1 { "" } else { "s" })]
    Arity { expected: usize, got: usize },
    #[error("expected {expected} arguments, got {got}")]
    ArityRange { expected: &'static str, got: usize },
    #[error("argument {index}: {source}")]
    Argument {
        index: usize,
        #[source]
        source: Box<FunctionError>,
    },
    #[error("argument {index} must be a map or object, got a {got}")]
    NotAMapArgument { index: usize, got: &'static str },
    #[error("a list is required, got a {0}")]
    NotAList(&'static str),
    #[error("a map is required, got a {0}")]
    NotAMap(&'static str),
    #[error("a whole non-negative number is required, got {0}")]
    NotAnIndex(f64),
    #[error("cannot take the length of a {0}")]
    NoLength(&'static str),
    #[error("invalid slice {start}..{end} of a list of {len}")]
    InvalidSlice {
        start: usize,
        end: usize,
        len: usize,
    },
    #[error("the map has no key {0:?} and no default was given")]
    MissingKey(String),
    #[error("there is no function named {0:?}")]
    NoSuchFunction(String),
    #[error(transparent)]
    Regex(#[from] regex::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("invalid base64: {0}")]
    InvalidBase64(#[source] base64::DecodeError),
    #[error("invalid argument index [{0}]")]
    BadArgumentIndex(String),
    #[error("not enough arguments for the format verb %{0}")]
    MissingFormatArgument(char),
    #[error("too many arguments: {given} given, {used} used")]
    TooManyArguments { given: usize, used: usize },
    #[error("the {what} {digits} is above the limit of {MAX_FORMAT_WIDTH}")]
    AboveFormatLimit { what: &'static str, digits: String },
    #[error("%{verb} requires a whole number, got {value}")]
    NotWhole { verb: char, value: f64 },
    #[error("unsupported format verb %{0}")]
    UnsupportedVerb(char),
    /// A rule of the function's own, said in a fixed sentence.
    #[error("{0}")]
    Invalid(&'static str),
}

pub fn call(name: &str, args: Vec<Value>) -> Result<Value, FunctionError> {
    match name {
        "abs" => num1(&args, f64::abs),
        "ceil" => num1(&args, f64::ceil),
        "floor" => num1(&args, f64::floor),
        "min" => fold_numbers(&args, f64::min),
        "max" => fold_numbers(&args, f64::max),
        "lower" => str1(&args, |s| s.to_lowercase()),
        "upper" => str1(&args, |s| s.to_uppercase()),
        "trimspace" => str1(&args, |s| s.trim().to_string()),
        "strrev" => str1(&args, |s| s.chars().rev().collect()),
        "title" => str1(&args, title),
        "basename" => str1(&args, |s| {
            let trimmed = s.trim_end_matches('/');
            trimmed.rsplit('/').next().unwrap_or("").to_string()
        }),
        "dirname" => str1(&args, |s| match s.trim_end_matches('/').rfind('/') {
            Some(0) => "/".to_string(),
            Some(i) => s[..i].to_string(),
            None => ".".to_string(),
        }),
        "trim" => {
            let [s, cut] = exact::<2>(&args)?;
            let (s, cut) = (to_string(s)?, to_string(cut)?);
            Ok(Value::String(
                s.trim_matches(|c| cut.contains(c)).to_string(),
            ))
        }
        "trimprefix" => {
            let [s, p] = exact::<2>(&args)?;
            let (s, p) = (to_string(s)?, to_string(p)?);
            Ok(Value::String(s.strip_prefix(&p).unwrap_or(&s).to_string()))
        }
        "trimsuffix" => {
            let [s, p] = exact::<2>(&args)?;
            let (s, p) = (to_string(s)?, to_string(p)?);
            Ok(Value::String(s.strip_suffix(&p).unwrap_or(&s).to_string()))
        }
        "substr" => substr(&args),
        "replace" => replace(&args),
        "regex_replace" => {
            let [s, pattern, with] = exact::<3>(&args)?;
            let re = regex::Regex::new(&to_string(pattern)?).map_err(FunctionError::from)?;
            Ok(Value::String(
                re.replace_all(&to_string(s)?, to_string(with)?.as_str())
                    .into_owned(),
            ))
        }
        "split" => {
            let [sep, s] = exact::<2>(&args)?;
            let (sep, s) = (to_string(sep)?, to_string(s)?);
            if sep.is_empty() {
                return Err(FunctionError::Invalid("the separator must not be empty"));
            }
            Ok(Value::Array(
                s.split(sep.as_str())
                    .map(|p| Value::String(p.into()))
                    .collect(),
            ))
        }
        "join" => join(&args),
        "format" => {
            let (fmt, rest) = args
                .split_first()
                .ok_or(FunctionError::Invalid("format needs a format string"))?;
            format(&to_string(fmt)?, rest).map(Value::String)
        }
        "formatlist" => formatlist(&args),
        "concat" => {
            let mut out = Vec::new();
            for (i, arg) in args.iter().enumerate() {
                out.extend(
                    list(arg)
                        .map_err(|e| FunctionError::Argument {
                            index: i + 1,
                            source: Box::new(e),
                        })?
                        .iter()
                        .cloned(),
                );
            }
            Ok(Value::Array(out))
        }
        "merge" => {
            let mut out = Object::new();
            for (i, arg) in args.into_iter().enumerate() {
                match arg {
                    Value::Null => {}
                    Value::Object(map) => out.extend(map),
                    other => {
                        return Err(FunctionError::NotAMapArgument {
                            index: i + 1,
                            got: type_name(&other),
                        })
                    }
                }
            }
            Ok(Value::Object(out))
        }
        "lookup" => lookup(args),
        "coalesce" => args
            .into_iter()
            .find(|v| !v.is_null() && v.as_str() != Some(""))
            .ok_or(FunctionError::Invalid(
                "no non-null, non-empty-string arguments",
            )),
        "coalescelist" => args
            .into_iter()
            .find(|v| v.as_array().is_some_and(|l| !l.is_empty()))
            .ok_or(FunctionError::Invalid("no non-empty list arguments")),
        "compact" => {
            let [l] = exact::<1>(&args)?;
            Ok(Value::Array(
                list(l)?
                    .iter()
                    .filter(|v| !v.is_null() && v.as_str() != Some(""))
                    .cloned()
                    .collect(),
            ))
        }
        "contains" => {
            let [l, needle] = exact::<2>(&args)?;
            Ok(Value::Bool(
                list(l)?.iter().any(|v| value::equal(v, needle)),
            ))
        }
        "index" => {
            let [l, needle] = exact::<2>(&args)?;
            list(l)?
                .iter()
                .position(|v| value::equal(v, needle))
                .map(|i| number(i as f64))
                .ok_or(FunctionError::Invalid("item not found"))
        }
        "element" => {
            let [l, i] = exact::<2>(&args)?;
            let items = list(l)?;
            if items.is_empty() {
                return Err(FunctionError::Invalid(
                    "cannot use element function with an empty list",
                ));
            }
            let i = index_arg(i)?;
            Ok(items[i % items.len()].clone())
        }
        "length" => {
            let [v] = exact::<1>(&args)?;
            let n = match v {
                Value::String(s) => s.chars().count(),
                Value::Array(l) => l.len(),
                Value::Object(m) => m.len(),
                other => return Err(FunctionError::NoLength(type_name(other))),
            };
            Ok(number(n as f64))
        }
        "keys" => {
            let [m] = exact::<1>(&args)?;
            Ok(Value::Array(
                object(m)?
                    .keys()
                    .map(|k| Value::String(k.clone()))
                    .collect(),
            ))
        }
        "values" => {
            let [m] = exact::<1>(&args)?;
            Ok(Value::Array(object(m)?.values().cloned().collect()))
        }
        "zipmap" => {
            let [k, v] = exact::<2>(&args)?;
            let (k, v) = (list(k)?, list(v)?);
            if k.len() != v.len() {
                return Err(FunctionError::Invalid(
                    "the keys and values lists must have the same length",
                ));
            }
            let mut out = Object::new();
            for (key, val) in k.iter().zip(v) {
                out.insert(to_string(key)?, val.clone());
            }
            Ok(Value::Object(out))
        }
        "distinct" => {
            let [l] = exact::<1>(&args)?;
            let mut out: Vec<Value> = Vec::new();
            for v in list(l)? {
                if !out.iter().any(|u| value::equal(u, v)) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }
        "flatten" => {
            let [l] = exact::<1>(&args)?;
            let mut out = Vec::new();
            flatten_into(list(l)?, &mut out);
            Ok(Value::Array(out))
        }
        "reverse" => {
            let [l] = exact::<1>(&args)?;
            Ok(Value::Array(list(l)?.iter().rev().cloned().collect()))
        }
        "sort" => {
            let [l] = exact::<1>(&args)?;
            let mut out = list(l)?
                .iter()
                .map(to_string)
                .collect::<Result<Vec<_>, _>>()?;
            out.sort();
            Ok(Value::Array(out.into_iter().map(Value::String).collect()))
        }
        "slice" => {
            let [l, start, end] = exact::<3>(&args)?;
            let items = list(l)?;
            let (start, end) = (index_arg(start)?, index_arg(end)?);
            if start > end || end > items.len() {
                return Err(FunctionError::InvalidSlice {
                    start,
                    end,
                    len: items.len(),
                });
            }
            Ok(Value::Array(items[start..end].to_vec()))
        }
        "chunklist" => {
            let [l, size] = exact::<2>(&args)?;
            let size = index_arg(size)?;
            if size == 0 {
                return Err(FunctionError::Invalid("the chunk size must be positive"));
            }
            Ok(Value::Array(
                list(l)?
                    .chunks(size)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        "range" => range(&args),
        "jsonencode" => {
            let [v] = exact::<1>(&args)?;
            serde_json::to_string(v)
                .map(Value::String)
                .map_err(FunctionError::from)
        }
        "jsondecode" => {
            let [s] = exact::<1>(&args)?;
            serde_json::from_str(&to_string(s)?).map_err(FunctionError::InvalidJson)
        }
        "base64encode" => {
            let [s] = exact::<1>(&args)?;
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(to_string(s)?),
            ))
        }
        "base64decode" => {
            let [s] = exact::<1>(&args)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(to_string(s)?.trim())
                .map_err(FunctionError::InvalidBase64)?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| FunctionError::Invalid("the decoded bytes are not valid UTF-8"))
        }
        "tostring" => convert1(&args, |v| to_string(v).map(Value::String)),
        "tonumber" => convert1(&args, |v| to_number(v).map(number)),
        "tobool" => convert1(&args, |v| value::to_bool(v).map(Value::Bool)),
        "tolist" => convert1(&args, |v| list(v).map(|l| Value::Array(l.to_vec()))),
        "toset" => call("distinct", args),
        "tomap" => convert1(&args, |v| object(v).map(|m| Value::Object(m.clone()))),
        other => Err(FunctionError::NoSuchFunction(other.to_string())),
    }
}

fn exact<const N: usize>(args: &[Value]) -> Result<&[Value; N], FunctionError> {
    args.try_into().map_err(|_| FunctionError::Arity {
        expected: N,
        got: args.len(),
    })
}

fn list(v: &Value) -> Result<&[Value], FunctionError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(FunctionError::NotAList(type_name(other))),
    }
}

fn object(v: &Value) -> Result<&Object, FunctionError> {
    match v {
        Value::Object(map) => Ok(map),
        other => Err(FunctionError::NotAMap(type_name(other))),
    }
}

fn index_arg(v: &Value) -> Result<usize, FunctionError> {
    let n = to_number(v)?;
    if n < 0.0 || n.fract() != 0.0 {
        return Err(FunctionError::NotAnIndex(n));
    }
    Ok(n as usize)
}

fn num1(args: &[Value], f: impl Fn(f64) -> f64) -> Result<Value, FunctionError> {
    let [v] = exact::<1>(args)?;
    Ok(number(f(to_number(v)?)))
}

fn str1(args: &[Value], f: impl Fn(&str) -> String) -> Result<Value, FunctionError> {
    let [v] = exact::<1>(args)?;
    Ok(Value::String(f(&to_string(v)?)))
}

fn convert1<E>(
    args: &[Value],
    f: impl Fn(&Value) -> Result<Value, E>,
) -> Result<Value, FunctionError>
where
    FunctionError: From<E>,
{
    let [v] = exact::<1>(args)?;
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(f(v)?)
}

fn fold_numbers(args: &[Value], f: impl Fn(f64, f64) -> f64) -> Result<Value, FunctionError> {
    let mut numbers = args.iter().map(to_number);
    let first = numbers
        .next()
        .ok_or(FunctionError::Invalid("at least one number is required"))??;
    let folded = numbers.try_fold(first, |acc, n| n.map(|n| f(acc, n)))?;
    Ok(number(folded))
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if at_word_start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !c.is_alphanumeric();
    }
    out
}

fn substr(args: &[Value]) -> Result<Value, FunctionError> {
    let [s, offset, length] = exact::<3>(args)?;
    let chars: Vec<char> = to_string(s)?.chars().collect();
    let offset = to_number(offset)? as i64;
    let length = to_number(length)? as i64;
    let len = chars.len() as i64;
    let start = if offset < 0 {
        (len + offset).max(0)
    } else {
        offset.min(len)
    };
    let end = if length < 0 {
        len
    } else {
        (start + length).min(len)
    };
    Ok(Value::String(
        chars[start as usize..end as usize].iter().collect(),
    ))
}

/// `replace(string, search, replacement)`; a search wrapped in slashes is a regex, as in
/// Terraform's variant that job files copied from Terraform use.
fn replace(args: &[Value]) -> Result<Value, FunctionError> {
    let [s, search, with] = exact::<3>(args)?;
    let (s, search, with) = (to_string(s)?, to_string(search)?, to_string(with)?);
    if search.len() > 1 && search.starts_with('/') && search.ends_with('/') {
        let re = regex::Regex::new(&search[1..search.len() - 1]).map_err(FunctionError::from)?;
        return Ok(Value::String(
            re.replace_all(&s, with.as_str()).into_owned(),
        ));
    }
    if search.is_empty() {
        return Ok(Value::String(s));
    }
    Ok(Value::String(s.replace(&search, &with)))
}

fn join(args: &[Value]) -> Result<Value, FunctionError> {
    let (sep, lists) = args
        .split_first()
        .ok_or(FunctionError::Invalid("join needs a separator and a list"))?;
    if lists.is_empty() {
        return Err(FunctionError::Invalid("join needs at least one list"));
    }
    let sep = to_string(sep)?;
    let mut parts = Vec::new();
    for l in lists {
        for item in list(l)? {
            parts.push(to_string(item)?);
        }
    }
    Ok(Value::String(parts.join(&sep)))
}

fn lookup(mut args: Vec<Value>) -> Result<Value, FunctionError> {
    if !(2..=3).contains(&args.len()) {
        return Err(FunctionError::ArityRange {
            expected: "2 or 3",
            got: args.len(),
        });
    }
    let default = if args.len() == 3 { args.pop() } else { None };
    let key = to_string(&args[1])?;
    match object(&args[0])?.get(&key) {
        Some(v) => Ok(v.clone()),
        None => default.ok_or(FunctionError::MissingKey(key)),
    }
}

fn range(args: &[Value]) -> Result<Value, FunctionError> {
    let nums = args.iter().map(to_number).collect::<Result<Vec<_>, _>>()?;
    let (start, end, step) = match nums.as_slice() {
        [end] => (0.0, *end, 1.0),
        [start, end] => (*start, *end, if start <= end { 1.0 } else { -1.0 }),
        [start, end, step] => (*start, *end, *step),
        _ => return Err(FunctionError::Invalid("range takes 1 to 3 numbers")),
    };
    if step == 0.0 {
        return Err(FunctionError::Invalid("the step must not be zero"));
    }
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0.0 && i < end) || (step < 0.0 && i > end) {
        if out.len() >= 1024 {
            return Err(FunctionError::Invalid(
                "range would produce more than 1024 elements",
            ));
        }
        out.push(number(i));
        i += step;
    }
    Ok(Value::Array(out))
}

fn flatten_into(items: &[Value], out: &mut Vec<Value>) {
    for item in items {
        match item {
            Value::Array(inner) => flatten_into(inner, out),
            other => out.push(other.clone()),
        }
    }
}

fn formatlist(args: &[Value]) -> Result<Value, FunctionError> {
    let (fmt, rest) = args
        .split_first()
        .ok_or(FunctionError::Invalid("formatlist needs a format string"))?;
    let fmt = to_string(fmt)?;
    let len = rest
        .iter()
        .filter_map(Value::as_array)
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let row = rest
            .iter()
            .map(|a| match a {
                Value::Array(items) => items.get(i).cloned().ok_or(FunctionError::Invalid(
                    "all list arguments must have the same length",
                )),
                other => Ok(other.clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Value::String(format(&fmt, &row)?));
    }
    Ok(Value::Array(out))
}

/// `format` with the verbs job files use: %s %d %f %g %t %v %q %x %X %o %b %e %%, flags
/// `-`, `0`, `+`, width, precision and explicit argument indexes `%[2]s`.
pub fn format(fmt: &str, args: &[Value]) -> Result<String, FunctionError> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next_arg = 0usize;
    let mut explicit_index = false;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            let digits: String = chars.by_ref().take_while(|&c| c != ']').collect();
            let n: usize = digits
                .parse()
                .map_err(|_| FunctionError::BadArgumentIndex(digits.clone()))?;
            if n == 0 {
                return Err(FunctionError::Invalid("argument indexes start at 1"));
            }
            next_arg = n - 1;
            explicit_index = true;
        }
        let width = take_digits(&mut chars, "width")?;
        let precision = if chars.peek() == Some(&'.') {
            chars.next();
            Some(take_digits(&mut chars, "precision")?.unwrap_or(0))
        } else {
            None
        };
        let verb = chars.next().ok_or(FunctionError::Invalid(
            "the format string ends with an incomplete verb",
        ))?;
        let arg = args
            .get(next_arg)
            .ok_or(FunctionError::MissingFormatArgument(verb))?;
        next_arg += 1;
        let text = format_verb(verb, arg, precision, plus)?;
        pad(
            &mut out,
            &text,
            width,
            left,
            zero && !left && verb != 's' && verb != 'q',
        );
    }
    if !explicit_index && next_arg < args.len() {
        return Err(FunctionError::TooManyArguments {
            given: args.len(),
            used: next_arg,
        });
    }
    Ok(out)
}

/// Largest width or precision a format verb may ask for: the output of one verb is at
/// most this long (plus the value itself), so a job file cannot make the evaluator
/// allocate without bound (`%99999999999d`).
pub const MAX_FORMAT_WIDTH: usize = 4096;

/// The digits of a width or precision, if any; `what` names it in the error.
fn take_digits(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    what: &'static str,
) -> Result<Option<usize>, FunctionError> {
    let mut digits = String::new();
    while let Some(&c) = chars.peek() {
        if !c.is_ascii_digit() {
            break;
        }
        digits.push(c);
        chars.next();
    }
    if digits.is_empty() {
        return Ok(None);
    }
    match digits.parse::<usize>() {
        Ok(n) if n <= MAX_FORMAT_WIDTH => Ok(Some(n)),
        _ => Err(FunctionError::AboveFormatLimit { what, digits }),
    }
}

fn format_verb(
    verb: char,
    arg: &Value,
    precision: Option<usize>,
    plus: bool,
) -> Result<String, FunctionError> {
    let sign = |f: f64, s: String| if plus && f >= 0.0 { format!("+{s}") } else { s };
    let integer = |arg: &Value| -> Result<i64, FunctionError> {
        let f = to_number(arg)?;
        if f.fract() != 0.0 {
            return Err(FunctionError::NotWhole { verb, value: f });
        }
        Ok(f as i64)
    };
    Ok(match verb {
        's' => {
            let s = to_string(arg)?;
            match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            }
        }
        'q' => serde_json::to_string(&to_string(arg)?).map_err(FunctionError::from)?,
        'v' => match arg {
            Value::Array(_) | Value::Object(_) => {
                serde_json::to_string(arg).map_err(FunctionError::from)?
            }
            Value::Null => "null".into(),
            other => to_string(other)?,
        },
        't' => value::to_bool(arg)?.to_string(),
        'd' => {
            let i = integer(arg)?;
            sign(i as f64, i.to_string())
        }
        'x' => format!("{:x}", integer(arg)?),
        'X' => format!("{:X}", integer(arg)?),
        'o' => format!("{:o}", integer(arg)?),
        'b' => format!("{:b}", integer(arg)?),
        'f' | 'F' => {
            let f = to_number(arg)?;
            sign(f, format!("{:.*}", precision.unwrap_or(6), f))
        }
        'e' => {
            let f = to_number(arg)?;
            sign(f, format!("{:.*e}", precision.unwrap_or(6), f))
        }
        'g' => {
            let f = to_number(arg)?;
            sign(f, value::to_string(&number(f))?)
        }
        other => return Err(FunctionError::UnsupportedVerb(other)),
    })
}

fn pad(out: &mut String, text: &str, width: Option<usize>, left: bool, zero: bool) {
    let len = text.chars().count();
    let fill = width.unwrap_or(0).saturating_sub(len);
    if fill == 0 {
        out.push_str(text);
    } else if left {
        out.push_str(text);
        out.extend(std::iter::repeat(' ').take(fill));
    } else if zero {
        let (sign, digits) = match text.strip_prefix(['-', '+']) {
            Some(rest) => (&text[..1], rest),
            None => ("", text),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat('0').take(fill));
        out.push_str(digits);
    } else {
        out.extend(std::iter::repeat(' ').take(fill));
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_are_typed_and_read_as_before() {
        let err = call("concat", vec![json!(1)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "argument 1: a list is required, got a number"
        );
        assert!(matches!(
            &err,
            FunctionError::Argument { index: 1, source } if matches!(**source, FunctionError::NotAList("number"))
        ));
        let err = call("regex_replace", vec![json!("a"), json!("("), json!("b")]).unwrap_err();
        assert!(matches!(err, FunctionError::Regex(_)), "{err:?}");
        let err = call("upper", vec![json!(null)]).unwrap_err();
        assert_eq!(err.to_string(), "a null value cannot be used as a string");
        assert!(matches!(
            err,
            FunctionError::Conversion(ConversionError::NullAsString)
        ));
        assert_eq!(
            call("upper", vec![]).unwrap_err().to_string(),
            "expected 1 argument, got 0"
        );
        assert_eq!(
            call("trim", vec![json!("a")]).unwrap_err().to_string(),
            "expected 2 arguments, got 1"
        );
    }

    fn f(name: &str, args: Value) -> Result<Value, String> {
        let Value::Array(args) = args else {
            unreachable!()
        };
        call(name, args).map_err(|e| e.to_string())
    }

    #[test]
    fn string_functions() {
        assert_eq!(f("upper", json!(["ab"])).unwrap(), json!("AB"));
        assert_eq!(f("lower", json!(["AB"])).unwrap(), json!("ab"));
        assert_eq!(f("trimspace", json!(["  a \n"])).unwrap(), json!("a"));
        assert_eq!(
            f("replace", json!(["a-b-c", "-", "+"])).unwrap(),
            json!("a+b+c")
        );
        assert_eq!(
            f("replace", json!(["a1b22", "/[0-9]+/", "#"])).unwrap(),
            json!("a#b#")
        );
        assert_eq!(f("split", json!([",", "a,b"])).unwrap(), json!(["a", "b"]));
        assert_eq!(
            f("join", json!(["-", ["a", 1], ["c"]])).unwrap(),
            json!("a-1-c")
        );
        assert_eq!(
            f("title", json!(["hello world"])).unwrap(),
            json!("Hello World")
        );
        assert_eq!(f("substr", json!(["hello", 1, 3])).unwrap(), json!("ell"));
        assert_eq!(f("substr", json!(["hello", -3, -1])).unwrap(), json!("llo"));
        assert_eq!(f("trimprefix", json!(["abc", "ab"])).unwrap(), json!("c"));
        assert_eq!(f("basename", json!(["/a/b.txt"])).unwrap(), json!("b.txt"));
        assert_eq!(f("dirname", json!(["/a/b.txt"])).unwrap(), json!("/a"));
    }

    #[test]
    fn format_caps_width_and_precision() {
        let one = [json!(1)];
        assert_eq!(
            format("%99999999999d", &one).unwrap_err().to_string(),
            "the width 99999999999 is above the limit of 4096"
        );
        assert_eq!(
            format("%.4097f", &one).unwrap_err().to_string(),
            "the precision 4097 is above the limit of 4096"
        );
        // Beyond usize: still an error, not a silently dropped width.
        assert!(format("%999999999999999999999999s", &[json!("x")]).is_err());
        assert_eq!(format("%4096d", &one).unwrap().len(), 4096);
        let err = f("format", json!(["%99999999999d", 1])).unwrap_err();
        assert!(err.contains("above the limit"), "{err}");
        assert!(f("formatlist", json!(["%99999999999s", ["a"]])).is_err());
    }

    #[test]
    fn format_handles_common_verbs() {
        let out = format(
            "%s-%d-%05.1f-%t-%q-%-3s|-%03d-%%",
            &json!(["a", 7, 2.25, true, "x", "y", -5])
                .as_array()
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert_eq!(out, "a-7-002.2-true-\"x\"-y  |--05-%");
        assert_eq!(
            format("%[2]s %[1]s", &[json!("a"), json!("b")]).unwrap(),
            "b a"
        );
        assert!(format("%d", &[json!("x")]).is_err());
        assert!(format("%s %s", &[json!("x")]).is_err());
        assert!(format("%s", &[json!("x"), json!("y")]).is_err());
        assert_eq!(
            f("formatlist", json!(["%s=%s", ["a", "b"], "v"])).unwrap(),
            json!(["a=v", "b=v"])
        );
    }

    #[test]
    fn collection_functions() {
        assert_eq!(f("concat", json!([[1], [2, 3]])).unwrap(), json!([1, 2, 3]));
        assert_eq!(
            f("merge", json!([{"a": 1, "b": 1}, null, {"b": 2}])).unwrap(),
            json!({"a": 1, "b": 2})
        );
        assert_eq!(f("lookup", json!([{"a": 1}, "a"])).unwrap(), json!(1));
        assert_eq!(
            f("lookup", json!([{"a": 1}, "b", "d"])).unwrap(),
            json!("d")
        );
        assert!(f("lookup", json!([{"a": 1}, "b"])).is_err());
        assert_eq!(f("coalesce", json!([null, "", "x"])).unwrap(), json!("x"));
        assert_eq!(f("length", json!([[1, 2]])).unwrap(), json!(2));
        assert_eq!(
            f("keys", json!([{"b": 1, "a": 2}])).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(f("range", json!([3])).unwrap(), json!([0, 1, 2]));
        assert_eq!(
            f("flatten", json!([[1, [2, [3]]]])).unwrap(),
            json!([1, 2, 3])
        );
        assert_eq!(f("distinct", json!([[1, 1, 2]])).unwrap(), json!([1, 2]));
        assert_eq!(f("element", json!([["a", "b"], 3])).unwrap(), json!("b"));
        assert_eq!(f("zipmap", json!([["a"], [1]])).unwrap(), json!({"a": 1}));
        assert_eq!(f("contains", json!([["a"], "a"])).unwrap(), json!(true));
    }

    #[test]
    fn encoding_and_conversion_functions() {
        assert_eq!(
            f("jsonencode", json!([{"a": [1, "x"]}])).unwrap(),
            json!("{\"a\":[1,\"x\"]}")
        );
        assert_eq!(
            f("jsondecode", json!(["{\"a\":1}"])).unwrap(),
            json!({"a": 1})
        );
        assert!(f("jsondecode", json!(["{"])).is_err());
        assert_eq!(f("base64encode", json!(["hi"])).unwrap(), json!("aGk="));
        assert_eq!(f("base64decode", json!(["aGk="])).unwrap(), json!("hi"));
        assert!(f("base64decode", json!(["!!"])).is_err());
        assert_eq!(f("tostring", json!([5])).unwrap(), json!("5"));
        assert_eq!(f("tonumber", json!(["5"])).unwrap(), json!(5));
        assert_eq!(f("tonumber", json!([null])).unwrap(), json!(null));
        assert!(f("tonumber", json!(["five"])).is_err());
        assert!(f("upper", json!([])).is_err());
    }
}
