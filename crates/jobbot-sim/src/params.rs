//! The simulator's knobs. Every number Telegram does not publish is a documented guess here, in
//! one place, so a benchmark can print exactly which world it ran against.

use serde::{Deserialize, Serialize};

/// A per-account, per-method rate limit: a token bucket refilled at `per_minute` and holding at
/// most `burst` calls, plus the flood-wait penalty for a call made with the bucket empty.
///
/// Telegram's flood limits are per account and per method ("The maximum allowed number of attempts
/// to invoke the given method with the given input parameters has been exceeded",
/// core.telegram.org/api/errors, 420 FLOOD). The numbers are not published; the penalty grows on
/// repeated violations, as reported by users (tg_content_factory#495: a run of short waits ended in
/// a 53,123 s wait; telethon-floodgate: repeated `resolveUsername` floods escalating to 15–18 h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitParams {
    /// Sustained calls per minute the bucket refills.
    pub per_minute: u32,
    /// Calls allowed back to back from a full bucket.
    pub burst: u32,
    /// The wait (`FLOOD_WAIT_X`) for the first violation.
    pub first_wait_seconds: u32,
    /// Ceiling of the doubling wait. Telethon caps its own auto-sleep at one day, the longest wait
    /// its users reported.
    pub max_wait_seconds: u32,
    /// Violations within this window count towards doubling the wait.
    pub violation_memory_seconds: u32,
}

/// Everything the simulated Telegram does that Telegram does not document with a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimParams {
    /// Seeds the world's only random generator (latency jitter, login codes, invite hashes, access
    /// hashes): the same seed and the same calls give the same results.
    pub seed: u64,
    /// Round-trip time of every call, waited with `tokio::time::sleep`.
    pub call_latency_ms: u64,
    /// Uniform extra latency in `0..=jitter`, drawn from the seeded generator.
    pub call_latency_jitter_ms: u64,
    /// `messages.sendMessage` (direct messages, channel posts and topic posts share it). Default
    /// 20/min with a burst of 5: Bot API FAQ allows 20 messages per minute in a group, and
    /// telethon-floodgate's default for user accounts is 30/min; we stay below both.
    pub send_messages: RateLimitParams,
    /// `contacts.resolveUsername`, Telegram's most punished call. Telethon's `get_entity` docstring:
    /// "will start hitting flood waits around 50 usernames in a short period of time"; the
    /// telethon-floodgate README reports 160+ calls escalating to 15–18 h waits. The default (5 per
    /// minute, burst 5, first wait 10 min) is deliberately stricter, so code that resolves in a
    /// loop fails here before it fails in production.
    pub resolve_username: RateLimitParams,
    /// `messages.createForumTopic`. No number is published; this one is a guess.
    pub create_forum_topic: RateLimitParams,
    /// Joining a chat (`channels.joinChannel`, `messages.importChatInvite`) the account is not
    /// in yet. No number is published; users report flood waits on joins after a few quick ones
    /// ("A wait of 348 seconds is required (caused by channels.JoinChannel)",
    /// Freddywhest/DropWizard#2) and about 70,000 s after an hour of joining ~200 groups
    /// (surfranch/TelegramShillBot#30). The default (2 a minute, burst 5, first wait 5 min)
    /// is a guess in that range. A join of a chat the account is already in
    /// (`USER_ALREADY_PARTICIPANT`) is answered without spending it: Telegram does not say, and
    /// counting it would punish the idempotent re-join clients do at every start.
    pub join_channel: RateLimitParams,
    /// `channels.createChannel`. No number is published; users report flood waits after a
    /// handful of chats created in a row ("A wait of X seconds is required (caused by
    /// channels.CreateChannel)"), and Telegram limits how many chats one account may be in
    /// (`CHANNELS_TOO_MUCH`, core.telegram.org/api/config `channels_limit_default`). The default
    /// (1 a minute, burst 3, first wait 10 min) is a guess in that range.
    pub create_channel: RateLimitParams,
    /// `channels.inviteToChannel`. No number is published; adding many people quickly gets
    /// `FLOOD_WAIT` or `PEER_FLOOD` (telegram.org/faq_spam on adding strangers to groups). The
    /// default (2 a minute, burst 5, first wait 5 min) is the joins' guess.
    pub invite_to_channel: RateLimitParams,
    /// New private chats with people who never wrote to this account and do not have it as a
    /// contact, per rolling 24 h, before `PEER_FLOOD` (tdlib#797: "too much non-mutual contacts";
    /// Telethon#397 saw limits after about 50 DMs, Telethon#4009 after 5).
    pub cold_dm_daily_budget: u32,
    /// How long a `PEER_FLOOD` limit lasts the first time; it doubles on every repeat offence
    /// (telegram.org/faq_spam: "a few days or so", longer for repeated offences).
    pub peer_flood_hours: u32,
    /// How long a dropped connection stays down before `ConnectionRestored`.
    pub reconnect_delay_ms: u64,
    /// How long a login code is accepted (`PHONE_CODE_EXPIRED` after). Not published.
    pub login_code_lifetime_seconds: u64,
    /// How long a QR-login token can be scanned: "the token expires in 30 seconds"
    /// (core.telegram.org/api/qr-login); a new `auth.exportLoginToken` gives a new one.
    pub login_token_lifetime_seconds: u64,
    /// `auth.sendCode` calls per phone per hour before a flood wait. Not published.
    pub login_codes_per_hour: u32,
    /// Wrong codes plus wrong passwords per phone before a flood wait. Not published.
    pub login_max_wrong_attempts: u32,
    /// The wait imposed on a phone after too many login attempts.
    pub login_flood_wait_seconds: u32,
    /// Capacity of each connection's event channel. When the owner does not read, later events are
    /// dropped and counted (grammers drops updates past its channel's capacity).
    pub event_buffer: usize,
    /// How many updates per account a reconnecting session can still catch up on; past that,
    /// Telegram answers `updates.differenceTooLong` (core.telegram.org/api/updates) and the gap
    /// is lost. Not published; the default is generous.
    pub update_log_limit: usize,
    /// How many updates one `updates.getChannelDifference` returns before Telegram answers
    /// `updates.channelDifferenceTooLong` instead ("the provided pts + limit < remote pts",
    /// core.telegram.org/constructor/updates.channelDifferenceTooLong): the `limit` a user client
    /// passes, 100 in grammers (`USER_CHANNEL_DIFF_LIMIT`) and Telethon.
    pub channel_difference_limit: usize,
    /// The Unix time at which simulated time starts (message dates are this plus elapsed time).
    pub start_unix_time: i64,
    /// When set, every account created with [`crate::SimWorld::create_account`] gets its own
    /// `messages.sendMessage` limit and first-message budget, drawn from this distribution with
    /// the world's seed. `None` (the default): every account has the world's figures above, as
    /// before, so existing tests keep their numbers unless they opt in.
    pub account_limits: Option<AccountLimitSpread>,
}

/// How per-account limits are drawn. Telegram's limits differ per account: "limits depend on the
/// account's age, its past behaviour and reports against it" (telegram.org/faq_spam), premium
/// accounts get higher ones (telegram.org/blog/700-million-and-premium: doubled limits), and
/// users report the same call flooding one account and not another (Telethon#4009 after 5 cold
/// DMs, Telethon#397 after about 50). No distribution is published; a log-normal, the usual model
/// of a positive quantity shaped by many multiplicative factors, is our guess.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AccountLimitSpread {
    /// Median sustained `messages.sendMessage` rate per account, per minute.
    pub send_median_per_minute: f64,
    /// Log-normal sigma of the send rate: 0.25 puts about two accounts in three within ±25 % of
    /// the median. Drawn rates are clamped to `[median / 4, median * 4]` and at least 1 a minute.
    pub send_spread: f64,
    /// Burst of the send bucket, drawn uniformly in this inclusive range. Users report bursts of
    /// "a few" messages before a FloodWait (telethon-floodgate's default burst is 5).
    pub burst_range: (u32, u32),
    /// The first violation's wait, drawn uniformly in this inclusive range (seconds). Reported
    /// first waits for sends range from a few seconds to about a minute (Telethon#824, #1218).
    pub first_wait_range: (u32, u32),
    /// How long violations count towards doubling the wait, drawn uniformly (seconds): the
    /// escalation differs per account (tg_content_factory#495 escalated within hours).
    pub violation_memory_range: (u32, u32),
    /// Median daily budget of first messages to strangers; drawn log-normal with `budget_spread`
    /// (tdlib#797, Telethon#397, Telethon#4009: from about 5 to about 50), clamped to at least 1.
    pub budget_median: f64,
    pub budget_spread: f64,
}

impl Default for AccountLimitSpread {
    fn default() -> Self {
        Self {
            send_median_per_minute: 15.0,
            send_spread: 0.25,
            burst_range: (3, 8),
            first_wait_range: (10, 60),
            violation_memory_range: (1_800, 7_200),
            budget_median: 30.0,
            budget_spread: 0.4,
        }
    }
}

/// The limits one account drew (see [`AccountLimitSpread`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimitDraw {
    pub send_messages: RateLimitParams,
    pub cold_dm_daily_budget: u32,
}

impl AccountLimitSpread {
    /// Draws one account's limits, keeping `base`'s ceiling of the doubling wait.
    pub fn draw<R: rand::Rng + ?Sized>(
        &self,
        base: &RateLimitParams,
        rng: &mut R,
    ) -> AccountLimitDraw {
        let median = self.send_median_per_minute.max(1.0);
        let per_minute = (median * (self.send_spread * standard_normal(rng)).exp())
            .clamp(median / 4.0, median * 4.0)
            .round()
            .max(1.0) as u32;
        let uniform = |rng: &mut R, (low, high): (u32, u32)| {
            let (low, high) = (low.min(high), low.max(high));
            rng.random_range(low..=high)
        };
        let burst = uniform(rng, self.burst_range).max(1);
        let first_wait_seconds = uniform(rng, self.first_wait_range).max(1);
        let violation_memory_seconds = uniform(rng, self.violation_memory_range);
        let budget = (self.budget_median.max(1.0)
            * (self.budget_spread * standard_normal(rng)).exp())
        .round()
        .max(1.0) as u32;
        AccountLimitDraw {
            send_messages: RateLimitParams {
                per_minute,
                burst,
                first_wait_seconds,
                max_wait_seconds: base.max_wait_seconds,
                violation_memory_seconds,
            },
            cold_dm_daily_budget: budget,
        }
    }
}

/// A standard normal draw (Box–Muller), so no distribution crate is needed for one formula.
fn standard_normal<R: rand::Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Default for SimParams {
    fn default() -> Self {
        Self {
            seed: 0x6a6f_6262_6f74,
            call_latency_ms: 5,
            call_latency_jitter_ms: 5,
            send_messages: RateLimitParams {
                per_minute: 20,
                burst: 5,
                first_wait_seconds: 30,
                max_wait_seconds: 86_400,
                violation_memory_seconds: 3_600,
            },
            resolve_username: RateLimitParams {
                per_minute: 5,
                burst: 5,
                first_wait_seconds: 600,
                max_wait_seconds: 64_800,
                violation_memory_seconds: 86_400,
            },
            create_forum_topic: RateLimitParams {
                per_minute: 10,
                burst: 5,
                first_wait_seconds: 60,
                max_wait_seconds: 86_400,
                violation_memory_seconds: 3_600,
            },
            join_channel: RateLimitParams {
                per_minute: 2,
                burst: 5,
                first_wait_seconds: 300,
                max_wait_seconds: 86_400,
                violation_memory_seconds: 3_600,
            },
            create_channel: RateLimitParams {
                per_minute: 1,
                burst: 3,
                first_wait_seconds: 600,
                max_wait_seconds: 86_400,
                violation_memory_seconds: 3_600,
            },
            invite_to_channel: RateLimitParams {
                per_minute: 2,
                burst: 5,
                first_wait_seconds: 300,
                max_wait_seconds: 86_400,
                violation_memory_seconds: 3_600,
            },
            cold_dm_daily_budget: 40,
            peer_flood_hours: 24,
            reconnect_delay_ms: 5_000,
            login_code_lifetime_seconds: 300,
            login_token_lifetime_seconds: 30,
            login_codes_per_hour: 5,
            login_max_wrong_attempts: 5,
            login_flood_wait_seconds: 3_600,
            event_buffer: 1_024,
            update_log_limit: 100_000,
            channel_difference_limit: 100,
            start_unix_time: 1_750_000_000,
            account_limits: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn drawn_limits_centre_on_the_median_and_stay_in_their_ranges() {
        let spread = AccountLimitSpread::default();
        let base = SimParams::default().send_messages;
        let mut rng = StdRng::seed_from_u64(1);
        let mut rates: Vec<u32> = Vec::new();
        let mut budgets: Vec<u32> = Vec::new();
        for _ in 0..2_001 {
            let drawn = spread.draw(&base, &mut rng);
            let send = drawn.send_messages;
            assert!((3..=8).contains(&send.burst), "{send:?}");
            assert!((10..=60).contains(&send.first_wait_seconds), "{send:?}");
            assert!((1_800..=7_200).contains(&send.violation_memory_seconds));
            assert!((4..=60).contains(&send.per_minute), "{send:?}");
            assert_eq!(send.max_wait_seconds, base.max_wait_seconds);
            rates.push(send.per_minute);
            budgets.push(drawn.cold_dm_daily_budget);
        }
        rates.sort_unstable();
        budgets.sort_unstable();
        assert!((14..=16).contains(&rates[1_000]), "median {}", rates[1_000]);
        assert!(
            (28..=32).contains(&budgets[1_000]),
            "median {}",
            budgets[1_000]
        );
        assert!(rates[100] < 12 && rates[1_900] > 18, "spread: {rates:?}");
    }

    #[test]
    fn the_same_seed_draws_the_same_world() {
        let spread = AccountLimitSpread {
            send_median_per_minute: 8.0,
            ..AccountLimitSpread::default()
        };
        let base = SimParams::default().send_messages;
        let draws = |seed: u64| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| spread.draw(&base, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(5), draws(5));
        assert_ne!(draws(5), draws(6));
    }
}
