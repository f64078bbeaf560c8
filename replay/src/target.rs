//! The candidate server and the credentials sessions use on it. Credentials come from the
//! target URL, `MYRR_PASSWORD`, or a user map — never from a recording.

use std::collections::HashMap;
use std::path::Path;

use mysql_async::Opts;

use crate::ReplayError;

#[derive(Debug, Clone)]
pub struct Target {
    opts: Opts,
    url_user: Option<String>,
    url_pass: Option<String>,
    env_pass: Option<String>,
    /// recorded user → (target user, password); `*` applies to every other user.
    user_map: HashMap<String, (String, Option<String>)>,
}

impl Target {
    /// `url`: `mysql://user[:pass]@host:port[/db]`.
    pub fn new(
        url: &str,
        env_pass: Option<String>,
        user_map: Option<&Path>,
    ) -> Result<Self, ReplayError> {
        let opts = Opts::from_url(url)
            .map_err(|e| ReplayError::Target(format!("bad --target {:?}: {e}", redact(url))))?;
        let url_user = opts.user().map(str::to_string);
        let url_pass = opts.pass().map(str::to_string);
        let user_map = match user_map {
            Some(p) => parse_user_map(p)?,
            None => HashMap::new(),
        };
        Ok(Self {
            opts,
            url_user,
            url_pass,
            env_pass,
            user_map,
        })
    }

    /// Options for a connection of the replay's own (the `--sync` lock-wait monitor): the
    /// target URL's credentials, no database.
    pub(crate) fn monitor_opts(&self) -> Opts {
        let (user, pass) = self.credentials_for(None);
        mysql_async::OptsBuilder::from_opts(self.opts.clone())
            .user(user)
            .pass(pass)
            .db_name(None::<String>)
            .into()
    }

    /// `host:port`, for the run header and reports (no credentials).
    pub fn address(&self) -> String {
        let (host, port) = self.host_port();
        format!("{host}:{port}")
    }

    /// Host and port to connect to.
    pub fn host_port(&self) -> (String, u16) {
        (self.opts.ip_or_hostname().to_string(), self.opts.tcp_port())
    }

    /// The target is this machine's loopback interface (by address or as `localhost`).
    pub fn is_local(&self) -> bool {
        let (host, _) = self.host_port();
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The database named in the target URL.
    pub fn default_db(&self) -> Option<String> {
        self.opts.db_name().map(str::to_string)
    }

    /// (user, password) for a recorded user.
    pub fn credentials_for(&self, recorded_user: Option<&str>) -> (Option<String>, Option<String>) {
        if let Some(u) = recorded_user {
            if let Some((tu, tp)) = self.user_map.get(u).or_else(|| self.user_map.get("*")) {
                return (
                    Some(tu.clone()),
                    tp.clone().or_else(|| self.env_pass.clone()),
                );
            }
        }
        let user = self
            .url_user
            .clone()
            .or_else(|| recorded_user.map(str::to_string));
        (
            user,
            self.url_pass.clone().or_else(|| self.env_pass.clone()),
        )
    }
}

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Lines `recorded_user = target_user[:password]`; `#` comments; `*` for any other user.
fn parse_user_map(path: &Path) -> Result<HashMap<String, (String, Option<String>)>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ReplayError::Target(format!("cannot read --user-map {}: {e}", path.display()))
    })?;
    let mut m = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((from, to)) = line.split_once('=') else {
            return Err(ReplayError::Target(format!(
                "{}:{}: expected `recorded_user = target_user[:password]`",
                path.display(),
                i + 1
            )));
        };
        let to = to.trim();
        let (u, p) = match to.split_once(':') {
            Some((u, p)) => (u.to_string(), Some(p.to_string())),
            None => (to.to_string(), None),
        };
        m.insert(from.trim().to_string(), (u, p));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_precedence() {
        let dir = std::env::temp_dir().join(format!("myrr-usermap-{}", std::process::id()));
        std::fs::write(&dir, "# map\napp = app_test:s3cret\n* = fallback\n").unwrap();
        let t = Target::new(
            "mysql://url_user:url_pw@127.0.0.1:3306/db",
            Some("envpw".into()),
            Some(&dir),
        )
        .unwrap();
        assert_eq!(
            t.credentials_for(Some("app")),
            (Some("app_test".into()), Some("s3cret".into()))
        );
        assert_eq!(
            t.credentials_for(Some("other")),
            (Some("fallback".into()), Some("envpw".into()))
        );
        let t = Target::new("mysql://127.0.0.1:3306", Some("envpw".into()), None).unwrap();
        assert_eq!(
            t.credentials_for(Some("rec")),
            (Some("rec".into()), Some("envpw".into()))
        );
        assert_eq!(t.address(), "127.0.0.1:3306");
        std::fs::write(&dir, "garbage line\n").unwrap();
        assert!(Target::new("mysql://127.0.0.1", None, Some(&dir)).is_err());
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("mysql://u:secret@h:1/db"), "mysql://u:***@h:1/db");
        assert_eq!(redact("mysql://u@h"), "mysql://u@h");
    }
}
