//! `AssumeRole`, for role chaining: the fake answers only a request signed with credentials it
//! issued itself, their session token beside them, for at most an hour.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::{Issued, SeenRequest, State, StsReply, error, xml};
use crate::testing::{FakeRequest, reply};

impl State {
    /// `AssumeRole` (role chaining): it must be signed (SigV4) with credentials this fake issued,
    /// their session token beside them, and a chained session lasts at most an hour. The
    /// signature itself is not recomputed: what is proven is which credentials signed.
    pub(super) async fn assume_role(
        &self,
        req: &FakeRequest,
        form: &std::collections::HashMap<String, String>,
    ) -> Response<Full<Bytes>> {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let header = |name: &str| {
            req.head
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let signed_by = header("authorization")
            .strip_prefix("AWS4-HMAC-SHA256 Credential=")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("")
            .to_owned();
        let issued = self
            .issued
            .lock()
            .iter()
            .find(|i| i.access_key_id == signed_by)
            .cloned();
        let Some(issued) = issued else {
            return error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            );
        };
        if header("x-amz-security-token") != issued.session_token {
            return error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            );
        }
        if issued.expiration <= crate::clock::now_unix() {
            return error(
                403,
                "ExpiredToken",
                "The security token included in the request is expired",
            );
        }
        let role_arn = get("RoleArn");
        let session = get("RoleSessionName");
        let duration: u64 = form
            .get("DurationSeconds")
            .and_then(|d| d.parse().ok())
            .unwrap_or(3600);
        if duration > 3600 {
            return error(
                400,
                "ValidationError",
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            );
        }
        if let StsReply::Error(status, code, message) = self
            .next
            .lock()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().clone())
        {
            return error(status, &code, &message);
        }
        self.seen.lock().push(SeenRequest {
            role_arn: role_arn.to_owned(),
            session_name: session.to_owned(),
            duration_secs: duration,
            subject: signed_by,
            action: "AssumeRole".to_owned(),
            external_id: form.get("ExternalId").cloned(),
        });
        let n = self.serial.fetch_add(1, Ordering::SeqCst) + 1;
        let marker = self.secret_marker.lock().clone();
        let issued = Issued {
            access_key_id: format!("ASIACHAIN{n:011}"),
            secret_access_key: format!("{marker}secret{n:034}"),
            session_token: format!("{marker}FwoGZXIvYXdzECHAIN{}{n:08}", "x".repeat(300)),
            expiration: crate::clock::now_unix() + i64::try_from(duration).unwrap_or(0),
        };
        self.issued.lock().push(issued.clone());
        let (account, role_name) = role_arn
            .split_once("::")
            .and_then(|(_, rest)| rest.split_once(":role/"))
            .unwrap_or(("000000000000", "role"));
        let body = format!(
            r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROACHAIN{n:011}:{session}</AssumedRoleId>
      <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{akid}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{exp}</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>00000000-0000-0000-0001-{n:012}</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
"#,
            session = xml(session),
            account = xml(account),
            role_name = xml(role_name),
            akid = issued.access_key_id,
            secret = xml(&issued.secret_access_key),
            token = xml(&issued.session_token),
            exp = crate::clock::format_rfc3339(issued.expiration),
        );
        reply(200, "text/xml", body)
    }
}
