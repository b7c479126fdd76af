//! Cloud Foundry defaults: the placeholders that role ARNs and session names may use, filled
//! from `VCAP_APPLICATION`, `CF_INSTANCE_INDEX` and `CF_INSTANCE_GUID`.

use std::collections::HashMap;

use super::{ENV_CF_INSTANCE_GUID, ENV_CF_INSTANCE_INDEX, ENV_VCAP_APPLICATION, Env};

/// Why a template could not be filled (the message names the placeholder).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TemplateError(String);

/// Every placeholder, without braces.
pub(crate) const PLACEHOLDERS: [&str; 8] = [
    "org",
    "space",
    "app",
    "org_guid",
    "space_guid",
    "app_guid",
    "instance_index",
    "instance_guid",
];

/// The placeholder values, read once when the first template needs them.
#[derive(Debug, Default)]
pub(crate) struct Vars(Option<Result<HashMap<&'static str, String>, TemplateError>>);

impl Vars {
    /// Fills `{org}`, `{space}`, `{app}`, their `_guid` forms, `{instance_index}` and
    /// `{instance_guid}` in `template`; the error says which placeholder failed and why.
    pub(crate) fn fill(&mut self, env: &dyn Env, template: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                return Err(TemplateError("has a '{' without a closing '}'".to_owned()));
            };
            let name = &rest[start + 1..start + len];
            out.push_str(&self.var(env, name)?);
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn var(&mut self, env: &dyn Env, name: &str) -> Result<String, TemplateError> {
        if !PLACEHOLDERS.contains(&name) {
            return Err(TemplateError(format!(
                "unknown placeholder {{{name}}} (known: {})",
                PLACEHOLDERS.map(|n| format!("{{{n}}}")).join(", ")
            )));
        }
        let vars = self.0.get_or_insert_with(|| read(env));
        match vars {
            Ok(vars) => vars.get(name).cloned().ok_or_else(|| {
                TemplateError(format!(
                    "placeholder {{{name}}} has no value: {ENV_VCAP_APPLICATION} or \
                     {ENV_CF_INSTANCE_INDEX}/{ENV_CF_INSTANCE_GUID} lacks it"
                ))
            }),
            Err(why) => Err(TemplateError(format!(
                "placeholder {{{name}}} cannot be filled: {why}"
            ))),
        }
    }
}

fn read(env: &dyn Env) -> Result<HashMap<&'static str, String>, TemplateError> {
    let raw = env.var(ENV_VCAP_APPLICATION).ok_or_else(|| {
        TemplateError(format!(
            "{ENV_VCAP_APPLICATION} is not set (is this running on Cloud Foundry?)"
        ))
    })?;
    let v: serde_json::Value = serde_json::from_str(&raw)
        .map_err(|e| TemplateError(format!("{ENV_VCAP_APPLICATION} is not JSON: {e}")))?;
    let mut vars = HashMap::new();
    let mut take = |name: &'static str, keys: &[&str]| {
        if let Some(s) = keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_str())) {
            vars.insert(name, s.to_owned());
        }
    };
    take("org", &["organization_name"]);
    take("space", &["space_name"]);
    take("app", &["application_name", "name"]);
    take("org_guid", &["organization_id"]);
    take("space_guid", &["space_id"]);
    take("app_guid", &["application_id"]);
    if let Some(i) = env.var(ENV_CF_INSTANCE_INDEX) {
        vars.insert("instance_index", i);
    }
    if let Some(g) = env.var(ENV_CF_INSTANCE_GUID) {
        vars.insert("instance_guid", g);
    }
    Ok(vars)
}
