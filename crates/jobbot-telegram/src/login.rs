//! [`GrammersLogin`]: one login attempt on one locked session.
//!
//! `auth.sendCode` and `auth.signIn` are invoked raw rather than through grammers'
//! `request_login_code` / `sign_in`, because `sign_in` folds every `PHONE_CODE_*` error into one
//! `InvalidCode` (so an expired code could not be told from a mistyped one) and
//! `request_login_code` panics on the `sentCodeSuccess` / `sentCodePaymentRequired` answers. The
//! 2FA step uses grammers' `check_password` (the SRP computation), with a password description
//! checked first so that its `unwrap`s cannot fire. After a raw sign-in this module does what
//! grammers' private `complete_login` does: cache the self user and the update state.
//!
//! QR login (core.telegram.org/api/qr-login) has no grammers helper: `auth.exportLoginToken`
//! is invoked raw; `auth.loginTokenMigrateTo` moves the session's home DC (as `PHONE_MIGRATE`
//! does for a code) and `auth.importLoginToken` is asked there; `updateLoginToken` is read from
//! the pool's update channel, which a login otherwise leaves unread.
//!
//! Codes and passwords are passed through and never logged or stored.

use std::sync::Arc;

use async_trait::async_trait;
use grammers_client::client::PasswordToken;
use grammers_client::{Client, InvocationError, SignInError, tl};
use grammers_mtsender::SenderPoolHandle;
use grammers_session::Session;
use grammers_session::types::{PeerAuth, PeerInfo};
use grammers_session::updates::UpdatesLike;
use jobbot_core::ids::{PhoneNumber, SessionName};
use jobbot_core::telegram::{
    CodeOutcome, LoginBackend, LoginError, LoginToken, Me, QR_TOKEN_DOCUMENTED_LIFETIME_SECONDS,
    QrOutcome, SentCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connector::Connection;
use crate::convert::{me_from_user, sent_code_of};
use crate::errors::map_login_error;
use crate::session_store::SessionStore;

/// How many dialogs to load once after login so the session knows the access hashes of the
/// chats the account is in (grammers' advice for resolving update gaps).
const DIALOGS_TO_CACHE_AFTER_LOGIN: usize = 100;

pub struct GrammersLogin {
    session: SessionName,
    api_id: i32,
    api_hash: String,
    client: Client,
    store: Arc<SessionStore>,
    handle: SenderPoolHandle,
    /// Read only by a QR login, for `updateLoginToken`; a code login never looks at it.
    updates: mpsc::Receiver<UpdatesLike>,
    runner: Option<JoinHandle<()>>,
    step: Step,
}

enum Step {
    Start,
    CodeSent {
        phone: String,
        phone_code_hash: String,
    },
    /// `None` after a wrong password: the SRP parameters are single-use, so the next attempt
    /// fetches fresh ones.
    PasswordRequired {
        token: Option<PasswordToken>,
    },
    Done,
}

impl GrammersLogin {
    pub(crate) fn new(
        session: SessionName,
        api_id: i32,
        api_hash: String,
        connection: Connection,
    ) -> Self {
        Self {
            session,
            api_id,
            api_hash,
            client: connection.client,
            store: connection.store,
            handle: connection.handle,
            updates: connection.updates,
            runner: Some(connection.runner),
            step: Step::Start,
        }
    }

    async fn send_code(&self, phone: &str) -> Result<tl::enums::auth::SentCode, InvocationError> {
        let request = tl::functions::auth::SendCode {
            phone_number: phone.to_owned(),
            api_id: self.api_id,
            api_hash: self.api_hash.clone(),
            settings: tl::types::CodeSettings {
                allow_flashcall: false,
                current_number: false,
                allow_app_hash: false,
                allow_missed_call: false,
                allow_firebase: false,
                unknown_number: false,
                logout_tokens: None,
                token: None,
                app_sandbox: None,
            }
            .into(),
        };
        match self.client.invoke(&request).await {
            // 303 PHONE_MIGRATE_X / NETWORK_MIGRATE_X: the account lives on DC X. Switch the
            // home DC, as grammers' request_login_code does, and ask there once.
            Err(InvocationError::Rpc(error)) if error.code == 303 && error.value.is_some() => {
                self.move_home_dc(error.value.unwrap_or_default() as i32)
                    .await?;
                self.client.invoke(&request).await
            }
            other => other,
        }
    }

    /// Makes `new_dc` the session's home DC: the next call goes there (with that DC's own key).
    async fn move_home_dc(&self, new_dc: i32) -> Result<(), InvocationError> {
        let old_dc = self
            .store
            .home_dc_id()
            .map_err(|e| InvocationError::Session(Box::new(e)))?;
        self.handle.disconnect_from_dc(old_dc);
        self.store
            .set_home_dc_id(new_dc)
            .await
            .map_err(|e| InvocationError::Session(Box::new(e)))
    }

    /// `SESSION_PASSWORD_NEEDED` after a QR scan: the password step, as after a code.
    async fn qr_password_step(&mut self) -> Result<QrOutcome, LoginError> {
        let (token, hint) = self.fresh_password_token().await?;
        self.step = Step::PasswordRequired { token: Some(token) };
        Ok(QrOutcome::PasswordRequired { hint })
    }

    /// `auth.exportLoginToken`, or after a migration `auth.importLoginToken` on the new home DC.
    async fn invoke_login_token<R>(&mut self, request: &R) -> Result<QrAnswer, QrFailure>
    where
        R: tl::RemoteCall<Return = tl::enums::auth::LoginToken>,
    {
        match self.client.invoke(request).await {
            Ok(answer) => Ok(qr_answer(answer, unix_now())),
            Err(error) if error.is("SESSION_PASSWORD_NEEDED") => Err(QrFailure::PasswordNeeded),
            Err(error) => Err(QrFailure::Login(map_login_error(&error))),
        }
    }

    /// What grammers' `complete_login` does after `auth.signIn`, then the common finish.
    async fn complete_raw_sign_in(
        &mut self,
        authorization: tl::types::auth::Authorization,
    ) -> Result<Me, LoginError> {
        let tl::enums::User::User(user) = &authorization.user else {
            return Err(LoginError::Other {
                message: "Telegram signed in an empty user".into(),
            });
        };
        let state = self
            .client
            .invoke(&tl::functions::updates::GetState {})
            .await
            .ok();
        self.store
            .cache_peer(PeerInfo::User {
                id: user.id,
                auth: user.access_hash.map(PeerAuth::from_hash),
                bot: Some(user.bot),
                is_self: Some(true),
            })
            .await
            .map_err(storage_error)?;
        if let Some(tl::enums::updates::State::State(state)) = state {
            self.store
                .set_update_state(crate::updates::starting_position(&state))
                .await
                .map_err(storage_error)?;
        }
        let me = me_from_user(user).ok_or(LoginError::Other {
            message: "Telegram signed in an invalid user".into(),
        })?;
        self.finish(me).await
    }

    /// Marks the session logged in, warms the peer cache, and closes the session so the engine
    /// can open it right away (the lock is released here, not at some later drop).
    async fn finish(&mut self, me: Me) -> Result<Me, LoginError> {
        self.store.mark_logged_in().await.map_err(storage_error)?;
        let mut dialogs = self
            .client
            .iter_dialogs()
            .limit(DIALOGS_TO_CACHE_AFTER_LOGIN);
        loop {
            match dialogs.next().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    // Only a warm-up: the account works without it.
                    tracing::warn!(target: "telegram", session = %self.session, %error, "could not load dialogs after login");
                    break;
                }
            }
        }
        self.step = Step::Done;
        if let Some(runner) = self.runner.take() {
            Connection::shut_down(&self.store, &self.handle, runner).await;
        }
        tracing::info!(target: "telegram", session = %self.session, user_id = %me.user_id, "logged in");
        Ok(me)
    }

    async fn fresh_password_token(&self) -> Result<(PasswordToken, Option<String>), LoginError> {
        let tl::enums::account::Password::Password(password) = self
            .client
            .invoke(&tl::functions::account::GetPassword {})
            .await
            .map_err(|error| map_login_error(&error))?;
        // grammers' check_password unwraps these; an account without them has no 2FA password.
        if password.current_algo.is_none() || password.srp_b.is_none() || password.srp_id.is_none()
        {
            return Err(LoginError::Other {
                message: "Telegram asked for a 2FA password but described none".into(),
            });
        }
        let hint = password.hint.clone();
        Ok((PasswordToken::new(password), hint))
    }
}

/// What `auth.exportLoginToken` / `auth.importLoginToken` answered.
#[derive(Debug)]
enum QrAnswer {
    Show(LoginToken),
    /// `auth.loginTokenMigrateTo`: the account lives on `dc_id`; import `token` there.
    MigrateTo {
        dc_id: i32,
        token: Vec<u8>,
    },
    /// `auth.loginTokenSuccess`.
    Authorized(Box<tl::enums::auth::Authorization>),
}

enum QrFailure {
    PasswordNeeded,
    Login(LoginError),
}

/// Reads Telegram's answer. `expires` is a date on Telegram's clock; seconds from `now_unix`
/// (this machine's clock) are shown, and a date this clock already sees as past (a clock ahead
/// of Telegram's) counts as the documented lifetime rather than an instant expiry.
fn qr_answer(answer: tl::enums::auth::LoginToken, now_unix: i64) -> QrAnswer {
    match answer {
        tl::enums::auth::LoginToken::Token(token) => {
            let left = i64::from(token.expires) - now_unix;
            let expires_in_seconds = if left > 0 {
                u32::try_from(left).unwrap_or(u32::MAX)
            } else {
                QR_TOKEN_DOCUMENTED_LIFETIME_SECONDS
            };
            QrAnswer::Show(LoginToken {
                token: token.token,
                expires_in_seconds,
            })
        }
        tl::enums::auth::LoginToken::MigrateTo(migrate) => QrAnswer::MigrateTo {
            dc_id: migrate.dc_id,
            token: migrate.token,
        },
        tl::enums::auth::LoginToken::Success(success) => {
            QrAnswer::Authorized(Box::new(success.authorization))
        }
    }
}

/// Whether updates carry `updateLoginToken`: a phone accepted the token shown.
fn announces_login_token(updates: &UpdatesLike) -> bool {
    let is_token = |update: &tl::enums::Update| matches!(update, tl::enums::Update::LoginToken);
    match updates {
        UpdatesLike::Updates(tl::enums::Updates::UpdateShort(short)) => is_token(&short.update),
        UpdatesLike::Updates(tl::enums::Updates::Updates(all)) => all.updates.iter().any(is_token),
        UpdatesLike::Updates(tl::enums::Updates::Combined(all)) => all.updates.iter().any(is_token),
        _ => false,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// The hash and the delivery of a code Telegram sent (`auth.sendCode` / `auth.resendCode`).
fn accepted_code(sent: tl::enums::auth::SentCode) -> Result<(String, SentCode), LoginError> {
    match sent {
        tl::enums::auth::SentCode::Code(code) => {
            let sent = sent_code_of(&code);
            Ok((code.phone_code_hash, sent))
        }
        tl::enums::auth::SentCode::PaymentRequired(_) => Err(LoginError::Other {
            message:
                "Telegram asks for a payment to send this code; log in with an official app first"
                    .into(),
        }),
        // Only answers a request carrying future-auth tokens, which this client never sends.
        tl::enums::auth::SentCode::Success(_) => Err(LoginError::Other {
            message: "Telegram answered sendCode with an unexpected sign-in".into(),
        }),
    }
}

fn storage_error(error: crate::session_store::SessionStoreError) -> LoginError {
    LoginError::Other {
        message: format!("could not save the session: {error}"),
    }
}

fn out_of_order(expected: &str) -> LoginError {
    LoginError::Other {
        message: format!("login step out of order: {expected}"),
    }
}

impl Drop for GrammersLogin {
    fn drop(&mut self) {
        if self.runner.is_some() {
            // An abandoned login: stop the pool; the session's lock goes when the runner ends.
            self.handle.quit();
        }
    }
}

#[async_trait]
impl LoginBackend for GrammersLogin {
    async fn request_code(&mut self, phone: &PhoneNumber) -> Result<SentCode, LoginError> {
        if matches!(self.step, Step::Done) {
            return Err(out_of_order("this login already finished"));
        }
        tracing::info!(target: "telegram", session = %self.session, phone = %phone, "requesting a login code");
        let sent = self
            .send_code(phone.as_str())
            .await
            .map_err(|error| map_login_error(&error))?;
        let (phone_code_hash, sent) = accepted_code(sent)?;
        self.step = Step::CodeSent {
            phone: phone.as_str().to_owned(),
            phone_code_hash,
        };
        Ok(sent)
    }

    async fn resend_code(&mut self) -> Result<SentCode, LoginError> {
        let Step::CodeSent {
            phone,
            phone_code_hash,
        } = &self.step
        else {
            return Err(out_of_order("request a code first"));
        };
        let request = tl::functions::auth::ResendCode {
            phone_number: phone.clone(),
            phone_code_hash: phone_code_hash.clone(),
            reason: None,
        };
        let answer = self
            .client
            .invoke(&request)
            .await
            .map_err(|error| map_login_error(&error))?;
        let (phone_code_hash, sent) = accepted_code(answer)?;
        self.step = Step::CodeSent {
            phone: phone.clone(),
            phone_code_hash,
        };
        Ok(sent)
    }

    async fn submit_code(&mut self, code: &str) -> Result<CodeOutcome, LoginError> {
        let Step::CodeSent {
            phone,
            phone_code_hash,
        } = &self.step
        else {
            return Err(out_of_order("request a code first"));
        };
        let request = tl::functions::auth::SignIn {
            phone_number: phone.clone(),
            phone_code_hash: phone_code_hash.clone(),
            phone_code: Some(code.trim().to_owned()),
            email_verification: None,
        };
        match self.client.invoke(&request).await {
            Ok(tl::enums::auth::Authorization::Authorization(authorization)) => self
                .complete_raw_sign_in(authorization)
                .await
                .map(CodeOutcome::SignedIn),
            Ok(tl::enums::auth::Authorization::SignUpRequired(_)) => {
                Err(LoginError::SignUpRequired)
            }
            Err(error) if error.is("SESSION_PASSWORD_NEEDED") => {
                let (token, hint) = self.fresh_password_token().await?;
                self.step = Step::PasswordRequired { token: Some(token) };
                Ok(CodeOutcome::PasswordRequired { hint })
            }
            Err(error) => Err(map_login_error(&error)),
        }
    }

    async fn submit_password(&mut self, password: &str) -> Result<Me, LoginError> {
        let Step::PasswordRequired { token } = &mut self.step else {
            return Err(out_of_order("the password comes after the code"));
        };
        let token = match token.take() {
            Some(token) => token,
            None => self.fresh_password_token().await?.0,
        };
        match self.client.check_password(token, password.as_bytes()).await {
            Ok(user) => {
                let tl::enums::User::User(raw) = &user.raw else {
                    return Err(LoginError::Other {
                        message: "Telegram signed in an empty user".into(),
                    });
                };
                let me = me_from_user(raw).ok_or(LoginError::Other {
                    message: "Telegram signed in an invalid user".into(),
                })?;
                self.finish(me).await
            }
            Err(SignInError::InvalidPassword(_)) => Err(LoginError::InvalidPassword),
            Err(SignInError::Other(error)) => Err(map_login_error(&error)),
            Err(SignInError::InvalidCode) => Err(LoginError::InvalidCode),
            Err(SignInError::SignUpRequired) => Err(LoginError::SignUpRequired),
            Err(SignInError::PasswordRequired(_)) => Err(LoginError::InvalidPassword),
        }
    }

    async fn export_login_token(&mut self) -> Result<QrOutcome, LoginError> {
        if matches!(self.step, Step::Done | Step::PasswordRequired { .. }) {
            return Err(out_of_order("the QR code comes before the password"));
        }
        let request = tl::functions::auth::ExportLoginToken {
            api_id: self.api_id,
            api_hash: self.api_hash.clone(),
            except_ids: Vec::new(),
        };
        let mut answer = self.invoke_login_token(&request).await;
        if let Ok(QrAnswer::MigrateTo { dc_id, token }) = answer {
            tracing::info!(target: "telegram", session = %self.session, dc_id, "QR login continues on the account's DC");
            self.move_home_dc(dc_id)
                .await
                .map_err(|error| map_login_error(&error))?;
            answer = self
                .invoke_login_token(&tl::functions::auth::ImportLoginToken { token })
                .await;
        }
        match answer {
            Ok(QrAnswer::Show(token)) => Ok(QrOutcome::Token(token)),
            Ok(QrAnswer::Authorized(authorization)) => match *authorization {
                tl::enums::auth::Authorization::Authorization(authorization) => self
                    .complete_raw_sign_in(authorization)
                    .await
                    .map(QrOutcome::SignedIn),
                tl::enums::auth::Authorization::SignUpRequired(_) => {
                    Err(LoginError::SignUpRequired)
                }
            },
            Ok(QrAnswer::MigrateTo { .. }) => Err(LoginError::Other {
                message: "Telegram moved the QR login to another DC twice".into(),
            }),
            Err(QrFailure::PasswordNeeded) => self.qr_password_step().await,
            Err(QrFailure::Login(error)) => Err(error),
        }
    }

    async fn wait_login_token(&mut self, timeout: std::time::Duration) -> Result<bool, LoginError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.updates.recv()).await {
                Err(_elapsed) => return Ok(false),
                Ok(None) => {
                    return Err(LoginError::Network {
                        message: "the connection to Telegram closed".into(),
                    });
                }
                Ok(Some(updates)) if announces_login_token(&updates) => return Ok(true),
                Ok(Some(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_answer(expires: i32) -> tl::enums::auth::LoginToken {
        tl::types::auth::LoginToken {
            expires,
            token: vec![1, 2, 3],
        }
        .into()
    }

    #[test]
    fn a_token_expires_in_the_seconds_left_on_this_clock() {
        match qr_answer(token_answer(1_000_030), 1_000_000) {
            QrAnswer::Show(token) => {
                assert_eq!(token.token, [1, 2, 3]);
                assert_eq!(token.expires_in_seconds, 30);
                assert_eq!(token.url(), "tg://login?token=AQID");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_already_past_on_a_fast_clock_gets_the_documented_lifetime() {
        match qr_answer(token_answer(1_000_000), 1_000_040) {
            QrAnswer::Show(token) => {
                assert_eq!(
                    token.expires_in_seconds,
                    QR_TOKEN_DOCUMENTED_LIFETIME_SECONDS
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_migration_names_the_dc_and_the_token_to_import() {
        let answer = tl::types::auth::LoginTokenMigrateTo {
            dc_id: 4,
            token: vec![9, 9],
        };
        match qr_answer(answer.into(), 0) {
            QrAnswer::MigrateTo { dc_id, token } => assert_eq!((dc_id, token), (4, vec![9, 9])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn success_carries_the_authorization() {
        let answer = tl::types::auth::LoginTokenSuccess {
            authorization: tl::types::auth::AuthorizationSignUpRequired {
                terms_of_service: None,
            }
            .into(),
        };
        match qr_answer(answer.into(), 0) {
            QrAnswer::Authorized(authorization) => assert!(matches!(
                *authorization,
                tl::enums::auth::Authorization::SignUpRequired(_)
            )),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn update_login_token_is_recognised_short_or_in_a_batch() {
        let short = UpdatesLike::Updates(
            tl::types::UpdateShort {
                update: tl::enums::Update::LoginToken,
                date: 0,
            }
            .into(),
        );
        assert!(announces_login_token(&short));
        let batch = UpdatesLike::Updates(
            tl::types::Updates {
                updates: vec![tl::enums::Update::LoginToken],
                users: Vec::new(),
                chats: Vec::new(),
                date: 0,
                seq: 0,
            }
            .into(),
        );
        assert!(announces_login_token(&batch));
        let other = UpdatesLike::Updates(tl::enums::Updates::TooLong);
        assert!(!announces_login_token(&other));
    }
}
