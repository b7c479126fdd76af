//! Checking configuration values, for `config` and for the identity sources that check their own
//! settings. A leaf: it knows keys, origins and value shapes, nothing about what a key means.
//!
//! - [`Field`]: a value read from the config file, kept even when it has the wrong type so that
//!   one bad value never hides the others; it is reported, with its key, when it is read.
//! - [`Checker`]: the one list of [`Problem`]s, each naming the key in the file, the
//!   `STS_SIDECAR_*` variable or the flag it concerns; where each layered value came from; the
//!   warnings; the environment.
//! - [`Checker::section`]: reads one table of the file into a serde struct whose fields are
//!   [`Field`]s, reporting unknown keys with the list of known ones (read from the struct itself).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::env::Env;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, variable or flag (e.g. `role[0].arn in sts-sidecar.toml`, `--duration`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Where a value that is not from the file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, written as typed: `--role-arn`.
    Flag(String),
    /// An environment variable: `STS_SIDECAR_ROLE_ARN`, `AWS_ROLE_ARN`.
    Env(String),
}

impl Origin {
    /// Whether the value was typed on the command line.
    pub fn is_flag(&self) -> bool {
        matches!(self, Origin::Flag(_))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) | Origin::Env(name) => f.write_str(name),
        }
    }
}

/// A value of the config file: missing, present with the right type, or present with the wrong
/// type (then what it was, for the message). Deserializing a `Field` never fails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// The key is not there.
    #[default]
    Missing,
    /// The key holds a value of the right type.
    Value(T),
    /// The key holds something else: what it was, as shown in messages.
    Invalid(String),
}

impl<T> Field<T> {
    /// Replaces whatever the file said.
    pub fn set(&mut self, value: T) {
        *self = Field::Value(value);
    }

    /// Whether the key is there at all.
    pub fn is_present(&self) -> bool {
        !matches!(self, Field::Missing)
    }

    /// The value, if present with the right type.
    pub fn as_value(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// What a file value of this type must be, for messages (`must be a whole number, got "x"`).
pub trait Expected {
    /// E.g. `a whole number`.
    const EXPECTED: &'static str;
}

impl Expected for String {
    const EXPECTED: &'static str = "a string";
}
impl Expected for u64 {
    const EXPECTED: &'static str = "a whole number";
}
impl Expected for bool {
    const EXPECTED: &'static str = "true or false";
}
impl Expected for PathBuf {
    const EXPECTED: &'static str = "a path (a string)";
}
impl Expected for SocketAddr {
    const EXPECTED: &'static str = "IP:PORT, e.g. 127.0.0.1:8080";
}
impl Expected for Vec<String> {
    const EXPECTED: &'static str = "an array of strings";
}

impl<'de, T: DeserializeOwned + Expected> Deserialize<'de> for Field<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        match T::deserialize(value.clone()) {
            Ok(v) => Ok(Field::Value(v)),
            Err(_) => Ok(Field::Invalid(shown(&value))),
        }
    }
}

/// A file value as messages show it: strings quoted, numbers as written, containers by kind.
pub fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => {
            let mut s: String = s.chars().take(100).collect();
            s = format!("{s:?}");
            s
        }
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

/// The problems found so far, where layered values came from, and the environment.
pub struct Checker<'a> {
    env: &'a dyn Env,
    file_name: String,
    /// Every key path the file itself has (`server.listen`, `role[0].arn`, `role[0]`).
    file_keys: HashSet<String>,
    /// Key paths given by a flag or variable, and which one.
    origins: HashMap<String, Origin>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl fmt::Debug for Checker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("file_name", &self.file_name)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl<'a> Checker<'a> {
    /// A checker for the file `file_name` (empty when there is none) holding `file_keys`.
    pub fn new(env: &'a dyn Env, file_name: &str, file_keys: HashSet<String>) -> Self {
        Self {
            env,
            file_name: file_name.to_owned(),
            file_keys,
            origins: HashMap::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The environment.
    pub fn env(&self) -> &'a dyn Env {
        self.env
    }

    /// A variable of the environment, blank counted as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env.var(name).filter(|v| !v.trim().is_empty())
    }

    /// Records that the value at `key` came from `origin` (a flag or variable).
    pub fn given(&mut self, key: impl Into<String>, origin: Origin) {
        self.origins.insert(key.into(), origin);
    }

    /// The origin recorded for `key`, if a flag or variable gave it.
    pub fn given_by(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }

    /// Where the value at `key` came from: the flag or variable, `KEY in FILE`, or the bare key
    /// path when it is missing (a default).
    pub fn origin(&self, key: &str) -> String {
        if let Some(o) = self.origins.get(key) {
            return o.to_string();
        }
        // A key the file has, or a missing key of a table the file has.
        let parent = key.rsplit_once('.').map(|(p, _)| p);
        if self.file_keys.contains(key) || parent.is_some_and(|p| self.file_keys.contains(p)) {
            return format!("{key} in {}", self.file_name);
        }
        key.to_owned()
    }

    /// Records a problem with the value at `key`.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let key = self.origin(key);
        self.problem_at(key, message);
    }

    /// Records a problem with a value whose origin is already known (a variable, a flag).
    pub fn problem_at(&mut self, origin: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: origin.into(),
            message: message.into(),
        });
    }

    /// Records something that works but is probably not what was meant.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// The problems so far.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The problems and the warnings.
    pub fn finish(self) -> (Vec<Problem>, Vec<String>) {
        (self.problems, self.warnings)
    }

    /// The value at `key`, reporting one of the wrong type.
    pub fn value<T: Expected + Clone>(&mut self, key: &str, field: &Field<T>) -> Option<T> {
        match field {
            Field::Missing => None,
            Field::Value(v) => Some(v.clone()),
            Field::Invalid(shown) => {
                self.problem(key, format!("must be {}, got {shown}", T::EXPECTED));
                None
            }
        }
    }

    /// A string that is not blank (blank counts as missing).
    pub fn text(&mut self, key: &str, field: &Field<String>) -> Option<String> {
        self.value(key, field).filter(|v| !v.trim().is_empty())
    }

    /// A whole number from `min` to `max` (`default` when missing or wrong).
    pub fn number(
        &mut self,
        key: &str,
        field: &Field<u64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let shown = match field {
            Field::Missing => return default,
            Field::Value(v) if (min..=max).contains(v) => return *v,
            Field::Value(v) => v.to_string(),
            Field::Invalid(shown) => shown.clone(),
        };
        self.problem(
            key,
            format!("must be a whole number from {min} to {max}, got {shown}"),
        );
        default
    }

    /// The `timeout_secs` key of the section at `at`: 1 to `max` seconds, `default` if missing.
    pub fn timeout(&mut self, at: &str, field: &Field<u64>, default: u64, max: u64) -> Duration {
        Duration::from_secs(self.number(&format!("{at}.timeout_secs"), field, default, 1, max))
    }

    /// A boolean (`false` when missing or wrong).
    pub fn switch(&mut self, key: &str, field: &Field<bool>) -> bool {
        self.value(key, field).unwrap_or(false)
    }

    /// A path that must not be blank.
    pub fn path(&mut self, key: &str, field: &Field<PathBuf>) -> Option<PathBuf> {
        let path = self.value(key, field)?;
        if path.as_os_str().to_string_lossy().trim().is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        Some(path)
    }

    /// A URL of an endpoint that receives a secret: `https://`, or plain `http://` on a
    /// loopback address (tests and local emulators). `what` names the endpoint in messages.
    pub fn secret_url(&mut self, key: &str, value: &str, what: &str) -> Option<String> {
        let value = value.trim();
        match reqwest::Url::parse(value) {
            Ok(u) if is_secret_safe(&u) => Some(value.to_owned()),
            Ok(_) => {
                self.problem(
                    key,
                    format!(
                        "must be an https:// URL ({what} receives a secret; plain http:// only \
                         on a loopback address), got {value:?}"
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(key, format!("is not a URL ({e}): {value:?}"));
                None
            }
        }
    }

    /// Reads the table `value` at key path `at` into `T` (a struct of [`Field`]s). Unknown keys
    /// are reported with the keys `T` knows and left out; `None` is an empty `T`.
    pub fn section<T: DeserializeOwned + Default>(
        &mut self,
        at: &str,
        value: Option<toml::Value>,
    ) -> T {
        let mut table = match value {
            None => return T::default(),
            Some(toml::Value::Table(t)) => t,
            Some(other) => {
                self.problem(at, format!("must be a table, got {}", shown(&other)));
                return T::default();
            }
        };
        let known = fields_of::<T>();
        let unknown: Vec<String> = table
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            table.remove(&key);
            let section = at.split('[').next().unwrap_or(at);
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            self.problem(
                &format!("{at}.{key}"),
                format!("unknown key (known keys in [{section}]: {known})"),
            );
        }
        match T::deserialize(toml::Value::Table(table)) {
            Ok(t) => t,
            Err(e) => {
                // Every field is a `Field`, which takes any value: not expected to happen.
                self.problem(at, format!("cannot be read: {e}"));
                T::default()
            }
        }
    }
}

/// Where each flag value came from, by argument id (`role_arn`: `--role-arn` or
/// `STS_SIDECAR_ROLE_ARN`).
#[derive(Debug, Clone, Default)]
pub struct Origins(HashMap<String, Origin>);

impl Origins {
    /// Records that the argument `id` was given by `origin`.
    pub fn insert(&mut self, id: impl Into<String>, origin: Origin) {
        self.0.insert(id.into(), origin);
    }

    /// Where the argument `id` came from, if it was given.
    pub fn get(&self, id: &str) -> Option<&Origin> {
        self.0.get(id)
    }
}

/// Writes flag values over one section of the file (`at`), recording where each came from so
/// that a problem with it names the flag or variable.
#[derive(Debug)]
pub struct Layer<'c, 'a> {
    c: &'c mut Checker<'a>,
    origins: &'c Origins,
    at: String,
}

impl<'c, 'a> Layer<'c, 'a> {
    /// Layers over the section at key path `at` (`server`, `role[0]`, `source.NAME`).
    pub fn new(c: &'c mut Checker<'a>, origins: &'c Origins, at: &str) -> Self {
        Self {
            c,
            origins,
            at: at.to_owned(),
        }
    }

    /// When the argument `id` gave `value`, it replaces the file's value at `key`.
    pub fn set<T: Clone>(&mut self, field: &mut Field<T>, key: &str, value: &Option<T>, id: &str) {
        let Some(value) = value else { return };
        field.set(value.clone());
        let origin = self
            .origins
            .get(id)
            .cloned()
            .unwrap_or_else(|| Origin::Flag(format!("--{}", id.replace('_', "-"))));
        self.c.given(format!("{}.{key}", self.at), origin);
    }
}

/// `layer!(l, spec.key <- flags.id)`: the flag `id` replaces the file's `key` (both named by
/// their field, so the compiler checks them; the argument id is the flag field's name).
macro_rules! layer {
    ($l:expr, $spec:ident . $key:ident <- $flags:ident . $id:ident) => {
        $l.set(
            &mut $spec.$key,
            stringify!($key),
            &$flags.$id,
            stringify!($id),
        )
    };
}
pub(crate) use layer;

/// Whether a secret may be sent to `url`: `https://`, or plain `http://` on a loopback address.
pub fn is_secret_safe(url: &reqwest::Url) -> bool {
    (url.scheme() == "https" && url.host().is_some())
        || (url.scheme() == "http" && is_loopback_host(url))
}

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The key names of the struct `T` deserializes into, in declaration order, as serde's derive
/// passes them to `deserialize_struct`.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that only records the field names it is asked for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names read")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The name in `known` closest to `name` (for "did you mean"), if one is close enough.
pub fn closest<'k>(name: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2) || name.starts_with(k) || k.starts_with(name))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Section {
        name: Field<String>,
        count: Field<u64>,
        on: Field<bool>,
    }

    #[test]
    fn reads_a_section_reporting_unknown_keys_and_wrong_types_with_their_keys() {
        let env = HashMap::new();
        let keys = ["s", "s.name", "s.count", "s.nmae"].map(str::to_owned);
        let mut c = Checker::new(&env, "f.toml", keys.into_iter().collect());
        let value: toml::Value =
            toml::from_str("name = 5\ncount = 7\nnmae = \"x\"\n").expect("toml");
        let s: Section = c.section("s", Some(value));
        assert_eq!(s.count, Field::Value(7));
        assert_eq!(s.on, Field::Missing);
        assert_eq!(c.value("s.name", &s.name), None);
        let (problems, _) = c.finish();
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        assert_eq!(
            text,
            [
                "s.nmae in f.toml: unknown key (known keys in [s]: name, count, on)",
                "s.name in f.toml: must be a string, got 5",
            ]
        );
    }

    #[test]
    fn field_names_come_from_the_struct() {
        assert_eq!(fields_of::<Section>(), ["name", "count", "on"]);
    }

    #[test]
    fn suggests_close_names_only() {
        let known = ["ROLE_ARN", "LISTEN", "ADMIN_LISTEN"];
        assert_eq!(closest("ROLE_ARM", known), Some("ROLE_ARN"));
        assert_eq!(closest("LISTN", known), Some("LISTEN"));
        assert_eq!(closest("SOMETHING_ELSE", known), None);
    }
}
