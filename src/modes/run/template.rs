//! `template` blocks: a Go text/template subset (what consul-template jobs use without a
//! Consul, Vault or Nomad server) rendered into the task dir before the task starts.
//!
//! Supported: text, `{{- ... -}}` trimming, comments, custom delimiters, `if`/`else if`/
//! `else`/`end`, `range` (dot is the element), `with`, pipelines, string/number/bool
//! literals, parentheses, and the functions `env`, `envOrDefault`, `toUpper`, `toLower`,
//! `trimSpace`, `split`, `join`, `replaceAll`, `contains`, `printf`, `print`, `eq`, `ne`,
//! `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`, `len`, `index`. Functions that need a server
//! (`key`, `service`, `secret`, `nomadVar`, ...) are errors naming the function.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::List(l) => !l.is_empty(),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Nil => f.write_str("<no value>"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Float(x) => write!(f, "{x}"),
            Val::Str(s) => f.write_str(s),
            Val::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Lit(Val),
    Dot,
    Func(String),
    Pipe(Box<Pipeline>),
}

/// `cmd | cmd | ...`; each command is a list of args, the first may be a function.
#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    commands: Vec<Vec<Arg>>,
    line: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// One `{{ ... }}` with its trim markers already applied to the neighbouring text.
#[derive(Debug)]
enum Token {
    Text(String),
    Action { body: String, line: usize },
}

/// Renders `text` with the task environment for `env`.
pub fn render(
    text: &str,
    left: &str,
    right: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let tokens = tokenize(text, left, right)?;
    let mut pos = 0;
    let (nodes, end) = parse_nodes(&tokens, &mut pos)?;
    if let Some((word, line)) = end {
        return Err(TemplateError {
            line,
            message: format!("unexpected {{{{{word}}}}}"),
        });
    }
    let mut out = String::new();
    exec(&nodes, &Val::Nil, env, &mut out)?;
    Ok(out)
}

fn tokenize(text: &str, left: &str, right: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    let mut line = 1;
    let mut trim_next_text = false;
    loop {
        let Some(start) = rest.find(left) else {
            let t = if trim_next_text {
                rest.trim_start()
            } else {
                rest
            };
            tokens.push(Token::Text(t.to_string()));
            break;
        };
        let mut before = &rest[..start];
        if trim_next_text {
            before = before.trim_start();
        }
        line += rest[..start].matches('\n').count();
        let after_left = &rest[start + left.len()..];
        let trim_left = after_left.starts_with("- ")
            || after_left.starts_with("-\n")
            || after_left.starts_with("-\t");
        if trim_left {
            before = before.trim_end();
        }
        tokens.push(Token::Text(before.to_string()));
        let inner_start = if trim_left { 2 } else { 0 };
        let Some(end) = find_action_end(&after_left[inner_start..], right) else {
            return Err(TemplateError {
                line,
                message: format!("unclosed action: missing {right}"),
            });
        };
        let mut body = &after_left[inner_start..inner_start + end];
        let trim_right = body.ends_with(" -") || body.ends_with("\n-") || body.ends_with("\t-");
        if trim_right {
            body = &body[..body.len() - 2];
        }
        tokens.push(Token::Action {
            body: body.trim().to_string(),
            line,
        });
        line += body.matches('\n').count();
        trim_next_text = trim_right;
        rest = &after_left[inner_start + end + right.len()..];
    }
    Ok(tokens)
}

/// The end of an action, skipping delimiters inside string literals.
fn find_action_end(s: &str, right: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => {
                // Byte-wise: `i` may sit inside a multi-byte character.
                if bytes[i..].starts_with(right.as_bytes()) {
                    return Some(i);
                }
                if b == b'"' || b == b'`' {
                    quote = Some(b);
                }
            }
        }
        i += 1;
    }
    None
}

type End = Option<(String, usize)>;

/// Parses nodes until `end`/`else`, which is returned (with the rest of its action).
fn parse_nodes(tokens: &[Token], pos: &mut usize) -> Result<(Vec<Node>, End), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < tokens.len() {
        let token = &tokens[*pos];
        *pos += 1;
        match token {
            Token::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t.clone()));
                }
            }
            Token::Action { body, line } => {
                let line = *line;
                if body.starts_with("/*") {
                    if !body.ends_with("*/") {
                        return Err(TemplateError {
                            line,
                            message: "unclosed comment".into(),
                        });
                    }
                    continue;
                }
                let (word, rest) = split_word(body);
                match word {
                    "end" | "else" => return Ok((nodes, Some((body.clone(), line)))),
                    "if" => {
                        let mut branches = vec![(parse_pipeline(rest, line)?, Vec::new())];
                        let otherwise;
                        loop {
                            let (body_nodes, end) = parse_nodes(tokens, pos)?;
                            let branch = branches.len() - 1;
                            branches[branch].1 = body_nodes;
                            let (end, end_line) = end.ok_or(TemplateError {
                                line,
                                message: "if without end".into(),
                            })?;
                            let (w, r) = split_word(&end);
                            if w == "end" {
                                otherwise = Vec::new();
                                break;
                            }
                            let (w2, r2) = split_word(r);
                            if w2 == "if" {
                                branches.push((parse_pipeline(r2, end_line)?, Vec::new()));
                                continue;
                            }
                            let (else_nodes, end) = parse_nodes(tokens, pos)?;
                            match end {
                                Some((e, _)) if e == "end" => {}
                                _ => {
                                    return Err(TemplateError {
                                        line: end_line,
                                        message: "else without end".into(),
                                    })
                                }
                            }
                            otherwise = else_nodes;
                            break;
                        }
                        nodes.push(Node::If {
                            branches,
                            otherwise,
                        });
                    }
                    "range" | "with" => {
                        if rest.trim_start().starts_with('$') {
                            return Err(TemplateError {
                                line,
                                message: format!("{word} with variables is not supported; use dot"),
                            });
                        }
                        let pipe = parse_pipeline(rest, line)?;
                        let (body_nodes, end) = parse_nodes(tokens, pos)?;
                        let (end, end_line) = end.ok_or(TemplateError {
                            line,
                            message: format!("{word} without end"),
                        })?;
                        let otherwise = if end == "end" {
                            Vec::new()
                        } else {
                            let (else_nodes, end) = parse_nodes(tokens, pos)?;
                            match end {
                                Some((e, _)) if e == "end" => else_nodes,
                                _ => {
                                    return Err(TemplateError {
                                        line: end_line,
                                        message: "else without end".into(),
                                    })
                                }
                            }
                        };
                        nodes.push(if word == "range" {
                            Node::Range {
                                pipe,
                                body: body_nodes,
                                otherwise,
                            }
                        } else {
                            Node::With {
                                pipe,
                                body: body_nodes,
                                otherwise,
                            }
                        });
                    }
                    "define" | "template" | "block" => {
                        return Err(TemplateError {
                            line,
                            message: format!("{{{{{word}}}}} is not supported"),
                        })
                    }
                    _ => nodes.push(Node::Action(parse_pipeline(body, line)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn parse_pipeline(text: &str, line: usize) -> Result<Pipeline, TemplateError> {
    let mut chars = text.chars().peekable();
    let pipe = parse_pipe_chars(&mut chars, line, false)?;
    Ok(pipe)
}

fn parse_pipe_chars(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: usize,
    in_paren: bool,
) -> Result<Pipeline, TemplateError> {
    let err = |m: String| TemplateError { line, message: m };
    let mut commands = vec![Vec::new()];
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            if in_paren {
                return Err(err("unclosed parenthesis".into()));
            }
            break;
        };
        let current = commands.last_mut().expect("at least one command");
        match c {
            ')' if in_paren => {
                chars.next();
                break;
            }
            ')' => return Err(err("unexpected ) without a matching (".into())),
            '|' => {
                chars.next();
                if current.is_empty() {
                    return Err(err("missing command before |".into()));
                }
                commands.push(Vec::new());
            }
            '(' => {
                chars.next();
                let inner = parse_pipe_chars(chars, line, true)?;
                current.push(Arg::Pipe(Box::new(inner)));
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(err("unterminated string".into())),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(other) => s.push(other),
                            None => return Err(err("unterminated string".into())),
                        },
                        Some(other) => s.push(other),
                    }
                }
                current.push(Arg::Lit(Val::Str(s)));
            }
            '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(err("unterminated raw string".into())),
                        Some('`') => break,
                        Some(other) => s.push(other),
                    }
                }
                current.push(Arg::Lit(Val::Str(s)));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '|' | '(' | ')' | '"' | '`') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                let arg = if word == "." {
                    Arg::Dot
                } else if word == "true" || word == "false" {
                    Arg::Lit(Val::Bool(word == "true"))
                } else if word == "nil" {
                    Arg::Lit(Val::Nil)
                } else if let Ok(i) = word.parse::<i64>() {
                    Arg::Lit(Val::Int(i))
                } else if let Ok(f) = word.parse::<f64>() {
                    Arg::Lit(Val::Float(f))
                } else if word.starts_with('$') {
                    return Err(err(format!(
                        "template variables ({word}) are not supported"
                    )));
                } else if word.starts_with('.') {
                    return Err(err(format!(
                        "field {word} is not available in a local run (dot holds no data)"
                    )));
                } else if SERVER_FUNCTIONS.contains(&word.as_str()) {
                    return Err(err(server_function(&word)));
                } else if word.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    Arg::Func(word)
                } else {
                    return Err(err(format!("unexpected {word:?}")));
                };
                current.push(arg);
            }
        }
    }
    if commands.iter().any(Vec::is_empty) {
        return Err(err("empty command".into()));
    }
    Ok(Pipeline { commands, line })
}

fn exec(
    nodes: &[Node],
    dot: &Val,
    env: &BTreeMap<String, String>,
    out: &mut String,
) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(pipe) => {
                let v = eval_pipe(pipe, dot, env)?;
                out.push_str(&v.to_string());
            }
            Node::If {
                branches,
                otherwise,
            } => {
                let mut done = false;
                for (cond, body) in branches {
                    if eval_pipe(cond, dot, env)?.truthy() {
                        exec(body, dot, env, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    exec(otherwise, dot, env, out)?;
                }
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            } => match eval_pipe(pipe, dot, env)? {
                Val::List(items) if !items.is_empty() => {
                    for item in &items {
                        exec(body, item, env, out)?;
                    }
                }
                Val::List(_) | Val::Nil => exec(otherwise, dot, env, out)?,
                other => {
                    return Err(TemplateError {
                        line: pipe.line,
                        message: format!("range can't iterate over {other}"),
                    })
                }
            },
            Node::With {
                pipe,
                body,
                otherwise,
            } => {
                let v = eval_pipe(pipe, dot, env)?;
                if v.truthy() {
                    exec(body, &v, env, out)?;
                } else {
                    exec(otherwise, dot, env, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipe(
    pipe: &Pipeline,
    dot: &Val,
    env: &BTreeMap<String, String>,
) -> Result<Val, TemplateError> {
    let mut previous: Option<Val> = None;
    for command in &pipe.commands {
        previous = Some(eval_command(command, previous.take(), dot, env, pipe.line)?);
    }
    Ok(previous.unwrap_or(Val::Nil))
}

fn eval_command(
    command: &[Arg],
    piped: Option<Val>,
    dot: &Val,
    env: &BTreeMap<String, String>,
    line: usize,
) -> Result<Val, TemplateError> {
    let eval_arg = |a: &Arg| -> Result<Val, TemplateError> {
        match a {
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Dot => Ok(dot.clone()),
            Arg::Pipe(p) => eval_pipe(p, dot, env),
            Arg::Func(name) => call(name, Vec::new(), env, line),
        }
    };
    match command {
        [Arg::Func(name), rest @ ..] => {
            let mut args = rest.iter().map(eval_arg).collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            call(name, args, env, line)
        }
        [single] if piped.is_none() => eval_arg(single),
        _ => Err(TemplateError {
            line,
            message: "can't give arguments to a non-function".into(),
        }),
    }
}

const SERVER_FUNCTIONS: &[&str] = &[
    "key",
    "keyOrDefault",
    "keyExists",
    "ls",
    "tree",
    "safeLs",
    "safeTree",
    "service",
    "services",
    "connect",
    "datacenters",
    "node",
    "nodes",
    "secret",
    "secrets",
    "nomadVar",
    "nomadVarList",
    "nomadVarListSafe",
    "nomadVarExists",
    "nomadService",
    "nomadServices",
    "caLeaf",
    "caRoots",
    "pkiCert",
    "file",
    "executeTemplate",
];

fn server_function(name: &str) -> String {
    format!("the template function {name:?} needs a Nomad, Consul or Vault server, which a local run does not have")
}

fn call(
    name: &str,
    args: Vec<Val>,
    env: &BTreeMap<String, String>,
    line: usize,
) -> Result<Val, TemplateError> {
    let err = |m: String| TemplateError { line, message: m };
    let want = |n: usize| -> Result<(), TemplateError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(err(format!(
                "{name} takes {n} argument(s), got {}",
                args.len()
            )))
        }
    };
    let s = |v: &Val| v.to_string();
    Ok(match name {
        "env" => {
            want(1)?;
            Val::Str(env.get(&s(&args[0])).cloned().unwrap_or_default())
        }
        "envOrDefault" => {
            want(2)?;
            Val::Str(
                env.get(&s(&args[0]))
                    .cloned()
                    .unwrap_or_else(|| s(&args[1])),
            )
        }
        "toUpper" => {
            want(1)?;
            Val::Str(s(&args[0]).to_uppercase())
        }
        "toLower" => {
            want(1)?;
            Val::Str(s(&args[0]).to_lowercase())
        }
        "trimSpace" => {
            want(1)?;
            Val::Str(s(&args[0]).trim().to_string())
        }
        "split" => {
            want(2)?;
            let text = s(&args[1]);
            if text.is_empty() {
                Val::List(Vec::new())
            } else {
                Val::List(
                    text.split(s(&args[0]).as_str())
                        .map(|p| Val::Str(p.to_string()))
                        .collect(),
                )
            }
        }
        "join" => {
            want(2)?;
            match &args[1] {
                Val::List(items) => Val::Str(
                    items
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(&s(&args[0])),
                ),
                other => return Err(err(format!("join needs a list, got {other}"))),
            }
        }
        "replaceAll" => {
            want(3)?;
            Val::Str(s(&args[2]).replace(&s(&args[0]), &s(&args[1])))
        }
        "contains" => {
            want(2)?;
            Val::Bool(s(&args[1]).contains(&s(&args[0])))
        }
        "print" => Val::Str(args.iter().map(ToString::to_string).collect()),
        "printf" => {
            let (fmt, rest) = args
                .split_first()
                .ok_or_else(|| err("printf needs a format".into()))?;
            let json_args: Vec<serde_json::Value> = rest.iter().map(to_json).collect();
            Val::Str(
                crate::modes::run::jobspec::functions::format(&s(fmt), &json_args).map_err(err)?,
            )
        }
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let ordering = compare(&args[0], &args[1]);
            Val::Bool(match name {
                "eq" => ordering == Some(std::cmp::Ordering::Equal),
                "ne" => ordering != Some(std::cmp::Ordering::Equal),
                "lt" => ordering == Some(std::cmp::Ordering::Less),
                "le" => matches!(
                    ordering,
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                ),
                "gt" => ordering == Some(std::cmp::Ordering::Greater),
                _ => matches!(
                    ordering,
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                ),
            })
        }
        // Go's and/or return the deciding argument, not a bool.
        "and" => args
            .iter()
            .find(|a| !a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Nil),
        "or" => args
            .iter()
            .find(|a| a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Val::Nil),
        "not" => {
            want(1)?;
            Val::Bool(!args[0].truthy())
        }
        "len" => {
            want(1)?;
            match &args[0] {
                Val::Str(t) => Val::Int(t.len() as i64),
                Val::List(items) => Val::Int(items.len() as i64),
                other => return Err(err(format!("len of {other}"))),
            }
        }
        "index" => {
            want(2)?;
            match (&args[0], &args[1]) {
                (Val::List(items), Val::Int(i)) => items
                    .get(usize::try_from(*i).map_err(|_| err("negative index".into()))?)
                    .cloned()
                    .ok_or_else(|| err(format!("index {i} out of range")))?,
                _ => return Err(err("index needs a list and a number".into())),
            }
        }
        other => return Err(err(format!("function {other:?} not defined"))),
    })
}

fn compare(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Float(y)) => (*x as f64).partial_cmp(y),
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Nil, Val::Nil) => Some(std::cmp::Ordering::Equal),
        _ => None,
    }
}

fn to_json(v: &Val) -> serde_json::Value {
    match v {
        Val::Nil => serde_json::Value::Null,
        Val::Bool(b) => serde_json::Value::Bool(*b),
        Val::Int(i) => serde_json::Value::from(*i),
        Val::Float(f) => serde_json::Value::from(*f),
        Val::Str(s) => serde_json::Value::String(s.clone()),
        Val::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
    }
}

/// Reads a rendered `env = true` template: `KEY=VALUE` lines; blank lines and `#`
/// comments skipped; optional `export `; values may be single- or double-quoted.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, TemplateError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(TemplateError {
                line: i + 1,
                message: format!("expected KEY=VALUE, got {raw:?}"),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(TemplateError {
                line: i + 1,
                message: "empty variable name".into(),
            });
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            let inner = &value[1..value.len() - 1];
            if value.starts_with('"') {
                inner.replace("\\n", "\n").replace("\\\"", "\"")
            } else {
                inner.to_string()
            }
        } else {
            value.to_string()
        };
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [
            ("NOMAD_PORT_http", "8080"),
            ("NAME", "web"),
            ("LIST", "a,b,c"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn r(text: &str) -> String {
        render(text, "{{", "}}", &env()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn renders_env_pipelines_and_trimming() {
        assert_eq!(r("port={{ env \"NOMAD_PORT_http\" }}\n"), "port=8080\n");
        assert_eq!(r("{{ env \"NAME\" | toUpper }}"), "WEB");
        assert_eq!(r("a  {{- \" b \" -}}  c"), "a b c");
        assert_eq!(r("{{/* comment */}}x"), "x");
        assert_eq!(r("{{ envOrDefault \"MISSING\" \"dflt\" }}"), "dflt");
        assert_eq!(r("{{ printf \"%s:%d\" (env \"NAME\") 3 }}"), "web:3");
        assert_eq!(r("{{ `raw {{` }}"), "raw {{");
    }

    #[test]
    fn malformed_actions_are_errors_not_hangs_or_panics() {
        // Both found by fuzzing the job-file parser.
        let stray = render("{{ ) }}", "{{", "}}", &env()).unwrap_err();
        assert!(stray.message.contains("unexpected )"), "{stray:?}");
        let non_ascii = render("{{ é }}", "{{", "}}", &env()).unwrap_err();
        assert!(non_ascii.message.contains("\"é\""), "{non_ascii:?}");
    }

    #[test]
    fn renders_control_flow() {
        assert_eq!(
            r("{{ if eq (env \"NAME\") \"web\" }}yes{{ else }}no{{ end }}"),
            "yes"
        );
        assert_eq!(
            r("{{ if env \"EMPTY\" }}a{{ else if env \"NAME\" }}b{{ else }}c{{ end }}"),
            "b"
        );
        assert_eq!(
            r("{{ range split \",\" (env \"LIST\") }}[{{ . }}]{{ end }}"),
            "[a][b][c]"
        );
        assert_eq!(
            r("{{ range split \",\" (env \"EMPTY\") }}x{{ else }}none{{ end }}"),
            "none"
        );
        assert_eq!(r("{{ with env \"NAME\" }}{{ . }}!{{ end }}"), "web!");
    }

    #[test]
    fn custom_delimiters() {
        assert_eq!(
            render("a [[ env \"NAME\" ]] {{ x }}", "[[", "]]", &env()).unwrap(),
            "a web {{ x }}"
        );
    }

    #[test]
    fn errors_name_the_line_and_problem() {
        let e = render("ok\n{{ key \"a/b\" }}", "{{", "}}", &env()).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("needs a Nomad, Consul or Vault server"),
            "{e}"
        );
        assert!(render("{{ if true }}x", "{{", "}}", &env()).is_err());
        assert!(render("{{ nope }}", "{{", "}}", &env())
            .unwrap_err()
            .message
            .contains("not defined"));
        assert!(render("{{ env \"A\" ", "{{", "}}", &env())
            .unwrap_err()
            .message
            .contains("unclosed"));
        assert!(render("{{ end }}", "{{", "}}", &env()).is_err());
    }

    #[test]
    fn env_files_parse_like_nomads() {
        let parsed =
            parse_env_file("# c\nA=1\nexport B = two\nC=\"q \\\"x\\\"\"\nD='s'\n\n").unwrap();
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "two");
        assert_eq!(parsed["C"], "q \"x\"");
        assert_eq!(parsed["D"], "s");
        assert_eq!(parse_env_file("nope").unwrap_err().line, 1);
    }
}
