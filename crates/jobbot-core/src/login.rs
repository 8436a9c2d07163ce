//! The login state machine: phone → code → (2FA password) → signed in.
//!
//! The CLI (`jobbot login`) and the web interface drive the same machine over a
//! [`LoginBackend`]; every failure leaves the machine in a state from which the person can retry,
//! and no step can be taken out of order.

use serde::Serialize;

use crate::ids::PhoneNumber;
use crate::telegram::{CodeOutcome, LoginBackend, LoginError, Me, SentCode};

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
    AwaitingPassword {
        phone: PhoneNumber,
        hint: Option<String>,
    },
    SignedIn(Me),
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
}

impl<B: LoginBackend> LoginFlow<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            state: LoginState::AwaitingPhone { last_phone: None },
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
            LoginState::AwaitingPhone { .. } | LoginState::AwaitingCode { .. }
        ) {
            return Err(self.out_of_order());
        }
        let phone = PhoneNumber::parse(phone)?;
        let sent = self.backend.request_code(&phone).await?;
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
                self.state = LoginState::AwaitingPassword { phone, hint }
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
            Self::AwaitingPassword { .. } => "password",
            Self::SignedIn(_) => "signed in",
        }
    }
}
