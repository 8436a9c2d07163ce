//! Runs the port's contract suite (`jobbot_sim::contract`) against REAL Telegram with test
//! accounts. Not part of CI (no machine there reaches Telegram) and not counted: it is how a
//! maintainer with credentials checks that the simulator and the adapter agree.
//!
//! ```text
//! API_ID=… API_HASH=… \
//! JOBBOT_CONTRACT_SESSIONS_DIR=./sessions \
//! JOBBOT_CONTRACT_FIRST_SESSION=agent_a JOBBOT_CONTRACT_SECOND_SESSION=agent_b \
//! JOBBOT_CONTRACT_SPARE_SESSION=spare \
//! JOBBOT_CONTRACT_REGULAR_USER=@someone JOBBOT_CONTRACT_PRIVATE_USER=@private_someone \
//! JOBBOT_CONTRACT_BOT=@some_bot JOBBOT_CONTRACT_PUBLIC_CHANNEL=@some_channel \
//! JOBBOT_CONTRACT_MISSING_USERNAME=@nobody_has_this_1x \
//! JOBBOT_CONTRACT_POSTABLE_CHANNEL=-100… JOBBOT_CONTRACT_FORUM_GROUP=-100… \
//! JOBBOT_CONTRACT_INVITE_HASH=AbCd… \
//! cargo run -p jobbot-telegram --example contract_real
//! ```
//! The two accounts must be logged in first (`jobbot login agent_a --phone +…`). Checks that need
//! to steer the world (ban an account, make a stranger write) report "skipped".
//!
//! Without risking a real account: set `JOBBOT_TELEGRAM_SERVERS=test` for the logins and for
//! this run. New sessions then use Telegram's test data centres, where the phone numbers
//! `99966XYYYY` (X = 1..3, the DC; Y any digits) are test accounts whose login code is X five
//! times (core.telegram.org/api/auth, "Test accounts"); make the channels and groups the
//! variables name there, with those accounts.

use std::sync::Arc;

use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::telegram::AccountConnector;
use jobbot_sim::contract::{self, CheckOutcome, ContractFixture, LoginPhones, WorldControls};
use jobbot_telegram::{GrammersConfig, GrammersConnector};

struct RealFixture {
    connector: Arc<dyn AccountConnector>,
    variables: std::collections::HashMap<String, String>,
}

impl RealFixture {
    fn from_env() -> Result<Self, String> {
        let variables: std::collections::HashMap<String, String> = std::env::vars()
            .filter(|(key, _)| key.starts_with("JOBBOT_CONTRACT_"))
            .collect();
        let sessions_dir = variables
            .get("JOBBOT_CONTRACT_SESSIONS_DIR")
            .cloned()
            .ok_or("JOBBOT_CONTRACT_SESSIONS_DIR is not set")?;
        let config = GrammersConfig::from_env(sessions_dir).map_err(|error| error.to_string())?;
        let fixture = Self {
            connector: Arc::new(GrammersConnector::new(config)),
            variables,
        };
        for name in [
            "FIRST_SESSION",
            "SECOND_SESSION",
            "SPARE_SESSION",
            "REGULAR_USER",
            "PRIVATE_USER",
            "BOT",
            "PUBLIC_CHANNEL",
            "MISSING_USERNAME",
            "POSTABLE_CHANNEL",
            "FORUM_GROUP",
            "INVITE_HASH",
        ] {
            fixture.variable(name)?;
        }
        Ok(fixture)
    }

    fn variable(&self, name: &str) -> Result<&str, String> {
        self.variables
            .get(&format!("JOBBOT_CONTRACT_{name}"))
            .map(String::as_str)
            .ok_or_else(|| format!("JOBBOT_CONTRACT_{name} is not set"))
    }

    fn checked<T, E: std::fmt::Display>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> T {
        let value = self.variable(name).expect("checked in from_env");
        parse(value).unwrap_or_else(|error| panic!("JOBBOT_CONTRACT_{name}: {error}"))
    }

    fn session(&self, name: &str) -> SessionName {
        self.checked(name, SessionName::parse)
    }

    fn username(&self, name: &str) -> Username {
        self.checked(name, Username::parse)
    }

    fn chat(&self, name: &str) -> ChatId {
        self.checked(name, |text| {
            text.parse::<i64>()
                .ok()
                .and_then(ChatId::from_bot_api)
                .ok_or("not a Bot API chat id")
        })
    }
}

impl ContractFixture for RealFixture {
    fn connector(&self) -> Arc<dyn AccountConnector> {
        Arc::clone(&self.connector)
    }
    fn first_account(&self) -> SessionName {
        self.session("FIRST_SESSION")
    }
    fn second_account(&self) -> SessionName {
        self.session("SECOND_SESSION")
    }
    fn spare_session(&self) -> SessionName {
        self.session("SPARE_SESSION")
    }
    fn regular_user(&self) -> Username {
        self.username("REGULAR_USER")
    }
    fn private_user(&self) -> Username {
        self.username("PRIVATE_USER")
    }
    fn bot(&self) -> Username {
        self.username("BOT")
    }
    fn public_channel(&self) -> Username {
        self.username("PUBLIC_CHANNEL")
    }
    fn missing_username(&self) -> Username {
        self.username("MISSING_USERNAME")
    }
    fn postable_channel(&self) -> ChatId {
        self.chat("POSTABLE_CHANNEL")
    }
    fn forum_group(&self) -> ChatId {
        self.chat("FORUM_GROUP")
    }
    fn invite_hash(&self) -> String {
        self.variable("INVITE_HASH")
            .expect("checked in from_env")
            .to_owned()
    }
    fn random_id_base(&self) -> i64 {
        // Random ids must not repeat across runs against the same accounts.
        rand::random::<i64>().abs() / 2
    }
    fn login_phones(&self) -> Option<LoginPhones> {
        None
    }
    fn controls(&self) -> Option<&dyn WorldControls> {
        None
    }
}

macro_rules! run_checks {
    ($fixture:expr, $($check:ident),+ $(,)?) => {{
        let mut failed = 0;
        $(
            match contract::$check($fixture).await {
                Ok(CheckOutcome::Passed) => println!("pass  {}", stringify!($check)),
                Ok(CheckOutcome::Skipped(why)) => println!("skip  {} ({why})", stringify!($check)),
                Err(failure) => {
                    failed += 1;
                    println!("FAIL  {}: {failure}", stringify!($check));
                }
            }
        )+
        failed
    }};
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let fixture = match RealFixture::from_env() {
        Ok(fixture) => fixture,
        Err(error) => {
            eprintln!("contract_real: {error} (see the comment at the top of this file)");
            return std::process::ExitCode::from(2);
        }
    };
    // The checks a real account can take without being burned: no flood provocation, no bans.
    let failed = run_checks!(
        &fixture,
        a_second_owner_of_a_session_is_refused_before_connecting,
        check_authorization_tells_logged_in_from_not,
        an_unknown_username_is_not_found,
        a_private_user_refuses_a_cold_dm,
        a_direct_message_to_a_bot_or_channel_is_not_a_user,
        an_access_hash_from_another_account_is_refused,
        a_plain_member_may_not_post_in_a_channel,
        joining_is_idempotent,
        created_chats_take_members_and_are_gone_once_deleted,
        a_forum_topic_can_be_created_and_posted_to,
        resending_a_random_id_creates_no_second_message,
        a_send_already_on_its_way_is_a_duplicate_not_a_second_message,
        the_next_connection_catches_up_from_the_committed_checkpoint,
    );
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
