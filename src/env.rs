//! The process environment, read through a trait so that tests never touch the real one (a
//! `HashMap` stands in for it). A leaf: nothing here knows what a variable means.

use std::collections::HashMap;

/// Reads environment variables. Tests use a `HashMap`.
pub trait Env {
    /// The variable's value, if set (and valid UTF-8).
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable (valid UTF-8 only), for finding misspelled names in our namespace.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
