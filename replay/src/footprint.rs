//! `--sync`: which rows a statement reads or writes, as far as its text tells.
//!
//! A replayed write whose outcome differed from production's (a deadlock's victim swapped, a
//! duplicate key, other affected rows) leaves rows different from production's, and every
//! later statement that reads them differs too, with no order label of its own. To label
//! those, a replay marks the rows such a write touched ([`crate::divergence`]) and asks,
//! for each later statement, whether it touches marked rows. Rows are told by the table's
//! primary key: a statement's footprint is its table and, per primary-key column, the values
//! or range its `WHERE` (or an `INSERT`'s rows) pins that column to. What the text does not
//! tell for sure (a join, a subquery, an `OR`, an expression) widens the footprint — to the
//! whole table, or to every table — never narrows it: a wrong footprint only labels more.

use std::collections::HashMap;

use myrr_recording::{Param, Value};

/// A value a key column is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Int(i128),
    /// Any other value, ASCII-lower-cased (a case-insensitive collation may take `'A'` for
    /// `'a'`: treating them as one labels more, never less).
    Text(Vec<u8>),
}

/// What a statement's rows are, on one primary-key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    Any,
    In(Vec<Key>),
    /// Integers from `.0` to `.1`, both included.
    Range(i128, i128),
}

impl Cond {
    fn meets(&self, other: &Cond) -> bool {
        match (self, other) {
            (Cond::Any, _) | (_, Cond::Any) => true,
            (Cond::In(a), Cond::In(b)) => a.iter().any(|k| b.contains(k)),
            (Cond::In(keys), Cond::Range(lo, hi)) | (Cond::Range(lo, hi), Cond::In(keys)) => {
                keys.iter().any(|k| match k {
                    Key::Int(i) => lo <= i && i <= hi,
                    // A string may compare equal to a number: assume it does.
                    Key::Text(_) => true,
                })
            }
            (Cond::Range(a, b), Cond::Range(c, d)) => a <= d && c <= b,
        }
    }
}

/// The rows a statement may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Footprint {
    /// No table (`SELECT 1`, `SET`, `COMMIT`).
    Nothing,
    /// Unknown: any row of any table.
    Everything,
    /// Rows of one table (its name lower-cased, without its database): `None`, all of them;
    /// else the boxes (one value set or range per primary-key column) they lie in.
    Table(String, Option<Vec<Vec<Cond>>>),
}

impl Footprint {
    /// Whether the two may share a row.
    #[cfg(test)]
    pub(crate) fn meets(&self, other: &Footprint) -> bool {
        match (self, other) {
            (Footprint::Nothing, _) | (_, Footprint::Nothing) => false,
            (Footprint::Everything, _) | (_, Footprint::Everything) => true,
            (Footprint::Table(a, ra), Footprint::Table(b, rb)) => {
                a == b && rows_meet(ra.as_deref(), rb.as_deref())
            }
        }
    }

    /// The same tables, all their rows.
    pub(crate) fn tables(&self) -> Footprint {
        match self {
            Footprint::Table(t, _) => Footprint::Table(t.clone(), None),
            other => other.clone(),
        }
    }
}

/// Whether two row sets of one table may share a row (`None`: all rows).
pub(crate) fn rows_meet(a: Option<&[Vec<Cond>]>, b: Option<&[Vec<Cond>]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|x| {
            b.iter()
                .any(|y| x.len() != y.len() || x.iter().zip(y).all(|(p, q)| p.meets(q)))
        }),
        _ => true,
    }
}

/// Boxes kept per table in [`Rows`] before they fold into "all its rows".
const BOXES_PER_TABLE: usize = 64;

/// The rows several statements may touch (a transaction's): the union of their footprints,
/// by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    everything: bool,
    /// Table → its boxes (`None`: all its rows).
    tables: Vec<(String, Option<Vec<Vec<Cond>>>)>,
}

impl Rows {
    /// Any row of any table.
    pub(crate) fn everything() -> Self {
        Self {
            everything: true,
            tables: Vec::new(),
        }
    }

    pub(crate) fn of(fp: Footprint) -> Self {
        let mut rows = Self::default();
        rows.add(fp);
        rows
    }

    /// Any row of any table.
    pub(crate) fn is_everything(&self) -> bool {
        self.everything
    }

    /// No row at all.
    pub(crate) fn is_empty(&self) -> bool {
        !self.everything && self.tables.is_empty()
    }

    pub(crate) fn add(&mut self, fp: Footprint) {
        let (t, boxes) = match fp {
            Footprint::Nothing => return,
            Footprint::Everything => {
                *self = Self::everything();
                return;
            }
            _ if self.everything => return,
            Footprint::Table(t, boxes) => (t, boxes),
        };
        let Some((_, have)) = self.tables.iter_mut().find(|(name, _)| *name == t) else {
            self.tables.push((t, boxes));
            return;
        };
        match (have.as_mut(), boxes) {
            (Some(have_boxes), Some(more)) => {
                for b in more {
                    if !have_boxes.contains(&b) {
                        have_boxes.push(b);
                    }
                }
                if have_boxes.len() > BOXES_PER_TABLE {
                    *have = None;
                }
            }
            (Some(_), None) => *have = None,
            (None, _) => {}
        }
    }

    /// Whether the two may share a row.
    pub(crate) fn meets(&self, other: &Rows) -> bool {
        if self.is_empty() || other.is_empty() {
            return false;
        }
        if self.everything || other.everything {
            return true;
        }
        self.tables.iter().any(|(t, a)| {
            other
                .tables
                .iter()
                .any(|(u, b)| t == u && rows_meet(a.as_deref(), b.as_deref()))
        })
    }
}

/// Tables whose rows a statement reaches through others (names lower-cased): views, tables
/// with triggers, and both sides of a foreign key. A footprint naming one is every row.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    names: std::collections::HashSet<String>,
    /// The replay changed the schema: from then on every footprint is every row.
    changed: std::sync::atomic::AtomicBool,
}

impl Reach {
    pub(crate) fn new(names: std::collections::HashSet<String>) -> Self {
        Self {
            names,
            changed: Default::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn widen(&self, fp: Footprint) -> Footprint {
        use std::sync::atomic::Ordering;
        match fp {
            Footprint::Table(t, _) if self.names.contains(&t) => Footprint::Everything,
            Footprint::Table(..) if self.changed.load(Ordering::Relaxed) => Footprint::Everything,
            other => other,
        }
    }

    /// A statement changed the schema (`CREATE`, `ALTER`, `DROP`, `RENAME`): the names may
    /// be out of date.
    pub(crate) fn schema_changed(&self) {
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A value in a statement's text: a literal, or a placeholder's parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Lit(Key),
    Param(usize),
}

/// A condition of a `WHERE` on one column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pred {
    Eq(Val),
    In(Vec<Val>),
    Between(Val, Val),
    /// `>=` (inclusive) or `>` as a lower bound, `<=` / `<` as an upper bound.
    Lower(Val, bool),
    Upper(Val, bool),
}

/// What a statement's text says about its rows, before its parameters are known (a prepared
/// statement's is worked out once).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    Nothing,
    Everything,
    /// All rows of the table.
    Table(String),
    /// The rows of the table its `WHERE` selects: conditions by column (lower-cased).
    Where(String, Vec<(String, Pred)>),
    /// The rows an `INSERT` or `REPLACE` writes: its columns, and each row's values (`None`
    /// where a value is an expression).
    Rows(String, Vec<String>, Vec<Vec<Option<Val>>>),
}

/// The primary keys of the candidate's tables: table name (lower-cased, without its
/// database) → its key's columns, in order.
pub(crate) type PrimaryKeys = HashMap<String, Vec<String>>;

impl Shape {
    pub(crate) fn of(sql: &[u8]) -> Shape {
        let Some(tokens) = lex(sql) else {
            return Shape::Everything;
        };
        Parser { t: &tokens, at: 0 }.statement()
    }

    /// The rows, given the statement's parameters, the primary keys, and for an `INSERT`
    /// the first id it generated and the rows it wrote (a key column the `INSERT` leaves to
    /// AUTO_INCREMENT is then known).
    pub(crate) fn footprint(
        &self,
        params: &[Param],
        keys: &PrimaryKeys,
        insert_id: u64,
        rows: u64,
    ) -> Footprint {
        let value = |v: &Val| -> Option<Key> {
            match v {
                Val::Lit(k) => Some(k.clone()),
                Val::Param(i) => params.get(*i).and_then(|p| key_of(&p.value)),
            }
        };
        match self {
            Shape::Nothing => Footprint::Nothing,
            Shape::Everything => Footprint::Everything,
            Shape::Table(t) => Footprint::Table(t.clone(), None),
            Shape::Where(t, preds) => {
                let Some(pk) = keys.get(t) else {
                    return Footprint::Table(t.clone(), None);
                };
                let cond = pk
                    .iter()
                    .map(|c| {
                        preds
                            .iter()
                            .filter(|(col, _)| col == c)
                            .find_map(|(_, p)| cond_of(p, &value))
                            .unwrap_or(Cond::Any)
                    })
                    .collect::<Vec<_>>();
                let rows = (!cond.iter().all(|c| *c == Cond::Any)).then(|| vec![cond]);
                Footprint::Table(t.clone(), rows)
            }
            Shape::Rows(t, columns, values) => {
                let Some(pk) = keys.get(t) else {
                    return Footprint::Table(t.clone(), None);
                };
                let generated = (pk.len() == 1 && insert_id > 0).then(|| {
                    let n = (values.len() as u64).max(rows).max(1);
                    Cond::Range(insert_id as i128, (insert_id + n - 1) as i128)
                });
                let boxes = values
                    .iter()
                    .map(|row| {
                        pk.iter()
                            .map(|c| match columns.iter().position(|x| x == c) {
                                Some(i) => {
                                    match row.get(i).cloned().flatten().and_then(|v| value(&v)) {
                                        Some(k) => Cond::In(vec![k]),
                                        None => Cond::Any,
                                    }
                                }
                                None => generated.clone().unwrap_or(Cond::Any),
                            })
                            .collect()
                    })
                    .collect();
                Footprint::Table(t.clone(), Some(boxes))
            }
        }
    }
}

/// A value as a key: integers (and strings that are one) as numbers.
fn key_of(v: &Value) -> Option<Key> {
    Some(match v {
        Value::Null => return None,
        Value::Int(i) => Key::Int(*i as i128),
        Value::UInt(u) => Key::Int(*u as i128),
        Value::Bytes(b) => text_key(b),
        Value::Double(d) if d.fract() == 0.0 && d.abs() < 1e30 => Key::Int(*d as i128),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e30 => Key::Int(*f as i128),
        other => Key::Text(format!("{other:?}").into_bytes()),
    })
}

fn text_key(b: &[u8]) -> Key {
    match std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse::<i128>().ok())
    {
        Some(i) => Key::Int(i),
        None => Key::Text(b.to_ascii_lowercase()),
    }
}

fn cond_of(p: &Pred, value: &impl Fn(&Val) -> Option<Key>) -> Option<Cond> {
    let int = |v: &Val| match value(v)? {
        Key::Int(i) => Some(i),
        Key::Text(_) => None,
    };
    match p {
        Pred::Eq(v) => value(v).map(|k| Cond::In(vec![k])),
        Pred::In(vs) => vs
            .iter()
            .map(value)
            .collect::<Option<Vec<_>>>()
            .map(Cond::In),
        Pred::Between(a, b) => Some(Cond::Range(int(a)?, int(b)?)),
        Pred::Lower(v, inclusive) => Some(Cond::Range(int(v)? + i128::from(!inclusive), i128::MAX)),
        Pred::Upper(v, inclusive) => Some(Cond::Range(i128::MIN, int(v)? - i128::from(!inclusive))),
    }
}

/// Whether a statement that starts with `WITH` (common table expressions) writes: an
/// `INSERT`, `REPLACE`, `UPDATE` or `DELETE` at its top level after them (MySQL 8 allows
/// `WITH … UPDATE` and `WITH … DELETE`). One it cannot read for sure counts as a write.
pub(crate) fn with_writes(sql: &[u8]) -> bool {
    let Some(tokens) = lex(sql) else {
        return true;
    };
    let mut depth = 0i32;
    let mut after_for = false;
    for t in &tokens {
        match t {
            Tok::Punct("(") => depth += 1,
            Tok::Punct(")") => depth -= 1,
            Tok::Word(w) if depth == 0 => {
                let u = w.to_ascii_uppercase();
                if matches!(u.as_str(), "INSERT" | "REPLACE" | "DELETE")
                    || (u == "UPDATE" && !after_for)
                {
                    return true;
                }
                after_for = u == "FOR";
                continue;
            }
            _ => {}
        }
        after_for = false;
    }
    false
}

/// Whether `sql` is an `UPDATE` whose every assignment adds to or subtracts from the column
/// a value (`SET a = a + ?, b = b - 1`): two such updates of a row leave it the same in
/// either order.
pub(crate) fn commutative_update(sql: &[u8]) -> bool {
    let Some(tokens) = lex(sql) else {
        return false;
    };
    let mut p = Parser { t: &tokens, at: 0 };
    if !p.eat_word("UPDATE") {
        return false;
    }
    p.skip_words(&["LOW_PRIORITY", "IGNORE"]);
    if p.table().is_none() {
        return false;
    }
    p.alias();
    if !p.eat_word("SET") {
        return false;
    }
    loop {
        let (Some(target), true) = (p.column(), p.eat_punct("=")) else {
            return false;
        };
        if p.column().as_ref() != Some(&target) || !(p.eat_punct("+") || p.eat_punct("-")) {
            return false;
        }
        if p.value().is_none() {
            return false;
        }
        if !p.eat_punct(",") {
            return p.at_end() || p.is_word("WHERE");
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A word or a quoted name, as written (quotes removed).
    Word(String),
    Num(String),
    Str(Vec<u8>),
    /// The n-th placeholder of the statement.
    Placeholder(usize),
    Punct(&'static str),
}

/// The statement's tokens; `None` when it cannot be read for sure (a version comment, which
/// may carry SQL; an unclosed quote; ANSI-quoted names).
fn lex(sql: &[u8]) -> Option<Vec<Tok>> {
    const PUNCT: [&str; 17] = [
        "<=>", "<=", ">=", "<>", "!=", "||", "&&", "=", "<", ">", "(", ")", ",", ".", ";", "-", "+",
    ];
    let mut out = Vec::new();
    let mut i = 0;
    let mut placeholders = 0;
    while let Some(&c) = sql.get(i) {
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                if sql.get(i + 2) == Some(&b'!') {
                    return None;
                }
                i = sql[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(sql.len(), |p| i + 2 + p + 2);
            }
            b'#' => i = line_end(sql, i),
            b'-' if sql.get(i + 1) == Some(&b'-') => i = line_end(sql, i),
            b'`' => {
                let (s, end) = quoted(sql, i, b'`')?;
                out.push(Tok::Word(String::from_utf8_lossy(&s).into_owned()));
                i = end;
            }
            b'\'' => {
                let (s, end) = quoted(sql, i, b'\'')?;
                out.push(Tok::Str(s));
                i = end;
            }
            // A string, unless ANSI_QUOTES: then a name, and this cannot tell which.
            b'"' => {
                let (s, end) = quoted(sql, i, b'"')?;
                out.push(Tok::Str(s));
                i = end;
            }
            b'?' => {
                out.push(Tok::Placeholder(placeholders));
                placeholders += 1;
                i += 1;
            }
            b'0'..=b'9' => {
                let len = sql[i..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'.'))
                    .unwrap_or(sql.len() - i);
                out.push(Tok::Num(
                    String::from_utf8_lossy(&sql[i..i + len]).into_owned(),
                ));
                i += len;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'@' || c >= 0x80 => {
                let len = sql[i..]
                    .iter()
                    .position(|&b| {
                        !(b.is_ascii_alphanumeric()
                            || b == b'_'
                            || b == b'$'
                            || b == b'@'
                            || b >= 0x80)
                    })
                    .unwrap_or(sql.len() - i);
                out.push(Tok::Word(
                    String::from_utf8_lossy(&sql[i..i + len]).into_owned(),
                ));
                i += len;
            }
            _ => {
                let p = PUNCT
                    .iter()
                    .find(|p| sql[i..].starts_with(p.as_bytes()))
                    .copied()
                    .unwrap_or("?op");
                i += if p == "?op" { 1 } else { p.len() };
                out.push(Tok::Punct(p));
            }
        }
    }
    Some(out)
}

fn line_end(sql: &[u8], i: usize) -> usize {
    sql[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(sql.len(), |p| i + p + 1)
}

/// The text between quotes `q` starting at `i` (doubled quotes and backslash escapes read),
/// and where it ends.
fn quoted(sql: &[u8], i: usize, q: u8) -> Option<(Vec<u8>, usize)> {
    let mut s = Vec::new();
    let mut j = i + 1;
    loop {
        match *sql.get(j)? {
            c if c == q && sql.get(j + 1) == Some(&q) => {
                s.push(q);
                j += 2;
            }
            c if c == q => return Some((s, j + 1)),
            b'\\' if q != b'`' => {
                s.push(*sql.get(j + 1)?);
                j += 2;
            }
            c => {
                s.push(c);
                j += 1;
            }
        }
    }
}

struct Parser<'a> {
    t: &'a [Tok],
    at: usize,
}

/// Words that end a single table's `FROM` or a `WHERE`.
const CLAUSE_ENDS: [&str; 11] = [
    "WHERE",
    "ORDER",
    "GROUP",
    "LIMIT",
    "FOR",
    "LOCK",
    "HAVING",
    "WINDOW",
    "RETURNING",
    "INTO",
    "PROCEDURE",
];

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.at)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(x)) if *x == p)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.is_word(w);
        self.at += usize::from(yes);
        yes
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        let yes = self.is_punct(p);
        self.at += usize::from(yes);
        yes
    }

    fn skip_words(&mut self, words: &[&str]) {
        while words.iter().any(|w| self.is_word(w)) {
            self.at += 1;
        }
    }

    /// How many times the statement has the word `w`.
    fn count_word(&self, w: &str) -> usize {
        self.t
            .iter()
            .filter(|t| matches!(t, Tok::Word(x) if x.eq_ignore_ascii_case(w)))
            .count()
    }

    /// At the end (a final `;` allowed).
    fn at_end(&self) -> bool {
        self.t[self.at..]
            .iter()
            .all(|t| matches!(t, Tok::Punct(";")))
    }

    /// A name: `name` or `db.name`, the name lower-cased.
    fn table(&mut self) -> Option<String> {
        let Some(Tok::Word(mut name)) = self.peek().cloned() else {
            return None;
        };
        self.at += 1;
        if self.eat_punct(".") {
            let Some(Tok::Word(n)) = self.peek().cloned() else {
                return None;
            };
            self.at += 1;
            name = n;
        }
        Some(name.to_lowercase())
    }

    /// A column: `col`, `t.col`, `db.t.col`, lower-cased.
    fn column(&mut self) -> Option<String> {
        let mut name = match self.peek()? {
            Tok::Word(w) => w.to_lowercase(),
            _ => return None,
        };
        self.at += 1;
        while self.eat_punct(".") {
            match self.peek()? {
                Tok::Word(w) => name = w.to_lowercase(),
                _ => return None,
            }
            self.at += 1;
        }
        Some(name)
    }

    fn value(&mut self) -> Option<Val> {
        let negative = self.eat_punct("-");
        let v = match self.peek()? {
            Tok::Num(n) => {
                let n = if negative { format!("-{n}") } else { n.clone() };
                Val::Lit(text_key(n.as_bytes()))
            }
            Tok::Str(s) if !negative => Val::Lit(text_key(s)),
            Tok::Placeholder(i) if !negative => Val::Param(*i),
            _ => return None,
        };
        self.at += 1;
        Some(v)
    }

    /// Skips an optional alias after a table.
    fn alias(&mut self) {
        /// Words that follow a table and are no alias.
        const NOT_ALIASES: [&str; 19] = [
            "SET",
            "JOIN",
            "STRAIGHT_JOIN",
            "INNER",
            "LEFT",
            "RIGHT",
            "CROSS",
            "NATURAL",
            "USING",
            "PARTITION",
            "USE",
            "IGNORE",
            "FORCE",
            "UNION",
            "VALUES",
            "VALUE",
            "SELECT",
            "ON",
            "EXCEPT",
        ];
        let alias = matches!(self.peek(), Some(Tok::Word(w))
            if !CLAUSE_ENDS.iter().chain(NOT_ALIASES.iter()).any(|k| w.eq_ignore_ascii_case(k)));
        if self.eat_word("AS") || alias {
            self.at += 1;
        }
    }

    fn statement(&mut self) -> Shape {
        let Some(Tok::Word(first)) = self.peek().cloned() else {
            return Shape::Nothing;
        };
        self.at += 1;
        let shape = match first.to_ascii_uppercase().as_str() {
            "SELECT" => self.select(),
            "UPDATE" => self.update(),
            "DELETE" => self.delete(),
            "INSERT" | "REPLACE" => self.insert(),
            // No rows of any table.
            "BEGIN" | "START" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "USE"
            | "SHOW" | "XA" => return Shape::Nothing,
            // `SET @a = (SELECT …)` reads rows.
            "SET" | "DO" if self.count_word("SELECT") == 0 => return Shape::Nothing,
            _ => None,
        };
        shape.unwrap_or(Shape::Everything)
    }

    /// A single-table `SELECT`; `None` for anything else.
    fn select(&mut self) -> Option<Shape> {
        // No subquery, no union.
        if self.count_word("SELECT") > 1 || self.count_word("UNION") > 0 {
            return None;
        }
        let mut depth = 0i32;
        loop {
            match self.peek() {
                None => return Some(Shape::Nothing),
                Some(Tok::Punct("(")) => depth += 1,
                Some(Tok::Punct(")")) => depth -= 1,
                Some(Tok::Punct(";")) if depth == 0 => {
                    return self.at_end().then_some(Shape::Nothing);
                }
                Some(Tok::Word(w)) if depth == 0 && w.eq_ignore_ascii_case("FROM") => break,
                Some(Tok::Word(w)) if depth == 0 && w.eq_ignore_ascii_case("INTO") => return None,
                _ => {}
            }
            self.at += 1;
        }
        self.at += 1;
        if self.is_word("DUAL") {
            return Some(Shape::Nothing);
        }
        let table = self.table()?;
        self.alias();
        self.filter(table)
    }

    fn update(&mut self) -> Option<Shape> {
        self.skip_words(&["LOW_PRIORITY", "IGNORE"]);
        let table = self.table()?;
        self.alias();
        if !self.eat_word("SET") {
            return None;
        }
        // To the WHERE, past the assignments (their placeholders are numbered by the lexer).
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            match t {
                Tok::Punct("(") => depth += 1,
                Tok::Punct(")") => depth -= 1,
                Tok::Word(w)
                    if depth == 0 && CLAUSE_ENDS.iter().any(|k| w.eq_ignore_ascii_case(k)) =>
                {
                    break
                }
                Tok::Word(w) if w.eq_ignore_ascii_case("SELECT") => return None,
                _ => {}
            }
            self.at += 1;
        }
        self.filter(table)
    }

    fn delete(&mut self) -> Option<Shape> {
        self.skip_words(&["LOW_PRIORITY", "QUICK", "IGNORE"]);
        if !self.eat_word("FROM") {
            return None;
        }
        let table = self.table()?;
        self.alias();
        if self.count_word("SELECT") > 0 {
            return None;
        }
        self.filter(table)
    }

    /// What follows a single table: its `WHERE`, if any, and clauses that do not widen it.
    fn filter(&mut self, table: String) -> Option<Shape> {
        if self.at_end() {
            return Some(Shape::Table(table));
        }
        match self.peek() {
            Some(Tok::Word(w)) if CLAUSE_ENDS.iter().any(|k| w.eq_ignore_ascii_case(k)) => {}
            _ => return None,
        }
        if !self.eat_word("WHERE") {
            return Some(Shape::Table(table));
        }
        // A top-level OR: the table's rows, which ones not told.
        Some(match self.conjuncts() {
            Some(preds) => Shape::Where(table, preds),
            None => Shape::Table(table),
        })
    }

    /// The `WHERE`'s conditions on single columns, joined by `AND` at its top level; any
    /// other condition is left out (it only narrows the rows). `None` at a top-level `OR`.
    fn conjuncts(&mut self) -> Option<Vec<(String, Pred)>> {
        let mut preds = Vec::new();
        loop {
            let start = self.at;
            match self.condition() {
                Some(p) if self.conjunct_ends() => preds.push(p),
                _ => {
                    self.at = start;
                    self.skip_condition()?;
                }
            }
            if !self.eat_word("AND") && !self.eat_punct("&&") {
                return Some(preds);
            }
        }
    }

    fn conjunct_ends(&self) -> bool {
        match self.peek() {
            None | Some(Tok::Punct(";")) | Some(Tok::Punct("&&")) => true,
            Some(Tok::Word(w)) => {
                w.eq_ignore_ascii_case("AND")
                    || CLAUSE_ENDS.iter().any(|k| w.eq_ignore_ascii_case(k))
            }
            _ => false,
        }
    }

    /// `col = v`, `col <=> v`, `col IN (v, …)`, `col BETWEEN v AND v`, `col < v` and kin.
    fn condition(&mut self) -> Option<(String, Pred)> {
        let col = self.column()?;
        let pred = match self.peek()? {
            Tok::Punct("=") | Tok::Punct("<=>") => {
                self.at += 1;
                Pred::Eq(self.value()?)
            }
            Tok::Punct(op @ ("<" | "<=" | ">" | ">=")) => {
                let op = *op;
                self.at += 1;
                let v = self.value()?;
                match op {
                    ">" => Pred::Lower(v, false),
                    ">=" => Pred::Lower(v, true),
                    "<" => Pred::Upper(v, false),
                    _ => Pred::Upper(v, true),
                }
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("IN") => {
                self.at += 1;
                if !self.eat_punct("(") {
                    return None;
                }
                let mut vs = vec![self.value()?];
                while self.eat_punct(",") {
                    vs.push(self.value()?);
                }
                if !self.eat_punct(")") {
                    return None;
                }
                Pred::In(vs)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("BETWEEN") => {
                self.at += 1;
                let a = self.value()?;
                if !self.eat_word("AND") {
                    return None;
                }
                Pred::Between(a, self.value()?)
            }
            _ => return None,
        };
        Some((col, pred))
    }

    /// Past a condition this cannot read, to the next top-level `AND` or the `WHERE`'s end;
    /// `None` at a top-level `OR` / `XOR` / `||` (the rows are then not narrowed).
    fn skip_condition(&mut self) -> Option<()> {
        let mut depth = 0i32;
        let mut between = false;
        while let Some(t) = self.peek() {
            match t {
                Tok::Punct("(") => depth += 1,
                Tok::Punct(")") => depth -= 1,
                Tok::Punct("||") if depth == 0 => return None,
                Tok::Punct(";") | Tok::Punct("&&") if depth == 0 => return Some(()),
                Tok::Word(w) if depth == 0 => {
                    let u = w.to_ascii_uppercase();
                    match u.as_str() {
                        "OR" | "XOR" => return None,
                        "BETWEEN" => between = true,
                        "AND" if between => between = false,
                        "AND" => return Some(()),
                        _ if CLAUSE_ENDS.contains(&u.as_str()) => return Some(()),
                        _ => {}
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
        Some(())
    }

    /// `INSERT [IGNORE] [INTO] t [(cols)] VALUES (…), (…)` or `… SET col = v, …`.
    fn insert(&mut self) -> Option<Shape> {
        self.skip_words(&["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"]);
        let table = self.table()?;
        if self.is_word("SET") {
            self.at += 1;
            let mut columns = Vec::new();
            let mut row = Vec::new();
            loop {
                columns.push(self.column()?);
                if !self.eat_punct("=") {
                    return None;
                }
                row.push(self.lone_value(|p| p.is_punct(",") || p.at_end() || p.is_word("ON")));
                if !self.eat_punct(",") {
                    break;
                }
            }
            return Some(Shape::Rows(table, columns, vec![row]));
        }
        let mut columns = Vec::new();
        if self.eat_punct("(") {
            loop {
                columns.push(self.column()?);
                if !self.eat_punct(",") {
                    break;
                }
            }
            if !self.eat_punct(")") {
                return None;
            }
        }
        if !(self.eat_word("VALUES") || self.eat_word("VALUE")) {
            // INSERT … SELECT: rows of the table, which ones the text does not tell.
            return Some(Shape::Table(table));
        }
        let mut rows = Vec::new();
        loop {
            if !self.eat_punct("(") {
                return None;
            }
            let mut row = Vec::new();
            loop {
                row.push(self.lone_value(|p| p.is_punct(",") || p.is_punct(")")));
                if !self.eat_punct(",") {
                    break;
                }
            }
            if !self.eat_punct(")") {
                return None;
            }
            rows.push(row);
            if !self.eat_punct(",") {
                break;
            }
        }
        // Without a column list the values are in the table's column order, unknown here.
        if columns.is_empty() {
            return Some(Shape::Table(table));
        }
        Some(Shape::Rows(table, columns, rows))
    }

    /// A value standing alone up to what `ends` accepts; `None` for an expression, which
    /// is skipped.
    fn lone_value(&mut self, ends: impl Fn(&Self) -> bool) -> Option<Val> {
        let start = self.at;
        match self.value() {
            Some(v) if ends(self) => Some(v),
            _ => {
                self.at = start;
                self.skip_expression();
                None
            }
        }
    }

    /// Past one expression, to the next `,` or `)` at its level.
    fn skip_expression(&mut self) {
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            match t {
                Tok::Punct("(") => depth += 1,
                Tok::Punct(")") if depth == 0 => return,
                Tok::Punct(")") => depth -= 1,
                Tok::Punct(",") if depth == 0 => return,
                _ => {}
            }
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, boxes: Option<Vec<Vec<Cond>>>) -> Footprint {
        Footprint::Table(name.into(), boxes)
    }

    fn id(i: i128) -> Option<Vec<Vec<Cond>>> {
        Some(vec![vec![Cond::In(vec![Key::Int(i)])]])
    }

    #[test]
    fn a_transactions_rows_meet_another_where_one_of_its_statements_does() {
        let mut txn = Rows::of(t("a", id(1)));
        txn.add(t("a", id(2)));
        txn.add(Footprint::Nothing);
        txn.add(t("b", None));
        assert!(txn.meets(&Rows::of(t("a", id(2)))));
        assert!(!txn.meets(&Rows::of(t("a", id(3)))));
        assert!(txn.meets(&Rows::of(t("b", id(3)))));
        assert!(!txn.meets(&Rows::of(t("c", None))));
        // Every row meets any row, and no row meets nothing.
        assert!(txn.meets(&Rows::everything()));
        assert!(!Rows::default().meets(&Rows::everything()));
        assert!(!Rows::everything().meets(&Rows::default()));
        let mut all = txn.clone();
        all.add(Footprint::Everything);
        assert!(all.meets(&Rows::of(t("z", id(9)))));
        // Past BOXES_PER_TABLE boxes: the whole table.
        let mut many = Rows::default();
        for i in 0..=BOXES_PER_TABLE as i128 {
            many.add(t("a", id(i * 10)));
        }
        assert!(many.meets(&Rows::of(t("a", id(5)))));
        let mut few = Rows::default();
        for i in 0..BOXES_PER_TABLE as i128 {
            few.add(t("a", id(i * 10)));
        }
        assert!(!few.meets(&Rows::of(t("a", id(5)))));
    }

    #[test]
    fn a_table_reached_through_others_is_every_row_and_so_is_any_after_a_schema_change() {
        let reach = Reach::new(["v".to_string()].into_iter().collect());
        assert_eq!(reach.widen(t("v", id(1))), Footprint::Everything);
        assert_eq!(reach.widen(t("a", id(1))), t("a", id(1)));
        assert_eq!(reach.widen(Footprint::Nothing), Footprint::Nothing);
        reach.schema_changed();
        assert_eq!(reach.widen(t("a", id(1))), Footprint::Everything);
    }

    #[test]
    fn a_set_or_do_that_reads_a_table_is_not_nothing() {
        assert_eq!(Shape::of(b"SET @a = 1"), Shape::Nothing);
        assert_eq!(
            Shape::of(b"SET @a = (SELECT v FROM t WHERE id = 1)"),
            Shape::Everything
        );
        assert_eq!(Shape::of(b"DO (SELECT COUNT(*) FROM t)"), Shape::Everything);
    }

    fn keys() -> PrimaryKeys {
        [
            ("sbtest1".to_string(), vec!["id".to_string()]),
            (
                "stock".to_string(),
                vec!["s_w_id".to_string(), "s_i_id".to_string()],
            ),
        ]
        .into()
    }

    fn fp(sql: &str) -> Footprint {
        Shape::of(sql.as_bytes()).footprint(&[], &keys(), 0, 0)
    }

    fn int(v: i64) -> Param {
        Param {
            column_type: 8,
            unsigned: false,
            value: Value::Int(v),
        }
    }

    fn ids(values: &[i128]) -> Footprint {
        Footprint::Table(
            "sbtest1".into(),
            Some(vec![vec![Cond::In(
                values.iter().map(|v| Key::Int(*v)).collect(),
            )]]),
        )
    }

    #[test]
    fn rows_by_primary_key() {
        assert_eq!(fp("SELECT c FROM sbtest1 WHERE id = 7"), ids(&[7]));
        assert_eq!(
            fp("select c from test.sbtest1 t where t.id='7' for update"),
            ids(&[7])
        );
        assert_eq!(fp("UPDATE sbtest1 SET k = k + 1 WHERE id = 7"), ids(&[7]));
        assert_eq!(fp("DELETE FROM sbtest1 WHERE id IN (7, 8)"), ids(&[7, 8]));
        assert_eq!(
            fp("SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 5 AND 9 AND k > 3"),
            Footprint::Table("sbtest1".into(), Some(vec![vec![Cond::Range(5, 9)]]))
        );
        assert_eq!(
            fp("INSERT INTO sbtest1 (id, k, c) VALUES (7, 1, 'x'), (8, 2, CONCAT('a', 'b'))"),
            Footprint::Table(
                "sbtest1".into(),
                Some(vec![
                    vec![Cond::In(vec![Key::Int(7)])],
                    vec![Cond::In(vec![Key::Int(8)])]
                ])
            )
        );
        // Placeholders numbered over the whole statement, the SET's included.
        let shape = Shape::of(b"UPDATE sbtest1 SET c = ? WHERE id = ?");
        assert_eq!(shape.footprint(&[int(1), int(9)], &keys(), 0, 1), ids(&[9]));
        // A key left to AUTO_INCREMENT: the ids it generated.
        let shape = Shape::of(b"INSERT INTO sbtest1 (k, c) VALUES (?, ?), (?, ?)");
        assert_eq!(
            shape.footprint(&[], &keys(), 40, 2),
            Footprint::Table("sbtest1".into(), Some(vec![vec![Cond::Range(40, 41)]; 2]))
        );
        // A composite key: each column its own condition.
        assert_eq!(
            fp("SELECT s_quantity FROM stock WHERE s_w_id = 1 AND s_i_id = 5 FOR UPDATE"),
            Footprint::Table(
                "stock".into(),
                Some(vec![vec![
                    Cond::In(vec![Key::Int(1)]),
                    Cond::In(vec![Key::Int(5)])
                ]])
            )
        );
    }

    #[test]
    fn what_the_text_does_not_tell_widens() {
        let all = |t: &str| Footprint::Table(t.into(), None);
        assert_eq!(
            fp("SELECT c FROM sbtest1 WHERE id = 7 OR id = 9"),
            all("sbtest1")
        );
        assert_eq!(fp("SELECT c FROM sbtest1 WHERE k = 7"), all("sbtest1"));
        assert_eq!(fp("SELECT c FROM sbtest1"), all("sbtest1"));
        assert_eq!(fp("SELECT c FROM orders WHERE id = 1"), all("orders"));
        assert_eq!(fp("SELECT c FROM sbtest1 WHERE id = 7 + 1"), all("sbtest1"));
        assert_eq!(fp("INSERT INTO sbtest1 VALUES (1, 2)"), all("sbtest1"));
        for sql in [
            "SELECT * FROM sbtest1 JOIN stock ON 1 WHERE id = 1",
            "SELECT * FROM sbtest1, stock WHERE id = 1",
            "SELECT * FROM sbtest1 WHERE id = (SELECT MAX(id) FROM stock)",
            "UPDATE sbtest1 a JOIN stock b USING (id) SET k = 1 WHERE id = 1",
            "DELETE FROM sbtest1 WHERE id IN (SELECT id FROM stock)",
            "/*!50000 UPDATE sbtest1 SET k = 1 WHERE id = 1 */",
            "CALL p(1)",
            "SELECT c FROM sbtest1 WHERE id = 'unclosed",
        ] {
            assert_eq!(fp(sql), Footprint::Everything, "{sql}");
        }
        assert_eq!(fp("SELECT 1"), Footprint::Nothing);
        assert_eq!(fp("SELECT NOW() FROM DUAL"), Footprint::Nothing);
        assert_eq!(fp("COMMIT"), Footprint::Nothing);
        // A condition it cannot read next to one it can: only the one it can.
        assert_eq!(
            fp("SELECT c FROM sbtest1 WHERE (k = 1 OR k = 2) AND id BETWEEN 1 AND 3 AND id = 2"),
            Footprint::Table("sbtest1".into(), Some(vec![vec![Cond::Range(1, 3)]]))
        );
    }

    #[test]
    fn footprints_meet_where_rows_may_be_shared() {
        let range = |a, b| Footprint::Table("sbtest1".into(), Some(vec![vec![Cond::Range(a, b)]]));
        assert!(ids(&[7]).meets(&range(5, 9)));
        assert!(!ids(&[7]).meets(&range(8, 9)));
        assert!(!ids(&[7]).meets(&ids(&[8])));
        assert!(range(1, 5).meets(&range(5, 9)));
        assert!(!range(1, 4).meets(&range(5, 9)));
        assert!(ids(&[7]).meets(&Footprint::Table("sbtest1".into(), None)));
        assert!(!ids(&[7]).meets(&Footprint::Table("stock".into(), None)));
        assert!(Footprint::Everything.meets(&ids(&[1])));
        assert!(!Footprint::Nothing.meets(&Footprint::Everything));
        // A string key may equal a number.
        let text = Footprint::Table(
            "sbtest1".into(),
            Some(vec![vec![Cond::In(vec![Key::Text(b"x".to_vec())])]]),
        );
        assert!(text.meets(&range(1, 2)));
        assert!(!text.meets(&ids(&[1])));
    }

    #[test]
    fn a_with_statement_writes_when_its_main_statement_does() {
        assert!(!with_writes(b"WITH a AS (SELECT 1) SELECT * FROM a"));
        assert!(!with_writes(
            b"WITH a AS (SELECT id FROM t) SELECT * FROM a FOR UPDATE"
        ));
        assert!(!with_writes(
            b"WITH a AS (SELECT 'UPDATE t') SELECT * FROM a"
        ));
        assert!(with_writes(
            b"WITH a AS (SELECT id FROM t) UPDATE t JOIN a USING (id) SET k = 1"
        ));
        assert!(with_writes(
            b"WITH a AS (SELECT id FROM t) DELETE t FROM t JOIN a USING (id)"
        ));
        assert!(with_writes(b"WITH a AS (SELECT 'unclosed) SELECT 1"));
    }

    #[test]
    fn updates_that_add_to_their_columns_commute() {
        assert!(commutative_update(b"UPDATE t SET k = k + 1 WHERE id = ?"));
        assert!(commutative_update(
            b"UPDATE warehouse SET w_ytd = w_ytd + ?, x = t.x - 2 WHERE w_id = 1"
        ));
        assert!(!commutative_update(b"UPDATE t SET c = ? WHERE id = ?"));
        assert!(!commutative_update(b"UPDATE t SET k = k * 2 WHERE id = 1"));
        assert!(!commutative_update(b"UPDATE t SET k = j + 1 WHERE id = 1"));
        assert!(!commutative_update(
            b"UPDATE t SET k = k + 1, c = 'x' WHERE id = 1"
        ));
        assert!(!commutative_update(b"DELETE FROM t WHERE id = 1"));
    }

    #[test]
    fn any_bytes_read_without_panicking() {
        let sql = b"INSERT INTO t (a, `b``c`) VALUES (?, 'x\\'y'), (-1, \"q\") ON DUPLICATE KEY UPDATE a = 1";
        for end in 0..=sql.len() {
            let _ = Shape::of(&sql[..end]).footprint(&[], &keys(), 1, 1);
        }
        let mut x: u32 = 7;
        for _ in 0..2000 {
            let mut s = sql.to_vec();
            for _ in 0..4 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let i = (x as usize >> 8) % s.len();
                s[i] = (x >> 3) as u8;
            }
            let _ = Shape::of(&s).footprint(&[int(1)], &keys(), 1, 1);
            let _ = with_writes(&s);
            let _ = commutative_update(&s);
        }
    }
}
