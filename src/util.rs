//! Small helpers shared by the subcommands.

use std::time::Duration;

/// Parses `500ms`, `30s`, `10m`, `2h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 30s, 10m, 2h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Lossy UTF-8 for printing wire strings.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The warning for EXECUTEs of statements prepared before the capture (`unprepared` of
/// `exchanges`), if there are any; `backfilled`: the capture had the server's view.
pub fn unprepared_warning(unprepared: u64, exchanges: u64, backfilled: bool) -> Option<String> {
    if unprepared == 0 {
        return None;
    }
    let share = 100.0 * unprepared as f64 / exchanges.max(1) as f64;
    let todo = if backfilled {
        "the server's view did not have their statements (closed, or prepared by a \
         connection it could not see); a longer capture lets pools reconnect"
    } else {
        "capture with --server mysql://monitor@host:port (or --backfill FILE from \
         `myrr snapshot` for a pcap) to backfill them, or capture longer so that pools reconnect"
    };
    Some(format!(
        "{unprepared} of {exchanges} exchanges ({share:.1}%) are EXECUTEs of statements \
         prepared before the capture started; replay will skip them: {todo}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("abc").is_err());
    }
}
