//! The demo page in a real browser: Debian's chromium, headless, driven through chromedriver. Two
//! pages open; one sends, both show the message; the page refuses what is not JSON; after the
//! server restarts, the pages reconnect by themselves and hold the channel they were on again.
//! Pages on different channels do not see each other's messages, a page on `broadcast` and a
//! `/wss` client see each other's, a bad channel name is refused on the page, and the server's
//! error replies are shown. A page whose connection drops resumes its channel: it lists what was
//! published meanwhile once and in order under a "nothing missed" or "N replayed" mark, marks the
//! gap as lost when the server no longer holds all of it, and subscribes without resuming where
//! the server keeps no history. A screenshot is kept in `.artifacts/`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// A chromedriver on a loopback port of its choosing, killed when dropped together with the
/// browsers it started.
struct ChromeDriver {
    child: Child,
    url: String,
    /// The browsers' profile directories, removed with them (about 2.5 MiB each).
    profiles: std::sync::Mutex<Vec<std::path::PathBuf>>,
}

impl ChromeDriver {
    /// Starts chromedriver, again if it exits (or says nothing) before listening: seen once on a
    /// loaded machine, before any page existed, so a retry cannot hide a failure of the demo.
    fn start() -> ChromeDriver {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            match ChromeDriver::try_start() {
                Ok(driver) => return driver,
                Err(why) if attempt < ATTEMPTS => {
                    eprintln!(
                        "chromedriver did not start (attempt {attempt} of {ATTEMPTS}): {why}"
                    );
                    attempt += 1;
                }
                Err(why) => panic!("chromedriver did not start in {ATTEMPTS} attempts: {why}"),
            }
        }
    }

    fn try_start() -> Result<ChromeDriver, String> {
        // In a process group of its own, which the chromium processes it starts stay in, so that
        // a test that fails before closing its pages does not leave them running.
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (Debian package chromium-driver; .ci/run installs it)");
        // "ChromeDriver was started successfully on port 41037." once it listens; the reading
        // thread keeps draining its standard output afterwards.
        let (port_sender, port) = std::sync::mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(port) = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = port_sender.send(port);
                }
            }
        });
        match port.recv_timeout(PATIENCE) {
            Ok(port) => Ok(ChromeDriver {
                child,
                url: format!("http://127.0.0.1:{port}"),
                profiles: Default::default(),
            }),
            Err(err) => {
                // Its output ended (it exited) or it stayed silent: how it ended says which.
                kill_group(&child);
                let _ = child.kill();
                let ended = match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(wait) => wait.to_string(),
                };
                Err(format!("no port line ({err}); it ended: {ended}"))
            }
        }
    }

    /// A new headless chromium with its own empty profile. Starting chromium is retried (with a
    /// fresh profile) when the browser process itself exits before the session exists, which a
    /// loaded CI machine sees now and then ("Chrome instance exited"); nothing of the page under
    /// test has run at that point, so the retry cannot hide a failure of the demo.
    async fn open(&self, page: &str) -> Browser {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        let browser = loop {
            static PROFILES: AtomicUsize = AtomicUsize::new(0);
            let profile = std::env::temp_dir().join(format!(
                "demo-test-profile-{}-{}",
                std::process::id(),
                PROFILES.fetch_add(1, Ordering::Relaxed)
            ));
            self.profiles.lock().unwrap().push(profile.clone());
            // The flags keep chromium off the network it has no access to here (see the machine
            // notes).
            let options = json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=900,700",
                    format!("--user-data-dir={}", profile.display()),
                ],
            });
            let mut capabilities = serde_json::Map::new();
            capabilities.insert("goog:chromeOptions".to_owned(), options);
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&self.url)
                .await
            {
                Ok(browser) => break browser,
                Err(err) if attempt < ATTEMPTS => {
                    eprintln!("chromium did not start (attempt {attempt} of {ATTEMPTS}): {err:?}");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(err) => panic!("no chromium session after {ATTEMPTS} attempts: {err:?}"),
            }
        };
        browser.goto(page).await.unwrap();
        browser
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        kill_group(&self.child);
        let _ = self.child.kill();
        let _ = self.child.wait();
        for profile in self.profiles.lock().unwrap().drain(..) {
            let _ = std::fs::remove_dir_all(profile);
        }
    }
}

/// Kills chromedriver's process group, since chromium outlives a killed chromedriver. bash's own
/// `kill`: the kill command (procps) is missing from slim images.
fn kill_group(chromedriver: &Child) {
    let _ = Command::new("bash")
        .args([
            "-c",
            "kill -KILL -- \"-$0\"",
            &chromedriver.id().to_string(),
        ])
        .status();
}

async fn text(browser: &Browser, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the element exists and its text satisfies `accept`; panics with the last text (or
/// its absence) after `PATIENCE`.
async fn wait_for_text(browser: &Browser, css: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = match browser.find(Locator::Css(css)).await {
            Ok(element) => Some(element.text().await.unwrap_or_default()),
            Err(_) => None,
        };
        if let Some(text) = now.as_deref().filter(|text| accept(text)) {
            return text.to_owned();
        }
        if Instant::now() >= deadline {
            match now {
                Some(text) => panic!("{css} still reads {text:?}"),
                None => panic!("no {css} on the page"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types `text` into the empty field `css` and clicks the button `button`.
async fn type_and_click(browser: &Browser, css: &str, text: &str, button: &str) {
    let input = browser.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
    browser
        .find(Locator::Css(button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn send(browser: &Browser, message: &str) {
    type_and_click(browser, "#message", message, "#submit").await;
}

/// Types `channel` into the channel field and switches to it (or is refused, for a bad name).
async fn switch_channel(browser: &Browser, channel: &str) {
    type_and_click(browser, "#channel", channel, "#switch").await;
}

/// Waits until the page is connected and holds `channel`: only then does it get what is
/// published there.
async fn subscribed(page: &Browser, channel: &str) {
    wait_for_text(page, "#state", |state| state == "connected").await;
    let held = format!("subscribed to {channel}");
    wait_for_text(page, "#subscription", |now| now == held).await;
}

/// Every message the page lists, newest first, each as `<channel> <data>`.
async fn messages(page: &Browser) -> Vec<String> {
    let mut texts = Vec::new();
    for item in page.find_all(Locator::Css("#messages li")).await.unwrap() {
        texts.push(item.text().await.unwrap());
    }
    texts
}

/// Sends `message` from one page and waits until every page lists it (as the page re-encodes it,
/// after its channel).
async fn send_and_see(from: &Browser, pages: &[&Browser], message: &str, listed: &str) {
    send(from, message).await;
    for page in pages {
        wait_for_text(page, "#messages li:first-child", |item| item == listed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn two_pages_see_each_others_messages_and_reconnect_after_a_restart() {
    let server = TestServer::start(&[]).await;
    let addr: SocketAddr = server.addr;
    let page = format!("http://{addr}/");
    let driver = ChromeDriver::start();
    let first = driver.open(&page).await;
    let second = driver.open(&format!("http://{addr}/index.html")).await;
    subscribed(&first, "broadcast").await;
    subscribed(&second, "broadcast").await;
    send_and_see(
        &first,
        &[&first, &second],
        r#"{"from": "the first page"}"#,
        r#"broadcast {"from":"the first page"}"#,
    )
    .await;

    send(&second, "not json").await;
    wait_for_text(&second, "#error", |error| error.starts_with("Not JSON")).await;
    assert_eq!(text(&first, "#count").await, "1", "nothing was sent");

    // Both move to another channel before the restart, so that holding it again afterwards shows
    // the pages subscribe to the channel they are on, not to the default.
    switch_channel(&first, "room:1").await;
    switch_channel(&second, "room:1").await;
    subscribed(&first, "room:1").await;
    subscribed(&second, "room:1").await;

    let screenshot = second.screenshot().await.unwrap();
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");
    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/../.artifacts");
    std::fs::create_dir_all(artifacts).unwrap();
    std::fs::write(format!("{artifacts}/demo-page.png"), screenshot).unwrap();

    // The server drains (close 1012, what /v1/ws clients get) and comes back on the same address:
    // the pages reconnect. That address is a fixed port, since the pages reconnect to where they
    // were loaded from. The new server knows no subscription: what arrives now, the pages asked
    // for again.
    server.stop().await;
    wait_for_text(&first, "#state", |state| {
        state.starts_with("server restarting")
    })
    .await;
    let server = TestServer::start_at(addr, &[]).await;
    subscribed(&first, "room:1").await;
    subscribed(&second, "room:1").await;
    send_and_see(
        &second,
        &[&first, &second],
        r#"{"from": "after the restart"}"#,
        r#"room:1 {"from":"after the restart"}"#,
    )
    .await;

    first.close().await.unwrap();
    second.close().await.unwrap();
    server.stop().await;
}

/// The hub hands a message to every subscriber of its channel at once, so once one page lists a
/// message, any page that held its channel has it queued too, ahead of anything published later.
/// A page's list is therefore checked whole once a later message on its own channel has arrived:
/// a message of another channel that had reached it would be listed by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn channels_stay_apart_broadcast_is_shared_with_wss_and_errors_are_shown() {
    let server = TestServer::start(&[]).await;
    let page = format!("http://{}/", server.addr);
    let driver = ChromeDriver::start();
    let lobby = driver.open(&page).await;
    let room = driver.open(&page).await;
    subscribed(&lobby, "broadcast").await;
    subscribed(&room, "broadcast").await;
    switch_channel(&room, "room:1").await;
    subscribed(&room, "room:1").await;
    let mut wss = join(&server).await;

    // A page on broadcast reaches /wss clients.
    send_and_see(
        &lobby,
        &[&lobby],
        r#"{"from": "the lobby"}"#,
        r#"broadcast {"from":"the lobby"}"#,
    )
    .await;
    assert_eq!(
        next_text(&mut wss).await,
        r#"{"message":{"from":"the lobby"}}"#
    );

    // The page that left broadcast for room:1 sees its own channel only.
    send_and_see(
        &room,
        &[&room],
        r#"{"from": "room 1"}"#,
        r#"room:1 {"from":"room 1"}"#,
    )
    .await;
    assert_eq!(
        messages(&room).await,
        [r#"room:1 {"from":"room 1"}"#],
        "the page on room:1 got a message of broadcast"
    );

    // A /wss client reaches the page on broadcast, and neither saw room:1's message.
    send_text(&mut wss, r#"{"from":"wss"}"#).await;
    assert_eq!(
        next_text(&mut wss).await,
        r#"{"message":{"from":"wss"}}"#,
        "the /wss client's next message is its own, not room:1's"
    );
    wait_for_text(&lobby, "#messages li:first-child", |item| {
        item == r#"broadcast {"from":"wss"}"#
    })
    .await;
    assert_eq!(
        messages(&lobby).await,
        [
            r#"broadcast {"from":"wss"}"#,
            r#"broadcast {"from":"the lobby"}"#
        ],
        "the page on broadcast got a message of room:1"
    );
    send_and_see(
        &room,
        &[&room],
        r#"{"again": "room 1"}"#,
        r#"room:1 {"again":"room 1"}"#,
    )
    .await;
    assert_eq!(
        messages(&room).await,
        [
            r#"room:1 {"again":"room 1"}"#,
            r#"room:1 {"from":"room 1"}"#
        ],
        "the page on room:1 got the /wss client's message"
    );

    // Bad channel names are refused on the page, which stays where it was; the longest name the
    // server accepts is accepted.
    switch_channel(&room, "room 2").await;
    wait_for_text(&room, "#channel-error", |error| {
        error == r#"A channel name holds only A-Z a-z 0-9 _ - . : @, not " ". Staying on room:1."#
    })
    .await;
    switch_channel(&room, &"r".repeat(129)).await;
    wait_for_text(&room, "#channel-error", |error| {
        error == "A channel name is at most 128 characters, not 129. Staying on room:1."
    })
    .await;
    assert_eq!(text(&room, "#subscription").await, "subscribed to room:1");
    let longest = "r".repeat(128);
    switch_channel(&room, &longest).await;
    subscribed(&room, &longest).await;
    assert_eq!(text(&room, "#channel-error").await, "");

    // The server refuses a frame nested deeper than it forwards (the envelope adds a level): the
    // page shows the error reply, nothing is published, and the next message clears the error.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    send(&lobby, &deep).await;
    wait_for_text(&lobby, "#server-error", |error| {
        error == "Server refused: bad_request: the frame is nested too deeply"
    })
    .await;
    assert_eq!(
        text(&lobby, "#error").await,
        "",
        "the page itself took it as JSON"
    );
    send_and_see(
        &lobby,
        &[&lobby],
        r#"{"after": "the error"}"#,
        r#"broadcast {"after":"the error"}"#,
    )
    .await;
    assert_eq!(
        next_text(&mut wss).await,
        r#"{"message":{"after":"the error"}}"#,
        "the refused frame was not published"
    );
    let shown = lobby
        .find(Locator::Css("#server-error"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap();
    assert!(!shown, "the error is cleared by the next message");
    assert_eq!(text(&lobby, "#count").await, "3");

    lobby.close().await.unwrap();
    room.close().await.unwrap();
    server.stop().await;
}

/// Publishes each of `messages` on `channel` from a `/v1/ws` client of its own, each taken by the
/// server (acked) before the next, so that all are in the channel's history when this returns.
async fn publish_all(server: &TestServer, channel: &str, messages: &[&str]) {
    let mut publisher = connect(&server.url("/v1/ws")).await;
    for (id, data) in messages.iter().enumerate() {
        let frame =
            format!(r#"{{"type":"publish","channel":"{channel}","data":{data},"id":{id}}}"#);
        send_text(&mut publisher, frame).await;
        assert_eq!(
            next_text(&mut publisher).await,
            format!(r#"{{"type":"ack","id":{id}}}"#)
        );
    }
}

/// Drops the page's connection through `relay` and waits until the page shows it.
async fn cut(relay: &Proxy, page: &Browser) {
    relay.cut();
    wait_for_text(page, "#state", |state| state.starts_with("closed (1006)")).await;
}

/// A page on `room:1` through a relay, which has listed `{"n":1}` (and so holds its offset).
async fn page_on_room_1(driver: &ChromeDriver, relay: &Proxy) -> Browser {
    let page = driver.open(&format!("http://{}/", relay.addr)).await;
    subscribed(&page, "broadcast").await;
    switch_channel(&page, "room:1").await;
    subscribed(&page, "room:1").await;
    send_and_see(&page, &[&page], r#"{"n": 1}"#, r#"room:1 {"n":1}"#).await;
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn a_page_that_lost_its_connection_lists_what_it_missed_once_in_order() {
    let server = TestServer::start(&[]).await;
    let relay = Proxy::start(vec![server.addr]).await;
    let driver = ChromeDriver::start();
    let page = page_on_room_1(&driver, &relay).await;

    cut(&relay, &page).await;
    publish_all(
        &server,
        "room:1",
        &[r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#],
    )
    .await;
    relay.mend(server.addr);
    // The mark counts the replay once the subscribe's ack ends it; a page that counted on would
    // read 4 once the next message is listed.
    wait_for_text(&page, "#messages li.notice", |notice| {
        notice == "reconnected: 3 missed messages replayed"
    })
    .await;
    subscribed(&page, "room:1").await;
    send_and_see(&page, &[&page], r#"{"n": 5}"#, r#"room:1 {"n":5}"#).await;
    assert_eq!(
        messages(&page).await,
        [
            r#"room:1 {"n":5}"#,
            r#"room:1 {"n":4}"#,
            r#"room:1 {"n":3}"#,
            r#"room:1 {"n":2}"#,
            "reconnected: 3 missed messages replayed",
            r#"room:1 {"n":1}"#,
        ]
    );
    assert_eq!(text(&page, "#count").await, "5");

    // Nothing published while away: resumed all the same, and said so.
    cut(&relay, &page).await;
    relay.mend(server.addr);
    wait_for_text(&page, "#messages li:first-child", |notice| {
        notice == "reconnected: nothing missed"
    })
    .await;
    subscribed(&page, "room:1").await;
    send_and_see(&page, &[&page], r#"{"n": 6}"#, r#"room:1 {"n":6}"#).await;
    assert_eq!(text(&page, "#count").await, "6");

    let screenshot = page.screenshot().await.unwrap();
    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/../.artifacts");
    std::fs::create_dir_all(artifacts).unwrap();
    std::fs::write(format!("{artifacts}/demo-page-resumed.png"), screenshot).unwrap();

    page.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn a_page_that_missed_more_than_the_history_holds_marks_messages_as_lost() {
    let server = TestServer::start(&["--history-size", "2"]).await;
    let relay = Proxy::start(vec![server.addr]).await;
    let driver = ChromeDriver::start();
    let page = page_on_room_1(&driver, &relay).await;

    cut(&relay, &page).await;
    publish_all(
        &server,
        "room:1",
        &[r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#],
    )
    .await;
    relay.mend(server.addr);
    let lost = "reconnected: messages were lost while disconnected";
    wait_for_text(&page, "#messages li.notice.lost", |notice| notice == lost).await;
    subscribed(&page, "room:1").await;
    send_and_see(&page, &[&page], r#"{"n": 5}"#, r#"room:1 {"n":5}"#).await;
    assert_eq!(
        messages(&page).await,
        [r#"room:1 {"n":5}"#, lost, r#"room:1 {"n":1}"#],
        "nothing replayed, live messages listed"
    );
    assert_eq!(text(&page, "#count").await, "2");

    page.close().await.unwrap();
    server.stop().await;
}

/// A page that reconnects to a server keeping no history (as a deploy may bring) is refused its
/// resume, says so once and subscribes without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn a_page_reconnecting_where_no_history_is_kept_subscribes_without_resuming() {
    let server = TestServer::start(&[]).await;
    let without_history = TestServer::start(&["--history-size", "0"]).await;
    let relay = Proxy::start(vec![server.addr]).await;
    let driver = ChromeDriver::start();
    let page = page_on_room_1(&driver, &relay).await;

    cut(&relay, &page).await;
    relay.mend(without_history.addr);
    let off = "reconnected: this server keeps no history, so messages sent while disconnected \
               are not replayed";
    wait_for_text(&page, "#messages li.notice.off", |notice| notice == off).await;
    subscribed(&page, "room:1").await;
    send_and_see(&page, &[&page], r#"{"n": 2}"#, r#"room:1 {"n":2}"#).await;

    // Messages without offsets leave nothing to resume from: the next reconnect subscribes
    // plainly, without another notice.
    cut(&relay, &page).await;
    relay.mend(without_history.addr);
    subscribed(&page, "room:1").await;
    send_and_see(&page, &[&page], r#"{"n": 3}"#, r#"room:1 {"n":3}"#).await;
    assert_eq!(
        messages(&page).await,
        [
            r#"room:1 {"n":3}"#,
            r#"room:1 {"n":2}"#,
            off,
            r#"room:1 {"n":1}"#
        ]
    );
    let shown = page
        .find(Locator::Css("#server-error"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap();
    assert!(!shown, "the refused resume is no error to show");

    page.close().await.unwrap();
    server.stop().await;
    without_history.stop().await;
}
