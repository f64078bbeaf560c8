//! `myrr inspect`: every event of a recording, as a table or as JSON lines.
//!
//! The JSON-lines form is a stable interface for other tools and the tests: one object per
//! event with `event`, `session`, and for exchanges `seq`, `start_us`, `end_us`, `command`,
//! `sql`, `stmt_id`, `params`, `response`, `rows`, `affected_rows`, `error_code`.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use myrr_recording::{
    BackfillSource, Command, Event, Exchange, Login, OrderLabel, RecordingReader, Response, Value,
};
use serde_json::{json, Map, Value as Json};

use crate::util::text;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
}

#[derive(clap::Args)]
pub struct Args {
    /// The recording to print.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let reader = RecordingReader::open(&a.file)?;
    let h = reader.header().clone();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut commands: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut damage = None;
    let (mut exchanges, mut unprepared, mut types_unknown, mut backfilled) = (0, 0, 0, false);
    if matches!(a.format, Format::Table) {
        writeln!(
            out,
            "# {} run from {} (myrr {})",
            h.kind.name(),
            h.source,
            h.tool_version
        )?;
    }
    for item in reader {
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => {
                damage = Some(e);
                break;
            }
        };
        *counts.entry(ev.kind_name()).or_default() += 1;
        match &ev {
            Event::Exchange(x) => {
                *commands.entry(x.command.name()).or_default() += 1;
                exchanges += 1;
                match &x.command {
                    Command::Execute {
                        prepare_seen: false,
                        ..
                    } => unprepared += 1,
                    Command::Execute {
                        params, raw_params, ..
                    } if params.is_empty() && !raw_params.is_empty() => types_unknown += 1,
                    _ => {}
                }
            }
            Event::Backfill(_) => backfilled = true,
            _ => {}
        }
        let r = match a.format {
            Format::Jsonl => writeln!(out, "{}", to_json(&ev)),
            Format::Table => writeln!(out, "{}", to_row(&ev)),
        };
        if let Err(e) = r {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
    }
    out.flush()?;
    let c: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let m: Vec<String> = commands.iter().map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!("myrr: {}: {}", a.file.display(), c.join(", "));
    if !m.is_empty() {
        eprintln!("  commands: {}", m.join(", "));
    }
    if let Some(w) = crate::util::unprepared_warning(unprepared, exchanges, backfilled) {
        eprintln!("  WARNING: {w}");
    }
    if types_unknown > 0 {
        eprintln!(
            "  WARNING: {types_unknown} EXECUTEs carry parameters that could not be decoded \
             (their types were bound before the capture, or did not parse); replay skips \
             those whose types it never sent"
        );
    }
    if let Some(e) = damage {
        eprintln!("myrr: error: {e}; the events before it were printed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bytes(b) => Json::String(text(b)),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) => json!(f),
        Value::Double(d) => json!(d),
        Value::Date(y, mo, d, h, mi, s, us) => Json::String(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        )),
        Value::Time(neg, d, h, m, s, us) => Json::String(format!(
            "{}{:02}:{m:02}:{s:02}.{us:06}",
            if *neg { "-" } else { "" },
            *d * 24 + *h as u32
        )),
    }
}

pub fn to_json(ev: &Event) -> Json {
    let mut m = Map::new();
    m.insert("event".into(), ev.kind_name().into());
    if let Some(session) = ev.session() {
        m.insert("session".into(), session.into());
    }
    match ev {
        Event::SessionStart(s) => {
            m.insert("client".into(), s.client.clone().into());
            m.insert("server".into(), s.server.clone().into());
            m.insert("start_us".into(), s.start_us.into());
            m.insert("user".into(), s.user.as_deref().map(text).into());
            m.insert("db".into(), s.db.as_deref().map(text).into());
            m.insert(
                "server_version".into(),
                s.server_version.as_deref().map(text).into(),
            );
            m.insert("connection_id".into(), s.connection_id.into());
            m.insert("capabilities".into(), s.capabilities.into());
            m.insert("mid_stream".into(), s.mid_stream.into());
            m.insert("encrypted".into(), s.encrypted.into());
            m.insert("compressed".into(), s.compressed.into());
            m.insert("clone".into(), s.clone.into());
        }
        Event::Exchange(x) => exchange_json(x, &mut m),
        Event::Gap(g) => {
            m.insert(
                "direction".into(),
                match g.direction {
                    myrr_recording::Direction::ClientToServer => "client_to_server",
                    myrr_recording::Direction::ServerToClient => "server_to_client",
                }
                .into(),
            );
            m.insert("at_us".into(), g.at_us.into());
            m.insert("bytes".into(), g.bytes.into());
        }
        Event::SessionEnd(e) => {
            m.insert("end_us".into(), e.end_us.into());
            m.insert(
                "reason".into(),
                format!("{:?}", e.reason).to_lowercase().into(),
            );
            let (login, code) = match &e.login {
                Login::Unknown => ("unknown", None),
                Login::Ok => ("ok", None),
                Login::Failed { code, .. } => ("failed", Some(*code)),
                Login::Encrypted => ("encrypted", None),
            };
            m.insert("login".into(), login.into());
            if let Some(c) = code {
                m.insert("error_code".into(), c.into());
            }
            m.insert("exchanges".into(), e.exchanges.into());
        }
        Event::Phase(p) => {
            m.insert("step".into(), p.index.into());
            m.insert("multiple".into(), p.multiple.into());
            m.insert("first_clone".into(), p.first_clone.into());
            m.insert("clones".into(), p.clones.into());
            m.insert("speed".into(), p.speed.into());
            m.insert("at_us".into(), p.at_us.into());
            if let Some(e) = &p.end {
                m.insert("stopped".into(), e.stopped.clone().into());
                m.insert("exchanges".into(), e.exchanges.into());
                m.insert("late".into(), e.late.into());
                m.insert("new_errors".into(), e.new_errors.into());
            }
        }
        Event::Label(l) => {
            m.insert("seq".into(), l.seq.into());
            m.insert("clone".into(), l.clone.into());
            m.insert("at_us".into(), l.at_us.into());
            m.insert("labels".into(), OrderLabel::names(l.labels).into());
        }
        Event::Rows(r) => {
            m.insert("seq".into(), r.seq.into());
            m.insert("clone".into(), r.clone.into());
            m.insert("at_us".into(), r.at_us.into());
            m.insert("why".into(), r.why.name().into());
            let rows: Vec<Json> = r
                .rows
                .iter()
                .map(|row| Json::Array(row.iter().map(value_json).collect()))
                .collect();
            m.insert("rows".into(), Json::Array(rows));
            m.insert("rows_left_out".into(), r.rows_left_out.into());
            m.insert("cells_cut".into(), r.cells_cut.into());
        }
        Event::Backfill(b) => {
            m.insert("at_us".into(), b.at_us.into());
            let (source, of) = backfill_source(&b.source);
            m.insert("source".into(), source.into());
            if let Some((key, id)) = of {
                m.insert(key.into(), id.into());
            }
            m.insert("user".into(), b.user.as_deref().map(text).into());
            m.insert("db".into(), b.db.as_deref().map(text).into());
            let vars: Map<String, Json> = b
                .variables
                .iter()
                .map(|(k, v)| (text(k), text(v).into()))
                .collect();
            m.insert("variables".into(), Json::Object(vars));
            let stmts: Vec<Json> = b
                .statements
                .iter()
                .map(|s| json!({"id": s.id, "params": s.params, "sql": text(&s.sql)}))
                .collect();
            m.insert("statements".into(), stmts.into());
        }
    }
    Json::Object(m)
}

fn exchange_json(x: &Exchange, m: &mut Map<String, Json>) {
    m.insert("seq".into(), x.seq.into());
    if x.clone != 0 {
        m.insert("clone".into(), x.clone.into());
    }
    if let Some(s) = x.scheduled_us {
        m.insert("scheduled_us".into(), s.into());
    }
    m.insert("start_us".into(), x.start_us.into());
    m.insert("end_us".into(), x.end_us.into());
    m.insert("command".into(), x.command.name().into());
    match &x.command {
        Command::Query { sql, attrs } => {
            m.insert("sql".into(), text(sql).into());
            if !attrs.is_empty() {
                let a: Map<String, Json> = attrs
                    .iter()
                    .map(|(k, v)| (text(k), value_json(v)))
                    .collect();
                m.insert("attrs".into(), Json::Object(a));
            }
        }
        Command::Prepare { sql } => {
            m.insert("sql".into(), text(sql).into());
        }
        Command::Execute {
            stmt_id,
            params,
            prepare_seen,
            raw_params,
            ..
        } => {
            m.insert("stmt_id".into(), (*stmt_id).into());
            m.insert(
                "params".into(),
                Json::Array(params.iter().map(|p| value_json(&p.value)).collect()),
            );
            if !prepare_seen {
                m.insert("prepare_seen".into(), false.into());
            }
            if !raw_params.is_empty() {
                m.insert("raw_params_len".into(), raw_params.len().into());
            }
        }
        Command::InitDb { db } => {
            m.insert("db".into(), text(db).into());
        }
        Command::FieldList { table, .. } => {
            m.insert("table".into(), text(table).into());
        }
        Command::ChangeUser { user, db } => {
            m.insert("user".into(), text(user).into());
            m.insert("db".into(), db.as_deref().map(text).into());
        }
        Command::Other { code, len } => {
            m.insert("code".into(), (*code).into());
            m.insert("len".into(), (*len).into());
        }
        c => {
            if let Some(id) = c.stmt_id() {
                m.insert("stmt_id".into(), id.into());
            }
        }
    }
    m.insert("response".into(), x.response.kind_name().into());
    response_fields(&x.response, m);
    if !x.more.is_empty() {
        m.insert("results".into(), (1 + x.more.len()).into());
        m.insert("rows".into(), x.total_rows().into());
        m.insert(
            "more".into(),
            Json::Array(
                x.more
                    .iter()
                    .map(|r| {
                        let mut mm = Map::new();
                        mm.insert("response".into(), r.kind_name().into());
                        response_fields(r, &mut mm);
                        Json::Object(mm)
                    })
                    .collect(),
            ),
        );
    }
}

fn response_fields(r: &Response, m: &mut Map<String, Json>) {
    match r {
        Response::Ok(ok) => {
            m.insert("affected_rows".into(), ok.affected_rows.into());
            m.insert("last_insert_id".into(), ok.last_insert_id.into());
            m.insert("warnings".into(), ok.warnings.into());
        }
        Response::Err(e) => {
            m.insert("error_code".into(), e.code.into());
            m.insert("sql_state".into(), text(&e.state).into());
            m.insert("error_message".into(), text(&e.message).into());
        }
        Response::Rows(rs) => {
            m.insert("rows".into(), rs.rows.into());
            m.insert(
                "columns".into(),
                Json::Array(rs.columns.iter().map(|c| text(&c.name).into()).collect()),
            );
            m.insert(
                "digest".into(),
                format!("{:016x}", rs.digest.ordered).into(),
            );
            m.insert("warnings".into(), rs.warnings.into());
            if !rs.complete {
                m.insert("complete".into(), false.into());
            }
            if let Some(e) = &rs.error {
                m.insert("error_code".into(), e.code.into());
            }
        }
        Response::Prepared(p) => {
            m.insert("prepared_id".into(), p.stmt_id.into());
            m.insert("param_count".into(), p.params.into());
            m.insert("column_count".into(), p.columns.into());
        }
        Response::Missing(why) => {
            m.insert("missing".into(), format!("{why:?}").to_lowercase().into());
        }
        Response::Skipped(why) => {
            m.insert("skipped".into(), format!("{why:?}").into());
        }
        Response::LocalInfile { filename, then } => {
            m.insert("filename".into(), text(filename).into());
            if let Some(t) = then {
                response_fields(t, m);
            }
        }
        Response::Text(_) | Response::None => {}
    }
}

fn to_row(ev: &Event) -> String {
    match ev {
        Event::SessionStart(s) => format!(
            "session {} start  {} -> {}  user={} db={}{}{}{}",
            s.session,
            s.client,
            s.server,
            s.user.as_deref().map(text).unwrap_or_else(|| "?".into()),
            s.db.as_deref().map(text).unwrap_or_else(|| "-".into()),
            if s.mid_stream { "  [mid-stream]" } else { "" },
            if s.encrypted { "  [TLS]" } else { "" },
            if s.compressed { "  [compressed]" } else { "" },
        ),
        Event::Exchange(x) => {
            let what = match &x.command {
                Command::Query { sql, .. } | Command::Prepare { sql } => one_line(&text(sql), 100),
                c => c.stmt_id().map(|i| format!("stmt {i}")).unwrap_or_default(),
            };
            let resp = match &x.response {
                Response::Ok(ok) => format!("ok affected={}", ok.affected_rows),
                Response::Err(e) => format!("err {} {}", e.code, one_line(&text(&e.message), 60)),
                Response::Rows(rs) => format!(
                    "rows={}{}",
                    x.total_rows(),
                    if rs.complete { "" } else { " (incomplete)" }
                ),
                r => r.kind_name().to_string(),
            };
            format!(
                "session {} #{:<4} {:>9}µs  {:<14} {}  => {}",
                x.session,
                x.seq,
                x.end_us.saturating_sub(x.start_us),
                x.command.name(),
                what,
                resp
            )
        }
        Event::Gap(g) => format!(
            "session {} GAP {} bytes lost ({:?})",
            g.session, g.bytes, g.direction
        ),
        Event::SessionEnd(e) => format!(
            "session {} end  {:?} login={:?} exchanges={}",
            e.session, e.reason, e.login, e.exchanges
        ),
        Event::Phase(p) => match &p.end {
            None => format!(
                "ramp step {} starts: x{} ({} clones from clone {}, speed {})",
                p.index + 1,
                p.multiple,
                p.clones,
                p.first_clone,
                p.speed
            ),
            Some(e) => format!(
                "ramp step {} ends: {} exchanges, {} late, {} new errors{}",
                p.index + 1,
                e.exchanges,
                e.late,
                e.new_errors,
                e.stopped
                    .as_deref()
                    .map(|s| format!("; stopped: {s}"))
                    .unwrap_or_default()
            ),
        },
        Event::Label(l) => format!(
            "session {} #{:<4} {}",
            l.session,
            l.seq,
            OrderLabel::names(l.labels).join(", ")
        ),
        Event::Rows(r) => {
            let first = r.rows.first().map(|row| {
                row.iter()
                    .map(|v| one_line(&myrr_recording::render_value(v), 40))
                    .collect::<Vec<_>>()
                    .join(" | ")
            });
            format!(
                "session {} #{:<4} rows kept ({}): {}{}  first: {}",
                r.session,
                r.seq,
                r.why.name(),
                r.rows.len(),
                if r.rows_left_out > 0 {
                    format!(" (+{} not kept)", r.rows_left_out)
                } else {
                    String::new()
                },
                first.unwrap_or_else(|| "-".into())
            )
        }
        Event::Backfill(b) => {
            let (source, of) = backfill_source(&b.source);
            let of = of.map(|(k, id)| format!(" {k}={id}")).unwrap_or_default();
            let stmts: Vec<String> = b
                .statements
                .iter()
                .map(|s| format!("{}: {}", s.id, one_line(&text(&s.sql), 60)))
                .collect();
            format!(
                "session {} backfill ({source}{of})  user={} db={}  statements: {}",
                b.session,
                b.user.as_deref().map(text).unwrap_or_else(|| "?".into()),
                b.db.as_deref().map(text).unwrap_or_else(|| "-".into()),
                if stmts.is_empty() {
                    "none".into()
                } else {
                    stmts.join("; ")
                }
            )
        }
    }
}

/// A backfill's source as a name, and the id it names.
fn backfill_source(s: &BackfillSource) -> (&'static str, Option<(&'static str, u64)>) {
    match s {
        BackfillSource::Server { connection_id } => {
            ("server", Some(("connection_id", *connection_id)))
        }
        BackfillSource::Inferred { from_session } => {
            ("inferred", Some(("from_session", *from_session)))
        }
        BackfillSource::Unknown => ("unknown", None),
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let mut t: String = flat.chars().take(max).collect();
        t.push('…');
        t
    } else {
        flat
    }
}
