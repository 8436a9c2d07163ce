use std::time::Duration;

use super::*;
use crate::store::{Holdup, OutboxFailure};
use crate::telegram::PeerRef;

fn agent(name: &str) -> SessionName {
    SessionName::parse(name).unwrap()
}

fn peer(kind: PeerKind) -> Peer {
    Peer {
        peer: PeerRef {
            id: ChatId::user(5_000_123).unwrap(),
            access_hash: 42,
        },
        kind,
        username: Some(Username::parse("anna_hr").unwrap()),
        name: "Anna".into(),
        last_name: None,
    }
}

fn settings() -> WorkflowSettings {
    WorkflowSettings::default()
}

fn auto_response(now: UnixMillis) -> Workflow {
    Workflow::AutoResponse(AutoResponse::new(
        "channel_1".into(),
        VacancyRef {
            source: ChatId::channel(1_700_000_001).unwrap(),
            source_username: None,
            message_id: 5,
            source_title: "Remote IT".into(),
            link: "https://t.me/remote_it/5".into(),
            text: "Python developer".into(),
        },
        Username::parse("anna_hr").unwrap(),
        now,
        Duration::from_secs(3600),
    ))
}

fn sent_message(id: i32) -> SentMessage {
    SentMessage {
        chat: ChatId::user(5_000_123).unwrap(),
        message_id: id,
    }
}

/// Drives `workflow` through `(event, expected effect after it)` pairs, checking that the state
/// survives a serde round trip at every step (it is what a restart loads).
fn drive(mut workflow: Workflow, now: UnixMillis, steps: Vec<(Event, Effect)>) -> Workflow {
    for (event, expected) in steps {
        workflow = workflow.on(event.clone(), now, &settings());
        let stored = serde_json::to_string(&workflow).unwrap();
        let loaded: Workflow = serde_json::from_str(&stored).unwrap();
        assert_eq!(loaded, workflow, "the state round-trips");
        assert_eq!(loaded.effect(now), expected, "after {event:?}");
    }
    workflow
}

#[test]
fn an_auto_response_resolves_queues_opens_and_posts_in_order() {
    let now = UnixMillis(1_000_000);
    let workflow = auto_response(now);
    assert_eq!(workflow.effect(now), Effect::Resolve);
    let conversation = ConversationId(3);
    let topic = TopicId(10);
    let workflow = drive(
        workflow,
        now,
        vec![
            (
                Event::Resolved {
                    agent: agent("agent_a"),
                    peer: peer(PeerKind::User),
                },
                Effect::QueueAutoResponse {
                    resolver: agent("agent_a"),
                    peer: peer(PeerKind::User),
                },
            ),
            (
                Event::Queued {
                    outbox: OutboxId(7),
                },
                Effect::AwaitOutbox(OutboxId(7)),
            ),
            (
                Event::Delivered(Delivery::Sent {
                    agent: agent("agent_b"),
                    message: Some(sent_message(1)),
                }),
                Effect::OpenConversation {
                    agent: agent("agent_b"),
                    resolver: agent("agent_a"),
                    peer: peer(PeerKind::User),
                },
            ),
            (
                Event::Opened { conversation },
                Effect::EnsureTopic {
                    conversation,
                    stale: None,
                },
            ),
            (
                Event::TopicReady { topic },
                Effect::QueuePost {
                    conversation,
                    post: PostKind::Info,
                    topic,
                    replaced: false,
                    by_main: false,
                },
            ),
            (
                Event::Queued {
                    outbox: OutboxId(8),
                },
                Effect::AwaitOutbox(OutboxId(8)),
            ),
            (
                Event::Delivered(Delivery::Sent {
                    agent: agent("agent_b"),
                    message: Some(sent_message(11)),
                }),
                Effect::RecordPost {
                    conversation,
                    post: PostKind::Info,
                    outbox: OutboxId(8),
                    message: Some(sent_message(11)),
                },
            ),
            // The mirror follows the info post.
            (
                Event::Recorded,
                Effect::EnsureTopic {
                    conversation,
                    stale: None,
                },
            ),
            (
                Event::TopicReady { topic },
                Effect::QueuePost {
                    conversation,
                    post: PostKind::Mirror,
                    topic,
                    replaced: false,
                    by_main: false,
                },
            ),
            (
                Event::Queued {
                    outbox: OutboxId(9),
                },
                Effect::AwaitOutbox(OutboxId(9)),
            ),
            (
                Event::Delivered(Delivery::Sent {
                    agent: agent("agent_b"),
                    message: None,
                }),
                Effect::RecordPost {
                    conversation,
                    post: PostKind::Mirror,
                    outbox: OutboxId(9),
                    message: None,
                },
            ),
            (Event::Recorded, Effect::Finished),
        ],
    );
    assert!(workflow.is_finished());
    let Workflow::AutoResponse(AutoResponse {
        step:
            AutoResponseStep::Finished {
                end:
                    AutoResponseEnd::Completed {
                        conversation: c, ..
                    },
            },
        ..
    }) = workflow
    else {
        panic!("{workflow:?}");
    };
    assert_eq!(c, conversation);
}

#[test]
fn resolving_retries_until_it_gives_up() {
    let start = UnixMillis(0);
    let retry = settings().resolve_retry;
    let mut workflow = auto_response(start);
    let mut now = start;
    let mut tries = 0;
    while !workflow.is_finished() {
        match workflow.effect(now) {
            Effect::Resolve => {
                tries += 1;
                workflow = workflow.on(Event::NoResolverNow, now, &settings());
            }
            Effect::SleepUntil(at) => {
                assert_eq!(at, now.plus(retry), "the retry comes one interval later");
                now = at;
                workflow = workflow.on(Event::Woke, now, &settings());
            }
            other => panic!("{other:?}"),
        }
    }
    // An hour to give up, a try every minute: at once, then at 1 … 60 minutes.
    assert_eq!(tries, 61);
    assert!(matches!(
        workflow,
        Workflow::AutoResponse(AutoResponse {
            step: AutoResponseStep::Finished {
                end: AutoResponseEnd::GaveUpResolving
            },
            ..
        })
    ));
}

#[test]
fn only_people_get_an_auto_response_and_undelivered_ones_end_typed() {
    let now = UnixMillis(0);
    for kind in [PeerKind::Bot, PeerKind::Channel, PeerKind::Group] {
        let workflow = auto_response(now).on(
            Event::Resolved {
                agent: agent("agent_a"),
                peer: peer(kind),
            },
            now,
            &settings(),
        );
        assert!(workflow.is_finished(), "{kind:?}");
    }
    let failure = OutboxFailure::Recipient {
        agent: agent("agent_a"),
        error: TelegramError::PrivacyRestricted,
    };
    let workflow = drive(
        auto_response(now),
        now,
        vec![
            (
                Event::Resolved {
                    agent: agent("agent_a"),
                    peer: peer(PeerKind::User),
                },
                Effect::QueueAutoResponse {
                    resolver: agent("agent_a"),
                    peer: peer(PeerKind::User),
                },
            ),
            (
                Event::Queued {
                    outbox: OutboxId(1),
                },
                Effect::AwaitOutbox(OutboxId(1)),
            ),
            (
                Event::Delivered(Delivery::Failed {
                    failure: failure.clone(),
                }),
                Effect::Finished,
            ),
        ],
    );
    assert_eq!(
        workflow,
        Workflow::AutoResponse(AutoResponse {
            step: AutoResponseStep::Finished {
                end: AutoResponseEnd::NotDelivered {
                    delivery: Delivery::Failed { failure }
                }
            },
            ..match auto_response(now) {
                Workflow::AutoResponse(workflow) => workflow,
                _ => unreachable!(),
            }
        })
    );
}

#[test]
fn a_deleted_topic_is_replaced_once_and_the_post_goes_into_the_new_one() {
    let now = UnixMillis(0);
    let conversation = ConversationId(1);
    let deleted = || {
        Event::Delivered(Delivery::Failed {
            failure: OutboxFailure::Recipient {
                agent: agent("agent_a"),
                error: TelegramError::TopicDeleted,
            },
        })
    };
    let relay = Workflow::RelayToTopic(RelayToTopic::into_conversation(
        agent("agent_a"),
        incoming(),
        conversation,
    ));
    let relay = drive(
        relay,
        now,
        vec![
            (
                Event::TopicReady { topic: TopicId(4) },
                Effect::QueuePost {
                    conversation,
                    post: PostKind::ContactMessage,
                    topic: TopicId(4),
                    replaced: false,
                    by_main: false,
                },
            ),
            (
                Event::Queued {
                    outbox: OutboxId(2),
                },
                Effect::AwaitOutbox(OutboxId(2)),
            ),
            (
                deleted(),
                Effect::EnsureTopic {
                    conversation,
                    stale: Some(TopicId(4)),
                },
            ),
            (
                Event::TopicReady { topic: TopicId(8) },
                Effect::QueuePost {
                    conversation,
                    post: PostKind::ContactMessage,
                    topic: TopicId(8),
                    replaced: true,
                    by_main: false,
                },
            ),
            (
                Event::Queued {
                    outbox: OutboxId(3),
                },
                Effect::AwaitOutbox(OutboxId(3)),
            ),
            // Deleted again: no second replacement.
            (deleted(), Effect::Finished),
        ],
    );
    assert!(matches!(
        relay,
        Workflow::RelayToTopic(RelayToTopic {
            step: RelayStep::Finished {
                end: RelayEnd::Done {
                    post: TopicPost::NotPosted { .. }
                }
            },
            ..
        })
    ));
}

/// A post the conversation's agent may not make in the CRM group (not a member) is made once
/// by the main account, under a key of its own; refused again, it ends unposted.
#[test]
fn a_post_the_agent_may_not_make_is_made_by_the_main_account_once() {
    let now = UnixMillis(0);
    let conversation = ConversationId(1);
    let forbidden = || {
        Event::Delivered(Delivery::Failed {
            failure: OutboxFailure::GaveUp {
                agent: agent("agent_a"),
                reason: crate::scheduling::FailureReason::ChatForbidden {
                    error: TelegramError::ChatForbidden {
                        code: "CHAT_NOT_KNOWN_TO_ACCOUNT".into(),
                    },
                },
            },
        })
    };
    let queue = |by_main| Effect::QueuePost {
        conversation,
        post: PostKind::ContactMessage,
        topic: TopicId(4),
        replaced: false,
        by_main,
    };
    let relay = Workflow::RelayToTopic(RelayToTopic::into_conversation(
        agent("agent_a"),
        incoming(),
        conversation,
    ));
    let steps = |end: Event, last: Effect| {
        vec![
            (Event::TopicReady { topic: TopicId(4) }, queue(false)),
            (
                Event::Queued {
                    outbox: OutboxId(2),
                },
                Effect::AwaitOutbox(OutboxId(2)),
            ),
            (forbidden(), queue(true)),
            (
                Event::Queued {
                    outbox: OutboxId(3),
                },
                Effect::AwaitOutbox(OutboxId(3)),
            ),
            (end, last),
        ]
    };
    let posted = drive(
        relay.clone(),
        now,
        steps(
            Event::Delivered(Delivery::Sent {
                agent: SessionName::main(),
                message: Some(sent_message(9)),
            }),
            Effect::RecordPost {
                conversation,
                post: PostKind::ContactMessage,
                outbox: OutboxId(3),
                message: Some(sent_message(9)),
            },
        ),
    );
    assert!(matches!(
        posted,
        Workflow::RelayToTopic(RelayToTopic {
            step: RelayStep::Post {
                post: TopicPost::Record { .. },
                ..
            },
            ..
        })
    ));
    // A closed topic is the operator's "no more here": no fallback.
    let closed = drive(
        relay.clone(),
        now,
        vec![
            (Event::TopicReady { topic: TopicId(4) }, queue(false)),
            (
                Event::Queued {
                    outbox: OutboxId(2),
                },
                Effect::AwaitOutbox(OutboxId(2)),
            ),
            (
                Event::Delivered(Delivery::Failed {
                    failure: OutboxFailure::Recipient {
                        agent: agent("agent_a"),
                        error: TelegramError::TopicClosed,
                    },
                }),
                Effect::Finished,
            ),
        ],
    );
    assert!(matches!(
        closed,
        Workflow::RelayToTopic(RelayToTopic {
            step: RelayStep::Finished { .. },
            ..
        })
    ));
    // The main account refused as well: no third try.
    let refused = drive(relay, now, steps(forbidden(), Effect::Finished));
    assert!(matches!(
        refused,
        Workflow::RelayToTopic(RelayToTopic {
            step: RelayStep::Finished {
                end: RelayEnd::Done {
                    post: TopicPost::NotPosted { .. }
                }
            },
            ..
        })
    ));
}

#[test]
fn a_topic_nobody_can_create_now_is_tried_again_later() {
    let now = UnixMillis(0);
    let conversation = ConversationId(1);
    let relay = Workflow::RelayToTopic(RelayToTopic::into_conversation(
        agent("agent_a"),
        incoming(),
        conversation,
    ));
    let later = now.plus(settings().topic_retry);
    let relay = drive(
        relay,
        now,
        vec![(Event::NoTopicNow, Effect::SleepUntil(later))],
    );
    let relay = relay.on(Event::Woke, later, &settings());
    assert_eq!(
        relay.effect(later),
        Effect::EnsureTopic {
            conversation,
            stale: None
        }
    );
}

fn incoming() -> IncomingMessage {
    IncomingMessage {
        chat: ChatId::user(5_000_123).unwrap(),
        chat_kind: PeerKind::User,
        chat_title: None,
        chat_username: None,
        message_id: 12,
        sender: None,
        text: "Tell me more".into(),
        media: None,
        file: None,
        date: 0,
        outgoing: false,
        is_service: false,
        topic_id: None,
    }
}

#[test]
fn a_reply_waits_for_its_conversation_then_forks_or_gives_up() {
    let now = UnixMillis(0);
    let waiting = Workflow::RelayToTopic(RelayToTopic::awaiting_conversation(
        agent("agent_a"),
        incoming(),
        now,
        &settings(),
    ));
    assert_eq!(waiting.effect(now), Effect::FindConversations);
    let retry = now.plus(settings().conversation_retry);
    let later = drive(
        waiting.clone(),
        now,
        vec![(
            Event::ConversationsFound {
                conversations: Vec::new(),
            },
            Effect::SleepUntil(retry),
        )],
    );
    let found = later.on(Event::Woke, retry, &settings()).on(
        Event::ConversationsFound {
            conversations: vec![ConversationId(3)],
        },
        retry,
        &settings(),
    );
    assert_eq!(
        found.effect(retry),
        Effect::Fork {
            conversations: vec![ConversationId(3)]
        }
    );
    assert!(found.on(Event::Forked, retry, &settings()).is_finished());
    // Past the deadline, the message was not an answer to jobbot.
    let deadline = now.plus(settings().await_conversation);
    let expired = waiting.on(
        Event::ConversationsFound {
            conversations: Vec::new(),
        },
        deadline,
        &settings(),
    );
    assert!(matches!(
        expired,
        Workflow::RelayToTopic(RelayToTopic {
            step: RelayStep::Finished {
                end: RelayEnd::NoConversation
            },
            ..
        })
    ));
}

#[test]
fn an_event_that_does_not_fit_changes_nothing() {
    let now = UnixMillis(0);
    let workflow = auto_response(now);
    for event in [
        Event::Recorded,
        Event::Forked,
        Event::Queued {
            outbox: OutboxId(1),
        },
        Event::Delivered(Delivery::Expired {
            last_holdup: Some(Holdup::Waiting {
                reason: crate::store::Unavailable::EmptyPool,
            }),
        }),
    ] {
        assert_eq!(workflow.clone().on(event, now, &settings()), workflow);
    }
}

fn media_file() -> crate::telegram::MediaFile {
    crate::telegram::MediaFile {
        kind: crate::telegram::MediaKind::Document,
        id: 77,
        access_hash: 1,
        file_reference: vec![1],
        file_name: Some("cv.pdf".into()),
        mime_type: Some("application/pdf".into()),
        size: Some(1_000),
        duration_seconds: None,
    }
}

/// A post into `topic` from "topic ready" to its record: queued as `outbox`, sent as message `id`.
fn post_steps(
    conversation: ConversationId,
    post: PostKind,
    topic: TopicId,
    outbox: OutboxId,
    id: i32,
) -> Vec<(Event, Effect)> {
    vec![
        (
            Event::TopicReady { topic },
            Effect::QueuePost {
                conversation,
                post: post.clone(),
                topic,
                replaced: false,
                by_main: false,
            },
        ),
        (Event::Queued { outbox }, Effect::AwaitOutbox(outbox)),
        (
            Event::Delivered(Delivery::Sent {
                agent: agent("agent_a"),
                message: Some(sent_message(id)),
            }),
            Effect::RecordPost {
                conversation,
                post,
                outbox,
                message: Some(sent_message(id)),
            },
        ),
    ]
}

/// A relay of a contact's document into `conversation`'s topic.
fn contact_file_relay(conversation: ConversationId) -> Workflow {
    let mut message = incoming();
    message.media = Some(crate::telegram::MediaKind::Document);
    message.file = Some(Box::new(media_file()));
    Workflow::RelayToTopic(RelayToTopic::into_conversation(
        agent("agent_a"),
        message,
        conversation,
    ))
}

/// An operator's file to `conversation`'s contact.
fn operator_file_relay(conversation: ConversationId) -> Workflow {
    let mut message = incoming();
    message.file = Some(Box::new(media_file()));
    Workflow::MediaToContact(MediaToContact::new(agent("agent_a"), conversation, message))
}

/// Fetching [`incoming`] again through agent_a.
fn refetch() -> Effect {
    Effect::RefetchFile {
        agent: agent("agent_a"),
        chat: incoming().chat,
        message_id: 12,
    }
}

fn refused(error: TelegramError) -> Delivery {
    Delivery::Failed {
        failure: OutboxFailure::Recipient {
            agent: agent("agent_a"),
            error,
        },
    }
}

/// A contact's file Telegram refuses leaves a note with the message's text in the topic (then
/// the replier may answer); a refused text post ends as before, with no note.
#[test]
fn a_refused_file_from_a_contact_leaves_a_note_in_the_topic() {
    let now = UnixMillis(0);
    let conversation = ConversationId(3);
    let topic = TopicId(9);
    let relay = contact_file_relay(conversation);
    let queued = drive(
        relay,
        now,
        vec![
            (
                Event::TopicReady { topic },
                Effect::QueuePost {
                    conversation,
                    post: PostKind::ContactMessage,
                    topic,
                    replaced: false,
                    by_main: false,
                },
            ),
            (
                Event::Queued {
                    outbox: OutboxId(1),
                },
                Effect::AwaitOutbox(OutboxId(1)),
            ),
        ],
    );
    let ensure = Effect::EnsureTopic {
        conversation,
        stale: None,
    };
    // An expired reference first has the message fetched again; gone by then, the note.
    let mut steps = vec![
        (
            Event::Delivered(refused(TelegramError::FileReferenceExpired)),
            refetch(),
        ),
        (Event::FileRefetched { file: None }, ensure),
    ];
    steps.extend(post_steps(
        conversation,
        PostKind::MediaNote,
        topic,
        OutboxId(2),
        30,
    ));
    steps.push((Event::Recorded, Effect::AutoReply { conversation }));
    let noted = drive(queued.clone(), now, steps);
    assert!(!noted.is_finished());

    // The same refusal of a text post: no note.
    let Workflow::RelayToTopic(mut text) = queued else {
        unreachable!()
    };
    text.message.file = None;
    text.message.media = None;
    let ended = Workflow::RelayToTopic(text).on(
        Event::Delivered(refused(TelegramError::PrivacyRestricted)),
        now,
        &settings(),
    );
    assert!(ended.is_finished());
}

/// A contact's file whose reference expired is fetched again and posted with the fresh
/// reference; a second refusal is not retried again but noted.
#[test]
fn a_contacts_file_with_an_expired_reference_is_fetched_again_and_retried_once() {
    let now = UnixMillis(0);
    let conversation = ConversationId(3);
    let topic = TopicId(9);
    let relay = contact_file_relay(conversation);
    let refetch = refetch();
    let ensure = Effect::EnsureTopic {
        conversation,
        stale: None,
    };
    let fresh = crate::telegram::MediaFile {
        file_reference: vec![2],
        ..media_file()
    };
    let queue = |outbox| (Event::Queued { outbox }, Effect::AwaitOutbox(outbox));
    let mut steps = post_steps(
        conversation,
        PostKind::ContactMessage,
        topic,
        OutboxId(1),
        0,
    );
    steps.truncate(2);
    steps.extend([
        (
            Event::Delivered(refused(TelegramError::FileReferenceExpired)),
            refetch,
        ),
        (
            Event::FileRefetched {
                file: Some(Box::new(fresh.clone())),
            },
            ensure.clone(),
        ),
        (
            Event::TopicReady { topic },
            Effect::QueuePost {
                conversation,
                post: PostKind::ContactMessage,
                topic,
                replaced: false,
                by_main: false,
            },
        ),
        queue(OutboxId(2)),
    ]);
    let retried = drive(relay, now, steps);
    let Workflow::RelayToTopic(state) = &retried else {
        unreachable!()
    };
    assert!(state.file_refetched);
    assert_eq!(state.message.file.as_deref(), Some(&fresh));
    // Sent with the fresh reference: posted, then the replier.
    let sent = post_steps(
        conversation,
        PostKind::ContactMessage,
        topic,
        OutboxId(2),
        40,
    )
    .remove(2);
    let posted = drive(
        retried.clone(),
        now,
        vec![sent, (Event::Recorded, Effect::AutoReply { conversation })],
    );
    assert!(!posted.is_finished());
    // Refused again: no second fetch, the note.
    drive(
        retried,
        now,
        vec![(
            Event::Delivered(refused(TelegramError::FileReferenceExpired)),
            ensure,
        )],
    );
}

/// An operator's file whose reference expired is fetched again by the conversation's agent and
/// queued once more (then delivered); a message gone by then leaves the note.
#[test]
fn an_operators_file_with_an_expired_reference_is_fetched_again_and_queued_once_more() {
    let now = UnixMillis(0);
    let conversation = ConversationId(4);
    let relay = operator_file_relay(conversation);
    let refetch = refetch();
    let expired = drive(
        relay,
        now,
        vec![
            (
                Event::Queued {
                    outbox: OutboxId(5),
                },
                Effect::AwaitOutbox(OutboxId(5)),
            ),
            (
                Event::Delivered(refused(TelegramError::FileReferenceExpired)),
                refetch,
            ),
        ],
    );
    let fresh = crate::telegram::MediaFile {
        file_reference: vec![3],
        ..media_file()
    };
    let delivered = drive(
        expired.clone(),
        now,
        vec![
            (
                Event::FileRefetched {
                    file: Some(Box::new(fresh.clone())),
                },
                Effect::QueueToContact { conversation },
            ),
            (
                Event::Queued {
                    outbox: OutboxId(6),
                },
                Effect::AwaitOutbox(OutboxId(6)),
            ),
            (
                Event::Delivered(Delivery::Sent {
                    agent: agent("agent_a"),
                    message: None,
                }),
                Effect::Finished,
            ),
        ],
    );
    let Workflow::MediaToContact(state) = delivered else {
        unreachable!()
    };
    assert!(state.file_refetched);
    assert_eq!(state.message.file.as_deref(), Some(&fresh));
    drive(
        expired,
        now,
        vec![(
            Event::FileRefetched { file: None },
            Effect::EnsureTopic {
                conversation,
                stale: None,
            },
        )],
    );
}

/// An operator's file: queued, awaited, and either delivered or noted in the topic with why.
#[test]
fn an_operators_file_is_delivered_or_noted() {
    let now = UnixMillis(0);
    let conversation = ConversationId(4);
    let topic = TopicId(9);
    let relay = operator_file_relay(conversation);
    assert_eq!(relay.kind(), "media_to_contact");
    assert_eq!(relay.effect(now), Effect::QueueToContact { conversation });
    let queued = drive(
        relay.clone(),
        now,
        vec![(
            Event::Queued {
                outbox: OutboxId(5),
            },
            Effect::AwaitOutbox(OutboxId(5)),
        )],
    );
    let delivered = queued.clone().on(
        Event::Delivered(Delivery::Sent {
            agent: agent("agent_a"),
            message: None,
        }),
        now,
        &settings(),
    );
    assert!(delivered.is_finished());

    let mut steps = vec![(
        Event::Delivered(refused(TelegramError::MediaForbidden {
            code: "VOICE_MESSAGES_FORBIDDEN".into(),
        })),
        Effect::EnsureTopic {
            conversation,
            stale: None,
        },
    )];
    steps.extend(post_steps(
        conversation,
        PostKind::DeliveryNote,
        topic,
        OutboxId(6),
        31,
    ));
    steps.push((Event::Recorded, Effect::Finished));
    let noted = drive(queued, now, steps);
    assert!(noted.is_finished());

    // A conversation that is gone ends it without a note.
    let gone = relay.on(Event::NoConversation, now, &settings());
    assert!(gone.is_finished());
}

// ----- The AI turn -----

fn ai_turn() -> Workflow {
    Workflow::AiTurn(AiTurn::new(ConversationId(3), 2))
}

fn sent(message_id: i32) -> Event {
    Event::Delivered(Delivery::Sent {
        agent: agent("agent_a"),
        message: Some(SentMessage {
            chat: ChatId::user(5_000_123).unwrap(),
            message_id,
        }),
    })
}

#[test]
fn an_auto_ai_turn_generates_queues_waits_records_and_mirrors() {
    let now = UnixMillis(0);
    let conversation = ConversationId(3);
    let mut workflow = ai_turn();
    assert_eq!(
        workflow.effect(now),
        Effect::AiGenerate {
            conversation,
            turn: 2
        }
    );
    let steps = [
        (
            Event::AiDecided(AiOutcome::Send {
                text: "Ответ".into(),
            }),
            Effect::AiQueueReply {
                conversation,
                turn: 2,
            },
        ),
        (
            Event::Queued {
                outbox: OutboxId(9),
            },
            Effect::AwaitOutbox(OutboxId(9)),
        ),
        (
            sent(40),
            Effect::AiRecordSent {
                conversation,
                turn: 2,
            },
        ),
        (
            Event::Recorded,
            Effect::EnsureTopic {
                conversation,
                stale: None,
            },
        ),
        (
            Event::TopicReady { topic: TopicId(7) },
            Effect::QueuePost {
                conversation,
                post: PostKind::AiMirror,
                topic: TopicId(7),
                replaced: false,
                by_main: false,
            },
        ),
    ];
    for (event, effect) in steps {
        workflow = workflow.on(event, now, &settings());
        assert_eq!(workflow.effect(now), effect);
    }
    assert_eq!(AiTurn::reply_key(conversation, 2), "ai_reply:3:2");
    assert_eq!(AiTurn::key(conversation, 2), "ai_turn:3:2");
}

#[test]
fn a_suggestion_is_posted_and_nothing_is_sent_and_an_undelivered_reply_ends_typed() {
    let now = UnixMillis(0);
    let conversation = ConversationId(3);
    let suggested = ai_turn().on(
        Event::AiDecided(AiOutcome::Suggest {
            text: "Подсказка".into(),
        }),
        now,
        &settings(),
    );
    let posting = suggested.on(Event::TopicReady { topic: TopicId(7) }, now, &settings());
    assert_eq!(
        posting.effect(now),
        Effect::QueuePost {
            conversation,
            post: PostKind::AiSuggestion,
            topic: TopicId(7),
            replaced: false,
            by_main: false,
        }
    );
    let nothing = ai_turn().on(Event::AiDecided(AiOutcome::Nothing), now, &settings());
    assert!(nothing.is_finished());
    let failed = ai_turn()
        .on(
            Event::AiDecided(AiOutcome::Send { text: "x".into() }),
            now,
            &settings(),
        )
        .on(
            Event::Queued {
                outbox: OutboxId(1),
            },
            now,
            &settings(),
        )
        .on(
            Event::Delivered(Delivery::Expired { last_holdup: None }),
            now,
            &settings(),
        );
    assert!(matches!(
        failed,
        Workflow::AiTurn(AiTurn {
            step: AiStep::Finished {
                end: AiEnd::NotSent { .. }
            },
            ..
        })
    ));
    // The state round-trips through its stored JSON.
    let text = serde_json::to_string(&posting).unwrap();
    assert_eq!(serde_json::from_str::<Workflow>(&text).unwrap(), posting);
}

#[test]
fn a_contact_is_stored_as_a_bare_username_or_as_the_message_of_its_author() {
    let Workflow::AutoResponse(by_username) = auto_response(UnixMillis(1_000)) else {
        unreachable!()
    };
    // A workflow stored before authors were answered: the contact is a bare username.
    let stored = serde_json::to_value(&by_username).unwrap();
    assert_eq!(stored["contact"], serde_json::json!("anna_hr"));
    let loaded: AutoResponse = serde_json::from_value(stored).unwrap();
    assert_eq!(loaded, by_username);

    let author = MessageAuthor {
        chat: ChatId::channel(1_700_000_001).unwrap(),
        chat_username: Some(Username::parse("jobs_chat").unwrap()),
        message_id: 5,
        user: ChatId::user(5_000_124).unwrap(),
    };
    let by_author = AutoResponse {
        contact: ContactRef::Author(author.clone()),
        ..by_username
    };
    let stored = serde_json::to_string(&by_author).unwrap();
    let loaded: AutoResponse = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded, by_author);
    assert_eq!(loaded.contact.username(), None);
    assert_eq!(
        loaded.contact.to_string(),
        "the author (5000124) of message 5 in -1001700000001"
    );
}

// ----- Whose turn it is to answer a person -----

/// An auto-response of `channel` to vacancy `message_id`, at `step`.
fn answer(channel: &str, message_id: i32, step: AutoResponseStep) -> AutoResponse {
    let Workflow::AutoResponse(mut workflow) = auto_response(UnixMillis(0)) else {
        unreachable!()
    };
    workflow.channel_id = channel.into();
    workflow.vacancy.message_id = message_id;
    workflow.step = step;
    workflow
}

fn at_queue() -> AutoResponseStep {
    AutoResponseStep::Queue {
        resolver: agent("agent_a"),
        peer: peer(PeerKind::User),
        retry_at: None,
    }
}

fn at_queued() -> AutoResponseStep {
    AutoResponseStep::Queued {
        resolver: agent("agent_a"),
        peer: peer(PeerKind::User),
        outbox: OutboxId(1),
    }
}

fn at_open() -> AutoResponseStep {
    AutoResponseStep::Open {
        resolver: agent("agent_a"),
        peer: peer(PeerKind::User),
        agent: agent("agent_b"),
        outbox: OutboxId(1),
    }
}

fn at_post() -> AutoResponseStep {
    AutoResponseStep::Post {
        conversation: ConversationId(1),
        agent: agent("agent_b"),
        outbox: OutboxId(1),
        info: TopicPost::new(),
        mirror: TopicPost::new(),
    }
}

fn ended(end: AutoResponseEnd) -> AutoResponseStep {
    AutoResponseStep::Finished { end }
}

fn contact() -> ChatId {
    peer(PeerKind::User).id()
}

/// The turn of workflow 5 (channel_1, vacancy 5) against one other answer.
fn turn_against(
    other_id: i64,
    other: &AutoResponse,
    message: AnswerMessage,
    holds_contact: bool,
) -> QueueTurn {
    answer("channel_1", 5, at_queue()).queue_turn(
        WorkflowId(5),
        contact(),
        [OtherAnswer {
            id: WorkflowId(other_id),
            workflow: other,
            message,
            holds_contact,
        }],
    )
}

#[test]
fn a_vacancy_is_answered_once_across_channels_and_a_failed_answer_leaves_the_turn_to_the_next() {
    use AnswerMessage::{Earlier, Ended, None as NoMessage, Pending, Sent};
    let skip = QueueTurn::Skip(SkipReason::AnsweredForVacancy);
    let (wait, go) = (QueueTurn::Wait, QueueTurn::Go);
    let completed = ended(AutoResponseEnd::Completed {
        conversation: ConversationId(1),
        info: TopicPost::new(),
        mirror: TopicPost::new(),
    });
    let not_delivered = ended(AutoResponseEnd::NotDelivered {
        delivery: Delivery::Expired { last_holdup: None },
    });
    let channel_off = ended(AutoResponseEnd::Skipped {
        reason: SkipReason::ChannelOff,
    });
    let resolving = AutoResponseStep::Resolve {
        retry_at: None,
        give_up_at: UnixMillis(10),
    };
    // (other's step, its channel's message, turn when the other is earlier, when later)
    for (step, message, earlier, later) in [
        // Its message went out: never a second one, whichever started first, whatever its
        // workflow did next (a channel switched off after the delivery ends it skipped).
        (at_queued(), Sent, &skip, &skip),
        (at_open(), Sent, &skip, &skip),
        (at_post(), Sent, &skip, &skip),
        (completed.clone(), Sent, &skip, &skip),
        (channel_off.clone(), Sent, &skip, &skip),
        // Its message is on its way (or queued, its step not saved yet after a crash).
        (at_queued(), Pending, &wait, &wait),
        (at_queue(), Pending, &wait, &wait),
        // Not queued yet: the earlier one has the turn, whatever its step.
        (at_queue(), NoMessage, &wait, &go),
        (resolving, NoMessage, &wait, &go),
        // Failed or skipped: this channel answers instead.
        (not_delivered, Ended, &go, &go),
        (channel_off, NoMessage, &go, &go),
        // It goes on with an earlier vacancy's message: it sends nothing for this one.
        (at_queued(), Earlier, &go, &go),
        (at_post(), Earlier, &go, &go),
        (completed, Earlier, &go, &go),
    ] {
        let other = answer("channel_2", 5, step.clone());
        for holds_contact in [false, true] {
            let turn = |id| turn_against(id, &other, message, holds_contact);
            assert_eq!(&turn(4), earlier, "{step:?} {message:?}");
            assert_eq!(&turn(6), later, "{step:?} {message:?}");
        }
    }
    // Itself is no other.
    let itself = answer("channel_1", 5, at_queued());
    assert_eq!(turn_against(5, &itself, Pending, true), go);
}

#[test]
fn an_answer_to_another_vacancy_by_the_same_person_is_waited_for_until_its_conversation_opens() {
    use AnswerMessage::{Ended, None as NoMessage, Pending, Sent};
    let (wait, go) = (QueueTurn::Wait, QueueTurn::Go);
    for (step, message, earlier, later) in [
        (at_queued(), Pending, &wait, &wait),
        (at_open(), Sent, &wait, &wait),
        (at_queue(), Pending, &wait, &wait),
        (at_queue(), NoMessage, &wait, &go),
        (at_queue(), Ended, &wait, &go),
        // The conversation is open: its agent and the cooldown now apply.
        (at_post(), Sent, &go, &go),
    ] {
        let other = answer("channel_2", 6, step.clone());
        assert_eq!(&turn_against(4, &other, message, true), earlier, "{step:?}");
        assert_eq!(&turn_against(6, &other, message, true), later, "{step:?}");
        // Another CRM group and no cooldown: nothing to wait for.
        assert_eq!(turn_against(4, &other, message, false), go, "{step:?}");
    }
    // Somebody else: nothing to wait for.
    let mut other = answer("channel_2", 6, at_queued());
    let AutoResponseStep::Queued { peer, .. } = &mut other.step else {
        unreachable!()
    };
    peer.peer.id = ChatId::user(5_000_999).unwrap();
    assert_eq!(turn_against(4, &other, Pending, true), go);
}

#[test]
fn an_auto_response_waiting_its_turn_sleeps_and_looks_again() {
    let now = UnixMillis(1_000_000);
    let later = now.plus(settings().conversation_retry);
    let queue = Effect::QueueAutoResponse {
        resolver: agent("agent_a"),
        peer: peer(PeerKind::User),
    };
    let workflow = drive(
        Workflow::AutoResponse(answer("channel_1", 5, at_queue())),
        now,
        vec![
            (Event::AnotherAnswersFirst, Effect::SleepUntil(later)),
            (Event::Woke, queue.clone()),
            (
                Event::Skipped {
                    reason: SkipReason::AnsweredForVacancy,
                },
                Effect::Finished,
            ),
        ],
    );
    assert!(workflow.is_finished());
    // Past its time it looks again at once; a state stored before the wait existed loads.
    let waiting = Workflow::AutoResponse(answer(
        "channel_1",
        5,
        AutoResponseStep::Queue {
            resolver: agent("agent_a"),
            peer: peer(PeerKind::User),
            retry_at: Some(now),
        },
    ));
    assert_eq!(waiting.effect(later), queue);
    let mut stored =
        serde_json::to_value(Workflow::AutoResponse(answer("channel_1", 5, at_queue()))).unwrap();
    assert!(stored["step"].get("retry_at").is_none());
    stored["step"].as_object_mut().unwrap().remove("retry_at");
    let loaded: Workflow = serde_json::from_value(stored).unwrap();
    assert_eq!(loaded.effect(now), queue);
}

/// One vacancy's answers in several channels as the executors run them side by side: each
/// atomic store action (save a step, look at the others, queue the message) interleaved in any
/// order, resolving and delivering failing at random.
struct Race {
    /// Per workflow (id = index + 1): its stored step, whether its message is on record, and
    /// the decision it took at its last look (acted on by its next action).
    steps: Vec<AutoResponseStep>,
    messages: Vec<AnswerMessage>,
    decided: Vec<Option<QueueTurn>>,
    delivered: usize,
    queued_at_once: usize,
}

impl Race {
    fn new(answers: usize) -> Self {
        Self {
            steps: vec![
                AutoResponseStep::Resolve {
                    retry_at: None,
                    give_up_at: UnixMillis(10),
                };
                answers
            ],
            messages: vec![AnswerMessage::None; answers],
            decided: vec![None; answers],
            delivered: 0,
            queued_at_once: 0,
        }
    }

    fn look(&self, index: usize) -> QueueTurn {
        let workflows: Vec<AutoResponse> = self
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| answer(&format!("channel_{index}"), 5, step.clone()))
            .collect();
        workflows[index].queue_turn(
            WorkflowId(index as i64 + 1),
            contact(),
            workflows
                .iter()
                .enumerate()
                .map(|(other, workflow)| OtherAnswer {
                    id: WorkflowId(other as i64 + 1),
                    workflow,
                    message: self.messages[other],
                    holds_contact: true,
                }),
        )
    }

    /// The next atomic action of workflow `index`; `fails` decides a resolve or a delivery.
    fn act(&mut self, index: usize, fails: bool) {
        use AutoResponseStep as Step;
        let finish = |end| Step::Finished { end };
        self.steps[index] = match (self.steps[index].clone(), self.decided[index].take()) {
            (Step::Resolve { .. }, _) if fails => finish(AutoResponseEnd::GaveUpResolving),
            (Step::Resolve { .. }, _) => at_queue(),
            (Step::Queue { .. }, None) => {
                self.decided[index] = Some(self.look(index));
                at_queue()
            }
            (Step::Queue { .. }, Some(QueueTurn::Wait)) => at_queue(),
            (Step::Queue { .. }, Some(QueueTurn::Skip(reason))) => {
                finish(AutoResponseEnd::Skipped { reason })
            }
            // Queue the message, then (another action) save `Queued`.
            (Step::Queue { .. }, Some(QueueTurn::Go))
                if self.messages[index] == AnswerMessage::None =>
            {
                self.messages[index] = AnswerMessage::Pending;
                self.decided[index] = Some(QueueTurn::Go);
                let pending = self
                    .steps
                    .iter()
                    .zip(&self.messages)
                    .filter(|(_, message)| **message == AnswerMessage::Pending)
                    .count();
                self.queued_at_once = self.queued_at_once.max(pending);
                at_queue()
            }
            (Step::Queue { .. }, Some(QueueTurn::Go)) => at_queued(),
            (Step::Queued { .. }, _) if fails => {
                self.messages[index] = AnswerMessage::Ended;
                finish(AutoResponseEnd::NotDelivered {
                    delivery: Delivery::Expired { last_holdup: None },
                })
            }
            (Step::Queued { .. }, _) => {
                self.messages[index] = AnswerMessage::Sent;
                self.delivered += 1;
                at_open()
            }
            (Step::Open { .. }, _) => at_post(),
            (Step::Post { .. }, _) => finish(AutoResponseEnd::Completed {
                conversation: ConversationId(1),
                info: TopicPost::new(),
                mirror: TopicPost::new(),
            }),
            (step @ Step::Finished { .. }, _) => step,
        };
    }

    fn finished(&self) -> bool {
        self.steps
            .iter()
            .all(|step| matches!(step, AutoResponseStep::Finished { .. }))
    }
}

proptest::proptest! {
    /// However the answers of one vacancy interleave, at most one message is on its way at a
    /// time, at most one is delivered, and every answer ends (nobody waits forever).
    #[test]
    fn a_vacancys_answers_in_any_interleaving_deliver_at_most_once_and_all_end(
        answers in 2usize..5,
        schedule in proptest::collection::vec((0usize..4, proptest::bool::weighted(0.2)), 1..200),
    ) {
        let mut race = Race::new(answers);
        let mut actions = schedule.iter().cycle();
        for _ in 0..10_000 {
            if race.finished() {
                break;
            }
            let (index, fails) = actions.next().unwrap();
            race.act(index % answers, *fails);
        }
        // Past the schedule, in turn order, nothing failing: everyone must still end.
        for _ in 0..1_000 {
            if race.finished() {
                break;
            }
            for index in 0..answers {
                race.act(index, false);
            }
        }
        proptest::prop_assert!(race.finished(), "stuck: {:?}", race.steps);
        proptest::prop_assert!(race.delivered <= 1, "{} delivered", race.delivered);
        proptest::prop_assert!(race.queued_at_once <= 1, "{} on their way at once", race.queued_at_once);
    }
}
