//! The connection kit against in-memory streams and real sockets, with paused time.

use super::*;

#[tokio::test(start_paused = true)]
async fn connections_that_close_leave_no_task_behind() {
    let connections = Connections::new(&Limits::default());
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let mut clients = Vec::new();
    for _ in 0..100 {
        let (client, server) = tokio::io::duplex(1024);
        connections.spawn(
            server,
            |_req: Request<Incoming>| async { json_response(StatusCode::OK, Bytes::new()) },
            (),
        );
        clients.push(client);
    }
    // Every connection is open and every watchdog asleep until the deadline; then they close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(metrics.num_alive_tasks(), before + 200);
    drop(clients);
    // Well before the 5 s header-read deadline: the watchdogs must have ended with their
    // connections rather than waiting for it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(metrics.num_alive_tasks(), before);
}

async fn closed_after(client: &mut tokio::io::DuplexStream) -> (Duration, Vec<u8>) {
    use tokio::io::AsyncReadExt as _;
    let start = tokio::time::Instant::now();
    let mut buf = Vec::new();
    client
        .read_to_end(&mut buf)
        .await
        .expect("closed, not failed");
    (start.elapsed(), buf)
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_at_the_first_byte_deadline() {
    let connections = Connections::new(&Limits::default());
    let (mut client, server) = tokio::io::duplex(1024);
    let task = connections.spawn(
        server,
        |_req: Request<Incoming>| async { json_response(StatusCode::OK, Bytes::new()) },
        (),
    );
    let (waited, buf) = closed_after(&mut client).await;
    assert!(buf.is_empty(), "{buf:?}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1_100),
        "{waited:?}"
    );
    assert!(task.await.is_err_and(|e| e.is_cancelled()));
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_at_the_header_read_deadline() {
    use tokio::io::AsyncWriteExt as _;
    let connections = Connections::new(&Limits::default());
    let (mut client, server) = tokio::io::duplex(1024);
    let task = connections.spawn(
        server,
        |_req: Request<Incoming>| async { json_response(StatusCode::OK, Bytes::new()) },
        (),
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Answered, then idle between requests: closed 5 s later, not at the first-byte deadline.
    let (waited, buf) = closed_after(&mut client).await;
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{buf:?}");
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_millis(5_100),
        "{waited:?}"
    );
    assert!(task.await.is_err_and(|e| e.is_cancelled()));
}

#[tokio::test(start_paused = true)]
async fn pipelined_requests_are_all_answered_after_the_client_half_closes() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let connections = Connections::new(&Limits::default());
    let (client, server) = tokio::io::duplex(1 << 20);
    connections.spawn(
        server,
        |_req: Request<Incoming>| async {
            // An answer that is not ready at once, so that the read EOF comes first.
            tokio::task::yield_now().await;
            json_response(StatusCode::OK, Bytes::from_static(b"{}"))
        },
        (),
    );
    let (mut read, mut write) = tokio::io::split(client);
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    write.write_all(&request.repeat(50)).await.unwrap();
    write.shutdown().await.unwrap();
    let mut answers = Vec::new();
    read.read_to_end(&mut answers).await.unwrap();
    let text = String::from_utf8_lossy(&answers);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 50, "{text}");
}

/// A handler that reads the body with the issuer's limit and answers its length.
async fn body_echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    match body::read(&parts, body, 1024).await {
        Ok(bytes) => json_response(StatusCode::OK, Bytes::from(bytes.len().to_string())),
        Err(e) => json_response(e.status(), Bytes::from(e.to_string())),
    }
}

fn reading_bodies() -> Limits {
    Limits {
        reads_bodies: true,
        ..Limits::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_trickled_body_is_refused_at_its_deadline() {
    use tokio::io::AsyncWriteExt as _;
    let connections = Connections::new(&reading_bodies());
    let (mut client, server) = tokio::io::duplex(1 << 16);
    connections.spawn(server, body_echo, ());
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        .await
        .unwrap();
    // 3 bytes of 1000, then nothing: 1 s of grace plus 1000 bytes at 4 KiB/s is 1.244 s.
    let start = tokio::time::Instant::now();
    let answer = tokio::spawn(async move {
        let (waited, buf) = closed_after(&mut client).await;
        (waited, buf)
    });
    let (waited, buf) = answer.await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive within 1.244 s"), "{text}");
    let elapsed = start.elapsed().max(waited);
    assert!(
        elapsed >= Duration::from_millis(1_244) && elapsed < Duration::from_millis(1_400),
        "{elapsed:?}"
    );
}

/// Sends `request` on a new connection of `connections` served by [`body_echo`]; the first
/// answer's bytes.
async fn first_answer(connections: &Connections, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut client, server) = tokio::io::duplex(1 << 16);
    connections.spawn(server, body_echo, ());
    client.write_all(request).await.unwrap();
    let mut buf = [0u8; 256];
    let n = client.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(start_paused = true)]
async fn bodies_are_read_whole_or_refused_by_their_length() {
    let connections = Connections::new(&reading_bodies());
    // A body that arrives is read whole.
    let text = first_answer(
        &connections,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\n5"),
        "{text}"
    );
    // One declared over the limit is refused before a byte of it is read.
    let text = first_answer(
        &connections,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // A chunked one is refused as soon as it passes the limit.
    let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
    let chunked =
        format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}");
    let text = first_answer(&connections, chunked.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // No length and no chunking: an empty body, answered at once.
    let text = first_answer(&connections, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\n0"),
        "{text}"
    );
}

/// A real socket pair: the client's end, and the server's end accepted.
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

#[tokio::test]
async fn bytes_waiting_in_the_socket_are_not_silence() {
    // See: issue #23 item 7 (at the cap, a connection whose request had arrived but not been
    // read yet, on a busy machine, was taken for an idle one and evicted).
    use std::os::fd::AsRawFd as _;
    use tokio::io::AsyncWriteExt as _;
    let (mut client, server) = socket_pair().await;
    let (_, _, activity) = deadline::pair(Duration::from_secs(1), Some(server.as_raw_fd()));
    assert!(activity.waiting() && !activity.pending());
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    for _ in 0..200 {
        if activity.pending() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(activity.pending(), "the request has arrived, unread");
    // The slots pass it over for a silent connection.
    let slots = slots::Slots::new(2);
    let busy = slots.take(activity);
    let busy_task = tokio::spawn(std::future::pending::<()>());
    busy.closes_with(busy_task.abort_handle());
    let (_silent_client, silent_server) = socket_pair().await;
    let (_, _, silent) = deadline::pair(Duration::from_secs(1), Some(silent_server.as_raw_fd()));
    let quiet = slots.take(silent);
    let quiet_task = tokio::spawn(std::future::pending::<()>());
    quiet.closes_with(quiet_task.abort_handle());
    tokio::time::sleep(slots::MIN_AGE).await;
    slots.room().await;
    tokio::task::yield_now().await;
    assert!(quiet_task.is_finished(), "the silent one went");
    assert!(
        !busy_task.is_finished(),
        "the one with a request waiting stayed"
    );
    drop(server);
}

#[tokio::test(start_paused = true)]
async fn a_connection_reading_its_body_is_waiting() {
    let (_, _, activity) = deadline::pair(Duration::from_secs(1), None);
    activity.note_spoke();
    assert!(!activity.waiting(), "spoke, no head being read: answering");
    let mark = activity.body((tokio::time::Instant::now() + Duration::from_secs(2)).into_std());
    assert!(
        activity.waiting(),
        "its body is being read: it may be evicted"
    );
    drop(mark);
    assert!(!activity.waiting());
}

#[tokio::test]
async fn a_silent_connection_waits_for_its_first_byte_without_hyper() {
    // A fresh socket can look readable before anything arrived: the first byte is peeked at,
    // not trusted to readiness (a silent connection holds no read or write buffer).
    use tokio::io::AsyncWriteExt as _;
    let (mut client, server) = socket_pair().await;
    let first = tokio::spawn(async move { first_byte(&server).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!first.is_finished(), "nothing was sent");
    client.write_all(b"G").await.unwrap();
    assert!(first.await.unwrap());
    let (client, server) = socket_pair().await;
    drop(client);
    assert!(
        !first_byte(&server).await,
        "closed before a byte: nothing to serve"
    );
}
