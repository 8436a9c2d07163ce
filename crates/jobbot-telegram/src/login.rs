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
//! Codes and passwords are passed through and never logged or stored.

use std::sync::Arc;

use async_trait::async_trait;
use grammers_client::client::PasswordToken;
use grammers_client::{Client, InvocationError, SignInError, tl};
use grammers_mtsender::SenderPoolHandle;
use grammers_session::Session;
use grammers_session::types::{PeerAuth, PeerInfo, UpdateState, UpdatesState};
use jobbot_core::ids::{PhoneNumber, SessionName};
use jobbot_core::telegram::{CodeOutcome, LoginBackend, LoginError, Me, SentCode};
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
        // Updates are not needed during a login; dropping the receiver makes the pool discard them.
        drop(connection.updates);
        Self {
            session,
            api_id,
            api_hash,
            client: connection.client,
            store: connection.store,
            handle: connection.handle,
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
                let old_dc = self
                    .store
                    .home_dc_id()
                    .map_err(|e| InvocationError::Session(Box::new(e)))?;
                let new_dc = error.value.unwrap_or_default() as i32;
                self.handle.disconnect_from_dc(old_dc);
                self.store
                    .set_home_dc_id(new_dc)
                    .await
                    .map_err(|e| InvocationError::Session(Box::new(e)))?;
                self.client.invoke(&request).await
            }
            other => other,
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
                .set_update_state(UpdateState::All(UpdatesState {
                    pts: state.pts,
                    qts: state.qts,
                    date: state.date,
                    seq: state.seq,
                    channels: Vec::new(),
                }))
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
}
