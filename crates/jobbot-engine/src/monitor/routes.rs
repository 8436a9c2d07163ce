//! The routing table of one configuration snapshot: which enabled output channels list a source,
//! by canonical chat id, by username and by invite link, plus the compiled filters of those
//! channels. Pure: built from a [`Config`], asked with what a message says about its chat.

use std::collections::{BTreeSet, HashMap};

use jobbot_core::config::{Config, Filters, SourceRef};
use jobbot_core::filters::{CompileError, FilterEngine, Matches};
use jobbot_core::ids::{ChatId, Username};

/// An enabled output channel, as monitoring needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoutedChannel {
    pub id: String,
    pub name: String,
    pub telegram_id: ChatId,
}

/// A channel a message matched, with the include keywords that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoutedMatch {
    pub channel: usize,
    pub keywords: Vec<String>,
}

pub(crate) struct Routes {
    pub channels: Vec<RoutedChannel>,
    /// Keyed by the channel's index in `channels`.
    filters: FilterEngine<usize>,
    by_id: HashMap<ChatId, BTreeSet<usize>>,
    by_username: HashMap<Username, BTreeSet<usize>>,
    by_invite: HashMap<String, BTreeSet<usize>>,
}

impl Routes {
    pub fn build(config: &Config) -> Result<Self, CompileError> {
        let enabled: Vec<_> = config.enabled_channels().collect();
        let keyed: Vec<(usize, &Filters)> = enabled
            .iter()
            .enumerate()
            .map(|(index, channel)| (index, &channel.filters))
            .collect();
        let filters = FilterEngine::compile(&keyed)?;
        let mut routes = Self {
            channels: enabled
                .iter()
                .map(|channel| RoutedChannel {
                    id: channel.id.clone(),
                    name: channel.name.clone(),
                    telegram_id: channel.telegram_id,
                })
                .collect(),
            filters,
            by_id: HashMap::new(),
            by_username: HashMap::new(),
            by_invite: HashMap::new(),
        };
        for (index, channel) in enabled.iter().enumerate() {
            for source in &channel.sources {
                let listing = match source {
                    SourceRef::Id(id) => routes.by_id.entry(*id).or_default(),
                    SourceRef::Username(name) => {
                        routes.by_username.entry(name.clone()).or_default()
                    }
                    SourceRef::Invite(hash) => routes.by_invite.entry(hash.clone()).or_default(),
                };
                listing.insert(index);
            }
        }
        Ok(routes)
    }

    /// The sources that need a Telegram call before their chat id is known: usernames always
    /// (resolving), invite links only when joining is allowed (joining is the only way to learn
    /// a private chat's id from its link).
    pub fn sources_to_resolve(&self, join_invites: bool) -> BTreeSet<SourceRef> {
        let usernames = self.by_username.keys().cloned().map(SourceRef::Username);
        let invites = self
            .by_invite
            .keys()
            .filter(|_| join_invites)
            .cloned()
            .map(SourceRef::Invite);
        usernames.chain(invites).collect()
    }

    pub fn invite_sources(&self) -> impl Iterator<Item = &str> {
        self.by_invite.keys().map(String::as_str)
    }

    pub fn source_count(&self) -> usize {
        self.by_id.len() + self.by_username.len() + self.by_invite.len()
    }

    /// The channels listing the chat a message came from: by its canonical id, by the username
    /// the message carries (so a `@name` source routes before, or without, resolution), and by
    /// every configured source already resolved to this chat (`resolved_as`).
    pub fn channels_for(
        &self,
        chat: ChatId,
        chat_username: Option<&Username>,
        resolved_as: &[SourceRef],
    ) -> BTreeSet<usize> {
        let mut channels = BTreeSet::new();
        let mut add = |listing: Option<&BTreeSet<usize>>| {
            channels.extend(listing.into_iter().flatten().copied());
        };
        add(self.by_id.get(&chat));
        add(chat_username.and_then(|name| self.by_username.get(name)));
        for source in resolved_as {
            match source {
                SourceRef::Id(id) => add(self.by_id.get(id)),
                SourceRef::Username(name) => add(self.by_username.get(name)),
                SourceRef::Invite(hash) => add(self.by_invite.get(hash)),
            }
        }
        channels
    }

    /// The channels among `candidates` whose filters take the text; one pass over the text
    /// decides every channel.
    pub fn matching(&self, text: &str, candidates: &BTreeSet<usize>) -> Vec<RoutedMatch> {
        // A fresh `Matches` per message: messages arrive at Telegram's pace, and keeping one
        // across messages would tie it to this snapshot of the routes.
        let mut matches = Matches::new();
        self.filters.evaluate_into(text, &mut matches);
        matches
            .iter()
            .filter(|found| candidates.contains(found.channel))
            .map(|found| RoutedMatch {
                channel: *found.channel,
                keywords: found
                    .matched_keywords
                    .iter()
                    .map(|keyword| (*keyword).to_owned())
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(channels: serde_json::Value) -> Config {
        jobbot_core::config::load(&serde_json::json!({ "output_channels": channels }).to_string())
            .expect("valid test config")
            .config
    }

    fn channel(
        id: &str,
        telegram_id: i64,
        sources: &[&str],
        include: &[&str],
    ) -> serde_json::Value {
        serde_json::json!({
            "id": id, "name": id, "telegram_id": telegram_id, "input_sources": sources,
            "filters": {"include_keywords": include}
        })
    }

    #[test]
    fn every_written_form_of_a_source_routes_to_one_canonical_chat() {
        let routes = Routes::build(&config(serde_json::json!([
            channel(
                "a",
                -1001000000001,
                &["@Python_Jobs", "-1001700000001"],
                &[]
            ),
            channel(
                "b",
                -1001000000002,
                &["https://t.me/python_jobs", "1700000002"],
                &[]
            ),
            channel("c", -1001000000003, &["t.me/+InviteHash1"], &[]),
        ])))
        .unwrap();
        let chat = |bare| ChatId::channel(bare).unwrap();
        let name = |text| Username::parse(text).unwrap();
        let set = |items: &[usize]| items.iter().copied().collect::<BTreeSet<_>>();
        let check = |chat: ChatId,
                     username: Option<&Username>,
                     resolved: &[SourceRef],
                     expected: &[usize]| {
            assert_eq!(
                routes.channels_for(chat, username, resolved),
                set(expected),
                "{chat} {username:?}"
            );
        };
        check(chat(1700000001), None, &[], &[0]);
        check(chat(1700000002), None, &[], &[1]);
        // Usernames compare case-insensitively; the message's own username routes it.
        check(chat(1700000099), Some(&name("python_JOBS")), &[], &[0, 1]);
        // Without a username on the message, a resolved source routes it.
        check(
            chat(1700000099),
            None,
            &[SourceRef::Username(name("python_jobs"))],
            &[0, 1],
        );
        check(
            chat(1700000098),
            None,
            &[SourceRef::Invite("InviteHash1".into())],
            &[2],
        );
        check(chat(1700000097), Some(&name("other_jobs")), &[], &[]);
        assert_eq!(routes.source_count(), 4);
        assert_eq!(
            routes.sources_to_resolve(false),
            [SourceRef::Username(name("python_jobs"))]
                .into_iter()
                .collect()
        );
        assert_eq!(routes.sources_to_resolve(true).len(), 2);
    }

    #[test]
    fn only_enabled_channels_listing_the_source_are_matched() {
        let mut disabled = channel("d", -1001000000004, &["@python_jobs"], &["python"]);
        disabled["enabled"] = serde_json::json!(false);
        let routes = Routes::build(&config(serde_json::json!([
            channel("a", -1001000000001, &["@python_jobs"], &["python"]),
            channel("b", -1001000000002, &["@other_jobs"], &["python"]),
            channel("c", -1001000000003, &["@python_jobs"], &["golang"]),
            disabled,
        ])))
        .unwrap();
        assert_eq!(routes.channels.len(), 3);
        let candidates = routes.channels_for(
            ChatId::channel(1).unwrap(),
            Some(&Username::parse("python_jobs").unwrap()),
            &[],
        );
        assert_eq!(
            routes.matching("Python developer wanted", &candidates),
            vec![RoutedMatch {
                channel: 0,
                keywords: vec!["python".into()]
            }]
        );
    }
}
