//! A chained role's first link, as the refresher holds it: the credentials it has, or as soon as
//! it has failed, why.

use std::time::Duration;

use tokio::time::Instant;

use super::RoleHandle;
use crate::backend::{self, Credentials};

/// How long a chained role waits for its first link's first credentials (both start together).
const FIRST_LINK_WAIT: Duration = Duration::from_secs(10);

/// A chained role signs with the credentials its first link's refresher holds.
impl backend::chain::FirstLink for RoleHandle {
    fn credentials(
        &self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Credentials, backend::chain::FirstLinkError>>
                + Send
                + '_,
        >,
    > {
        Box::pin(async move {
            // Credentials as soon as the first link has them; its error as soon as it failed;
            // "none yet" if it has neither after a while.
            let deadline = Instant::now() + FIRST_LINK_WAIT;
            let mut rx = self.rx.clone();
            loop {
                if let Some(snapshot) = self.current() {
                    return Ok(snapshot.credentials.clone());
                }
                let failed = {
                    let status = self.status.lock();
                    status
                        .last_error
                        .clone()
                        .map(|why| backend::chain::FirstLinkError {
                            why,
                            class: status
                                .last_error_class
                                .and_then(backend::ErrorClass::from_label)
                                .unwrap_or(backend::ErrorClass::Unavailable),
                        })
                };
                if let Some(e) = failed {
                    return Err(e);
                }
                if Instant::now() >= deadline {
                    return Err(backend::chain::FirstLinkError {
                        why: "none yet".to_owned(),
                        class: backend::ErrorClass::Unavailable,
                    });
                }
                tokio::select! {
                    _ = rx.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    }
}
