//! A real browser on the guest's graphical console: noVNC served by websockify (the README's
//! recipe), Debian's headless Chromium driven through chromedriver's WebDriver HTTP API (plain
//! HTTP/JSON over a `TcpStream`), and tesseract to read what the browser shows.
//!
//! Everything comes from Debian packages, installed on first use when missing; nothing is
//! downloaded at run time. websockify and chromedriver (with the Chromium it starts) run in
//! process groups of their own, which drop kills.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::cmd::{BUILD_TIMEOUT, run, run_ok_for};
use super::names::unique_id;

/// The Debian packages of the viewer, the browser and the OCR.
const PACKAGES: &[&str] = &[
    "chromium",
    "chromium-driver",
    "novnc",
    "websockify",
    "tesseract-ocr",
];

/// Where Debian's novnc package puts the web client.
pub const NOVNC_DIR: &str = "/usr/share/novnc";

/// W3C WebDriver's key for an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Installs the viewer, browser and OCR packages that are missing (once per test process).
pub fn ensure_browser_packages() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let missing: Vec<&str> = PACKAGES
            .iter()
            .copied()
            .filter(|p| !run(&["dpkg", "-s", p]).success())
            .collect();
        if !missing.is_empty() {
            let mut argv = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
            argv.extend(&missing);
            run_ok_for(&argv, BUILD_TIMEOUT);
        }
    });
}

/// A process and everything it starts, in a process group of its own; drop kills the group.
#[derive(Debug)]
struct Group {
    child: Child,
    log: PathBuf,
}

impl Group {
    fn spawn(mut command: Command, log: PathBuf) -> Group {
        let out = fs::File::create(&log).expect("create a log file");
        let err = out.try_clone().expect("dup the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Group { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (Chromium's helpers), and the leader if it lingers.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
fn wait_for_port(port: u16, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on 127.0.0.1:{port}\n{}",
            log()
        );
        sleep(Duration::from_millis(50));
    }
}

/// websockify serving noVNC on 127.0.0.1 and bridging its WebSocket to the VNC socket: the
/// README's `websockify --web /usr/share/novnc PORT --unix-target=SOCKET`.
#[derive(Debug)]
pub struct Viewer {
    process: Group,
    pub port: u16,
}

impl Viewer {
    pub fn start(socket: &Path) -> Viewer {
        ensure_browser_packages();
        let port = free_port();
        let mut command = Command::new("websockify");
        command
            // Each page request and WebSocket connection logged, for a failure's message.
            .arg("--verbose")
            .arg("--web")
            .arg(NOVNC_DIR)
            .arg(format!("127.0.0.1:{port}"))
            .arg(format!("--unix-target={}", socket.display()));
        let log = std::env::temp_dir().join(format!("{}-websockify.log", unique_id()));
        let process = Group::spawn(command, log);
        wait_for_port(port, "websockify", || process.log());
        Viewer { process, port }
    }

    /// The noVNC page that connects at once (`vnc.html?autoconnect=true`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/vnc.html?autoconnect=true", self.port)
    }

    /// websockify's output, for failure messages.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Headless Chromium in a fresh profile, driven over WebDriver by chromedriver.
#[derive(Debug)]
pub struct Browser {
    // Field order is drop order: the session ends before its driver.
    session: String,
    port: u16,
    driver: Group,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a browser session with a `width`×`height` window.
    pub fn start(width: u32, height: u32) -> Browser {
        ensure_browser_packages();
        let port = free_port();
        let mut command = Command::new("chromedriver");
        command.arg(format!("--port={port}"));
        let id = unique_id();
        let log = std::env::temp_dir().join(format!("{id}-chromedriver.log"));
        let driver = Group::spawn(command, log);
        wait_for_port(port, "chromedriver", || driver.log());
        let profile = std::env::temp_dir().join(format!("{id}-chromium-profile"));
        fs::create_dir_all(&profile).expect("create the browser profile directory");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(), // as root
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-breakpad".into(),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={width},{height}"),
        ];
        let args: Vec<String> = args.iter().map(|a| json_string(a)).collect();
        let body = format!(
            r#"{{"capabilities":{{"alwaysMatch":{{"goog:chromeOptions":{{"binary":"/usr/bin/chromium","args":[{}]}}}}}}}}"#,
            args.join(",")
        );
        let mut browser = Browser {
            session: String::new(),
            port,
            driver,
            profile,
        };
        let answer = browser.request("POST", "/session", &body);
        browser.session =
            json_field(&answer, "sessionId").unwrap_or_else(|| panic!("no session id in {answer}"));
        browser
    }

    /// One WebDriver command; the JSON answer. Panics on a WebDriver error.
    fn command(&self, method: &str, path: &str, body: &str) -> String {
        let path = format!("/session/{}{path}", self.session);
        self.request(method, &path, body)
    }

    fn request(&self, method: &str, path: &str, body: &str) -> String {
        let (status, answer) = http(self.port, method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}\n{}", self.driver.log()));
        assert!(
            status == 200,
            "WebDriver {method} {path} answered {status}: {answer}"
        );
        answer
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn open(&self, url: &str) {
        self.command(
            "POST",
            "/url",
            &format!(r#"{{"url":{}}}"#, json_string(url)),
        );
    }

    /// The first element matching the CSS `selector`, if any.
    pub fn find(&self, selector: &str) -> Option<String> {
        let body = format!(
            r#"{{"using":"css selector","value":{}}}"#,
            json_string(selector)
        );
        let path = format!("/session/{}/element", self.session);
        let (status, answer) = http(self.port, "POST", &path, &body).expect("WebDriver element");
        match status {
            200 => json_field(&answer, ELEMENT_KEY),
            404 => None, // no such element
            _ => panic!("WebDriver find {selector}: {status} {answer}"),
        }
    }

    /// Waits up to `timeout` for an element matching `selector`.
    pub fn wait_for(&self, selector: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(element) = self.find(selector) {
                return Some(element);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` into `element` (a form field); `\n` is Enter.
    pub fn send_keys(&self, element: &str, text: &str) {
        let text = text.replace('\n', "\u{E007}");
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            &format!(r#"{{"text":{}}}"#, json_string(&text)),
        );
    }

    /// Clicks `element` (in its middle).
    pub fn click(&self, element: &str) {
        self.command("POST", &format!("/element/{element}/click"), "{}");
    }

    /// Presses and releases each key of `text` on whatever has the focus, as a keyboard does;
    /// `\n` is Enter.
    pub fn type_keys(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            let key = if c == '\n' {
                "\u{E007}".to_string()
            } else {
                c.to_string()
            };
            for kind in ["keyDown", "keyUp"] {
                actions.push(format!(
                    r#"{{"type":"{kind}","value":{}}}"#,
                    json_string(&key)
                ));
            }
        }
        let body = format!(
            r#"{{"actions":[{{"type":"key","id":"keyboard","actions":[{}]}}]}}"#,
            actions.join(",")
        );
        self.command("POST", "/actions", &body);
    }

    /// What the browser shows, as a PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let answer = self.command("GET", "/screenshot", "");
        let b64 = json_field(&answer, "value").expect("a screenshot");
        base64_decode(&b64)
    }

    /// What a person does: opens `viewer`'s noVNC page, types `password` into noVNC's
    /// password dialog when the VNC server asks for one, and waits until noVNC is connected.
    pub fn connect_novnc(&self, viewer: &Viewer, password: Option<&str>) {
        // Generous: with four TCG guests booting beside it on two cores, the page, websockify
        // and the VNC handshake took longer than 30 s once.
        let limit = Duration::from_secs(90);
        self.open(&viewer.url());
        if let Some(password) = password {
            self.wait_for("#noVNC_credentials_dlg.noVNC_open", limit)
                .unwrap_or_else(|| {
                    panic!(
                        "noVNC never asked for the password ({})\n{}",
                        self.page_state(),
                        viewer.log()
                    )
                });
            let field = self
                .find("#noVNC_password_input")
                .expect("noVNC's password field");
            self.send_keys(&field, &format!("{password}\n"));
        }
        self.wait_for("html.noVNC_connected", limit)
            .unwrap_or_else(|| {
                panic!(
                    "noVNC did not connect ({})\n{}",
                    self.page_state(),
                    viewer.log()
                )
            });
    }

    /// What the page says, for a failure's message: its URL, title, the classes of its
    /// `html` element (noVNC's connection state) and noVNC's status line.
    fn page_state(&self) -> String {
        let script = r#"{"script":"const s = document.getElementById('noVNC_status'); return [location.href, document.title, document.documentElement.className, s ? s.textContent : '(no status element)'].join(' | ');","args":[]}"#;
        let (_, answer) = http(
            self.port,
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            script,
        )
        .unwrap_or_else(|e| (0, e.to_string()));
        json_field(&answer, "value").unwrap_or(answer)
    }

    /// Clicks the guest's screen in noVNC (as a person does before typing) and types `text`.
    pub fn type_on_console(&self, text: &str) {
        let canvas = self
            .find("#noVNC_container canvas")
            .expect("noVNC's canvas");
        self.click(&canvas);
        self.type_keys(text);
    }

    /// Takes screenshots until tesseract reads `text` in one, for up to `timeout`: that
    /// screenshot, or what was read in the last one, which is kept in a file named in the error.
    pub fn wait_to_show(&self, text: &str, timeout: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let png = self.screenshot();
            let seen = ocr(&png);
            if ocr_key(&seen).contains(&ocr_key(text)) {
                return Ok(png);
            }
            if Instant::now() >= deadline {
                let file = std::env::temp_dir().join(format!("{}-unread.png", unique_id()));
                let _ = fs::write(&file, &png);
                return Err(format!(
                    "the browser never showed {text:?}; OCR of the last screenshot ({}):\n{seen}",
                    file.display()
                ));
            }
            sleep(Duration::from_millis(500));
        }
    }
}

/// `text` as OCR sees it, up to the glyphs it confuses in a terminal font (`g`/`q`, `0`/`O`,
/// `1`/`l`/`I`/`|`, `6`/`8`: tesseract once read the second of two `1388` on one screen as
/// `1368`) and the spacing it guesses: both sides of a comparison are read alike.
fn ocr_key(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            'q' => 'g',
            '0' => 'o',
            '1' | 'i' | '|' => 'l',
            '8' => '6',
            c => c,
        })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http(self.port, "DELETE", &path, "");
        }
        let _ = fs::remove_dir_all(&self.profile);
    }
}

/// The text tesseract reads in a PNG.
pub fn ocr(png: &[u8]) -> String {
    ensure_browser_packages();
    let file = std::env::temp_dir().join(format!("{}-ocr.png", unique_id()));
    fs::write(&file, png).expect("write the image for OCR");
    let out = run(&["tesseract", &file.to_string_lossy(), "stdout"]);
    let _ = fs::remove_file(&file);
    assert!(out.success(), "{out}");
    out.stdout
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the status and the body.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    // chromedriver keeps the connection open: read exactly the announced body.
    let mut answer = Vec::new();
    match length {
        Some(n) => {
            answer.resize(n, 0);
            reader.read_exact(&mut answer)?;
        }
        None => {
            reader.read_to_end(&mut answer)?;
        }
    }
    Ok((status, String::from_utf8_lossy(&answer).into_owned()))
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || (0xE000..=0xF8FF).contains(&(c as u32)) => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The first string value of `"key"` in the JSON `text`, unescaped.
fn json_field(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\""))?;
    let rest = text[at + key.len() + 2..].trim_start().strip_prefix(':')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other), // \" \\ \/
            },
            c => out.push(c),
        }
    }
    None
}

/// Standard base64 (with padding, whitespace ignored) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes().filter_map(value) {
        bits = (bits << 6) | c;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}
