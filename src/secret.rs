//! Newtypes for secret strings: identity tokens, secret keys, session tokens and the
//! authorization token.
//!
//! They have a redacting `Debug`, no `Display` and no `Serialize`, so a secret can only reach
//! output through an explicit `expose()` call at the one place that must send it on the wire.

/// Declares a secret newtype around `String` whose `Debug` prints only its name.
macro_rules! secret_string {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself, for the one place that must send it.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

pub(crate) use secret_string;

#[cfg(test)]
#[allow(unreachable_pub)]
mod tests {
    secret_string!(
        /// A test secret.
        Marker
    );

    #[test]
    fn debug_never_shows_the_value() {
        let s = Marker::new("hunter2-marker");
        let printed = format!("{s:?} {:?}", Some(&s));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("Marker(<redacted>)"));
        assert_eq!(s.expose(), "hunter2-marker");
    }
}
