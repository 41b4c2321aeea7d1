//! `template` blocks: a Go text/template subset (what consul-template jobs use without a
//! Consul, Vault or Nomad server) rendered into the task dir before the task starts.
//!
//! Supported: text, `{{- ... -}}` trimming, comments, custom delimiters, `if`/`else if`/
//! `else`/`end`, `range` (over lists and maps; `range $i, $e := ...`), `with` (also
//! `with $x := ...`), variables (`$x := ...`, `$x = ...`, `$`), fields of maps (`.key`,
//! `$x.key.sub`), pipelines, string/number/bool literals, parentheses, and the functions in
//! [`call`] (consul-template's that need no server, and Nomad's `sprig_*` ones). Functions
//! that need a server (`key`, `service`, `secret`, `nomadVar`, ...) are errors naming the
//! function.

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
    Map(BTreeMap<String, Val>),
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
            Val::Map(m) => !m.is_empty(),
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
            // Go's `map[k:v k2:v2]`, keys in order.
            Val::Map(entries) => {
                f.write_str("map[")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
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
    /// `.a.b`: fields of dot.
    Field(Vec<String>),
    /// `$x.a.b` (`$` alone is the root data).
    Var(String, Vec<String>),
    Func(String),
    Pipe(Box<Pipeline>),
}

/// `$x := pipeline` (define) or `$x = pipeline` (assign); `range $i, $e := pipeline`.
#[derive(Debug, Clone, PartialEq)]
struct Decl {
    names: Vec<String>,
    define: bool,
}

/// `cmd | cmd | ...`; each command is a list of args, the first may be a function.
#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    decl: Option<Decl>,
    commands: Vec<Vec<Arg>>,
    line: usize,
}

/// What rendering reads besides the template: the task's environment and, for `file`,
/// the task directory (`None` when only checking a template: `file` gives "").
pub struct RenderContext<'a> {
    pub env: &'a BTreeMap<String, String>,
    pub task_dir: Option<&'a std::path::Path>,
    /// `error_on_missing_key`: a missing map key fails the render (Go's
    /// `missingkey=error`) instead of giving `<no value>`.
    pub error_on_missing_key: bool,
    /// The files `file` tried to read, also those that were missing: the runner watches
    /// them to re-render when one appears or changes.
    pub reads: std::cell::RefCell<Vec<std::path::PathBuf>>,
}

impl<'a> RenderContext<'a> {
    pub fn new(env: &'a BTreeMap<String, String>, task_dir: Option<&'a std::path::Path>) -> Self {
        RenderContext {
            env,
            task_dir,
            error_on_missing_key: false,
            reads: Default::default(),
        }
    }
}

/// Variables in scope, innermost last; `$` (the root data, nothing here) first.
type Vars = Vec<(String, Val)>;

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

/// Renders `text` with the task environment for `env` (no `file` reads: a check).
pub fn render(
    text: &str,
    left: &str,
    right: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    render_in(text, left, right, &RenderContext::new(env, None))
}

/// Checks a template without rendering it (what `validate` can know before the task
/// exists): it parses, and every function it calls exists and needs no server.
pub fn check(text: &str, left: &str, right: &str) -> Result<(), TemplateError> {
    let tokens = tokenize(text, left, right)?;
    let mut pos = 0;
    let (nodes, end) = parse_nodes(&tokens, &mut pos)?;
    if let Some((word, line)) = end {
        return Err(TemplateError {
            line,
            message: format!("unexpected {{{{{word}}}}}"),
        });
    }
    check_functions(&nodes)
}

fn check_functions(nodes: &[Node]) -> Result<(), TemplateError> {
    fn pipe(p: &Pipeline) -> Result<(), TemplateError> {
        for arg in p.commands.iter().flatten() {
            match arg {
                Arg::Func(name) if !FUNCTIONS.contains(&name.as_str()) => {
                    return Err(TemplateError {
                        line: p.line,
                        message: format!("function {name:?} not defined"),
                    })
                }
                Arg::Pipe(inner) => pipe(inner)?,
                _ => {}
            }
        }
        Ok(())
    }
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Action(p) => pipe(p)?,
            Node::If {
                branches,
                otherwise,
            } => {
                for (cond, body) in branches {
                    pipe(cond)?;
                    check_functions(body)?;
                }
                check_functions(otherwise)?;
            }
            Node::Range {
                pipe: p,
                body,
                otherwise,
            }
            | Node::With {
                pipe: p,
                body,
                otherwise,
            } => {
                pipe(p)?;
                check_functions(body)?;
                check_functions(otherwise)?;
            }
        }
    }
    Ok(())
}

/// Every function [`call`] knows (a unit test keeps the two in step).
const FUNCTIONS: &[&str] = &[
    "env",
    "envOrDefault",
    "toUpper",
    "toLower",
    "trimSpace",
    "split",
    "join",
    "replaceAll",
    "contains",
    "print",
    "printf",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
    "index",
    "file",
    "timestamp",
    "parseJSON",
    "toJSON",
    "toJSONPretty",
    "parseInt",
    "parseFloat",
    "parseBool",
    "toTitle",
    "sprig_title",
    "regexMatch",
    "regexReplaceAll",
    "base64Encode",
    "base64Decode",
    "base64URLEncode",
    "base64URLDecode",
    "add",
    "subtract",
    "multiply",
    "divide",
    "modulo",
    "minimum",
    "maximum",
    "sprig_upper",
    "sprig_lower",
    "sprig_trim",
    "sprig_trimPrefix",
    "sprig_trimSuffix",
    "sprig_hasPrefix",
    "sprig_hasSuffix",
    "sprig_contains",
    "sprig_replace",
    "sprig_repeat",
    "sprig_quote",
    "sprig_squote",
    "sprig_default",
    "sprig_empty",
    "sprig_coalesce",
    "sprig_list",
    "sprig_join",
    "sprig_splitList",
];

/// Renders `text` for a task. Blocking when the template reads files (`file`).
pub fn render_in(
    text: &str,
    left: &str,
    right: &str,
    ctx: &RenderContext<'_>,
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
    let mut vars: Vars = vec![("$".to_string(), Val::Nil)];
    exec(&nodes, &Val::Nil, ctx, &mut vars, &mut out)?;
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
                        let pipe = parse_pipeline(rest, line)?;
                        let names = pipe.decl.as_ref().map_or(0, |d| d.names.len());
                        if names > usize::from(word == "range") + 1
                            || pipe.decl.as_ref().is_some_and(|d| !d.define)
                        {
                            return Err(TemplateError {
                                line,
                                message: format!("{word} takes `$x :=` or, for range, `$i, $x :=`"),
                            });
                        }
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
    let (decl, rest) = parse_decl(text, line)?;
    let mut chars = rest.chars().peekable();
    let mut pipe = parse_pipe_chars(&mut chars, line, false)?;
    pipe.decl = decl;
    Ok(pipe)
}

/// `$x :=`, `$x =` or `$i, $x :=` at the start of an action, and what follows it.
fn parse_decl(text: &str, line: usize) -> Result<(Option<Decl>, &str), TemplateError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('$') {
        return Ok((None, text));
    }
    let mut names = Vec::new();
    let mut rest = trimmed;
    loop {
        let end = rest
            .find(|c: char| !(c == '$' || c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if name.len() < 2 || name[1..].contains('$') {
            // `$` alone or `$x.field`: an expression, not a declaration.
            return Ok((None, text));
        }
        names.push(name.to_string());
        rest = rest[end..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
            if !rest.starts_with('$') {
                return Err(TemplateError {
                    line,
                    message: "expected a variable after ,".into(),
                });
            }
            continue;
        }
        break;
    }
    let (define, rest) = if let Some(after) = rest.strip_prefix(":=") {
        (true, after)
    } else if let Some(after) = rest.strip_prefix('=').filter(|a| !a.starts_with('=')) {
        (false, after)
    } else if names.len() == 1 {
        return Ok((None, text));
    } else {
        return Err(TemplateError {
            line,
            message: "expected := after the variables".into(),
        });
    };
    Ok((Some(Decl { names, define }), rest))
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
                } else if let Some(var) = word.strip_prefix('$') {
                    let mut parts = var.split('.');
                    let name = format!("${}", parts.next().unwrap_or_default());
                    let fields: Vec<String> = parts.map(str::to_string).collect();
                    if fields.iter().any(String::is_empty) {
                        return Err(err(format!("bad variable {word:?}")));
                    }
                    Arg::Var(name, fields)
                } else if let Some(path) = word.strip_prefix('.') {
                    let fields: Vec<String> = path.split('.').map(str::to_string).collect();
                    if fields.iter().any(String::is_empty) {
                        return Err(err(format!("bad field {word:?}")));
                    }
                    Arg::Field(fields)
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
    Ok(Pipeline {
        decl: None,
        commands,
        line,
    })
}

fn exec(
    nodes: &[Node],
    dot: &Val,
    ctx: &RenderContext<'_>,
    vars: &mut Vars,
    out: &mut String,
) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(pipe) => {
                let v = eval_pipe(pipe, dot, ctx, vars)?;
                match &pipe.decl {
                    Some(decl) => bind(decl, v, vars, pipe.line)?,
                    None => out.push_str(&v.to_string()),
                }
            }
            Node::If {
                branches,
                otherwise,
            } => {
                // A variable declared in a condition lives to the end of the whole if.
                let scope = vars.len();
                let mut done = false;
                for (cond, body) in branches {
                    let v = eval_pipe(cond, dot, ctx, vars)?;
                    let truthy = v.truthy();
                    if let Some(decl) = &cond.decl {
                        bind(decl, v, vars, cond.line)?;
                    }
                    if truthy {
                        exec_scoped(body, dot, ctx, vars, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    exec_scoped(otherwise, dot, ctx, vars, out)?;
                }
                vars.truncate(scope);
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            } => {
                let items: Vec<(Val, Val)> = match eval_pipe(pipe, dot, ctx, vars)? {
                    Val::List(items) => items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Val::Int(i as i64), v))
                        .collect(),
                    Val::Map(entries) => {
                        entries.into_iter().map(|(k, v)| (Val::Str(k), v)).collect()
                    }
                    Val::Nil => Vec::new(),
                    Val::Int(n) if n >= 0 => (0..n).map(|i| (Val::Int(i), Val::Int(i))).collect(),
                    other => {
                        return Err(TemplateError {
                            line: pipe.line,
                            message: format!("range can't iterate over {other}"),
                        })
                    }
                };
                if items.is_empty() {
                    exec_scoped(otherwise, dot, ctx, vars, out)?;
                }
                for (key, item) in items {
                    let scope = vars.len();
                    if let Some(decl) = &pipe.decl {
                        match decl.names.as_slice() {
                            [element] => vars.push((element.clone(), item.clone())),
                            [index, element] => {
                                vars.push((index.clone(), key));
                                vars.push((element.clone(), item.clone()));
                            }
                            _ => {}
                        }
                    }
                    exec(body, &item, ctx, vars, out)?;
                    vars.truncate(scope);
                }
            }
            Node::With {
                pipe,
                body,
                otherwise,
            } => {
                let v = eval_pipe(pipe, dot, ctx, vars)?;
                if v.truthy() {
                    let scope = vars.len();
                    if let Some(decl) = &pipe.decl {
                        bind(decl, v.clone(), vars, pipe.line)?;
                    }
                    exec(body, &v, ctx, vars, out)?;
                    vars.truncate(scope);
                } else {
                    exec_scoped(otherwise, dot, ctx, vars, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Runs a block whose own declarations end with it.
fn exec_scoped(
    nodes: &[Node],
    dot: &Val,
    ctx: &RenderContext<'_>,
    vars: &mut Vars,
    out: &mut String,
) -> Result<(), TemplateError> {
    let scope = vars.len();
    let result = exec(nodes, dot, ctx, vars, out);
    vars.truncate(scope);
    result
}

/// `$x := v` adds a variable; `$x = v` changes the innermost one of that name.
fn bind(decl: &Decl, v: Val, vars: &mut Vars, line: usize) -> Result<(), TemplateError> {
    let [name] = decl.names.as_slice() else {
        return Err(TemplateError {
            line,
            message: "only range declares two variables".into(),
        });
    };
    if decl.define {
        vars.push((name.clone(), v));
        return Ok(());
    }
    match vars.iter_mut().rev().find(|(n, _)| n == name) {
        Some(slot) => {
            slot.1 = v;
            Ok(())
        }
        None => Err(TemplateError {
            line,
            message: format!("undefined variable {name}"),
        }),
    }
}

fn eval_pipe(
    pipe: &Pipeline,
    dot: &Val,
    ctx: &RenderContext<'_>,
    vars: &Vars,
) -> Result<Val, TemplateError> {
    let mut previous: Option<Val> = None;
    for command in &pipe.commands {
        previous = Some(eval_command(
            command,
            previous.take(),
            dot,
            ctx,
            vars,
            pipe.line,
        )?);
    }
    Ok(previous.unwrap_or(Val::Nil))
}

/// The value at `fields` below `value` (a map; a missing key is no value, as in Go,
/// or an error with `missing_is_error`, as Go's `missingkey=error`).
fn field_of(
    value: &Val,
    fields: &[String],
    shown: &str,
    line: usize,
    missing_is_error: bool,
) -> Result<Val, TemplateError> {
    let mut current = value.clone();
    for field in fields {
        current = match current {
            Val::Map(mut entries) => match entries.remove(field) {
                Some(v) => v,
                None if missing_is_error => {
                    return Err(TemplateError {
                        line,
                        message: format!("map has no entry for key {field:?} (in {shown})"),
                    })
                }
                None => Val::Nil,
            },
            Val::Nil if shown == "." => {
                return Err(TemplateError {
                    line,
                    message: format!(
                        "field .{} is not available in a local run (dot holds no data)",
                        fields.join(".")
                    ),
                })
            }
            other => {
                return Err(TemplateError {
                    line,
                    message: format!("can't read field {field} of {shown} ({other})"),
                })
            }
        };
    }
    Ok(current)
}

fn eval_command(
    command: &[Arg],
    piped: Option<Val>,
    dot: &Val,
    ctx: &RenderContext<'_>,
    vars: &Vars,
    line: usize,
) -> Result<Val, TemplateError> {
    let eval_arg = |a: &Arg| -> Result<Val, TemplateError> {
        match a {
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(fields) => field_of(dot, fields, ".", line, ctx.error_on_missing_key),
            Arg::Var(name, fields) => {
                let value = vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| TemplateError {
                        line,
                        message: format!("undefined variable {name}"),
                    })?;
                field_of(value, fields, name, line, ctx.error_on_missing_key)
            }
            Arg::Pipe(p) => eval_pipe(p, dot, ctx, vars),
            Arg::Func(name) => call(name, Vec::new(), ctx, line),
        }
    };
    match command {
        [Arg::Func(name), rest @ ..] => {
            let mut args = rest.iter().map(eval_arg).collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            call(name, args, ctx, line)
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
    "executeTemplate",
];

fn server_function(name: &str) -> String {
    format!("the template function {name:?} needs a Nomad, Consul or Vault server, which a local run does not have")
}

/// One function call. Besides Go's builtins: consul-template's functions that need no
/// server (`env`, `envOrDefault`, `file` (below the task dir), `timestamp`, `parseJSON`,
/// `toJSON`, `toJSONPretty`, `parseInt`, `parseFloat`, `parseBool`, `toUpper`, `toLower`,
/// `toTitle`, `trimSpace`, `split`, `join`, `replaceAll`, `regexMatch`, `regexReplaceAll`,
/// `contains`, `base64Encode`, `base64Decode`, `add`, `subtract`, `multiply`, `divide`,
/// `modulo`, `minimum`, `maximum`) and Nomad's `sprig_*` string helpers.
fn call(
    name: &str,
    args: Vec<Val>,
    ctx: &RenderContext<'_>,
    line: usize,
) -> Result<Val, TemplateError> {
    let env = ctx.env;
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
                crate::modes::run::jobspec::functions::format(&s(fmt), &json_args)
                    .map_err(|e| err(e.to_string()))?,
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
                Val::Map(entries) => Val::Int(entries.len() as i64),
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
                (Val::Map(entries), key) => {
                    entries.get(&key.to_string()).cloned().unwrap_or(Val::Nil)
                }
                _ => {
                    return Err(err(
                        "index needs a list and a number, or a map and a key".into()
                    ))
                }
            }
        }
        "file" => {
            want(1)?;
            Val::Str(read_task_file(ctx, &s(&args[0])).map_err(err)?)
        }
        "timestamp" => {
            let now = time::OffsetDateTime::now_utc();
            match args.as_slice() {
                [] => Val::Str(go_time_format(now, "2006-01-02T15:04:05Z07:00")),
                [layout] => Val::Str(go_time_format(now, &s(layout))),
                _ => return Err(err("timestamp takes at most a layout".into())),
            }
        }
        "parseJSON" => {
            want(1)?;
            let parsed: serde_json::Value =
                serde_json::from_str(&s(&args[0])).map_err(|e| err(format!("parseJSON: {e}")))?;
            from_json(parsed)
        }
        "toJSON" | "toJSONPretty" => {
            want(1)?;
            let json = to_json(&args[0]);
            let text = if name == "toJSON" {
                serde_json::to_string(&json)
            } else {
                serde_json::to_string_pretty(&json)
            };
            Val::Str(text.map_err(|e| err(format!("{name}: {e}")))?)
        }
        "parseInt" | "parseFloat" => {
            want(1)?;
            let t = s(&args[0]);
            let what = if name == "parseInt" {
                "an integer"
            } else {
                "a number"
            };
            let bad = || err(format!("{name}: {t:?} is not {what}"));
            if name == "parseInt" {
                Val::Int(t.trim().parse().map_err(|_| bad())?)
            } else {
                Val::Float(t.trim().parse().map_err(|_| bad())?)
            }
        }
        "parseBool" => {
            want(1)?;
            let t = s(&args[0]);
            Val::Bool(match t.trim() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                _ => return Err(err(format!("parseBool: {t:?} is not a bool"))),
            })
        }
        "toTitle" | "sprig_title" => {
            want(1)?;
            Val::Str(title_case(&s(&args[0])))
        }
        "regexMatch" => {
            want(2)?;
            Val::Bool(regex(&s(&args[0])).map_err(err)?.is_match(&s(&args[1])))
        }
        "regexReplaceAll" => {
            want(3)?;
            let re = regex(&s(&args[0])).map_err(err)?;
            Val::Str(
                re.replace_all(&s(&args[2]), s(&args[1]).as_str())
                    .into_owned(),
            )
        }
        "base64Encode" | "base64Decode" | "base64URLEncode" | "base64URLDecode" => {
            use base64::Engine;
            want(1)?;
            let engine = if name.contains("URL") {
                &base64::engine::general_purpose::URL_SAFE
            } else {
                &base64::engine::general_purpose::STANDARD
            };
            if name.ends_with("Encode") {
                Val::Str(engine.encode(s(&args[0])))
            } else {
                let bytes = engine
                    .decode(s(&args[0]))
                    .map_err(|e| err(format!("{name}: {e}")))?;
                Val::Str(
                    String::from_utf8(bytes).map_err(|_| err(format!("{name}: not UTF-8 text")))?,
                )
            }
        }
        // consul-template's order: the piped value comes last, `{{ 7 | subtract 2 }}` is 5.
        "add" | "subtract" | "multiply" | "divide" | "modulo" | "minimum" | "maximum" => {
            want(2)?;
            arithmetic(name, &args[1], &args[0]).map_err(err)?
        }
        "sprig_upper" => {
            want(1)?;
            Val::Str(s(&args[0]).to_uppercase())
        }
        "sprig_lower" => {
            want(1)?;
            Val::Str(s(&args[0]).to_lowercase())
        }
        "sprig_trim" => {
            want(1)?;
            Val::Str(s(&args[0]).trim().to_string())
        }
        "sprig_trimPrefix" | "sprig_trimSuffix" => {
            want(2)?;
            let (affix, text) = (s(&args[0]), s(&args[1]));
            let trimmed = if name == "sprig_trimPrefix" {
                text.strip_prefix(affix.as_str())
            } else {
                text.strip_suffix(affix.as_str())
            };
            Val::Str(trimmed.unwrap_or(&text).to_string())
        }
        "sprig_hasPrefix" => {
            want(2)?;
            Val::Bool(s(&args[1]).starts_with(&s(&args[0])))
        }
        "sprig_hasSuffix" => {
            want(2)?;
            Val::Bool(s(&args[1]).ends_with(&s(&args[0])))
        }
        "sprig_contains" => {
            want(2)?;
            Val::Bool(s(&args[1]).contains(&s(&args[0])))
        }
        "sprig_replace" => {
            want(3)?;
            Val::Str(s(&args[2]).replace(&s(&args[0]), &s(&args[1])))
        }
        "sprig_repeat" => {
            want(2)?;
            let count = match &args[0] {
                Val::Int(n) if *n >= 0 && *n <= 10_000 => *n as usize,
                other => return Err(err(format!("sprig_repeat: bad count {other}"))),
            };
            Val::Str(s(&args[1]).repeat(count))
        }
        "sprig_quote" => Val::Str(
            args.iter()
                .map(|a| format!("{:?}", a.to_string()))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "sprig_squote" => Val::Str(
            args.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "sprig_default" => {
            want(2)?;
            if args[1].truthy() {
                args[1].clone()
            } else {
                args[0].clone()
            }
        }
        "sprig_empty" => {
            want(1)?;
            Val::Bool(!args[0].truthy())
        }
        "sprig_coalesce" => args
            .iter()
            .find(|a| a.truthy())
            .cloned()
            .unwrap_or(Val::Nil),
        "sprig_list" => Val::List(args),
        "sprig_join" => {
            want(2)?;
            match &args[1] {
                Val::List(items) => Val::Str(
                    items
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(&s(&args[0])),
                ),
                other => Val::Str(other.to_string()),
            }
        }
        "sprig_splitList" => {
            want(2)?;
            Val::List(
                s(&args[1])
                    .split(s(&args[0]).as_str())
                    .map(|p| Val::Str(p.to_string()))
                    .collect(),
            )
        }
        other => return Err(err(format!("function {other:?} not defined"))),
    })
}

fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| format!("bad regular expression {pattern:?}: {e}"))
}

fn title_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_word_start = true;
    for c in text.chars() {
        if at_word_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !c.is_alphanumeric();
    }
    out
}

/// `a <op> b` on numbers (integers stay integers; numeric strings are read as numbers).
fn arithmetic(op: &str, a: &Val, b: &Val) -> Result<Val, String> {
    let number = |v: &Val| -> Result<Val, String> {
        match v {
            Val::Int(_) | Val::Float(_) => Ok(v.clone()),
            Val::Str(t) => t
                .trim()
                .parse::<i64>()
                .map(Val::Int)
                .or_else(|_| t.trim().parse::<f64>().map(Val::Float))
                .map_err(|_| format!("{op}: {t:?} is not a number")),
            other => Err(format!("{op}: {other} is not a number")),
        }
    };
    Ok(match (number(a)?, number(b)?) {
        (Val::Int(x), Val::Int(y)) => Val::Int(
            match op {
                "add" => x.checked_add(y),
                "subtract" => x.checked_sub(y),
                "multiply" => x.checked_mul(y),
                "divide" => x.checked_div(y),
                "modulo" => x.checked_rem(y),
                "minimum" => Some(x.min(y)),
                _ => Some(x.max(y)),
            }
            .ok_or_else(|| format!("{op}: overflow or division by zero"))?,
        ),
        (x, y) => {
            let as_f = |v: Val| match v {
                Val::Int(i) => i as f64,
                Val::Float(f) => f,
                _ => f64::NAN,
            };
            let (x, y) = (as_f(x), as_f(y));
            if matches!(op, "divide" | "modulo") && y == 0.0 {
                return Err(format!("{op}: division by zero"));
            }
            Val::Float(match op {
                "add" => x + y,
                "subtract" => x - y,
                "multiply" => x * y,
                "divide" => x / y,
                "modulo" => x % y,
                "minimum" => x.min(y),
                _ => x.max(y),
            })
        }
    })
}

/// `file`: a file below the task directory (Nomad's default sandbox), reached without
/// following links; nothing when only checking the template.
fn read_task_file(ctx: &RenderContext<'_>, path: &str) -> Result<String, String> {
    let Some(root) = ctx.task_dir else {
        return Ok(String::new());
    };
    let relative = std::path::Path::new(path);
    let relative = relative.strip_prefix(root).unwrap_or(relative);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "file {path:?}: only files below the task directory can be read"
        ));
    }
    ctx.reads.borrow_mut().push(root.join(relative));
    let pinned = crate::driver::hostfs::pin_beneath(root, &root.join(relative))
        .and_then(|p| p.expect(crate::driver::hostfs::FileKind::Regular))
        .map_err(|e| format!("file {path:?}: {e}"))?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut pinned
            .reopen(libc::O_RDONLY)
            .map_err(|e| format!("file {path:?}: {e}"))?,
        &mut text,
    )
    .map_err(|e| format!("file {path:?}: {e}"))?;
    Ok(text)
}

/// Formats `t` (UTC) with a Go reference-time layout (`2006-01-02T15:04:05Z07:00`).
fn go_time_format(t: time::OffsetDateTime, layout: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let month = usize::from(u8::from(t.month())) - 1;
    let day = usize::from(t.weekday().number_days_from_monday());
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let tokens: [(&str, String); 27] = [
        ("January", MONTHS[month].to_string()),
        ("Monday", DAYS[day].to_string()),
        ("Z07:00", "Z".to_string()),
        ("-07:00", "+00:00".to_string()),
        ("-0700", "+0000".to_string()),
        ("2006", format!("{:04}", t.year())),
        (".000000000", format!(".{:09}", t.nanosecond())),
        (".000000", format!(".{:06}", t.nanosecond() / 1_000)),
        (".000", format!(".{:03}", t.nanosecond() / 1_000_000)),
        ("Jan", MONTHS[month][..3].to_string()),
        ("Mon", DAYS[day][..3].to_string()),
        ("MST", "UTC".to_string()),
        ("PM", if t.hour() < 12 { "AM" } else { "PM" }.to_string()),
        ("pm", if t.hour() < 12 { "am" } else { "pm" }.to_string()),
        ("01", format!("{:02}", month + 1)),
        ("02", format!("{:02}", t.day())),
        ("03", format!("{hour12:02}")),
        ("04", format!("{:02}", t.minute())),
        ("05", format!("{:02}", t.second())),
        ("06", format!("{:02}", t.year() % 100)),
        ("15", format!("{:02}", t.hour())),
        ("_2", format!("{:>2}", t.day())),
        ("1", format!("{}", month + 1)),
        ("2", format!("{}", t.day())),
        ("3", format!("{hour12}")),
        ("4", format!("{}", t.minute())),
        ("5", format!("{}", t.second())),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'scan: while !rest.is_empty() {
        for (token, value) in &tokens {
            if let Some(after) = rest.strip_prefix(token) {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn from_json(v: serde_json::Value) -> Val {
    match v {
        serde_json::Value::Null => Val::Nil,
        serde_json::Value::Bool(b) => Val::Bool(b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Val::Int)
            .unwrap_or_else(|| Val::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => Val::Str(s),
        serde_json::Value::Array(items) => Val::List(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(entries) => Val::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k, from_json(v)))
                .collect(),
        ),
    }
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
        Val::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
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
    fn variables_range_with_index_and_with_bindings() {
        assert_eq!(
            r("{{ $n := env \"NAME\" }}{{ $n }}-{{ $n = \"x\" }}{{ $n }}"),
            "web-x"
        );
        assert_eq!(
            r("{{ range $i, $e := split \",\" (env \"LIST\") }}{{ $i }}={{ $e }};{{ end }}"),
            "0=a;1=b;2=c;"
        );
        assert_eq!(
            r("{{ range $e := split \",\" (env \"LIST\") }}{{ $e }}{{ . }}{{ end }}"),
            "aabbcc"
        );
        assert_eq!(
            r("{{ with $x := env \"NAME\" }}{{ $x }}{{ . }}{{ end }}"),
            "webweb"
        );
        assert_eq!(
            r("{{ if $x := env \"NAME\" }}{{ $x }}{{ else }}{{ $x }}!{{ end }}"),
            "web"
        );
        // A variable ends with its block.
        let e = render(
            "{{ range split \",\" \"a\" }}{{ $v := . }}{{ end }}{{ $v }}",
            "{{",
            "}}",
            &env(),
        )
        .unwrap_err();
        assert!(e.message.contains("undefined variable $v"), "{e}");
        let e = render("{{ $nope = 1 }}", "{{", "}}", &env()).unwrap_err();
        assert!(e.message.contains("undefined variable $nope"), "{e}");
    }

    #[test]
    fn json_maps_fields_and_range_over_maps() {
        let doc =
            r#"{{ $c := parseJSON `{"name":"db","ports":[5432,5433],"tags":{"b":"2","a":"1"}}` }}"#;
        assert_eq!(r(&format!("{doc}{{{{ $c.name }}}}")), "db");
        assert_eq!(
            r(&format!(
                "{doc}{{{{ range $k, $v := $c.tags }}}}{{{{ $k }}}}={{{{ $v }}}},{{{{ end }}}}"
            )),
            "a=1,b=2,"
        );
        assert_eq!(
            r(&format!(
                "{doc}{{{{ with $c }}}}{{{{ .name }}}}:{{{{ index .ports 1 }}}}{{{{ end }}}}"
            )),
            "db:5433"
        );
        assert_eq!(r(&format!("{doc}{{{{ $c.missing }}}}")), "<no value>");
        assert_eq!(
            r(&format!("{doc}{{{{ $c.tags | toJSON }}}}")),
            r#"{"a":"1","b":"2"}"#
        );
        assert_eq!(r(&format!("{doc}{{{{ len $c.tags }}}}")), "2");
    }

    #[test]
    fn consul_template_and_sprig_functions() {
        for (template, want) in [
            ("{{ 7 | subtract 2 }}", "5"),
            ("{{ add 1 2 }}", "3"),
            ("{{ 10 | divide 4 }}", "2"),
            ("{{ 10.0 | divide 4 }}", "2.5"),
            ("{{ multiply 3 \"4\" }}", "12"),
            ("{{ 9 | modulo 4 }}", "1"),
            ("{{ maximum 3 8 }}", "8"),
            ("{{ parseInt \"42\" | add 1 }}", "43"),
            ("{{ parseBool \"true\" }}", "true"),
            ("{{ \"hello world\" | toTitle }}", "Hello World"),
            ("{{ regexMatch \"^w.b$\" (env \"NAME\") }}", "true"),
            ("{{ regexReplaceAll \"[aeiou]\" \"_\" \"nomad\" }}", "n_m_d"),
            ("{{ base64Encode \"hi\" }}", "aGk="),
            ("{{ base64Decode \"aGk=\" }}", "hi"),
            ("{{ sprig_trimPrefix \"we\" (env \"NAME\") }}", "b"),
            ("{{ env \"EMPTY\" | sprig_default \"none\" }}", "none"),
            (
                "{{ sprig_upper \"x\" }}{{ sprig_repeat 3 \"ab\" }}",
                "Xababab",
            ),
            ("{{ sprig_list 1 2 | sprig_join \"+\" }}", "1+2"),
            ("{{ sprig_quote (env \"NAME\") }}", "\"web\""),
        ] {
            assert_eq!(r(template), want, "{template}");
        }
        let e = render("{{ divide 0 1 }}", "{{", "}}", &env()).unwrap_err();
        assert!(e.message.contains("division by zero"), "{e}");
        let e = render("{{ parseJSON \"{\" }}", "{{", "}}", &env()).unwrap_err();
        assert!(e.message.contains("parseJSON"), "{e}");
    }

    #[test]
    fn timestamps_follow_go_layouts() {
        let t = time::macros::datetime!(2024-03-05 07:08:09.123456789 UTC);
        assert_eq!(
            go_time_format(t, "2006-01-02T15:04:05Z07:00"),
            "2024-03-05T07:08:09Z"
        );
        assert_eq!(
            go_time_format(t, "02 Jan 06 15:04 MST"),
            "05 Mar 24 07:08 UTC"
        );
        assert_eq!(
            go_time_format(t, "Monday, January 2 3:04PM"),
            "Tuesday, March 5 7:08AM"
        );
        assert_eq!(go_time_format(t, "15:04:05.000"), "07:08:09.123");
        let now = r("{{ timestamp \"2006\" }}");
        assert_eq!(now.len(), 4, "{now}");
        assert!(now.starts_with("20"), "{now}");
    }

    #[test]
    fn file_reads_below_the_task_dir_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("local")).unwrap();
        std::fs::write(dir.path().join("local/conf"), "v=1").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("local/link")).unwrap();
        let env = env();
        let ctx = RenderContext::new(&env, Some(dir.path()));
        let render = |t: &str| render_in(t, "{{", "}}", &ctx);
        assert_eq!(render("{{ file \"local/conf\" }}").unwrap(), "v=1");
        for (path, why) in [
            ("../x", "only files below the task directory"),
            ("/etc/hostname", "only files below the task directory"),
            ("local/link", "file \"local/link\""),
            ("local/none", "file \"local/none\""),
        ] {
            let e = render(&format!("{{{{ file \"{path}\" }}}}")).unwrap_err();
            assert!(e.message.contains(why), "{path}: {e}");
        }
        // Checking a template (no task dir yet) reads nothing.
        assert_eq!(r("[{{ file \"local/conf\" }}]"), "[]");
    }

    #[test]
    fn the_checked_function_list_is_what_call_knows() {
        let env = env();
        let ctx = RenderContext::new(&env, None);
        for name in FUNCTIONS {
            // Called with no arguments: a known function complains about those, if at all.
            if let Err(e) = call(name, Vec::new(), &ctx, 1) {
                assert!(!e.message.contains("not defined"), "{name}: {e}");
            }
        }
        let e = call("noSuchFunction", Vec::new(), &ctx, 1).unwrap_err();
        assert!(e.message.contains("not defined"));
        assert!(check("{{ file \"x\" | parseJSON }}", "{{", "}}").is_ok());
        let e = check("a\n{{ if true }}{{ nope 1 }}{{ end }}", "{{", "}}").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "function \"nope\" not defined")
        );
        assert!(check("{{ key \"a\" }}", "{{", "}}").is_err());
    }

    #[test]
    fn error_on_missing_key_fails_where_go_gives_no_value() {
        let env = env();
        let mut ctx = RenderContext::new(&env, None);
        ctx.error_on_missing_key = true;
        let doc = "{{ $c := \"{\\\"a\\\": {\\\"b\\\": 1}}\" | parseJSON }}";
        let render = |t: &str| render_in(&format!("{doc}{t}"), "{{", "}}", &ctx);
        assert_eq!(render("{{ $c.a.b }}").unwrap(), "1");
        let e = render("{{ $c.a.nope }}").unwrap_err();
        assert!(e.message.contains("no entry for key \"nope\""), "{e}");
        assert!(render("{{ with $c }}{{ .missing }}{{ end }}").is_err());
        // Without the option the same template gives Go's placeholder.
        assert_eq!(r(&format!("{doc}{{{{ $c.a.nope }}}}")), "<no value>");
    }

    #[test]
    fn a_render_records_the_files_it_read_also_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("local")).unwrap();
        std::fs::write(dir.path().join("local/a"), "x").unwrap();
        let env = env();
        let ctx = RenderContext::new(&env, Some(dir.path()));
        assert_eq!(
            render_in("{{ file \"local/a\" }}", "{{", "}}", &ctx).unwrap(),
            "x"
        );
        assert!(render_in("{{ file \"local/b\" }}", "{{", "}}", &ctx).is_err());
        assert_eq!(
            ctx.reads.into_inner(),
            [dir.path().join("local/a"), dir.path().join("local/b")]
        );
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
