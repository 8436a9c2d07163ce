//! Logging a session in: the port's [`LoginBackend`] over the simulated world.
//!
//! Follows core.telegram.org/api/auth: `auth.sendCode` sends a code even to a number with no
//! account, and `auth.signIn` then answers `auth.authorizationSignUpRequired` (so an unknown
//! number is [`LoginError::SignUpRequired`] at the code step, never at the phone step);
//! `PHONE_NUMBER_INVALID` and `PHONE_NUMBER_BANNED` come from `auth.sendCode`;
//! `PHONE_CODE_INVALID`, `PHONE_CODE_EXPIRED`, `SESSION_PASSWORD_NEEDED` (with the password
//! hint from `account.getPassword`) and `PASSWORD_HASH_INVALID` from the later steps. A new code
//! replaces the previous one, and a code is good for one sign-in.
//!
//! QR login follows core.telegram.org/api/qr-login: `auth.exportLoginToken` gives a token that
//! expires after [`crate::SimParams::login_token_lifetime_seconds`] (30 s, as the page says); a
//! phone of the account accepts it (`auth.acceptLoginToken`, [`SimWorld::accept_login_token`]),
//! which sends the exporting session `updateLoginToken`; the session's next export then answers
//! `auth.loginTokenSuccess`, or `SESSION_PASSWORD_NEEDED` for an account with two-step
//! verification, whose password step is the same as after a code. A new export replaces the
//! session's earlier token. The simulated world has one DC, so `auth.loginTokenMigrateTo` never
//! comes.

use async_trait::async_trait;
use jobbot_core::ids::{ChatId, PhoneNumber, SessionName};
use std::sync::Arc;

use jobbot_core::telegram::{
    CodeDelivery, CodeOutcome, LoginBackend, LoginError, LoginToken, Me, QrOutcome, SentCode,
};
use rand::Rng;
use tokio::time::{Duration, Instant};

use crate::connector::SessionLock;
use crate::limits::whole_seconds_until;
use crate::world::{IssuedCode, IssuedLoginToken, SimWorld, WorldState};

/// One login attempt. Holds the session lock until dropped.
pub struct SimLoginBackend {
    world: SimWorld,
    session: SessionName,
    _lock: SessionLock,
    phone: Option<PhoneNumber>,
    awaiting_password_for: Option<ChatId>,
    /// How the last code went out, for `resend_code`.
    sent: Option<SentCode>,
    /// The QR-login token this login showed last.
    login_token: Option<Vec<u8>>,
}

impl SimLoginBackend {
    pub(crate) fn new(world: SimWorld, session: SessionName, lock: SessionLock) -> Self {
        Self {
            world,
            session,
            _lock: lock,
            phone: None,
            awaiting_password_for: None,
            sent: None,
            login_token: None,
        }
    }

    async fn round_trip(&self) {
        tokio::time::sleep(self.world.call_latency()).await;
    }
}

#[async_trait]
impl LoginBackend for SimLoginBackend {
    async fn request_code(&mut self, phone: &PhoneNumber) -> Result<SentCode, LoginError> {
        self.round_trip().await;
        let sent = self.world.with(|world| {
            let now = Instant::now();
            world.check_login_flood(phone, now)?;
            if world.invalid_phones.contains(phone) {
                return Err(LoginError::InvalidPhone);
            }
            if world.banned_phones.contains(phone) {
                return Err(LoginError::PhoneBanned);
            }
            let per_hour = world.params.login_codes_per_hour;
            let wait = world.params.login_flood_wait_seconds;
            let attempts = world.login_attempts.entry(phone.clone()).or_default();
            attempts
                .codes_requested
                .retain(|at| now.duration_since(*at) < Duration::from_secs(3_600));
            if attempts.codes_requested.len() >= per_hour as usize {
                attempts.blocked_until = Some(now + Duration::from_secs(u64::from(wait)));
                return Err(LoginError::FloodWait { seconds: wait });
            }
            attempts.codes_requested.push(now);
            let code = format!("{:05}", world.rng.random_range(0..100_000));
            world.login_codes.insert(
                phone.clone(),
                IssuedCode {
                    code,
                    issued_at: now,
                },
            );
            Ok(world.first_delivery(phone))
        })?;
        self.phone = Some(phone.clone());
        self.awaiting_password_for = None;
        self.sent = Some(sent.clone());
        Ok(sent)
    }

    /// `auth.resendCode` sends the same code the way the last answer's `next_type` named, and
    /// `SEND_CODE_UNAVAILABLE` when it named none (core.telegram.org/method/auth.resendCode).
    /// Here the ladder is app → SMS → call, as official clients show it; the code keeps its
    /// lifetime from the first request.
    async fn resend_code(&mut self) -> Result<SentCode, LoginError> {
        self.round_trip().await;
        let (Some(phone), Some(sent)) = (self.phone.clone(), self.sent.clone()) else {
            return Err(LoginError::Other {
                message: "no code was requested in this login".to_owned(),
            });
        };
        let Some(delivery) = sent.next else {
            return Err(LoginError::ResendUnavailable);
        };
        self.world.with(|world| {
            world.check_login_flood(&phone, Instant::now())?;
            if !world.login_codes.contains_key(&phone) {
                return Err(LoginError::CodeExpired);
            }
            Ok(())
        })?;
        let resent = SentCode {
            delivery,
            length: sent.length,
            next: next_delivery(delivery),
            resend_after_seconds: None,
        };
        self.sent = Some(resent.clone());
        Ok(resent)
    }

    async fn submit_code(&mut self, code: &str) -> Result<CodeOutcome, LoginError> {
        self.round_trip().await;
        let Some(phone) = self.phone.clone() else {
            return Err(LoginError::Other {
                message: "no code was requested in this login".to_owned(),
            });
        };
        let session = self.session.clone();
        let outcome = self.world.with(|world| {
            let now = Instant::now();
            world.check_login_flood(&phone, now)?;
            let lifetime = Duration::from_secs(world.params.login_code_lifetime_seconds);
            let Some(issued) = world.login_codes.get(&phone) else {
                return Err(LoginError::CodeExpired);
            };
            if now.duration_since(issued.issued_at) >= lifetime {
                world.login_codes.remove(&phone);
                return Err(LoginError::CodeExpired);
            }
            if issued.code != code {
                world.count_wrong_attempt(&phone, now);
                return Err(LoginError::InvalidCode);
            }
            world.login_codes.remove(&phone);
            let Some(user) = world.phones.get(&phone).copied() else {
                return Err(LoginError::SignUpRequired);
            };
            if let Some(two_factor) = &world.user(user).two_factor {
                return Ok(Err((user, two_factor.hint.clone())));
            }
            Ok(Ok(world.finish_login(&session, &phone, user)))
        })?;
        match outcome {
            Ok(me) => Ok(CodeOutcome::SignedIn(me)),
            Err((user, hint)) => {
                self.awaiting_password_for = Some(user);
                Ok(CodeOutcome::PasswordRequired { hint })
            }
        }
    }

    async fn submit_password(&mut self, password: &str) -> Result<Me, LoginError> {
        self.round_trip().await;
        let (Some(user), Some(phone)) = (self.awaiting_password_for, self.phone.clone()) else {
            return Err(LoginError::Other {
                message: "no password is expected in this login now".to_owned(),
            });
        };
        let session = self.session.clone();
        let me = self.world.with(|world| {
            let now = Instant::now();
            world.check_login_flood(&phone, now)?;
            let matches = world
                .user(user)
                .two_factor
                .as_ref()
                .is_some_and(|two_factor| two_factor.password == password);
            if !matches {
                world.count_wrong_attempt(&phone, now);
                return Err(LoginError::InvalidPassword);
            }
            Ok(world.finish_login(&session, &phone, user))
        })?;
        self.awaiting_password_for = None;
        Ok(me)
    }

    async fn export_login_token(&mut self) -> Result<QrOutcome, LoginError> {
        self.round_trip().await;
        let session = self.session.clone();
        let shown = self.login_token.clone();
        let export = self.world.with(|world| {
            let now = Instant::now();
            let accepted = shown
                .as_ref()
                .and_then(|token| world.login_tokens.get(token))
                .and_then(|issued| issued.accepted_by);
            world
                .login_tokens
                .retain(|_, issued| issued.session != session);
            if let Some(user) = accepted {
                let phone = world
                    .phones
                    .iter()
                    .find(|(_, owner)| **owner == user)
                    .map(|(phone, _)| phone.clone());
                if let Some(two_factor) = &world.user(user).two_factor {
                    return Export::PasswordRequired {
                        user,
                        phone,
                        hint: two_factor.hint.clone(),
                    };
                }
                return Export::SignedIn(match phone {
                    Some(phone) => world.finish_login(&session, &phone, user),
                    None => {
                        world.log_in(&session, user);
                        world.me_of(user)
                    }
                });
            }
            let token: Vec<u8> = (0..16).map(|_| world.rng.random::<u8>()).collect();
            world.login_tokens.insert(
                token.clone(),
                IssuedLoginToken {
                    session: session.clone(),
                    issued_at: now,
                    accepted_by: None,
                    accepted: Arc::new(tokio::sync::Notify::new()),
                },
            );
            Export::Token(LoginToken {
                token,
                expires_in_seconds: u32::try_from(world.params.login_token_lifetime_seconds)
                    .unwrap_or(u32::MAX),
            })
        });
        Ok(match export {
            Export::Token(token) => {
                self.login_token = Some(token.token.clone());
                QrOutcome::Token(token)
            }
            Export::SignedIn(me) => {
                self.login_token = None;
                QrOutcome::SignedIn(me)
            }
            Export::PasswordRequired { user, phone, hint } => {
                self.login_token = None;
                self.awaiting_password_for = Some(user);
                self.phone = phone;
                QrOutcome::PasswordRequired { hint }
            }
        })
    }

    async fn wait_login_token(&mut self, timeout: Duration) -> Result<bool, LoginError> {
        let Some(token) = self.login_token.clone() else {
            return Err(LoginError::Other {
                message: "no QR-login token was exported in this login".to_owned(),
            });
        };
        let Some(accepted) = self.world.with(|world| {
            world
                .login_tokens
                .get(&token)
                .map(|issued| Arc::clone(&issued.accepted))
        }) else {
            return Ok(false);
        };
        let _ = tokio::time::timeout(timeout, accepted.notified()).await;
        Ok(self.world.with(|world| {
            world
                .login_tokens
                .get(&token)
                .is_some_and(|issued| issued.accepted_by.is_some())
        }))
    }
}

/// What an export found for the session's accepted token.
enum Export {
    Token(LoginToken),
    SignedIn(Me),
    PasswordRequired {
        user: ChatId,
        phone: Option<PhoneNumber>,
        hint: Option<String>,
    },
}

/// A phone's `auth.acceptLoginToken` refused (core.telegram.org/method/auth.acceptLoginToken).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum QrScanError {
    /// `AUTH_TOKEN_INVALID`: no login shows this token (or it is not a `tg://login` URL).
    #[error("no login shows this token (AUTH_TOKEN_INVALID)")]
    Invalid,
    /// `AUTH_TOKEN_EXPIRED`.
    #[error("the token has expired (AUTH_TOKEN_EXPIRED)")]
    Expired,
    /// `AUTH_TOKEN_ALREADY_ACCEPTED`.
    #[error("the token was already accepted (AUTH_TOKEN_ALREADY_ACCEPTED)")]
    AlreadyAccepted,
    /// The phone number has no account, or a banned one: nothing to scan with.
    #[error("no usable account has this phone number")]
    NoAccount,
}

impl SimWorld {
    /// The account of `phone` scans the QR code of `url` (`tg://login?token=…`) with its phone
    /// and accepts the login (`auth.acceptLoginToken`).
    pub fn accept_login_token(&self, phone: &PhoneNumber, url: &str) -> Result<(), QrScanError> {
        let token = LoginToken::token_of_url(url).ok_or(QrScanError::Invalid)?;
        self.with(|world| {
            let user = world
                .phones
                .get(phone)
                .copied()
                .filter(|user| world.users.get(user).is_some_and(|u| u.dead.is_none()))
                .ok_or(QrScanError::NoAccount)?;
            let lifetime = Duration::from_secs(world.params.login_token_lifetime_seconds);
            let issued = world
                .login_tokens
                .get_mut(&token)
                .ok_or(QrScanError::Invalid)?;
            if Instant::now().duration_since(issued.issued_at) >= lifetime {
                world.login_tokens.remove(&token);
                return Err(QrScanError::Expired);
            }
            if issued.accepted_by.is_some() {
                return Err(QrScanError::AlreadyAccepted);
            }
            issued.accepted_by = Some(user);
            // A permit stays stored when nobody waits yet: the update is not lost.
            issued.accepted.notify_one();
            Ok(())
        })
    }
}

/// After `delivery`, the way a resend uses (see `resend_code`).
fn next_delivery(delivery: CodeDelivery) -> Option<CodeDelivery> {
    match delivery {
        CodeDelivery::App => Some(CodeDelivery::Sms),
        CodeDelivery::Sms => Some(CodeDelivery::Call),
        _ => None,
    }
}

impl WorldState {
    /// Telegram sends the first code to the account's other logged-in sessions when it has
    /// any (`auth.sentCodeTypeApp`), else by SMS (core.telegram.org/api/auth).
    fn first_delivery(&self, phone: &PhoneNumber) -> SentCode {
        let logged_in_elsewhere = self.phones.get(phone).is_some_and(|user| {
            self.users
                .get(user)
                .is_some_and(|record| record.dead.is_none())
                && self
                    .sessions
                    .values()
                    .any(|session| session.user == Some(*user) && session.dead.is_none())
        });
        let delivery = if logged_in_elsewhere {
            CodeDelivery::App
        } else {
            CodeDelivery::Sms
        };
        SentCode {
            delivery,
            length: Some(5),
            next: next_delivery(delivery),
            resend_after_seconds: None,
        }
    }

    fn check_login_flood(&self, phone: &PhoneNumber, now: Instant) -> Result<(), LoginError> {
        match self
            .login_attempts
            .get(phone)
            .and_then(|attempts| attempts.blocked_until)
        {
            Some(until) if now < until => Err(LoginError::FloodWait {
                seconds: whole_seconds_until(now, until),
            }),
            _ => Ok(()),
        }
    }

    /// Wrong codes and wrong passwords count together; past the limit the phone waits
    /// (Telegram answers `FLOOD_WAIT_X` to repeated guesses).
    fn count_wrong_attempt(&mut self, phone: &PhoneNumber, now: Instant) {
        let limit = self.params.login_max_wrong_attempts;
        let wait = Duration::from_secs(u64::from(self.params.login_flood_wait_seconds));
        let attempts = self.login_attempts.entry(phone.clone()).or_default();
        attempts.wrong_attempts += 1;
        if attempts.wrong_attempts >= limit {
            attempts.wrong_attempts = 0;
            attempts.blocked_until = Some(now + wait);
        }
    }

    fn finish_login(&mut self, session: &SessionName, phone: &PhoneNumber, user: ChatId) -> Me {
        if let Some(attempts) = self.login_attempts.get_mut(phone) {
            attempts.wrong_attempts = 0;
        }
        self.log_in(session, user);
        self.me_of(user)
    }
}
