//! The login state machine: phone → code → (2FA password) → signed in, or a QR code scanned by
//! the account's phone → (2FA password) → signed in.
//!
//! The CLI (`jobbot login`) and the web interface drive the same machine over a
//! [`LoginBackend`]; every failure leaves the machine in a state from which the person can retry,
//! and no step can be taken out of order.

use serde::Serialize;

use crate::ids::PhoneNumber;
use crate::telegram::{CodeOutcome, LoginBackend, LoginError, Me, QrOutcome, SentCode};

/// Where a login stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LoginState {
    /// Waiting for a phone number. After an expired code the number is remembered so the person
    /// only has to confirm it to get a new code.
    AwaitingPhone {
        last_phone: Option<PhoneNumber>,
    },
    AwaitingCode {
        phone: PhoneNumber,
        /// Where Telegram sent the code, and how a resend would.
        sent: SentCode,
    },
    /// A QR login: `url` (`tg://login?token=…`) is shown as a QR code until the phone scans it
    /// or it expires and a new one replaces it.
    AwaitingQrScan {
        url: String,
        expires_in_seconds: u32,
    },
    AwaitingPassword {
        /// `None` after a QR login, which asks for no number.
        phone: Option<PhoneNumber>,
        hint: Option<String>,
    },
    SignedIn(Me),
}

/// What a QR login waiting for its scan does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrNext {
    /// The token has expired: export a new one (Telegram rotates it, core.telegram.org/api/qr-login).
    Export,
    /// Wait for `updateLoginToken` at most this many milliseconds, then decide again.
    WaitForScan { at_most_ms: u64 },
}

/// Whether the token shown until `expires_at_ms` is still good at `now_ms` (both on the
/// caller's clock, in milliseconds). An accepted token is always exported again: that answer
/// is the sign-in.
pub fn qr_next(expires_at_ms: u64, now_ms: u64) -> QrNext {
    if now_ms >= expires_at_ms {
        QrNext::Export
    } else {
        QrNext::WaitForScan {
            at_most_ms: expires_at_ms - now_ms,
        }
    }
}

/// A step that could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginStepError {
    #[error("phone: {0}")]
    Phone(#[from] crate::ids::ParseIdError),
    #[error("{0}")]
    Telegram(#[from] LoginError),
    #[error("this step is not expected now (the login is at: {expected})")]
    OutOfOrder { expected: &'static str },
}

pub struct LoginFlow<B> {
    backend: B,
    state: LoginState,
    /// While a QR code is shown: when its token expires, on the caller's clock (ms).
    qr_expires_at_ms: Option<u64>,
}

impl<B: LoginBackend> LoginFlow<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            state: LoginState::AwaitingPhone { last_phone: None },
            qr_expires_at_ms: None,
        }
    }

    pub fn state(&self) -> &LoginState {
        &self.state
    }

    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Sends the login code to `phone`. Allowed at the start, after an expired code, and while
    /// waiting for a code (to ask for a new one).
    pub async fn submit_phone(&mut self, phone: &str) -> Result<&LoginState, LoginStepError> {
        if !matches!(
            self.state,
            LoginState::AwaitingPhone { .. }
                | LoginState::AwaitingCode { .. }
                | LoginState::AwaitingQrScan { .. }
        ) {
            return Err(self.out_of_order());
        }
        let phone = PhoneNumber::parse(phone)?;
        let sent = self.backend.request_code(&phone).await?;
        self.qr_expires_at_ms = None;
        self.state = LoginState::AwaitingCode { phone, sent };
        Ok(&self.state)
    }

    /// Asks Telegram to send the code again, the other way it offered (`auth.resendCode`).
    pub async fn resend_code(&mut self) -> Result<&LoginState, LoginStepError> {
        let LoginState::AwaitingCode { phone, .. } = &self.state else {
            return Err(self.out_of_order());
        };
        let phone = phone.clone();
        let sent = self.backend.resend_code().await?;
        self.state = LoginState::AwaitingCode { phone, sent };
        Ok(&self.state)
    }

    pub async fn submit_code(&mut self, code: &str) -> Result<&LoginState, LoginStepError> {
        let LoginState::AwaitingCode { phone, .. } = &self.state else {
            return Err(self.out_of_order());
        };
        let phone = phone.clone();
        match self.backend.submit_code(code.trim()).await {
            Ok(CodeOutcome::SignedIn(me)) => self.state = LoginState::SignedIn(me),
            Ok(CodeOutcome::PasswordRequired { hint }) => {
                self.state = LoginState::AwaitingPassword {
                    phone: Some(phone),
                    hint,
                }
            }
            Err(LoginError::CodeExpired) => {
                self.state = LoginState::AwaitingPhone {
                    last_phone: Some(phone),
                };
                return Err(LoginError::CodeExpired.into());
            }
            Err(error) => return Err(error.into()),
        }
        Ok(&self.state)
    }

    pub async fn submit_password(&mut self, password: &str) -> Result<&LoginState, LoginStepError> {
        if !matches!(self.state, LoginState::AwaitingPassword { .. }) {
            return Err(self.out_of_order());
        }
        let me = self.backend.submit_password(password).await?;
        self.state = LoginState::SignedIn(me);
        Ok(&self.state)
    }

    /// Starts (or restarts) a QR login instead of the code: exports a token to show. `now_ms` is
    /// the caller's clock in milliseconds, the same clock [`Self::follow_qr`] reads.
    pub async fn start_qr(&mut self, now_ms: u64) -> Result<&LoginState, LoginStepError> {
        if !matches!(
            self.state,
            LoginState::AwaitingPhone { .. }
                | LoginState::AwaitingCode { .. }
                | LoginState::AwaitingQrScan { .. }
        ) {
            return Err(self.out_of_order());
        }
        self.export_qr(now_ms).await
    }

    /// One step of a QR login: waits for the phone's scan at most until the token expires (and
    /// at most `longest_wait`, so a web request answers before clients and proxies give up),
    /// then exports again, which gives a fresh token after an expiry and the sign-in (or the
    /// password step) after a scan; a wait that ends before the expiry without a scan leaves the
    /// state as it was. `clock` gives the caller's time in milliseconds.
    pub async fn follow_qr(
        &mut self,
        clock: &(dyn Fn() -> u64 + Send + Sync),
        longest_wait: std::time::Duration,
    ) -> Result<&LoginState, LoginStepError> {
        let (LoginState::AwaitingQrScan { .. }, Some(expires_at_ms)) =
            (&self.state, self.qr_expires_at_ms)
        else {
            return Err(self.out_of_order());
        };
        if let QrNext::WaitForScan { at_most_ms } = qr_next(expires_at_ms, clock()) {
            let scanned = self
                .backend
                .wait_login_token(std::time::Duration::from_millis(at_most_ms).min(longest_wait))
                .await?;
            if !scanned && let QrNext::WaitForScan { at_most_ms } = qr_next(expires_at_ms, clock())
            {
                // The same token, with the time it has left now.
                if let LoginState::AwaitingQrScan {
                    expires_in_seconds, ..
                } = &mut self.state
                {
                    *expires_in_seconds =
                        u32::try_from(at_most_ms.div_ceil(1_000)).unwrap_or(u32::MAX);
                }
                return Ok(&self.state);
            }
        }
        self.export_qr(clock()).await
    }

    async fn export_qr(&mut self, now_ms: u64) -> Result<&LoginState, LoginStepError> {
        match self.backend.export_login_token().await? {
            QrOutcome::Token(token) => {
                self.qr_expires_at_ms = Some(now_ms + u64::from(token.expires_in_seconds) * 1_000);
                self.state = LoginState::AwaitingQrScan {
                    url: token.url(),
                    expires_in_seconds: token.expires_in_seconds,
                };
            }
            QrOutcome::SignedIn(me) => {
                self.qr_expires_at_ms = None;
                self.state = LoginState::SignedIn(me);
            }
            QrOutcome::PasswordRequired { hint } => {
                self.qr_expires_at_ms = None;
                self.state = LoginState::AwaitingPassword { phone: None, hint };
            }
        }
        Ok(&self.state)
    }

    fn out_of_order(&self) -> LoginStepError {
        LoginStepError::OutOfOrder {
            expected: self.state.step_name(),
        }
    }
}

impl LoginState {
    pub fn step_name(&self) -> &'static str {
        match self {
            Self::AwaitingPhone { .. } => "phone",
            Self::AwaitingCode { .. } => "code",
            Self::AwaitingQrScan { .. } => "qr scan",
            Self::AwaitingPassword { .. } => "password",
            Self::SignedIn(_) => "signed in",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::ids::ChatId;
    use crate::telegram::LoginToken;

    /// Answers exports from a script and says a scan came when told to; records the waits.
    /// Runs a future that never waits (the scripted backend answers at once).
    fn run<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the scripted backend never waits"),
        }
    }

    #[derive(Default)]
    struct ScriptedQr {
        exports: VecDeque<QrOutcome>,
        scans: VecDeque<bool>,
        waits: Vec<Duration>,
        passwords: Vec<String>,
    }

    fn me() -> Me {
        Me {
            user_id: ChatId::user(7).unwrap(),
            username: None,
            first_name: "Scanner".into(),
            last_name: None,
            phone: None,
        }
    }

    fn token(byte: u8, seconds: u32) -> QrOutcome {
        QrOutcome::Token(LoginToken {
            token: vec![byte; 4],
            expires_in_seconds: seconds,
        })
    }

    #[async_trait]
    impl LoginBackend for ScriptedQr {
        async fn request_code(&mut self, _: &PhoneNumber) -> Result<SentCode, LoginError> {
            unreachable!("no code in these tests")
        }
        async fn resend_code(&mut self) -> Result<SentCode, LoginError> {
            unreachable!("no code in these tests")
        }
        async fn submit_code(&mut self, _: &str) -> Result<CodeOutcome, LoginError> {
            unreachable!("no code in these tests")
        }
        async fn submit_password(&mut self, password: &str) -> Result<Me, LoginError> {
            self.passwords.push(password.to_owned());
            Ok(me())
        }
        async fn export_login_token(&mut self) -> Result<QrOutcome, LoginError> {
            Ok(self
                .exports
                .pop_front()
                .expect("an export the test did not expect"))
        }
        async fn wait_login_token(&mut self, timeout: Duration) -> Result<bool, LoginError> {
            self.waits.push(timeout);
            Ok(self.scans.pop_front().unwrap_or(false))
        }
    }

    #[test]
    fn a_token_is_waited_on_until_it_expires_then_exported_again() {
        assert_eq!(
            qr_next(30_000, 0),
            QrNext::WaitForScan { at_most_ms: 30_000 }
        );
        assert_eq!(
            qr_next(30_000, 29_999),
            QrNext::WaitForScan { at_most_ms: 1 }
        );
        assert_eq!(qr_next(30_000, 30_000), QrNext::Export);
        assert_eq!(qr_next(30_000, 45_000), QrNext::Export);
    }

    #[test]
    fn the_qr_url_is_the_token_in_base64url_without_padding() {
        let token = LoginToken {
            token: vec![0xfb, 0xff, 0x01],
            expires_in_seconds: 30,
        };
        assert_eq!(token.url(), "tg://login?token=-_8B");
        assert_eq!(
            LoginToken::token_of_url(&token.url()),
            Some(token.token.clone())
        );
        assert_eq!(LoginToken::token_of_url("https://t.me/x"), None);
        assert!(!format!("{token:?}").contains("251"));
    }

    #[test]
    fn an_expired_token_is_replaced_and_a_scan_signs_in() {
        run(async {
            let backend = ScriptedQr {
                exports: [token(1, 30), token(2, 30), QrOutcome::SignedIn(me())].into(),
                scans: [true].into(),
                ..ScriptedQr::default()
            };
            let now = AtomicU64::new(1_000);
            let mut flow = LoginFlow::new(backend);
            let first = flow
                .start_qr(now.load(Ordering::SeqCst))
                .await
                .unwrap()
                .clone();
            let LoginState::AwaitingQrScan { url: first_url, .. } = first else {
                panic!("{first:?}")
            };
            // Expired by the time it is followed: a new token replaces it, without a wait.
            now.store(31_000, Ordering::SeqCst);
            let clock = || now.load(Ordering::SeqCst);
            match flow.follow_qr(&clock, Duration::MAX).await.unwrap() {
                LoginState::AwaitingQrScan { url, .. } => assert_ne!(url, &first_url),
                other => panic!("{other:?}"),
            }
            // The phone scans the new one: the next export is the sign-in.
            assert!(matches!(
                flow.follow_qr(&clock, Duration::MAX).await.unwrap(),
                LoginState::SignedIn(_)
            ));
            let backend = flow.into_backend();
            assert_eq!(backend.waits, [Duration::from_secs(30)]);
        })
    }

    #[test]
    fn a_wait_that_ends_early_without_a_scan_keeps_the_token() {
        run(async {
            let backend = ScriptedQr {
                exports: [token(1, 30)].into(),
                scans: [false].into(),
                ..ScriptedQr::default()
            };
            let mut flow = LoginFlow::new(backend);
            flow.start_qr(0).await.unwrap();
            let clock = || 10_000;
            assert!(matches!(
                flow.follow_qr(&clock, Duration::MAX).await.unwrap(),
                LoginState::AwaitingQrScan { .. }
            ));
            assert_eq!(flow.into_backend().waits, [Duration::from_secs(20)]);
        })
    }

    #[test]
    fn a_bounded_wait_keeps_the_token_and_waits_no_longer_than_asked() {
        run(async {
            let backend = ScriptedQr {
                exports: [token(1, 30)].into(),
                scans: [false].into(),
                ..ScriptedQr::default()
            };
            let mut flow = LoginFlow::new(backend);
            let first = flow.start_qr(0).await.unwrap().clone();
            let LoginState::AwaitingQrScan { url, .. } = first else {
                panic!("{first:?}")
            };
            let clock = || 8_500;
            // The same token, with the seconds it has left (21.5, rounded up).
            assert_eq!(
                flow.follow_qr(&clock, Duration::from_secs(8))
                    .await
                    .unwrap(),
                &LoginState::AwaitingQrScan {
                    url,
                    expires_in_seconds: 22
                }
            );
            assert_eq!(flow.into_backend().waits, [Duration::from_secs(8)]);
        })
    }

    #[test]
    fn a_scan_of_a_two_step_account_asks_for_the_password() {
        run(async {
            let backend = ScriptedQr {
                exports: [
                    token(1, 30),
                    QrOutcome::PasswordRequired {
                        hint: Some("pet".into()),
                    },
                ]
                .into(),
                scans: [true].into(),
                ..ScriptedQr::default()
            };
            let mut flow = LoginFlow::new(backend);
            flow.start_qr(0).await.unwrap();
            let clock = || 1_000;
            assert_eq!(
                flow.follow_qr(&clock, Duration::MAX).await.unwrap(),
                &LoginState::AwaitingPassword {
                    phone: None,
                    hint: Some("pet".into())
                }
            );
            // Out of order now: the QR step is over.
            assert!(matches!(
                flow.follow_qr(&clock, Duration::MAX).await,
                Err(LoginStepError::OutOfOrder { .. })
            ));
            assert!(matches!(
                flow.submit_password("secret").await.unwrap(),
                LoginState::SignedIn(_)
            ));
        })
    }
}
