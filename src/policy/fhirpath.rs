//! The FHIRPath of rules' `where` conditions: a documented subset, compiled once when the
//! policy set loads and evaluated on each resource.
//!
//! Supported (anything else is a load error that names it, never silently ignored):
//!
//! - paths from the resource: `status`, `code.coding.system`, `Observation.status` (a leading
//!   type name is the resource itself), choice elements by their short name (`value` finds
//!   `valueQuantity`, `valueString`, …);
//! - literals: `'text'` (with `\'` and `\\`), numbers, `true`, `false`, `{}`, `@2026-01-01`
//!   (dates compare as ISO text of the same precision);
//! - operators, loosest first: `implies`; `or`, `xor`; `and`; `in`, `contains`; `=`, `!=`;
//!   `<`, `<=`, `>`, `>=`; `|` (union); and parentheses;
//! - functions: `exists()`, `exists(cond)`, `empty()`, `not()`, `count()`, `first()`,
//!   `where(cond)`, `all(cond)`, `startsWith('x')`;
//! - at most 256 tokens and 32 levels of parentheses or arguments.
//!
//! Semantics follow FHIRPath on collections: navigation flattens arrays, an empty operand
//! makes a comparison empty, `and`/`or`/`implies` use three-valued logic. A rule's condition
//! holds only when it evaluates to the single value `true`; empty, false, or anything else
//! withholds.

use std::fmt;

use serde_json::Value;

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    text: String,
    expr: Expr,
}

/// Why a condition does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {at})")]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// 1-based character position in the condition.
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// The resource (`$this` at the top).
    This,
    /// A leading type name: the resource, when it is of that type.
    TypeRoot(String),
    Literal(Literal),
    Empty,
    Member(Box<Expr>, String),
    Call(Box<Expr>, Function, Vec<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Exists,
    Empty,
    Not,
    Count,
    First,
    Where,
    All,
    StartsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Implies,
    Or,
    Xor,
    And,
    In,
    Contains,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Union,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Text(String),
    Number(f64),
    Date(String),
    Sym(&'static str),
}

/// Splits a condition into tokens, each with the index of its first character.
fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (token, end) = if c.is_ascii_alphabetic() || c == '_' {
            ident(&chars, i)
        } else if c.is_ascii_digit() {
            number(&chars, i)?
        } else if c == '\'' {
            text_literal(&chars, i)?
        } else if c == '@' {
            date_literal(&chars, i)?
        } else {
            symbol(&chars, i)?
        };
        out.push((token, i));
        i = end;
    }
    Ok(out)
}

/// A tokenizing error at the character with index `at` (reported 1-based).
fn lex_error(message: String, at: usize) -> ParseError {
    ParseError {
        message,
        at: at + 1,
    }
}

/// The index after the run of characters from `from` that `keep` accepts.
fn run_end(chars: &[char], from: usize, keep: impl Fn(char) -> bool) -> usize {
    from + chars.iter().skip(from).take_while(|c| keep(**c)).count()
}

/// The name that starts at `start` (letters, digits and `_`), and the index after it.
fn ident(chars: &[char], start: usize) -> (Token, usize) {
    let end = run_end(chars, start, |c| c.is_ascii_alphanumeric() || c == '_');
    (Token::Ident(chars[start..end].iter().collect()), end)
}

/// The number that starts at `start` (digits and `.`), and the index after it.
fn number(chars: &[char], start: usize) -> Result<(Token, usize), ParseError> {
    let end = run_end(chars, start, |c| c.is_ascii_digit() || c == '.');
    let raw: String = chars[start..end].iter().collect();
    let n = raw
        .parse::<f64>()
        .map_err(|_| lex_error(format!("`{raw}` is not a number"), start))?;
    Ok((Token::Number(n), end))
}

/// The text literal whose opening `'` is at `start`, unescaped, and the index after its
/// closing `'`.
fn text_literal(chars: &[char], start: usize) -> Result<(Token, usize), ParseError> {
    let mut i = start + 1;
    let mut s = String::new();
    loop {
        match chars.get(i) {
            None => return Err(lex_error("a text literal is not closed".into(), start)),
            Some('\'') => return Ok((Token::Text(s), i + 1)),
            Some('\\') => {
                match chars.get(i + 1) {
                    Some(e @ ('\'' | '\\')) => s.push(*e),
                    _ => {
                        return Err(lex_error(
                            "only \\' and \\\\ escapes are supported".into(),
                            i,
                        ));
                    }
                }
                i += 2;
            }
            Some(ch) => {
                s.push(*ch);
                i += 1;
            }
        }
    }
}

/// The date literal whose `@` is at `start` (its text without the `@`), and the index after
/// it.
fn date_literal(chars: &[char], start: usize) -> Result<(Token, usize), ParseError> {
    let end = run_end(chars, start + 1, |c| {
        c.is_ascii_digit() || matches!(c, '-' | 'T' | ':' | '.' | 'Z' | '+')
    });
    let raw: String = chars[start + 1..end].iter().collect();
    if raw.len() < 4 || !raw.starts_with(|d: char| d.is_ascii_digit()) {
        return Err(lex_error(
            "a date literal is `@YYYY`, `@YYYY-MM` or `@YYYY-MM-DD`".into(),
            start,
        ));
    }
    Ok((Token::Date(raw), end))
}

/// The operator or punctuation at `start` (two characters before one), and the index after
/// it.
fn symbol(chars: &[char], start: usize) -> Result<(Token, usize), ParseError> {
    let two: String = chars[start..(start + 2).min(chars.len())].iter().collect();
    let sym = match two.as_str() {
        "!=" => Some("!="),
        "<=" => Some("<="),
        ">=" => Some(">="),
        _ => None,
    };
    if let Some(sym) = sym {
        return Ok((Token::Sym(sym), start + 2));
    }
    let sym = match chars[start] {
        '.' => ".",
        '(' => "(",
        ')' => ")",
        '{' => "{",
        '}' => "}",
        ',' => ",",
        '=' => "=",
        '<' => "<",
        '>' => ">",
        '|' => "|",
        '$' => "$",
        other => {
            return Err(lex_error(format!("`{other}` is not supported"), start));
        }
    };
    Ok((Token::Sym(sym), start + 1))
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    end: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 32;

/// Most tokens in a condition. Chains (`a.b.c…`) and runs of operators (`x or y or …`) nest
/// the tree without parentheses, and compiling, evaluating and dropping it recurse down it: an
/// unbounded condition overflows the stack. Real conditions have tens of tokens.
const MAX_TOKENS: usize = 256;

impl Parser {
    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(_, a)| *a) + 1
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            message: message.into(),
            at: self.at(),
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Token::Sym(s)) if *s == sym) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), ParseError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            self.fail(format!("expected `{sym}`"))
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail("the condition nests too deeply");
        }
        let e = self.implies();
        self.depth -= 1;
        e
    }

    fn implies(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.or()?;
        while self.eat_word("implies") {
            let right = self.or()?;
            left = Expr::Binary(Op::Implies, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        loop {
            let op = if self.eat_word("or") {
                Op::Or
            } else if self.eat_word("xor") {
                Op::Xor
            } else {
                return Ok(left);
            };
            let right = self.and()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.membership()?;
        while self.eat_word("and") {
            let right = self.membership()?;
            left = Expr::Binary(Op::And, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn membership(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.equality()?;
        loop {
            let op = if self.eat_word("in") {
                Op::In
            } else if self.eat_word("contains") {
                Op::Contains
            } else {
                return Ok(left);
            };
            let right = self.equality()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn equality(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.inequality()?;
        loop {
            let op = if self.eat_sym("=") {
                Op::Eq
            } else if self.eat_sym("!=") {
                Op::Ne
            } else {
                return Ok(left);
            };
            let right = self.inequality()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn inequality(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.union()?;
        loop {
            let op = if self.eat_sym("<=") {
                Op::Le
            } else if self.eat_sym(">=") {
                Op::Ge
            } else if self.eat_sym("<") {
                Op::Lt
            } else if self.eat_sym(">") {
                Op::Gt
            } else {
                return Ok(left);
            };
            let right = self.union()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn union(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.invocation()?;
        while self.eat_sym("|") {
            let right = self.invocation()?;
            left = Expr::Binary(Op::Union, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn invocation(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.term()?;
        while self.eat_sym(".") {
            let Some(Token::Ident(name)) = self.peek().cloned() else {
                return self.fail("expected an element or function name after `.`");
            };
            let name_at = self.at();
            self.pos += 1;
            e = self.member_or_call(e, name, name_at)?;
        }
        Ok(e)
    }

    fn member_or_call(
        &mut self,
        on: Expr,
        name: String,
        name_at: usize,
    ) -> Result<Expr, ParseError> {
        let fail = |message: String| {
            Err(ParseError {
                message,
                at: name_at,
            })
        };
        if !self.eat_sym("(") {
            return Ok(Expr::Member(Box::new(on), name));
        }
        let function = match name.as_str() {
            "exists" => Function::Exists,
            "empty" => Function::Empty,
            "not" => Function::Not,
            "count" => Function::Count,
            "first" => Function::First,
            "where" => Function::Where,
            "all" => Function::All,
            "startsWith" => Function::StartsWith,
            other => {
                return fail(format!(
                    "function `{other}()` is not supported (exists, empty, not, count, first, where, all, startsWith are)"
                ));
            }
        };
        let mut args = Vec::new();
        if !self.eat_sym(")") {
            loop {
                args.push(self.expr()?);
                if self.eat_sym(")") {
                    break;
                }
                self.expect_sym(",")?;
            }
        }
        let arity_ok = match function {
            Function::Exists => args.len() <= 1,
            Function::Empty | Function::Not | Function::Count | Function::First => args.is_empty(),
            Function::Where | Function::All | Function::StartsWith => args.len() == 1,
        };
        if !arity_ok {
            return fail(format!("`{name}()` takes a different number of arguments"));
        }
        Ok(Expr::Call(Box::new(on), function, args))
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let Some(token) = self.peek().cloned() else {
            return self.fail("the condition ends too early");
        };
        self.pos += 1;
        match token {
            Token::Text(s) => Ok(Expr::Literal(Literal::Text(s))),
            Token::Number(n) => Ok(Expr::Literal(Literal::Number(n))),
            Token::Date(d) => Ok(Expr::Literal(Literal::Text(d))),
            Token::Ident(w) if w == "true" || w == "false" => {
                Ok(Expr::Literal(Literal::Bool(w == "true")))
            }
            Token::Ident(w) if is_keyword(&w) => {
                self.pos -= 1;
                self.fail(format!("`{w}` needs something on its left"))
            }
            Token::Ident(name) => {
                let name_at = self.tokens[self.pos - 1].1 + 1;
                // A leading capitalised name is the resource type: the resource itself.
                if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    Ok(Expr::TypeRoot(name))
                } else {
                    self.member_or_call(Expr::This, name, name_at)
                }
            }
            Token::Sym("$") => match self.peek().cloned() {
                Some(Token::Ident(w)) if w == "this" => {
                    self.pos += 1;
                    Ok(Expr::This)
                }
                _ => self.fail("only `$this` is supported"),
            },
            Token::Sym("(") => {
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Token::Sym("{") => {
                self.expect_sym("}")?;
                Ok(Expr::Empty)
            }
            Token::Sym(s) => {
                self.pos -= 1;
                self.fail(format!("`{s}` is not expected here"))
            }
        }
    }
}

fn is_keyword(w: &str) -> bool {
    matches!(w, "and" | "or" | "xor" | "implies" | "in" | "contains")
}

impl Condition {
    /// Compiles a condition.
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        let tokens = tokenize(text)?;
        if let Some((_, at)) = tokens.get(MAX_TOKENS) {
            return Err(ParseError {
                message: format!("the condition is longer than {MAX_TOKENS} tokens"),
                at: at + 1,
            });
        }
        if tokens.is_empty() {
            return Err(ParseError {
                message: "the condition is empty".into(),
                at: 1,
            });
        }
        let mut parser = Parser {
            tokens,
            pos: 0,
            end: text.chars().count(),
            depth: 0,
        };
        let expr = parser.expr()?;
        if parser.pos < parser.tokens.len() {
            return parser.fail("unexpected text after the condition");
        }
        Ok(Condition {
            text: text.to_owned(),
            expr,
        })
    }

    /// The condition as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the condition holds for the resource: it evaluates to the single value
    /// `true`.
    pub fn holds(&self, resource: &Value) -> bool {
        let out = eval(&self.expr, &[Item::Json(resource)]);
        matches!(out.as_slice(), [item] if item.as_bool() == Some(true))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One item of a collection: part of the resource, or a computed value.
#[derive(Debug, Clone)]
enum Item<'a> {
    Json(&'a Value),
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Item<'_> {
    fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Bool(b) | Item::Json(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn as_text(&self) -> Option<&str> {
        match self {
            Item::Text(s) => Some(s),
            Item::Json(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            Item::Number(n) => Some(*n),
            Item::Json(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
    }

    fn equals(&self, other: &Item<'_>) -> Option<bool> {
        if let (Some(a), Some(b)) = (self.as_bool(), other.as_bool()) {
            return Some(a == b);
        }
        if let (Some(a), Some(b)) = (self.as_number(), other.as_number()) {
            return Some(a == b);
        }
        if let (Some(a), Some(b)) = (self.as_text(), other.as_text()) {
            return Some(a == b);
        }
        match (self, other) {
            (Item::Json(a), Item::Json(b)) => Some(a == b),
            _ => Some(false),
        }
    }

    fn compare(&self, other: &Item<'_>) -> Option<std::cmp::Ordering> {
        if let (Some(a), Some(b)) = (self.as_number(), other.as_number()) {
            return a.partial_cmp(&b);
        }
        match (self.as_text(), other.as_text()) {
            // Dates and times as ISO text: comparable when written to the same precision.
            (Some(a), Some(b)) if a.len() == b.len() || !looks_like_date(a) => Some(a.cmp(b)),
            (Some(a), Some(b)) => {
                // Bytes, not `str` slices: `n` may fall inside a character of either text
                // (UTF-8 orders bytewise as it orders characters).
                let n = a.len().min(b.len());
                match a.as_bytes()[..n].cmp(&b.as_bytes()[..n]) {
                    std::cmp::Ordering::Equal => None,
                    o => Some(o),
                }
            }
            _ => None,
        }
    }
}

fn looks_like_date(s: &str) -> bool {
    s.len() >= 4 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit)
}

fn boolean<'a>(b: Option<bool>) -> Vec<Item<'a>> {
    b.map(Item::Bool).into_iter().collect()
}

/// A collection as a boolean: empty is unknown, a single boolean is itself, any other
/// single item is true.
fn truth(items: &[Item<'_>]) -> Option<bool> {
    match items {
        [] => None,
        [one] => Some(one.as_bool().unwrap_or(true)),
        _ => Some(true),
    }
}

fn member<'a>(value: &'a Value, name: &str, out: &mut Vec<Item<'a>>) {
    let Value::Object(obj) = value else {
        return;
    };
    let found = obj.get(name).or_else(|| {
        // A choice element by its short name: `value` finds `valueQuantity`.
        obj.iter()
            .find(|(k, _)| {
                k.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            })
            .map(|(_, v)| v)
    });
    match found {
        Some(Value::Array(items)) => out.extend(items.iter().map(Item::Json)),
        Some(Value::Null) | None => {}
        Some(v) => out.push(Item::Json(v)),
    }
}

fn eval<'a>(expr: &Expr, input: &[Item<'a>]) -> Vec<Item<'a>> {
    match expr {
        Expr::This => input.to_vec(),
        Expr::TypeRoot(name) => input
            .iter()
            .filter(|i| {
                matches!(i, Item::Json(v) if v.get("resourceType").and_then(Value::as_str) == Some(name))
            })
            .cloned()
            .collect(),
        Expr::Empty => Vec::new(),
        Expr::Literal(Literal::Text(s)) => vec![Item::Text(s.clone())],
        Expr::Literal(Literal::Number(n)) => vec![Item::Number(*n)],
        Expr::Literal(Literal::Bool(b)) => vec![Item::Bool(*b)],
        Expr::Member(on, name) => {
            let mut out = Vec::new();
            for item in eval(on, input) {
                if let Item::Json(v) = item {
                    member(v, name, &mut out);
                }
            }
            out
        }
        Expr::Call(on, function, args) => {
            let items = eval(on, input);
            call(*function, items, args)
        }
        Expr::Binary(op, left, right) => {
            let l = eval(left, input);
            let r = eval(right, input);
            binary(*op, l, r)
        }
    }
}

fn call<'a>(function: Function, items: Vec<Item<'a>>, args: &[Expr]) -> Vec<Item<'a>> {
    let filter = |items: Vec<Item<'a>>, cond: &Expr| -> Vec<Item<'a>> {
        items
            .into_iter()
            .filter(|item| truth(&eval(cond, std::slice::from_ref(item))) == Some(true))
            .collect()
    };
    match (function, args) {
        (Function::Exists, []) => vec![Item::Bool(!items.is_empty())],
        (Function::Exists, [cond]) => vec![Item::Bool(!filter(items, cond).is_empty())],
        (Function::Empty, _) => vec![Item::Bool(items.is_empty())],
        (Function::Not, _) => boolean(truth(&items).map(|b| !b)),
        (Function::Count, _) => vec![Item::Number(items.len() as f64)],
        (Function::First, _) => items.into_iter().take(1).collect(),
        (Function::Where, [cond]) => filter(items, cond),
        (Function::All, [cond]) => {
            let total = items.len();
            vec![Item::Bool(filter(items, cond).len() == total)]
        }
        (Function::StartsWith, [prefix]) => {
            let prefix = eval(prefix, &[]);
            match (items.as_slice(), prefix.as_slice()) {
                ([item], [p]) => match (item.as_text(), p.as_text()) {
                    (Some(s), Some(p)) => vec![Item::Bool(s.starts_with(p))],
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            }
        }
        // INVARIANT: the parser checks each function's arity.
        _ => Vec::new(),
    }
}

fn binary<'a>(op: Op, l: Vec<Item<'a>>, r: Vec<Item<'a>>) -> Vec<Item<'a>> {
    match op {
        Op::Union => {
            let mut out = l;
            for item in r {
                if !out.iter().any(|o| o.equals(&item) == Some(true)) {
                    out.push(item);
                }
            }
            out
        }
        Op::And => boolean(match (truth(&l), truth(&r)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }),
        Op::Or => boolean(match (truth(&l), truth(&r)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        }),
        Op::Xor => boolean(match (truth(&l), truth(&r)) {
            (Some(a), Some(b)) => Some(a != b),
            _ => None,
        }),
        Op::Implies => boolean(match (truth(&l), truth(&r)) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), Some(false)) => Some(false),
            _ => None,
        }),
        Op::In | Op::Contains => {
            let (needle, hay) = if op == Op::In { (l, r) } else { (r, l) };
            match needle.as_slice() {
                [] => Vec::new(),
                [one] => vec![Item::Bool(hay.iter().any(|h| one.equals(h) == Some(true)))],
                _ => Vec::new(),
            }
        }
        Op::Eq | Op::Ne => match (l.as_slice(), r.as_slice()) {
            ([], _) | (_, []) => Vec::new(),
            _ if l.len() != r.len() => vec![Item::Bool(op == Op::Ne)],
            _ => {
                let same = l.iter().zip(&r).all(|(a, b)| a.equals(b) == Some(true));
                vec![Item::Bool(same == (op == Op::Eq))]
            }
        },
        Op::Lt | Op::Le | Op::Gt | Op::Ge => match (l.as_slice(), r.as_slice()) {
            ([a], [b]) => boolean(a.compare(b).map(|o| match op {
                Op::Lt => o.is_lt(),
                Op::Le => o.is_le(),
                Op::Gt => o.is_gt(),
                _ => o.is_ge(),
            })),
            _ => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs() -> Value {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}, {"system": "http://loinc.org", "code": "8480-6"}]},
            "effectiveDateTime": "2026-06-01T10:00:00Z",
            "valueQuantity": {"value": 142, "unit": "mmHg"},
            "note": [{"text": "a"}, {"text": "b"}],
            "interpretation": []
        })
    }

    #[track_caller]
    fn holds(text: &str) -> bool {
        Condition::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .holds(&obs())
    }

    #[test]
    fn conditions_evaluate_as_fhirpath_does() {
        for (text, expected) in [
            ("status = 'final'", true),
            ("Observation.status = 'final'", true),
            ("Condition.status = 'final'", false),
            ("status != 'entered-in-error'", true),
            ("status = 'preliminary'", false),
            ("status in ('final' | 'amended' | 'corrected')", true),
            ("('final' | 'amended') contains status", true),
            ("category.coding.where(code = 'laboratory').exists()", true),
            ("category.coding.exists(code = 'vital-signs')", false),
            ("code.coding.code contains '8480-6'", true),
            (
                "code.coding.system.first() = 'http://snomed.info/sct'",
                true,
            ),
            ("code.coding.all(system.startsWith('http://'))", true),
            ("note.count() = 2", true),
            ("interpretation.empty()", true),
            ("performer.exists().not()", true),
            ("value.value > 140", true),
            ("valueQuantity.value <= 140", false),
            ("effective >= @2026-01-01", true),
            ("effective < @2026-06-01", false),
            ("effective < @2026-07", true),
            ("performer.display = 'x'", false),
            ("performer.display = 'x' or status = 'final'", true),
            ("performer.display = 'x' and status = 'final'", false),
            ("status = 'final' implies note.exists()", true),
            ("status = 'final' xor true", false),
            ("(status = 'final') = true", true),
            ("$this.status = 'final'", true),
            ("{}.exists()", false),
            ("code", false),
            ("'it\\'s' = 'it\\'s'", true),
        ] {
            assert_eq!(holds(text), expected, "{text}");
        }
    }

    #[test]
    fn what_is_not_supported_does_not_parse_and_says_where() {
        for (text, says, at) in [
            ("", "empty", 1),
            ("status = ", "ends too early", 10),
            ("status = 'final", "not closed", 10),
            ("status.matches('x')", "`matches()` is not supported", 8),
            ("status ~ 'final'", "`~` is not supported", 8),
            ("status = 'final' status", "unexpected text", 18),
            ("and status", "needs something on its left", 1),
            ("exists(1, 2)", "number of arguments", 1),
            ("%resource.status", "`%` is not supported", 1),
            ("@20 = status", "date literal", 1),
            ("status.", "after `.`", 8),
        ] {
            let e = Condition::parse(text).expect_err(text);
            assert!(e.message.contains(says), "{text}: {e}");
            assert_eq!(e.at, at, "{text}: {e}");
        }
        let deep = format!("{}status{}", "(".repeat(40), ")".repeat(40));
        assert!(Condition::parse(&deep).is_err(), "nesting is bounded");
    }

    /// Found by `fuzz/` (fhirpath): a date-like text compared with a longer or shorter one
    /// was cut inside a multi-byte character, which panicked.
    #[test]
    fn date_like_texts_compare_when_the_cut_falls_inside_a_character() {
        let resource = json!({"resourceType": "Observation", "note": [{"text": "2026é"}]});
        for (text, expected) in [
            ("note.text > '2026'", false),
            ("note.text > '20260'", true),
            ("'2026-01' < note.text", true),
        ] {
            let condition = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(condition.holds(&resource), expected, "{text}");
        }
    }

    /// Found beside `fuzz/` (fhirpath): a long chain or run of operators nests the tree as
    /// deep as it is long, and ten thousand links overflowed a 2 MiB stack.
    #[test]
    fn long_conditions_are_refused_not_overflowing_the_stack() {
        let at_limit = format!("status{}", ".a".repeat((MAX_TOKENS - 1) / 2));
        assert!(Condition::parse(&at_limit).is_ok());
        for text in [
            format!("status{}", ".a".repeat(100_000)),
            format!("true{}", " or true".repeat(100_000)),
        ] {
            let e = Condition::parse(&text).expect_err("too long");
            assert!(e.message.contains("longer than"), "{e}");
        }
    }
}
