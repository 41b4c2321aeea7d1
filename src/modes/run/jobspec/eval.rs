//! Our HCL expression evaluator over hcl-edit's syntax tree, which keeps source spans so
//! every error points at `file:line:col`.
//!
//! Nomad's rule for runtime values: a reference whose root is `NOMAD_*`, `attr`, `node`,
//! `meta` or `env` cannot be known when the job file is read, so it is kept as the text
//! `${<reference>}` for task-time interpolation (see `interpolate.rs`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use hcl::edit::expr::{
    BinaryOperator, Expression, ForExpr, FuncCall, ObjectKey, Traversal, TraversalOperator,
    UnaryOperator,
};
use hcl::edit::template::{Directive, Element, Template};
use hcl::edit::Span;
use serde_json::Value;

use super::error::JobFileError;
use super::functions;
use super::source::{Location, Source};
use super::value::{self, number, to_string, type_name, Object};

/// Bindings introduced by `for` expressions, template `for` directives and `templatefile`.
type Scope = Vec<(String, Value)>;

/// Roots of references Nomad resolves only when a task starts.
pub fn is_runtime_root(name: &str) -> bool {
    name.starts_with("NOMAD_") || matches!(name, "attr" | "node" | "meta" | "env")
}

/// `locals` entries, evaluated on first use so they may refer to each other in any order.
pub struct LazyLocals {
    entries: BTreeMap<String, (Expression, Source)>,
    state: RefCell<BTreeMap<String, LocalState>>,
}

#[derive(Clone)]
enum LocalState {
    InProgress,
    Done(Value),
    Failed,
}

impl LazyLocals {
    pub fn new(entries: BTreeMap<String, (Expression, Source)>) -> Self {
        LazyLocals {
            entries,
            state: RefCell::new(BTreeMap::new()),
        }
    }

    /// Evaluates every local; errors come back in name order, each reported once.
    pub fn resolve_all(&self, vars: &Object) -> Result<Object, Vec<JobFileError>> {
        let mut errors = Vec::new();
        let mut out = Object::new();
        for name in self.entries.keys() {
            match self.get(name, vars) {
                Ok(Some(v)) => {
                    out.insert(name.clone(), v);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// `Ok(None)` when the local failed earlier (its error was already reported).
    fn get(&self, name: &str, vars: &Object) -> Result<Option<Value>, JobFileError> {
        let Some((expr, source)) = self.entries.get(name) else {
            return Ok(None);
        };
        let state = self.state.borrow().get(name).cloned();
        match state {
            Some(LocalState::Done(v)) => return Ok(Some(v)),
            Some(LocalState::Failed) => return Ok(None),
            Some(LocalState::InProgress) => {
                return Err(JobFileError::at(
                    source.locate(expr.span()),
                    format!("local.{name} refers to itself through a cycle of locals"),
                ))
            }
            None => {}
        }
        self.state
            .borrow_mut()
            .insert(name.to_string(), LocalState::InProgress);
        let evaluator = Evaluator {
            source: source.clone(),
            vars,
            locals: Locals::Lazy(self),
            runtime_refs: true,
        };
        let result = evaluator.eval(expr);
        let state = match &result {
            Ok(v) => LocalState::Done(v.clone()),
            Err(_) => LocalState::Failed,
        };
        self.state.borrow_mut().insert(name.to_string(), state);
        result.map(Some)
    }

    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

#[derive(Clone, Copy)]
pub enum Locals<'a> {
    None,
    Resolved(&'a Object),
    Lazy(&'a LazyLocals),
}

/// Evaluates expressions of one file against `var.*` and `local.*`.
pub struct Evaluator<'a> {
    pub source: Source,
    pub vars: &'a Object,
    pub locals: Locals<'a>,
    /// Whether runtime references pass through as text (job bodies) or are errors
    /// (variable defaults and variable files, which Nomad evaluates without them).
    pub runtime_refs: bool,
}

impl<'a> Evaluator<'a> {
    pub fn eval(&self, expr: &Expression) -> Result<Value, JobFileError> {
        self.eval_in(expr, &Vec::new())
    }

    /// An expression that must produce a string (numbers and bools convert).
    pub fn eval_string(&self, expr: &Expression) -> Result<String, JobFileError> {
        let v = self.eval(expr)?;
        to_string(&v).map_err(|e| self.err(expr.span(), format!("Incorrect value type: {e}")))
    }

    pub fn location(&self, span: Option<std::ops::Range<usize>>) -> Location {
        self.source.locate(span)
    }

    fn err(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> JobFileError {
        JobFileError::at(self.location(span), message)
    }

    /// `${<source text>}` for a runtime reference.
    fn pass_through(&self, span: Option<std::ops::Range<usize>>, fallback: &str) -> Value {
        let text = span
            .map(|s| self.source.snippet(&s).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| fallback.to_string());
        Value::String(format!("${{{text}}}"))
    }

    fn eval_in(&self, expr: &Expression, scope: &Scope) -> Result<Value, JobFileError> {
        match expr {
            Expression::Null(_) => Ok(Value::Null),
            Expression::Bool(b) => Ok(Value::Bool(*b.value())),
            Expression::Number(n) => {
                let f = n.value().as_f64().unwrap_or(f64::NAN);
                Ok(number(f))
            }
            Expression::String(s) => Ok(Value::String(s.value().to_string())),
            Expression::Array(items) => items
                .iter()
                .map(|e| self.eval_in(e, scope))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Expression::Object(object) => {
                let mut out = Object::new();
                for (key, value) in object.iter() {
                    let key = match key {
                        ObjectKey::Ident(ident) => ident.value().as_str().to_string(),
                        ObjectKey::Expression(e) => {
                            let k = self.eval_in(e, scope)?;
                            to_string(&k).map_err(|m| {
                                self.err(e.span(), format!("Invalid object key: {m}"))
                            })?
                        }
                    };
                    out.insert(key, self.eval_in(value.expr(), scope)?);
                }
                Ok(Value::Object(out))
            }
            Expression::StringTemplate(t) => self.render(t, scope, false, false).map(Value::String),
            Expression::HeredocTemplate(h) => self
                .render(&h.template, scope, false, false)
                .map(Value::String),
            Expression::Parenthesis(p) => self.eval_in(p.inner(), scope),
            Expression::Variable(name) => self.variable(name.value().as_str(), expr, scope),
            Expression::Conditional(c) => {
                let cond = self.eval_in(&c.cond_expr, scope)?;
                let cond = value::to_bool(&cond).map_err(|m| {
                    self.err(c.cond_expr.span(), format!("Incorrect condition type: {m}"))
                })?;
                if cond {
                    self.eval_in(&c.true_expr, scope)
                } else {
                    self.eval_in(&c.false_expr, scope)
                }
            }
            Expression::FuncCall(call) => self.call(call, scope),
            Expression::Traversal(t) => self.traversal(t, scope),
            Expression::UnaryOp(op) => {
                let v = self.eval_in(&op.expr, scope)?;
                match op.operator.value() {
                    UnaryOperator::Neg => value::to_number(&v)
                        .map(|n| number(-n))
                        .map_err(|m| self.err(op.expr.span(), format!("Invalid operand: {m}"))),
                    UnaryOperator::Not => value::to_bool(&v)
                        .map(|b| Value::Bool(!b))
                        .map_err(|m| self.err(op.expr.span(), format!("Invalid operand: {m}"))),
                }
            }
            Expression::BinaryOp(op) => {
                self.binary(*op.operator.value(), &op.lhs_expr, &op.rhs_expr, scope)
            }
            Expression::ForExpr(f) => self.for_expr(f, scope),
        }
    }

    fn variable(
        &self,
        name: &str,
        expr: &Expression,
        scope: &Scope,
    ) -> Result<Value, JobFileError> {
        if let Some((_, v)) = scope.iter().rev().find(|(n, _)| n == name) {
            return Ok(v.clone());
        }
        match name {
            "var" => return Ok(Value::Object(self.vars.clone())),
            "local" => {
                return match self.locals {
                    Locals::Resolved(l) => Ok(Value::Object(l.clone())),
                    Locals::Lazy(lazy) => {
                        let mut out = Object::new();
                        for key in lazy.entries.keys() {
                            if let Some(v) = lazy.get(key, self.vars)? {
                                out.insert(key.clone(), v);
                            }
                        }
                        Ok(Value::Object(out))
                    }
                    Locals::None => Err(self.err(
                        expr.span(),
                        "Variables not allowed: local values cannot be used here",
                    )),
                };
            }
            _ => {}
        }
        if is_runtime_root(name) {
            if self.runtime_refs {
                return Ok(self.pass_through(expr.span(), name));
            }
            return Err(self.err(
                expr.span(),
                format!("Variables not allowed: the runtime value {name} cannot be used here"),
            ));
        }
        Err(self.err(
            expr.span(),
            format!("Unknown variable: there is no variable named {name:?}"),
        ))
    }

    fn traversal(&self, t: &Traversal, scope: &Scope) -> Result<Value, JobFileError> {
        let ops: Vec<&TraversalOperator> = t.operators.iter().map(|o| o.value()).collect();
        if let Expression::Variable(root) = &t.expr {
            let root_name = root.value().as_str();
            let shadowed = scope.iter().any(|(n, _)| n == root_name);
            if !shadowed && is_runtime_root(root_name) {
                if self.runtime_refs {
                    return Ok(self.pass_through(t.span(), root_name));
                }
                return Err(self.err(
                    t.span(),
                    format!(
                        "Variables not allowed: the runtime value {root_name} cannot be used here"
                    ),
                ));
            }
            if !shadowed && (root_name == "var" || root_name == "local") {
                if let Some(TraversalOperator::GetAttr(attr)) = ops.first() {
                    let name = attr.value().as_str();
                    let first = self.named_reference(root_name, name, attr.span())?;
                    return self.apply_ops(first, &ops[1..], &t.operators[1..], scope);
                }
            }
        }
        let root = self.eval_in(&t.expr, scope)?;
        self.apply_ops(root, &ops, &t.operators, scope)
    }

    fn named_reference(
        &self,
        root: &str,
        name: &str,
        span: Option<std::ops::Range<usize>>,
    ) -> Result<Value, JobFileError> {
        if root == "var" {
            return self.vars.get(name).cloned().ok_or_else(|| {
                self.err(
                    span,
                    format!("Reference to undeclared input variable: no variable \"{name}\" block declares var.{name}"),
                )
            });
        }
        let missing = || {
            self.err(
                span.clone(),
                format!(
                    "Reference to undeclared local value: no locals block defines local.{name}"
                ),
            )
        };
        match self.locals {
            Locals::Resolved(l) => l.get(name).cloned().ok_or_else(missing),
            Locals::Lazy(lazy) => {
                if !lazy.contains(name) {
                    return Err(missing());
                }
                // A failed local was reported at its definition; repeat it here as a
                // pointer so the dependent value is not silently null.
                lazy.get(name, self.vars)?.ok_or_else(|| {
                    self.err(
                        span,
                        format!("local.{name} could not be evaluated (see its error)"),
                    )
                })
            }
            Locals::None => Err(self.err(
                span,
                "Variables not allowed: local values cannot be used here",
            )),
        }
    }

    fn apply_ops(
        &self,
        mut current: Value,
        ops: &[&TraversalOperator],
        decorated: &[hcl::edit::Decorated<TraversalOperator>],
        scope: &Scope,
    ) -> Result<Value, JobFileError> {
        for (i, op) in ops.iter().enumerate() {
            let span = decorated.get(i).and_then(|d| d.span());
            current = match op {
                TraversalOperator::GetAttr(name) => {
                    let name = name.value().as_str();
                    match current {
                        Value::Object(mut map) => map.remove(name).ok_or_else(|| {
                            self.err(span, format!("Unsupported attribute: this object has no attribute named {name:?}"))
                        })?,
                        other => {
                            return Err(self.err(
                                span,
                                format!("Unsupported attribute: cannot access attribute {name:?} of a {}", type_name(&other)),
                            ))
                        }
                    }
                }
                TraversalOperator::Index(index_expr) => {
                    let index = self.eval_in(index_expr, scope)?;
                    self.index(current, &index, span)?
                }
                TraversalOperator::LegacyIndex(n) => {
                    self.index(current, &Value::from(*n.value()), span)?
                }
                TraversalOperator::AttrSplat(_) | TraversalOperator::FullSplat(_) => {
                    let items = match current {
                        Value::Array(items) => items,
                        Value::Null => Vec::new(),
                        other => vec![other],
                    };
                    let rest = &ops[i + 1..];
                    let rest_decorated = decorated.get(i + 1..).unwrap_or(&[]);
                    return items
                        .into_iter()
                        .map(|item| self.apply_ops(item, rest, rest_decorated, scope))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Value::Array);
                }
            };
        }
        Ok(current)
    }

    fn index(
        &self,
        current: Value,
        index: &Value,
        span: Option<std::ops::Range<usize>>,
    ) -> Result<Value, JobFileError> {
        match current {
            Value::Array(mut items) => {
                let n = value::to_number(index)
                    .map_err(|m| self.err(span.clone(), format!("Invalid index: {m}")))?;
                if n < 0.0 || n.fract() != 0.0 || n as usize >= items.len() {
                    return Err(self.err(
                        span,
                        format!(
                            "Invalid index: {n} is out of range for a list of {} elements",
                            items.len()
                        ),
                    ));
                }
                Ok(items.swap_remove(n as usize))
            }
            Value::Object(mut map) => {
                let key = to_string(index)
                    .map_err(|m| self.err(span.clone(), format!("Invalid index: {m}")))?;
                map.remove(&key).ok_or_else(|| {
                    self.err(
                        span,
                        format!("Invalid index: the given key {key:?} does not exist"),
                    )
                })
            }
            other => Err(self.err(
                span,
                format!("Invalid index: a {} cannot be indexed", type_name(&other)),
            )),
        }
    }

    fn binary(
        &self,
        op: BinaryOperator,
        lhs: &Expression,
        rhs: &Expression,
        scope: &Scope,
    ) -> Result<Value, JobFileError> {
        // && and || short-circuit, so `x != null && x.y` works.
        if matches!(op, BinaryOperator::And | BinaryOperator::Or) {
            let l = self.bool_operand(lhs, scope)?;
            return match (op, l) {
                (BinaryOperator::And, false) => Ok(Value::Bool(false)),
                (BinaryOperator::Or, true) => Ok(Value::Bool(true)),
                _ => self.bool_operand(rhs, scope).map(Value::Bool),
            };
        }
        let l = self.eval_in(lhs, scope)?;
        let r = self.eval_in(rhs, scope)?;
        match op {
            BinaryOperator::Eq => return Ok(Value::Bool(value::equal(&l, &r))),
            BinaryOperator::NotEq => return Ok(Value::Bool(!value::equal(&l, &r))),
            _ => {}
        }
        let num = |v: &Value, e: &Expression| {
            value::to_number(v).map_err(|m| self.err(e.span(), format!("Invalid operand: {m}")))
        };
        let (a, b) = (num(&l, lhs)?, num(&r, rhs)?);
        Ok(match op {
            BinaryOperator::Less => Value::Bool(a < b),
            BinaryOperator::LessEq => Value::Bool(a <= b),
            BinaryOperator::Greater => Value::Bool(a > b),
            BinaryOperator::GreaterEq => Value::Bool(a >= b),
            BinaryOperator::Plus => number(a + b),
            BinaryOperator::Minus => number(a - b),
            BinaryOperator::Mul => number(a * b),
            BinaryOperator::Div | BinaryOperator::Mod if b == 0.0 => {
                return Err(self.err(rhs.span(), "Division by zero"))
            }
            BinaryOperator::Div => number(a / b),
            BinaryOperator::Mod => number(a % b),
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::And
            | BinaryOperator::Or => {
                unreachable!("handled above")
            }
        })
    }

    fn bool_operand(&self, e: &Expression, scope: &Scope) -> Result<bool, JobFileError> {
        let v = self.eval_in(e, scope)?;
        value::to_bool(&v).map_err(|m| self.err(e.span(), format!("Invalid operand: {m}")))
    }

    fn for_expr(&self, f: &ForExpr, scope: &Scope) -> Result<Value, JobFileError> {
        let collection = self.eval_in(&f.intro.collection_expr, scope)?;
        let pairs = self.iterate(collection, f.intro.collection_expr.span())?;
        let key_var = f
            .intro
            .key_var
            .as_ref()
            .map(|k| k.value().as_str().to_string());
        let value_var = f.intro.value_var.value().as_str().to_string();
        let mut list = Vec::new();
        let mut object = Object::new();
        for (k, v) in pairs {
            let mut inner = scope.clone();
            if let Some(key_var) = &key_var {
                inner.push((key_var.clone(), k));
            }
            inner.push((value_var.clone(), v));
            if let Some(cond) = &f.cond {
                if !self.bool_operand(&cond.expr, &inner)? {
                    continue;
                }
            }
            let item = self.eval_in(&f.value_expr, &inner)?;
            match &f.key_expr {
                None => list.push(item),
                Some(key_expr) => {
                    let key = self.eval_in(key_expr, &inner)?;
                    let key = to_string(&key).map_err(|m| {
                        self.err(key_expr.span(), format!("Invalid object key: {m}"))
                    })?;
                    if f.grouping {
                        match object
                            .entry(key)
                            .or_insert_with(|| Value::Array(Vec::new()))
                        {
                            Value::Array(group) => group.push(item),
                            _ => unreachable!("grouping entries are always lists"),
                        }
                    } else if object.contains_key(&key) {
                        return Err(self.err(
                            key_expr.span(),
                            format!("Duplicate object key {key:?}; use `...` after the value to group them"),
                        ));
                    } else {
                        object.insert(key, item);
                    }
                }
            }
        }
        Ok(if f.key_expr.is_some() {
            Value::Object(object)
        } else {
            Value::Array(list)
        })
    }

    fn iterate(
        &self,
        collection: Value,
        span: Option<std::ops::Range<usize>>,
    ) -> Result<Vec<(Value, Value)>, JobFileError> {
        match collection {
            Value::Array(items) => Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (number(i as f64), v))
                .collect()),
            Value::Object(map) => Ok(map
                .into_iter()
                .map(|(k, v)| (Value::String(k), v))
                .collect()),
            other => Err(self.err(
                span,
                format!(
                    "Iteration over non-iterable value: a {} cannot be iterated",
                    type_name(&other)
                ),
            )),
        }
    }

    fn call(&self, call: &FuncCall, scope: &Scope) -> Result<Value, JobFileError> {
        let name = call.name.name.value().as_str();
        let span = call.span();
        if call.name.is_namespaced() || !functions::NAMES.contains(&name) {
            return Err(self.err(
                call.name.name.span().or(span),
                format!("Call to unknown function: there is no function named {name:?}"),
            ));
        }
        let arg_exprs: Vec<&Expression> = call.args.iter().collect();
        match name {
            "try" => {
                let mut last = None;
                for e in &arg_exprs {
                    match self.eval_in(e, scope) {
                        Ok(v) => return Ok(v),
                        Err(err) => last = Some(err),
                    }
                }
                return Err(
                    last.unwrap_or_else(|| self.err(span, "try needs at least one argument"))
                );
            }
            "can" => {
                let [e] = arg_exprs.as_slice() else {
                    return Err(
                        self.err(span, "Call to function \"can\" failed: expected 1 argument")
                    );
                };
                return Ok(Value::Bool(self.eval_in(e, scope).is_ok()));
            }
            _ => {}
        }
        let mut args = Vec::with_capacity(arg_exprs.len());
        for e in &arg_exprs {
            args.push(self.eval_in(e, scope)?);
        }
        if call.args.expand_final() {
            match args.pop() {
                Some(Value::Array(rest)) => args.extend(rest),
                _ => return Err(self.err(span, format!("Call to function {name:?} failed: the final argument expanded with `...` must be a list"))),
            }
        }
        let failed = |m: String| {
            self.err(
                span.clone(),
                format!("Call to function {name:?} failed: {m}"),
            )
        };
        match name {
            "file" => {
                let [path] = args.as_slice() else {
                    return Err(failed("expected 1 argument".into()));
                };
                let path = to_string(path).map_err(|e| failed(e.to_string()))?;
                self.read_file(&path).map(Value::String).map_err(failed)
            }
            "templatefile" => self.templatefile(args).map_err(|e| match e {
                TemplateFileError::Call(m) => failed(m),
                TemplateFileError::Template(e) => e,
            }),
            _ => functions::call(name, args).map_err(|e| failed(e.to_string())),
        }
    }

    fn read_file(&self, path: &str) -> Result<String, String> {
        let resolved = self.source.base_dir().join(path);
        std::fs::read_to_string(&resolved)
            .map_err(|e| format!("cannot read {}: {e}", resolved.display()))
    }

    fn templatefile(&self, args: Vec<Value>) -> Result<Value, TemplateFileError> {
        let (path, vars) = match <[Value; 2]>::try_from(args) {
            Ok([path, Value::Object(vars)]) => (path, vars),
            Ok([_, other]) => {
                return Err(TemplateFileError::Call(format!(
                    "the second argument must be an object of template variables, got a {}",
                    type_name(&other)
                )))
            }
            Err(args) => {
                return Err(TemplateFileError::Call(format!(
                    "expected 2 arguments, got {}",
                    args.len()
                )))
            }
        };
        let path = to_string(&path).map_err(|e| TemplateFileError::Call(e.to_string()))?;
        let text = self.read_file(&path).map_err(TemplateFileError::Call)?;
        let source = Source::new(self.source.base_dir().join(Path::new(&path)), text);
        let template = hcl::edit::parser::parse_template(source.text()).map_err(|e| {
            let at = source.location(e.location().offset());
            TemplateFileError::Template(JobFileError::at(
                at,
                format!("Invalid template: {}", e.message()),
            ))
        })?;
        // Templates see only the variables they are given (and the runtime pass-through).
        let empty = Object::new();
        let inner = Evaluator {
            source,
            vars: &empty,
            locals: Locals::None,
            runtime_refs: self.runtime_refs,
        };
        let scope: Scope = vars.into_iter().collect();
        inner
            .render(&template, &scope, false, false)
            .map(Value::String)
            .map_err(TemplateFileError::Template)
    }

    /// Renders a template, applying `~` strip markers to adjacent literals.
    fn render(
        &self,
        template: &Template,
        scope: &Scope,
        trim_first: bool,
        trim_last: bool,
    ) -> Result<String, JobFileError> {
        let elements: Vec<&Element> = template.iter().collect();
        let mut out = String::new();
        for (i, element) in elements.iter().enumerate() {
            match element {
                Element::Literal(lit) => {
                    let mut text: &str = lit.value();
                    let strip_start = if i == 0 {
                        trim_first
                    } else {
                        strips_after(elements[i - 1])
                    };
                    let strip_end = match elements.get(i + 1) {
                        Some(next) => strips_before(next),
                        None => trim_last,
                    };
                    if strip_start {
                        text = text.trim_start();
                    }
                    if strip_end {
                        text = text.trim_end();
                    }
                    out.push_str(text);
                }
                Element::Interpolation(interp) => {
                    let v = self.eval_in(&interp.expr, scope)?;
                    let s = to_string(&v).map_err(|m| {
                        self.err(
                            interp.expr.span(),
                            format!("Invalid template interpolation value: {m}"),
                        )
                    })?;
                    out.push_str(&s);
                }
                Element::Directive(directive) => match directive.as_ref() {
                    Directive::If(d) => {
                        let cond = self.bool_operand(&d.if_expr.cond_expr, scope)?;
                        let if_end = d
                            .else_expr
                            .as_ref()
                            .map_or(d.endif_expr.strip.strip_start(), |e| e.strip.strip_start());
                        if cond {
                            out.push_str(&self.render(
                                &d.if_expr.template,
                                scope,
                                d.if_expr.strip.strip_end(),
                                if_end,
                            )?);
                        } else if let Some(else_expr) = &d.else_expr {
                            out.push_str(&self.render(
                                &else_expr.template,
                                scope,
                                else_expr.strip.strip_end(),
                                d.endif_expr.strip.strip_start(),
                            )?);
                        }
                    }
                    Directive::For(d) => {
                        let f = &d.for_expr;
                        let collection = self.eval_in(&f.collection_expr, scope)?;
                        for (k, v) in self.iterate(collection, f.collection_expr.span())? {
                            let mut inner = scope.clone();
                            if let Some(key_var) = &f.key_var {
                                inner.push((key_var.value().as_str().to_string(), k));
                            }
                            inner.push((f.value_var.value().as_str().to_string(), v));
                            out.push_str(&self.render(
                                &f.template,
                                &inner,
                                f.strip.strip_end(),
                                d.endfor_expr.strip.strip_start(),
                            )?);
                        }
                    }
                },
            }
        }
        Ok(out)
    }
}

enum TemplateFileError {
    Call(String),
    Template(JobFileError),
}

/// Whether `element` strips whitespace from the literal before it (`~` after its `{`).
fn strips_before(element: &Element) -> bool {
    match element {
        Element::Literal(_) => false,
        Element::Interpolation(i) => i.strip.strip_start(),
        Element::Directive(d) => match d.as_ref() {
            Directive::If(d) => d.if_expr.strip.strip_start(),
            Directive::For(d) => d.for_expr.strip.strip_start(),
        },
    }
}

/// Whether `element` strips whitespace from the literal after it (`~` before its `}`).
fn strips_after(element: &Element) -> bool {
    match element {
        Element::Literal(_) => false,
        Element::Interpolation(i) => i.strip.strip_end(),
        Element::Directive(d) => match d.as_ref() {
            Directive::If(d) => d.endif_expr.strip.strip_end(),
            Directive::For(d) => d.endfor_expr.strip.strip_end(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval_with(src: &str, vars: Value) -> Result<Value, JobFileError> {
        let text = format!("x = {src}\n");
        let source = Source::new("t.nomad", text.clone());
        let body = hcl::edit::parser::parse_body(&text).unwrap();
        let attr = body.get_attribute("x").unwrap();
        let Value::Object(vars) = vars else {
            unreachable!()
        };
        let locals = Object::new();
        Evaluator {
            source,
            vars: &vars,
            locals: Locals::Resolved(&locals),
            runtime_refs: true,
        }
        .eval(&attr.value)
    }

    fn eval(src: &str) -> Value {
        eval_with(
            src,
            json!({"name": "web", "n": 3, "list": ["a", "b"], "m": {"k": "v"}}),
        )
        .unwrap()
    }

    fn eval_err(src: &str) -> String {
        eval_with(src, json!({"name": "web", "list": ["a"]}))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn literals_and_operators() {
        assert_eq!(eval("1 + 2 * 3"), json!(7));
        assert_eq!(eval("7 / 2"), json!(3.5));
        assert_eq!(eval("7 % 4"), json!(3));
        assert_eq!(eval("-var.n"), json!(-3));
        assert_eq!(eval("var.n > 2 && !false"), json!(true));
        assert_eq!(eval("var.n == 3.0 ? \"y\" : \"n\""), json!("y"));
        assert_eq!(eval("[1, \"a\", null, true]"), json!([1, "a", null, true]));
        assert_eq!(
            eval("{ a = 1, \"b\" = 2, (var.name) = 3 }"),
            json!({"a": 1, "b": 2, "web": 3})
        );
        assert_eq!(eval("false && var.missing"), json!(false));
    }

    #[test]
    fn references_and_traversals() {
        assert_eq!(eval("var.list[1]"), json!("b"));
        assert_eq!(eval("var.m.k"), json!("v"));
        assert_eq!(eval("var.m[\"k\"]"), json!("v"));
        assert_eq!(eval("[{a = 1}, {a = 2}][*].a"), json!([1, 2]));
        assert_eq!(eval("var.list.0"), json!("a"));
    }

    #[test]
    fn templates_interpolate_and_strip() {
        assert_eq!(eval("\"${var.name}-${var.n}\""), json!("web-3"));
        assert_eq!(
            eval("\"a  ${~ var.name ~}  b\""),
            json!("aweb".to_string() + "b")
        );
        assert_eq!(
            eval("\"%{ for x in var.list }${x},%{ endfor }\""),
            json!("a,b,")
        );
        assert_eq!(
            eval("\"%{ if var.n > 5 }big%{ else }small%{ endif }\""),
            json!("small")
        );
        assert_eq!(eval("\"$${literal}\""), json!("${literal}"));
        assert_eq!(
            eval("<<-EOT\n    hello ${var.name}\n    EOT"),
            json!("hello web\n")
        );
    }

    #[test]
    fn runtime_references_pass_through_as_text() {
        assert_eq!(eval("\"${NOMAD_ALLOC_ID}\""), json!("${NOMAD_ALLOC_ID}"));
        assert_eq!(
            eval("\"x-${attr.kernel.name}-${var.name}\""),
            json!("x-${attr.kernel.name}-web")
        );
        assert_eq!(eval("\"${env[\"HOME\"]}\""), json!("${env[\"HOME\"]}"));
        assert_eq!(eval("node.unique.name"), json!("${node.unique.name}"));
        assert_eq!(eval("\"${meta.rack}\""), json!("${meta.rack}"));
    }

    #[test]
    fn for_expressions() {
        assert_eq!(eval("[for s in var.list : upper(s)]"), json!(["A", "B"]));
        assert_eq!(
            eval("[for i, s in var.list : \"${i}${s}\" if i > 0]"),
            json!(["1b"])
        );
        assert_eq!(
            eval("{for s in var.list : s => length(s)}"),
            json!({"a": 1, "b": 1})
        );
        assert_eq!(
            eval("{for s in [\"a\", \"a\"] : s => 1...}"),
            json!({"a": [1, 1]})
        );
        assert_eq!(eval("{for k, v in var.m : v => k}"), json!({"v": "k"}));
    }

    #[test]
    fn functions_and_try() {
        assert_eq!(eval("format(\"%s:%d\", var.name, 80)"), json!("web:80"));
        assert_eq!(eval("format(\"%s-%s\", var.list...)"), json!("a-b"));
        assert_eq!(eval("try(var.m.missing, \"fallback\")"), json!("fallback"));
        assert_eq!(eval("can(var.m.missing)"), json!(false));
        assert_eq!(eval("lookup(var.m, \"k\", \"d\")"), json!("v"));
    }

    #[test]
    fn errors_are_located() {
        assert_eq!(eval_err("var.nope"), "t.nomad:1:9: Reference to undeclared input variable: no variable \"nope\" block declares var.nope");
        assert_eq!(
            eval_err("foo"),
            "t.nomad:1:5: Unknown variable: there is no variable named \"foo\""
        );
        assert_eq!(
            eval_err("nosuch(1)"),
            "t.nomad:1:5: Call to unknown function: there is no function named \"nosuch\""
        );
        assert!(eval_err("upper(var.list)")
            .starts_with("t.nomad:1:5: Call to function \"upper\" failed"));
        assert_eq!(
            eval_err("var.list[3]"),
            "t.nomad:1:13: Invalid index: 3 is out of range for a list of 1 elements"
        );
        assert!(eval_err("\"${var.list}\"")
            .starts_with("t.nomad:1:8: Invalid template interpolation value"));
        assert!(eval_err("1 / 0").starts_with("t.nomad:1:9: Division by zero"));
        assert!(
            eval_err("local.x").starts_with("t.nomad:1:11: Reference to undeclared local value")
        );
    }

    #[test]
    fn lazy_locals_resolve_in_any_order_and_detect_cycles() {
        let text = "a = local.b + 1\nb = var.n\nc = local.d\nd = local.c\n";
        let source = Source::new("l.nomad", text);
        let body = hcl::edit::parser::parse_body(text).unwrap();
        let entries = body
            .attributes()
            .map(|a| {
                (
                    a.key.value().as_str().to_string(),
                    (a.value.clone(), source.clone()),
                )
            })
            .collect();
        let lazy = LazyLocals::new(entries);
        let vars = json!({"n": 1}).as_object().unwrap().clone();
        let errors = lazy.resolve_all(&vars).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("cycle"), "{}", errors[0]);
        assert_eq!(lazy.get("a", &vars).unwrap(), Some(json!(2)));
    }
}
