//! `jobbot login SESSION --phone +…` (or `--qr`): an interactive walk through the login state
//! machine. With `--qr` a QR code is printed for the account's phone to scan, and printed again
//! each time Telegram rotates the token; a 2FA password is asked for after the scan.
//!
//! Every failure prints what happened and asks again (a wrong code, a wrong password, an invalid
//! or banned phone, an expired code, which sends a new one); nothing here panics on Telegram's
//! answers. The same [`LoginFlow`] is what the web interface drives.

use std::io::{self, BufRead, Write};

use jobbot_core::ids::SessionName;
use jobbot_core::login::{LoginFlow, LoginState, LoginStepError};
use jobbot_core::telegram::{
    AccountConnector, AuthorizationStatus, ConnectOptions, LoginBackend, LoginError, Me,
};

/// Where answers come from: the terminal, or a script in tests.
pub trait Prompter {
    /// Asks for a line. `Ok(None)` means the person gave up (end of input or an empty answer).
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>>;
    /// Asks for a secret (the 2FA password) without echoing it where the terminal allows.
    fn ask_secret(&mut self, prompt: &str) -> io::Result<Option<String>>;
}

/// How the person logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMethod {
    /// A code sent to the phone number (asked for when `None`).
    Code { phone: Option<String> },
    /// A QR code scanned by the account's phone.
    Qr,
}

/// How a login ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    SignedIn(Me),
    AlreadyAuthorized(Me),
    Cancelled,
    /// Telegram asks to wait before trying again; retrying now would only extend the wait.
    MustWait {
        seconds: u32,
    },
}

/// `options` carries the account's proxy: an account logs in from the address it works from.
pub async fn login(
    connector: &dyn AccountConnector,
    session: &SessionName,
    options: &ConnectOptions,
    method: LoginMethod,
    prompter: &mut dyn Prompter,
    out: &mut dyn Write,
) -> anyhow::Result<LoginOutcome> {
    match connector.check_authorization(session, options).await? {
        AuthorizationStatus::Authorized(me) => return Ok(LoginOutcome::AlreadyAuthorized(me)),
        AuthorizationStatus::Dead(reason) => {
            writeln!(
                out,
                "The session {session} can no longer be used ({reason}); logging in again."
            )?;
        }
        AuthorizationStatus::NotLoggedIn => {}
    }
    let backend = connector.begin_login(session, options).await?;
    drive(LoginFlow::new(backend), method, prompter, out).await
}

/// A QR code of `url` for a terminal: two modules per character, light on dark, with the quiet
/// zone scanners need.
pub fn qr_for_terminal(url: &str) -> String {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        // A `tg://login` URL is far below a QR code's capacity.
        Err(error) => format!("(no QR code: {error})"),
    }
}

/// Runs the state machine to its end, asking the prompter for each missing answer.
pub async fn drive<B: LoginBackend>(
    mut flow: LoginFlow<B>,
    method: LoginMethod,
    prompter: &mut dyn Prompter,
    out: &mut dyn Write,
) -> anyhow::Result<LoginOutcome> {
    let start = tokio::time::Instant::now();
    let clock = move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut phone = match method {
        LoginMethod::Code { phone } => phone,
        LoginMethod::Qr => {
            match flow.start_qr(clock()).await {
                Ok(_) => {}
                Err(LoginStepError::Telegram(LoginError::FloodWait { seconds })) => {
                    return Ok(LoginOutcome::MustWait { seconds });
                }
                Err(error) => return Err(anyhow::anyhow!("QR login: {error}")),
            }
            None
        }
    };
    let mut shown_url: Option<String> = None;
    loop {
        let step = match flow.state().clone() {
            LoginState::AwaitingQrScan {
                url,
                expires_in_seconds,
            } => {
                if shown_url.as_ref() != Some(&url) {
                    writeln!(out, "{}", qr_for_terminal(&url))?;
                    writeln!(
                        out,
                        "Scan this QR code with the account's Telegram app (Settings → Devices → \
                         Link Desktop Device). It is valid for {expires_in_seconds} s; a new one \
                         is shown then.\n{url}"
                    )?;
                    shown_url = Some(url);
                }
                match flow.follow_qr(&clock, std::time::Duration::MAX).await {
                    Ok(_) => Ok(()),
                    Err(LoginStepError::Telegram(LoginError::FloodWait { seconds })) => {
                        return Ok(LoginOutcome::MustWait { seconds });
                    }
                    // Nobody is asked anything here: a failure ends the login instead of looping.
                    Err(error) => return Err(anyhow::anyhow!("QR login: {error}")),
                }
            }
            LoginState::SignedIn(me) => return Ok(LoginOutcome::SignedIn(me)),
            LoginState::AwaitingPhone { last_phone } => {
                let number = match (phone.take(), last_phone) {
                    (Some(number), _) => number,
                    (None, Some(last)) => {
                        writeln!(out, "Requesting a new code for {last}.")?;
                        last.as_str().to_owned()
                    }
                    (None, None) => match prompter
                        .ask("Phone number (international format, e.g. +79991234567): ")?
                    {
                        Some(number) => number,
                        None => return Ok(LoginOutcome::Cancelled),
                    },
                };
                let result = flow.submit_phone(&number).await.map(|_| ());
                if let (Ok(()), LoginState::AwaitingCode { sent, .. }) = (&result, flow.state()) {
                    writeln!(out, "{}", describe_sent_code(sent))?;
                }
                result
            }
            LoginState::AwaitingCode { sent, .. } => {
                let prompt = if sent.next.is_some() {
                    "Login code (or `resend`): "
                } else {
                    "Login code: "
                };
                match prompter.ask(prompt)? {
                    Some(answer) if answer.trim().eq_ignore_ascii_case("resend") => {
                        let result = flow.resend_code().await.map(|_| ());
                        if let (Ok(()), LoginState::AwaitingCode { sent, .. }) =
                            (&result, flow.state())
                        {
                            writeln!(out, "{}", describe_sent_code(sent))?;
                        }
                        result
                    }
                    Some(code) => flow.submit_code(&code).await.map(|_| ()),
                    None => return Ok(LoginOutcome::Cancelled),
                }
            }
            LoginState::AwaitingPassword { hint, .. } => {
                let prompt = match hint {
                    Some(hint) if !hint.is_empty() => {
                        format!("Two-step verification password (hint: {hint}): ")
                    }
                    _ => "Two-step verification password: ".to_owned(),
                };
                match prompter.ask_secret(&prompt)? {
                    Some(password) => flow.submit_password(&password).await.map(|_| ()),
                    None => return Ok(LoginOutcome::Cancelled),
                }
            }
        };
        match step {
            Ok(()) => {}
            Err(LoginStepError::Telegram(LoginError::FloodWait { seconds })) => {
                return Ok(LoginOutcome::MustWait { seconds });
            }
            Err(error) => {
                writeln!(out, "{}", advice(&error))?;
            }
        }
    }
}

/// Where the code went, and the other way on offer (never the code itself).
pub fn describe_sent_code(sent: &jobbot_core::telegram::SentCode) -> String {
    let mut text = format!("Telegram sent the login code {}", sent.delivery);
    if let Some(length) = sent.length {
        text.push_str(&format!(" ({length} digits)"));
    }
    text.push('.');
    if let Some(next) = sent.next {
        text.push_str(&format!(" Type `resend` to get it {next} instead"));
        if let Some(seconds) = sent.resend_after_seconds {
            text.push_str(&format!(" (after {seconds} s)"));
        }
        text.push('.');
    }
    text
}

fn advice(error: &LoginStepError) -> String {
    match error {
        LoginStepError::Telegram(LoginError::CodeExpired) => {
            "The code has expired; a new one will be requested.".to_owned()
        }
        LoginStepError::Telegram(
            LoginError::PhoneBanned | LoginError::InvalidPhone | LoginError::SignUpRequired,
        ) => {
            format!("{error}. Enter another phone number, or press Enter to stop.")
        }
        LoginStepError::Telegram(LoginError::AccountDead { .. }) => {
            format!("{error}. Enter another phone number, or press Enter to stop.")
        }
        _ => format!("{error}. Try again (press Enter to stop)."),
    }
}

/// The terminal: answers from stdin, the password read without echo when stdin is a terminal.
pub struct TerminalPrompter;

impl Prompter for TerminalPrompter {
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        eprint!("{prompt}");
        io::stderr().flush()?;
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim().to_owned();
        Ok((!line.is_empty()).then_some(line))
    }

    fn ask_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
        let password = rpassword::prompt_password(prompt)?;
        Ok((!password.is_empty()).then_some(password))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use jobbot_core::ids::PhoneNumber;
    use jobbot_sim::{NewUser, SimConnector, SimParams, SimWorld};

    use super::*;

    /// Answers from a script; `CODE` is replaced by the code the simulated Telegram sent.
    struct Scripted {
        world: SimWorld,
        phone: PhoneNumber,
        answers: VecDeque<&'static str>,
        asked: Vec<String>,
    }

    impl Prompter for Scripted {
        fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
            self.asked.push(prompt.to_owned());
            Ok(self.answers.pop_front().map(|answer| match answer {
                "CODE" => self
                    .world
                    .last_login_code(&self.phone)
                    .expect("a code was sent"),
                other => other.to_owned(),
            }))
        }
        fn ask_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
            self.ask(prompt)
        }
    }

    fn world_with(phone: &str, user: NewUser) -> (SimWorld, PhoneNumber) {
        let world = SimWorld::new(SimParams::default());
        world.create_user(user.phone(phone));
        (world, PhoneNumber::parse(phone).unwrap())
    }

    async fn run(
        world: &SimWorld,
        phone: &PhoneNumber,
        answers: &[&'static str],
    ) -> (LoginOutcome, String, Vec<String>) {
        let connector = SimConnector::new(world.clone());
        let mut prompter = Scripted {
            world: world.clone(),
            phone: phone.clone(),
            answers: answers.iter().copied().collect(),
            asked: Vec::new(),
        };
        let mut out = Vec::new();
        let session = SessionName::parse("agent_1").unwrap();
        let outcome = login(
            &connector,
            &session,
            &ConnectOptions::default(),
            LoginMethod::Code { phone: None },
            &mut prompter,
            &mut out,
        )
        .await
        .expect("no crash");
        (outcome, String::from_utf8(out).unwrap(), prompter.asked)
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_code_is_reported_and_asked_again() {
        let (world, phone) = world_with(
            "+79991234567",
            NewUser::named("Ivan").username("ivan_agent"),
        );
        let (outcome, out, _) = run(&world, &phone, &["+7 999 123-45-67", "00000", "CODE"]).await;
        assert!(
            matches!(outcome, LoginOutcome::SignedIn(ref me) if me.first_name == "Ivan"),
            "{outcome:?}"
        );
        assert!(out.contains("the code is wrong"), "{out}");
    }

    /// The person is told how the code went (SMS: the number has no other session) and can ask
    /// for it the other way Telegram offers (a call); once no other way is left, `resend` is
    /// refused with the reason and the code still works (#14 item 5).
    #[tokio::test(start_paused = true)]
    async fn the_code_delivery_is_shown_and_resend_asks_for_the_other_way() {
        let (world, phone) = world_with("+79991234580", NewUser::named("Vera"));
        let (outcome, out, asked) = run(
            &world,
            &phone,
            &["+79991234580", "resend", "resend", "CODE"],
        )
        .await;
        assert!(matches!(outcome, LoginOutcome::SignedIn(_)), "{outcome:?}");
        assert!(
            out.contains("Telegram sent the login code by SMS (5 digits). Type `resend` to get it by a phone call instead."),
            "{out}"
        );
        assert!(
            out.contains("Telegram sent the login code by a phone call (5 digits)."),
            "{out}"
        );
        assert!(out.contains("SEND_CODE_UNAVAILABLE"), "{out}");
        assert_eq!(asked[1], "Login code (or `resend`): ");
        assert_eq!(asked[2], "Login code: ");
        let code = world.last_login_code(&phone);
        assert!(code.is_none_or(|code| !out.contains(&code)), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn two_factor_shows_the_hint_and_retries_a_wrong_password() {
        let (world, phone) = world_with(
            "+79991234568",
            NewUser::named("Olga").two_factor("correct horse", Some("the horse")),
        );
        let (outcome, out, asked) = run(
            &world,
            &phone,
            &["+79991234568", "CODE", "hunter2-wrong", "correct horse"],
        )
        .await;
        assert!(matches!(outcome, LoginOutcome::SignedIn(_)), "{outcome:?}");
        assert!(out.contains("2FA password is wrong"), "{out}");
        assert!(
            asked
                .iter()
                .any(|prompt| prompt.contains("hint: the horse")),
            "{asked:?}"
        );
        assert!(
            !out.contains("correct horse") && !out.contains("hunter2"),
            "the password is never printed: {out}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_phone_is_asked_again_and_empty_input_cancels() {
        let (world, phone) = world_with("+79991234569", NewUser::named("Petr"));
        let (outcome, out, _) = run(&world, &phone, &["+7999", ""]).await;
        assert_eq!(outcome, LoginOutcome::Cancelled);
        assert!(
            out.contains("is not a phone number in international format"),
            "{out}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_banned_phone_gets_a_clear_message() {
        let (world, phone) = world_with("+79991234570", NewUser::named("Spam"));
        world.ban_phone(&phone);
        let (outcome, out, _) = run(&world, &phone, &["+79991234570", ""]).await;
        assert_eq!(outcome, LoginOutcome::Cancelled);
        assert!(out.contains("banned"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_code_requests_a_new_one() {
        let (world, phone) = world_with("+79991234571", NewUser::named("Anna"));
        let connector = SimConnector::new(world.clone());
        let session = SessionName::parse("agent_2").unwrap();
        let backend = connector
            .begin_login(&session, &ConnectOptions::default())
            .await
            .unwrap();
        let mut flow = LoginFlow::new(backend);
        flow.submit_phone(phone.as_str()).await.unwrap();
        let stale_code = world.last_login_code(&phone).unwrap();
        tokio::time::advance(std::time::Duration::from_secs(
            world.params().login_code_lifetime_seconds + 1,
        ))
        .await;
        let mut prompter = Scripted {
            world: world.clone(),
            phone: phone.clone(),
            answers: [
                Box::leak(stale_code.into_boxed_str()) as &'static str,
                "CODE",
            ]
            .into_iter()
            .collect(),
            asked: Vec::new(),
        };
        let mut out = Vec::new();
        let outcome = drive(
            flow,
            LoginMethod::Code { phone: None },
            &mut prompter,
            &mut out,
        )
        .await
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            matches!(outcome, LoginOutcome::SignedIn(_)),
            "{outcome:?} {out}"
        );
        assert!(
            out.contains("expired") && out.contains("Requesting a new code"),
            "{out}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_authorized_session_is_not_logged_in_twice() {
        let world = SimWorld::new(SimParams::default());
        let user = world.create_account("agent_1", NewUser::named("Ivan").phone("+79991234572"));
        let _ = user;
        let connector = SimConnector::new(world.clone());
        let mut prompter = Scripted {
            world: world.clone(),
            phone: PhoneNumber::parse("+79991234572").unwrap(),
            answers: VecDeque::new(),
            asked: Vec::new(),
        };
        let outcome = login(
            &connector,
            &SessionName::parse("agent_1").unwrap(),
            &ConnectOptions::default(),
            LoginMethod::Code { phone: None },
            &mut prompter,
            &mut Vec::new(),
        )
        .await
        .unwrap();
        assert!(
            matches!(outcome, LoginOutcome::AlreadyAuthorized(_)),
            "{outcome:?}"
        );
        assert!(prompter.asked.is_empty());
    }

    /// The terminal a phone looks at: it scans the `scan_nth` QR login URL printed (counting
    /// from 1), and keeps what was printed.
    struct PhoneLookingAtTheScreen {
        world: SimWorld,
        phone: PhoneNumber,
        scan_nth: usize,
        urls_seen: usize,
        printed: String,
    }

    impl Write for PhoneLookingAtTheScreen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let text = String::from_utf8_lossy(buf);
            for line in text
                .lines()
                .filter(|line| line.starts_with("tg://login?token="))
            {
                self.urls_seen += 1;
                if self.urls_seen == self.scan_nth {
                    self.world
                        .accept_login_token(&self.phone, line)
                        .expect("the phone accepts the QR code on the screen");
                }
            }
            self.printed.push_str(&text);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_qr_login_shows_a_new_code_when_it_expires_and_asks_the_password_after_the_scan() {
        let (world, phone) = world_with(
            "+79991234568",
            NewUser::named("Olga").two_factor("hunter2", Some("cat")),
        );
        let connector = SimConnector::new(world.clone());
        let mut prompter = Scripted {
            world: world.clone(),
            phone: phone.clone(),
            answers: ["wrong", "hunter2"].into_iter().collect(),
            asked: Vec::new(),
        };
        let mut screen = PhoneLookingAtTheScreen {
            world: world.clone(),
            phone: phone.clone(),
            scan_nth: 2,
            urls_seen: 0,
            printed: String::new(),
        };
        let session = SessionName::parse("agent_qr").unwrap();
        let outcome = login(
            &connector,
            &session,
            &ConnectOptions::default(),
            LoginMethod::Qr,
            &mut prompter,
            &mut screen,
        )
        .await
        .expect("no crash");
        assert!(
            matches!(&outcome, LoginOutcome::SignedIn(me) if me.phone.as_ref() == Some(&phone)),
            "{outcome:?}"
        );
        // The first code expired unscanned and a second one was printed, as a QR code too.
        assert_eq!(screen.urls_seen, 2, "{}", screen.printed);
        assert!(screen.printed.contains('▀') || screen.printed.contains('▄'));
        assert_eq!(
            prompter.asked,
            [
                "Two-step verification password (hint: cat): ",
                "Two-step verification password (hint: cat): "
            ]
        );
        assert!(!screen.printed.contains("hunter2"));
    }
}
